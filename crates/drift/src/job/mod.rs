//! Drift jobs over the store. A job ([`spec`]) compares a window of a deployment's predictions,
//! with their late labels joined on, against a reference, on a schedule ([`schedule`]). A run
//! ([`run`]) loads the data in bounded memory, judges drift and performance, and persists the
//! results ([`persist`]): an aggregate metrics event with `source = drift:<job>`, the run's
//! status and its JSON and HTML reports. The scheduler ([`scheduler`]) runs jobs when they come
//! due, inside `driftline serve`. A job that estimates performance from scores before labels
//! arrive has its estimates checked against the labels that came later by [`estimates`].

mod chunk_performance;
pub mod estimates;
mod judge;
mod load;
mod paths;
pub mod persist;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod spec;
