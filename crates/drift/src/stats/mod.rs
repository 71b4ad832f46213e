//! Pure statistics: functions of plain slices and counts, no I/O. Each module documents its
//! algorithm and the reference implementation it matches (scikit-learn, SciPy), and is tested
//! against values those libraries computed on the same data (`tests/fixtures/`).

pub mod calibration;
pub mod categories;
pub mod column;
pub mod drift;
pub mod kolmogorov;
pub mod performance;
mod ranking;
pub mod sample;
pub mod sketched;
pub mod value;
