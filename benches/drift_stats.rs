//! Times driftline's ROC AUC and two-sample KS (large, and exact at 10,000 a side) on the files `benches/drift/reference.py data`
//! writes (raw little-endian f64), best of three, inputs in memory: the same measurement the
//! reference script makes with scikit-learn and SciPy. Prints one JSON line per statistic.
//!
//! `drift_stats DIR`

use std::path::Path;
use std::time::Instant;

use driftline_drift::stats::drift::ks_two_sample;
use driftline_drift::stats::performance;
use driftline_drift::stats::sample::Sample;

fn read_f64(path: &Path) -> anyhow::Result<Vec<f64>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}; run benches/drift/run.sh", path.display()))?;
    Ok(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

fn best_of<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut value = None;
    for _ in 0..3 {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64());
        value = Some(v);
    }
    (best, value.expect("ran"))
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: drift_stats DIR"))?;
    let dir = Path::new(&dir);

    let labels: Vec<bool> = read_f64(&dir.join("labels.f64"))?.into_iter().map(|l| l == 1.0).collect();
    let scores = read_f64(&dir.join("scores.f64"))?;
    let (seconds, auc) = best_of(|| performance::binary(&scores, &labels, 0.5).roc_auc.value);
    println!(r#"{{"what":"roc_auc","seconds":{seconds},"value":{}}}"#, auc.unwrap_or(f64::NAN));
    drop((labels, scores));

    // The whole test, sorting included, as ks_2samp does it: 10,000,000 values a side, then
    // 10,000 a side (the exact p-value, as ks_2samp(method="exact")).
    time_ks(dir, "ks", "ks_a.f64", "ks_b.f64")?;
    time_ks(dir, "ks_exact", "ks_small_a.f64", "ks_small_b.f64")?;
    Ok(())
}

/// Times the two-sample KS test of two files' values and prints it as `what`.
fn time_ks(dir: &Path, what: &str, a: &str, b: &str) -> anyhow::Result<()> {
    let (a, b) = (read_f64(&dir.join(a))?, read_f64(&dir.join(b))?);
    let (seconds, ks) = best_of(|| {
        let (sa, sb) = Sample::pair_from_finite(&a, &b);
        ks_two_sample(&sa, &sb)
    });
    let ks = ks.expect("samples hold values");
    println!(r#"{{"what":"{what}","seconds":{seconds},"statistic":{},"pvalue":{}}}"#, ks.statistic, ks.p_value);
    Ok(())
}
