//! The rollups' sketches are DataSketches' KLL in its standard serialization: bytes written by
//! Apache DataSketches for Python read here, and bytes written here read by Python, each side
//! answering the same. The fixtures and the script that makes them are in `fixtures/kll/`.

use std::path::PathBuf;

use driftline_rollup::Sketch;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kll").join(name)
}

fn readings(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(path)).expect("fixture")).expect("JSON")
}

/// Checks that `sketch` answers as the Python library recorded in `expected`.
fn answers_as_recorded(sketch: &Sketch, expected: &Value) {
    assert_eq!(u64::from(sketch.k()), expected["k"].as_u64().unwrap());
    assert_eq!(sketch.n(), expected["n"].as_u64().unwrap());
    assert_eq!(sketch.retained() as u64, expected["num_retained"].as_u64().unwrap());
    assert!((sketch.rank_error() - expected["normalized_rank_error"].as_f64().unwrap()).abs() < 1e-12);
    for (rank, value) in expected["quantiles"].as_object().unwrap() {
        let rank: f64 = rank.parse().unwrap();
        // At ranks 0 and 1 the Rust library answers the stream's exact minimum and maximum
        // (which the serialization carries); the C++ library under Python answers the
        // smallest and largest value the sketch kept. Both read the same min and max.
        let want = match rank {
            0.0 => expected["min"].as_f64(),
            1.0 => expected["max"].as_f64(),
            _ => value.as_f64(),
        };
        assert_eq!(sketch.quantile(rank), want, "quantile at rank {rank}");
    }
    for (value, rank) in expected["ranks"].as_object().unwrap() {
        let value: f64 = value.parse().unwrap();
        assert_eq!(sketch.rank(value), rank.as_f64(), "rank of {value}");
    }
}

#[test]
fn a_sketch_written_by_python_datasketches_reads_the_same_here() {
    let bytes = std::fs::read(fixture("python_k200.bin")).unwrap();
    let sketch = Sketch::from_bytes(&bytes).expect("Python's bytes deserialize");
    let expected = readings("python_k200.json");
    assert!(expected["estimation_mode"].as_bool().unwrap(), "the fixture exercises compaction, not only exact mode");
    answers_as_recorded(&sketch, &expected);
    assert_eq!(sketch.to_bytes(), bytes, "serialized again, the bytes are Python's own");
}

#[test]
fn a_sketch_written_here_reads_the_same_in_python_datasketches() {
    let bytes = std::fs::read(fixture("rust_k200.bin")).unwrap();
    let sketch = Sketch::from_bytes(&bytes).unwrap();
    let python = readings("rust_k200.read_by_python.json");
    assert!(python["estimation_mode"].as_bool().unwrap());
    assert!(python["reserialized_equal"].as_bool().unwrap(), "Python serialized our sketch back to the same bytes");
    answers_as_recorded(&sketch, &python);
}

/// Writes `rust_k200.bin`; run with `-- --ignored`, then `fixtures/kll/interop.py`.
#[test]
#[ignore = "writes a fixture"]
fn write_the_rust_fixture() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let mut sketch = Sketch::new(200).unwrap();
    for _ in 0..250_000 {
        let u: f64 = rng.random();
        sketch.update(if rng.random_bool(0.7) { u * 100.0 } else { -u.max(1e-12).ln() * 25.0 });
    }
    std::fs::write(fixture("rust_k200.bin"), sketch.to_bytes()).unwrap();
}
