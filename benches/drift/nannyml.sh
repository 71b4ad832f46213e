#!/usr/bin/env bash
# The chunked benchmark: driftline beside NannyML 0.13.1 on NannyML's largest shipped data set
# (US census employment, Massachusetts: 68,785 reference and 208,892 analysis rows), whole
# processes in the same run: drift of its 16 features (Jensen-Shannon) in 10 chunks plus CBPE
# (six metrics) in 10 chunks. Then checks that both give the same values and alerts.
#
#   benches/drift/nannyml.sh   (needs NannyML's pinned environment:
#                               python3 -m venv ~/.cache/driftline/nannyml-env &&
#                               ~/.cache/driftline/nannyml-env/bin/pip install -r crates/drift/tests/fixtures/nannyml/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/driftline/target}"
# NannyML reports usage over the network unless told not to; that would time the network.
export NML_DISABLE_USAGE_LOGGING=1
python="${NANNYML_PYTHON:-$HOME/.cache/driftline/nannyml-env/bin/python}"
data="${DRIFTLINE_BENCH_DATA:-$HOME/.cache/driftline/bench-drift}/nannyml"
bin="$CARGO_TARGET_DIR/release/driftline"
features=AGEP,SCHL,MAR,RELP,DIS,ESP,CIT,MIG,MIL,ANC,NATIVITY,DEAR,DEYE,DREM,SEX,RAC1P

"$python" benches/drift/nannyml_chunked.py data "$data"
cargo build --release -q -p driftline

ours() {
  "$bin" drift compare --reference "$data/employment_reference.parquet" \
    --current "$data/employment_analysis.parquet" --columns "$features" --chunk-number 10 \
    --chunk-methods jensen_shannon --format json --output "$data/drift.json" 2>/dev/null
  "$bin" drift estimate --reference "$data/employment_reference.parquet" \
    --analysis "$data/employment_analysis.parquet" --score predicted_probability \
    --prediction prediction --label employed --chunk-number 10 --format json \
    --output "$data/estimate.json" 2>/dev/null
}
theirs() { "$python" benches/drift/nannyml_chunked.py run "$data" "$data/nannyml.json" 2>/dev/null; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); python3 -c "print(f'{$t1 - $t0:.3f}')"; }

echo "== drift (16 features, 10 chunks) + CBPE (6 metrics, 10 chunks), whole processes, 3 runs each"
for run in 1 2 3; do
  a=$(seconds ours)
  b=$(seconds theirs)
  echo "run $run: driftline ${a} s (drift compare + drift estimate)   NannyML ${b} s   -> driftline $(python3 -c "print(f'{$b / $a:.1f}')")x faster"
done
"$python" benches/drift/nannyml_chunked.py compare "$data/nannyml.json" "$data/drift.json" "$data/estimate.json"
