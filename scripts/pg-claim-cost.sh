#!/usr/bin/env bash
# Where the time of a Postgres write goes, without driftline in the way: 200,000 prediction rows
# (the shape http_ingest sends) copied into driftline's schema with psql's \copy, as
#   a) one COPY in one transaction,
#   b) 200 COPYs of 1,000 rows, one transaction each, one session,
#   c) as b, each transaction also copying the rows' UUID claims into prediction_ids first,
#   d) as c, over 4 sessions at once (as 4 HTTP requests in flight are),
#   e) as b, over 4 sessions at once.
# Usage: scripts/pg-claim-cost.sh [SERVER_URL] [DRIFTLINE_BINARY]
set -euo pipefail
server="${1:-postgres://postgres@127.0.0.1:5432}"
driftline="${2:-${CARGO_TARGET_DIR:-$HOME/.cache/driftline/target}/release/driftline}"
work="$(mktemp -d)"
trap 'rm -rf "$work"; psql "$server/postgres" -qc "DROP DATABASE IF EXISTS driftline_claim_cost" >/dev/null 2>&1 || true' EXIT
cd "$work"
python3 - <<'PY'
import json, random, time, uuid
random.seed(7)
start = int(time.time() * 1000) - 86_400_000
rows = []
for i in range(200_000):
    m = {"input": {"tenure_months": random.randrange(72), "monthly_charges": round(random.random() * 100, 2),
                   "support_calls": random.randrange(6), "plan": random.choice(["basic", "standard", "premium"]),
                   "contract": random.choice(["month-to-month", "one-year", "two-year"]),
                   "paperless_billing": random.random() < 0.5, "region": random.choice(["north", "south", "east", "west"])},
         "prediction": round(random.random(), 4)}
    s = start + i * 432
    rows.append((str(uuid.uuid4()), s, json.dumps(m, separators=(",", ":")).replace('"', '""')))
line = lambda u, s, j: f'{u},"crn:bench:model/churn","crn:bench:build/1","crn:bench:deployment/churn",{s},{s + 15},"{j}",1700000000000\n'
with open("all.csv", "w") as f:
    f.writelines(line(*r) for r in rows)
for k in range(200):
    part = rows[k * 1000:(k + 1) * 1000]
    with open(f"p{k}.csv", "w") as f:
        f.writelines(line(*r) for r in part)
    with open(f"i{k}.csv", "w") as f:
        f.writelines(f'{u},"crn:bench:deployment/churn",{s}\n' for u, s, _ in part)
PY
psql "$server/postgres" -qc "DROP DATABASE IF EXISTS driftline_claim_cost" -c "CREATE DATABASE driftline_claim_cost"
db="$server/driftline_claim_cost"
DRIFTLINE_LOG=warn "$driftline" keys list --database-url "$db" >/dev/null   # migrations and partitions
cols="uuid, model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics, received_at_ms"
copy_p() { echo "\\copy predictions ($cols) from 'p$1.csv' csv"; }
copy_i() { echo "\\copy prediction_ids (uuid, model_deployment_crn, start_timestamp_ms) from 'i$1.csv' csv"; }
timed() { psql "$db" -qc "TRUNCATE predictions, prediction_ids"; local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }
parallel() { for j in 0 1 2 3; do psql "$db" -q -f "$1$j.sql" & done; wait; }
echo "a) one COPY, one transaction:        $(timed psql "$db" -qc "\\copy predictions ($cols) from 'all.csv' csv") s"
for k in $(seq 0 199); do copy_p "$k"; done > b.sql
echo "b) 200 COPYs, one session:           $(timed psql "$db" -q -f b.sql) s"
for k in $(seq 0 199); do echo "BEGIN;"; copy_i "$k"; copy_p "$k"; echo "COMMIT;"; done > c.sql
echo "c) 200 claims + COPYs, one session:  $(timed psql "$db" -q -f c.sql) s"
for j in 0 1 2 3; do for k in $(seq "$j" 4 199); do echo "BEGIN;"; copy_i "$k"; copy_p "$k"; echo "COMMIT;"; done > "d$j.sql"; done
echo "d) as c, 4 sessions at once:         $(timed parallel d) s"
for j in 0 1 2 3; do for k in $(seq "$j" 4 199); do copy_p "$k"; done > "e$j.sql"; done
echo "e) as b, 4 sessions at once:         $(timed parallel e) s"
