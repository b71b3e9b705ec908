"""The web explorer over real runs, through HTTP: the JSON API, escaping, read-only, the CLI.

The browser tests are in tests/test_ui_browser.py; the runs and the server are shared
(tests/conftest.py, tests/ui_support.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from llmnas.store import RunStore

try:
    from tests.ui_support import ATTACK
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from ui_support import ATTACK


def get(base: str, path: str, *, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def api(base: str, path: str) -> dict:
    status, _, body = get(base, path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def run_ids(base: str) -> dict[str, dict]:
    return {r["name"]: r for r in api(base, "/api/runs")["runs"]}


def test_runs_api_summarises_every_run(ui_server, ui_runs):
    root, paths = ui_runs
    runs = run_ids(ui_server)
    assert {"llm-run", "nb201/random"} <= set(runs)
    llm, tab = runs["llm-run"], runs["nb201/random"]
    with RunStore.open(paths["llm"], read_only=True) as store:
        n = store.count()
        accs = [c.val_accuracy for c in store.candidates() if c.val_accuracy is not None]
    assert llm["candidates"] == n and llm["budget"] == 20
    assert llm["strategy"] == "llm" and llm["model"].startswith("replay:")
    assert llm["best_val_accuracy"] == pytest.approx(max(accs))
    assert llm["counts"]["failed"] >= 1 and llm["llm_calls"] >= 5
    assert llm["status"] == "stopped"  # the cassette ran out before the budget
    assert tab["status"] == "finished" and tab["candidates"] == 30 and tab["model"] is None
    assert 0 < tab["coverage"] <= 1 and tab["qd_score"] > 0 and tab["elites"] >= 1
    assert tab["id"] == "nb201--random"


def test_run_api_has_curves_map_front_and_rates(ui_server):
    detail = api(ui_server, "/api/runs/nb201--random")
    curve = detail["anytime"]
    assert curve["best"] == sorted(curve["best"]) and curve["evaluations"][-1] == 30
    assert curve["best"][-1] == pytest.approx(detail["best_val_accuracy"])
    cells = detail["heatmap"]["cells"]
    assert len(cells) == detail["elites"] and all(
        c["objective"] <= curve["best"][-1] for c in cells
    )
    front = detail["pareto"]["front"]["params"]
    points = {p["id"]: p for p in detail["pareto"]["points"]}
    accs = [points[i]["acc"] for i in front]
    assert accs == sorted(accs) and front  # larger networks on the front are more accurate
    assert detail["operators"] == [{"name": "random", "total": 30, "valid": 30, "rate": 1.0}]
    llm = api(ui_server, "/api/runs/llm-run")
    assert "crash" in llm["failures"] or "shape" in llm["failures"]
    assert {r["name"] for r in llm["operators"]} >= {"seed", "mutate"}


def test_candidates_api_filters_sorts_and_pages(ui_server):
    base = "/api/runs/nb201--random/candidates"
    page = api(ui_server, f"{base}?sort=val_accuracy&order=desc&limit=5")
    assert page["total"] == 30 and len(page["rows"]) == 5
    accs = [r["val_accuracy"] for r in page["rows"]]
    assert accs == sorted(accs, reverse=True)
    second = api(ui_server, f"{base}?sort=val_accuracy&order=desc&limit=5&offset=5")
    assert second["rows"][0]["val_accuracy"] <= accs[-1]
    assert {r["id"] for r in second["rows"]}.isdisjoint({r["id"] for r in page["rows"]})
    failed = api(ui_server, "/api/runs/llm-run/candidates?status=failed")
    assert failed["total"] >= 1 and all(r["status"] == "failed" for r in failed["rows"])
    assert api(ui_server, f"{base}?operator=mutate")["total"] == 0
    status, _, body = get(ui_server, f"{base}?sort=source")
    assert status == 400 and b"sort must be one of" in body


def test_candidate_api_and_compare(ui_server):
    rows = api(ui_server, "/api/runs/llm-run/candidates?operator=mutate&status=ok")["rows"]
    child = api(ui_server, f"/api/runs/llm-run/candidates/{rows[0]['id']}")
    assert child["parent_ids"] and child["parents"][0]["id"] == child["parent_ids"][0]
    assert child["prompt"][0]["role"] == "system" and child["reply"]
    ids = {n["id"] for n in child["lineage"]["nodes"]}
    assert set(child["parent_ids"]) <= ids and child["id"] in ids
    parent = child["parent_ids"][0]
    assert (
        child["id"]
        in api(ui_server, f"/api/runs/llm-run/candidates/{parent}")["lineage"]["children"]
    )
    both = api(ui_server, f"/api/compare?a=llm-run:{parent}&b=nb201--random:1")
    assert both["a"]["id"] == parent and both["b"]["operator"] == "random"
    assert both["diff"].startswith("--- llm-run:")


def test_untrusted_text_is_escaped_everywhere(ui_server):
    failed = api(ui_server, "/api/runs/llm-run/candidates?status=failed")["rows"][0]["id"]
    ok = api(ui_server, "/api/runs/llm-run/candidates?operator=mutate&status=ok")["rows"][0]["id"]
    for cid in (failed, ok):
        status, headers, body = get(ui_server, f"/run/llm-run/candidate/{cid}")
        assert status == 200
        assert "script-src 'self'" in headers["content-security-policy"]
        html = body.decode()
        assert "</script><script>window.__pwned" not in html and "<img src=x" not in html
        assert "&lt;/script&gt;&lt;script&gt;window.__pwned" in html or "&lt;/script&gt;" in html
    status, _, body = get(ui_server, f"/compare?a=llm-run:{failed}&b=llm-run:{ok}")
    assert status == 200 and b"<script>window.__pwned" not in body


def test_read_only_no_paths_no_writes(ui_server, ui_runs):
    db = ui_runs[1]["tabular"] / "run.sqlite"
    before = db.stat().st_mtime_ns
    for path, want in [
        ("/run/nope", 404),
        ("/api/runs/nope", 404),
        ("/api/runs/..%2F..%2Fetc", 404),
        ("/static/../../pyproject.toml", 404),
        ("/api/runs/llm-run/candidates/99999", 404),
        ("/api/compare?a=/etc/passwd:1&b=llm-run:1", 404),
        ("/api/compare?a=llm-run&b=llm-run:1", 400),
    ]:
        status, _, body = get(ui_server, path)
        assert status == want, (path, status, body[:200])
    for method in ("POST", "PUT", "DELETE"):
        assert get(ui_server, "/api/runs", method=method)[0] == 405
    assert db.stat().st_mtime_ns == before
    assert get(ui_server, "/static/plotly.min.js")[0] == 200  # served by the package: offline


def _llmnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmnas", *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path):
    res = _llmnas("ui", str(tmp_path / "missing"))
    assert res.returncode == 2 and "expected a folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        res = _llmnas("ui", str(tmp_path), "--port", str(busy.getsockname()[1]))
    assert res.returncode == 2 and "cannot listen" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_attack_string_really_is_in_the_store(ui_runs):
    """Guards the escaping tests: the hostile text reached the store unchanged."""
    with RunStore.open(ui_runs[1]["llm"], read_only=True) as store:
        texts = [
            c.source + str(c.meta.get("reply")) + str(c.result.failure) for c in store.candidates()
        ]
    assert sum(ATTACK in t for t in texts) >= 3


def test_status_reads_the_recorded_lifecycle_and_checks_the_process():
    from llmnas.ui.queries import live_status

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    base = {"budget": 10, "candidates": 3, "updated": 0.0}
    running = {"status": "running", "host": host}
    assert live_status({**base, "lifecycle": {**running, "pid": os.getpid()}}) == "running"
    assert live_status({**base, "lifecycle": {**running, "pid": int(done.stdout)}}) == "killed"
    assert (
        live_status({**base, "lifecycle": {**running, "host": "elsewhere", "pid": 1}}) == "stopped"
    )
    assert live_status({**base, "lifecycle": {"status": "stopped", "reason": "x"}}) == "stopped"
    assert live_status({**base, "candidates": 10, "lifecycle": None}) == "finished"
