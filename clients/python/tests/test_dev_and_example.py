"""Development mode (the local server the client starts and shares) and the iris example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris" / "predict.py"
RUN_TIMEOUT_S = 120


def run(args, env, **kwargs):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, **kwargs)


def is_ready(url):
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
            return resp.status == 200
    except Exception:
        return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not serving: check its state where /proc exists.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_iris_example_in_dev_mode_persists_between_sessions(tmp_path):
    env = dict(os.environ)
    dev_dir = Path(env["DRIFTLINE_DEV_DIR"])
    first = run([str(EXAMPLE)], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("15 predictions of deployment crn:driftline:dev:deployment/dev, 15 labelled, ")
    # The process that started the dev server stopped it at exit and removed its state.
    assert not (dev_dir / "server.json").exists()
    assert (dev_dir / "data" / "driftline.sqlite").exists()

    second = run([str(EXAMPLE)], env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("30 predictions of deployment crn:driftline:dev:deployment/dev, 30 labelled, ")


def test_iris_example_against_a_running_server(server, tmp_path):
    env = dict(os.environ, DRIFTLINE_URL=server.url, DRIFTLINE_API_KEY=server.key)
    done = run([str(EXAMPLE)], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("15 predictions of deployment crn:driftline:dev:deployment/dev, ")
    correct = int(done.stdout.split(", ")[2].split()[0])
    rows = server.rows(model_deployment_crn="crn:driftline:dev:deployment/dev")
    assert len(rows) == 15
    assert correct == sum(r["metrics"]["predict_result"] == r["metrics"]["actual_result"] for r in rows)
    assert correct >= 12
    assert not Path(env["DRIFTLINE_DEV_DIR"]).exists()  # no dev server was started


HOLDER = """
import sys, driftline, driftline.models_v1 as models
@models.cml_model(metrics=True)
def predict(args):
    return args
predict({"who": "holder"})
assert driftline.flush(30)
s = driftline.stats()
print(s["url"], flush=True)
sys.stdin.readline()
"""

USER = """
import json, driftline, driftline.cdsw as cdsw
@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("input", args)
    return args
predict({"who": "user"})
rows = cdsw.read_metrics(model_deployment_crn=cdsw.dev_model_deployment_crn, dev=True)["metrics"]
print(json.dumps({"url": driftline.stats()["url"], "who": sorted(r["metrics"].get("input", {}).get("who", "holder") for r in rows)}))
"""


def test_dev_server_is_shared_and_stopped_by_the_process_that_started_it(tmp_path):
    env = dict(os.environ)
    dev_dir = Path(env["DRIFTLINE_DEV_DIR"])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = holder.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), holder.stderr.read() if holder.poll() is not None else url
        state = json.loads((dev_dir / "server.json").read_text())
        assert state["url"] == url
        assert oct((dev_dir / "server.json").stat().st_mode & 0o777) == "0o600"
        pid = state["pid"]
        assert pid_alive(pid)

        user = run(["-c", USER], env)
        assert user.returncode == 0, user.stderr
        answer = json.loads(user.stdout)
        assert answer["url"] == url
        assert answer["who"] == ["holder", "user"]
        # The user did not start the server, so its exit left it running.
        assert is_ready(url)
        assert json.loads((dev_dir / "server.json").read_text())["pid"] == pid

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(RUN_TIMEOUT_S) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    assert wait_until(lambda: not pid_alive(pid))
    assert not is_ready(url)
    assert not (dev_dir / "server.json").exists()


def test_stale_state_file_is_replaced(tmp_path):
    env = dict(os.environ)
    dev_dir = Path(env["DRIFTLINE_DEV_DIR"])
    dev_dir.mkdir(parents=True)
    (dev_dir / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "key": "stale-key-stale-key", "pid": 999999}))
    user = run(["-c", USER], env)
    assert user.returncode == 0, user.stderr
    answer = json.loads(user.stdout)
    assert answer["url"] != "http://127.0.0.1:9"
    assert answer["who"] == ["user"]


def test_missing_binary_is_reported_clearly(tmp_path):
    env = dict(os.environ, DRIFTLINE_BIN=str(tmp_path / "nowhere" / "driftline"))
    code = "import driftline, driftline.cdsw as cdsw\ntry:\n    cdsw.read_metrics(dev=True)\nexcept driftline.DevServerError as e:\n    print('ERR', e)\n"
    done = run(["-c", code], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ERR DRIFTLINE_BIN=")
    assert "point it at the driftline binary" in done.stdout
