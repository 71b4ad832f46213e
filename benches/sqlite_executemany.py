"""The SQLite reference of benches/http_ingest.rs: Python's sqlite3 `executemany` of the same rows
into the same schema (driftline's SQLite migrations), 1,000 rows per transaction, WAL,
synchronous=FULL. Prints one JSON line: {"rows": N, "seconds": S}.

    python3 benches/sqlite_executemany.py --db PATH --rows ROWS.jsonl --schema SCHEMA.sql

Each line of ROWS.jsonl is a JSON array of the values of one `predictions` row, in the order of
the columns given on the first line (a JSON array of column names).
"""

import argparse
import json
import sqlite3
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--rows", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--per-transaction", type=int, default=1000)
    args = parser.parse_args()

    with open(args.rows, encoding="utf-8") as f:
        columns = json.loads(f.readline())
        rows = [tuple(json.loads(line)) for line in f]

    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    with open(args.schema, encoding="utf-8") as f:
        db.executescript(f.read())
    sql = f"INSERT INTO predictions ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"

    started = time.perf_counter()
    for i in range(0, len(rows), args.per_transaction):
        db.execute("BEGIN")
        db.executemany(sql, rows[i : i + args.per_transaction])
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    stored = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
    assert stored == len(rows), f"stored {stored} of {len(rows)} rows"
    print(json.dumps({"rows": len(rows), "seconds": seconds}))


if __name__ == "__main__":
    main()
