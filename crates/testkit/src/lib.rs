//! driftline-testkit holds what driftline's tests and benchmarks share, so that none of it ships
//! in a library: a fresh Postgres database per test ([`postgres`]), Kafka-protocol brokers (the
//! tansu process and librdkafka's mock cluster served over TCP, [`kafka`]), and the real
//! `driftline` processes started from a test ([`process`]).

pub mod kafka;
pub mod postgres;
pub mod process;

pub use kafka::{MockBroker, Tansu};
pub use postgres::{with_database, TestDatabase, DEFAULT_TEST_SERVER};
pub use process::{IngestProcess, ServerProcess};

/// A free TCP port on the loopback interface (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Whether an environment flag such as `DRIFTLINE_REQUIRE_KAFKA` is set to `1`.
pub fn required(flag: &str) -> bool {
    std::env::var(flag).is_ok_and(|v| v == "1")
}
