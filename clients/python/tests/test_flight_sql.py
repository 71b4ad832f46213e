"""Arrow Flight SQL from a real Flight SQL client (ADBC's, as pandas, Polars and DBeaver-like
tools use it) against `driftline serve --flight-sql-listen`: the same answers as
``driftline.sql()`` over HTTP, the catalog, and the same keys and scopes."""

from __future__ import annotations

import subprocess
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pytest

import driftline
from test_sql import INPUTS, as_tuples, assert_rows, expected_per_plan, per_plan_query, track_inputs


def connect(server, key: str):
    return flight_sql.connect(
        server.flight_url,
        db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {key}"},
        autocommit=True,
    )


def query_table(server, key: str, query: str):
    with connect(server, key) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def test_flight_sql_answers_as_the_http_api_does(client, crns):
    track_inputs()
    query = per_plan_query(crns["model_deployment_crn"])
    over_http = driftline.sql(query)
    table = query_table(client, client.key, query)
    assert table.column_names == ["plan", "n", "tenure_sum", "max_score"]
    rows = [(r["plan"], r["n"], r["tenure_sum"], r["max_score"]) for r in table.to_pylist()]
    assert_rows(rows, expected_per_plan())
    assert rows == as_tuples(over_http)


def test_flight_sql_dataframe_and_catalog(client, crns):
    track_inputs()
    driftline.flush()
    with connect(client, client.key) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) AS n, avg(json_get_float(metrics, 'input', 'tenure')) AS tenure "
                f"FROM predictions WHERE model_deployment_crn = '{crns['model_deployment_crn']}'"
            )
            frame = cur.fetch_df()
        assert frame["n"].tolist() == [len(INPUTS)]
        assert frame["tenure"].tolist() == pytest.approx([sum(t for _, t in INPUTS) / len(INPUTS)])
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    tables = {
        table["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"]
        for table in schema["db_schema_tables"]
    }
    assert {"predictions", "labelled_predictions", "rollups_1h", "dead_letters"} <= tables
    assert [catalog["catalog_name"] for catalog in objects] == ["driftline"]


def test_flight_sql_refuses_bad_keys_and_statements(client):
    with pytest.raises(adbc_driver_manager.Error) as caught:
        query_table(client, "not-a-key", "SELECT 1")
    assert "unknown or revoked" in str(caught.value)
    with pytest.raises(adbc_driver_manager.Error) as caught:
        query_table(client, client.key, "DROP TABLE predictions")
    assert "not supported" in str(caught.value)
    # The table is still there.
    assert query_table(client, client.key, "SELECT count(*) AS n FROM predictions").num_rows == 1


def test_a_scoped_key_sees_its_deployment_only(client, crns, driftline_bin):
    track_inputs()
    driftline.flush()
    created = subprocess.run(
        [driftline_bin, "keys", "create", "--name", "scoped", "--scope", "read",
         "--deployment", crns["model_deployment_crn"], "--data-dir", str(client.data_dir)],
        check=True, capture_output=True, text=True,
    )
    scoped = created.stdout.strip()
    # Another deployment's rows, sent with the admin key.
    driftline.init(url=client.url, api_key=client.key, model_crn="crn:test:model/other",
                   model_build_crn="crn:test:build/other", model_deployment_crn="crn:test:deployment/other")
    track_inputs()
    driftline.flush()
    query = "SELECT model_deployment_crn AS d, count(*) AS n FROM predictions GROUP BY 1 ORDER BY 1"
    everyone = query_table(client, client.key, query).to_pylist()
    assert {r["d"] for r in everyone} >= {crns["model_deployment_crn"], "crn:test:deployment/other"}
    # The server reloads its keys every 2 s: wait, boundedly, for the new one.
    deadline = time.monotonic() + 20
    while True:
        try:
            seen = query_table(client, scoped, query).to_pylist()
            break
        except adbc_driver_manager.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert seen == [{"d": crns["model_deployment_crn"], "n": len(INPUTS)}]
