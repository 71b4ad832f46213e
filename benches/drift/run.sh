#!/usr/bin/env bash
# The drift benchmarks: driftline beside scikit-learn, SciPy and Evidently on the same files in
# the same run. Prints each measurement and the ratios; the figures go to docs/BENCHMARKS.md.
#
#   benches/drift/run.sh            (needs: pip install numpy scipy scikit-learn pandas pyarrow evidently)
#
# DRIFTLINE_BENCH_PYTHON names the Python with those packages (python3 by default);
# DRIFTLINE_BENCH_SKIP_EVIDENTLY=1 leaves out the Evidently comparison.
#
# Inputs are generated once into $DRIFTLINE_BENCH_DATA (default ~/.cache/driftline/bench-drift).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/driftline/target}"
data="${DRIFTLINE_BENCH_DATA:-$HOME/.cache/driftline/bench-drift}"
bin="$CARGO_TARGET_DIR/release"
py="${DRIFTLINE_BENCH_PYTHON:-python3}"

"$py" benches/drift/reference.py data "$data"
cargo build --release -q -p driftline -p driftline-benches

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
measure() { /usr/bin/time -f "%e %M" -o "$data/time.txt" "$@" >/dev/null 2>&1; cat "$data/time.txt"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$1" "$2"; }

echo "== ROC AUC, 10,000,000 rows; KS, 2 x 10,000,000 rows (best of 3, inputs in memory)"
ours="$("$bin/drift_stats" "$data")"
roc_ours="$(echo "$ours" | grep '"roc_auc"')"
ks_ours="$(echo "$ours" | grep '"ks"')"
roc_ref="$("$py" benches/drift/reference.py roc "$data")"
ks_ref="$("$py" benches/drift/reference.py ks "$data")"
echo "driftline    $roc_ours"
echo "scikit-learn $roc_ref"
echo "driftline    $ks_ours"
echo "SciPy        $ks_ref"
echo "ROC AUC: driftline $(ratio "$(field "$roc_ref" seconds)" "$(field "$roc_ours" seconds)")x faster than roc_auc_score"
echo "KS:      driftline $(ratio "$(field "$ks_ref" seconds)" "$(field "$ks_ours" seconds)")x faster than ks_2samp"
exact_ours="$(echo "$ours" | grep '"ks_exact"')"
exact_ref="$("$py" benches/drift/reference.py ks_exact "$data")"
echo "driftline    $exact_ours"
echo "SciPy        $exact_ref"
echo "exact KS, 2 x 10,000: driftline $(ratio "$(field "$exact_ref" seconds)" "$(field "$exact_ours" seconds)")x faster than ks_2samp(method=exact)"

echo "== ROC AUC of a 10,000,000-row file (6 columns), whole processes (wall s, peak RSS KiB)"
for file in roc.parquet roc.csv; do
  ours=$(measure "$bin/driftline" drift performance --input "$data/$file" --score score --label label --format json)
  ref=$(measure "$py" benches/drift/reference.py roc_file "$data/$file")
  echo "$file: driftline $ours   pandas + roc_auc_score $ref   -> driftline $(ratio "${ref%% *}" "${ours%% *}")x faster"
done

[ "${DRIFTLINE_BENCH_SKIP_EVIDENTLY:-0}" = 1 ] && exit 0
echo "== drift compare, 200,000 rows x 10 numeric columns, whole process (wall s, peak RSS KiB)"
for method in psi ks; do
  ours=$(measure "$bin/driftline" drift compare --reference "$data/reference.csv" --current "$data/current.csv" \
           --method "$method" --format json)
  ref=$(measure "$py" benches/drift/reference.py evidently "$data/reference.csv" "$data/current.csv" "$method")
  echo "$method: driftline $ours   Evidently $ref   -> driftline $(ratio "${ref%% *}" "${ours%% *}")x faster"
done
