"""The web explorer in a real browser: headless Chromium (Debian's) driven by Playwright.

Set ``LLMNAS_CHROMIUM`` to another Chromium binary; ``LLMNAS_UPDATE_SCREENSHOTS=1`` also
writes the README's screenshots to docs/img/.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from llmnas.config import RunConfig
from llmnas.descriptors import compute_descriptors
from llmnas.records import EvalResult, Status
from llmnas.store import RunStore

playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


def _chromium() -> str:
    found = os.environ.get("LLMNAS_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no chromium: `apt-get install chromium` (scripts/setup.sh --dev does it)")
    return found


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=False)
    if os.environ.get("LLMNAS_UPDATE_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / name), full_page=False)


def test_runs_page_run_page_heatmap_cell_opens_its_elite(page, ui_server, tmp_path):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(ui_server + "/")
    link = page.get_by_test_id("run-link").filter(has_text="nb201/random")
    link.click()
    page.wait_for_url(re.compile(r"/run/nb201--random$"))
    page.get_by_test_id("anytime-plot").locator(".main-svg").first.wait_for()
    page.get_by_test_id("pareto-plot").locator(".main-svg").first.wait_for()
    cell = page.get_by_test_id("heatmap-cell").first
    cell.wait_for()
    assert page.get_by_test_id("heatmap-cell").count() >= 1
    page.get_by_test_id("candidates-table").locator("tbody tr").first.wait_for()
    assert page.get_by_test_id("candidates-table").locator("tbody tr").count() == 30
    _shot(page, "ui-run.png", tmp_path)
    offsite = [u for u in requested if not u.startswith(ui_server + "/")]
    assert not offsite and any(u.endswith("/static/plotly.min.js") for u in requested)  # offline
    elite = cell.get_attribute("data-id")
    cell.click()
    page.wait_for_url(re.compile(rf"/run/nb201--random/candidate/{elite}$"))
    assert "def forward" in page.get_by_test_id("candidate-code").inner_text()


def test_candidate_code_diff_prompt_reply_and_lineage_walk(page, ui_server, tmp_path):
    page.goto(ui_server + "/run/llm-run")
    table = page.get_by_test_id("candidates-table")
    table.locator("tbody tr").first.wait_for()
    page.get_by_test_id("filter-operator").select_option("mutate")
    page.get_by_test_id("filter-status").select_option("ok")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#candidates tbody tr td:nth-child(3)')]"
        ".every(td => td.textContent === 'mutate')"
    )
    table.get_by_test_id("candidate-link").first.click()
    page.wait_for_url(re.compile(r"/candidate/\d+$"))
    child = int(page.url.rsplit("/", 1)[1])
    assert "class Model" in page.get_by_test_id("candidate-code").inner_text()
    diff = page.get_by_test_id("candidate-diff").first.inner_text()
    assert re.search(r"^\+", diff, re.M) and re.search(r"^-", diff, re.M)
    assert "system" in page.get_by_test_id("prompt").inner_text()
    assert "```python" in page.get_by_test_id("reply").inner_text()
    _shot(page, "ui-candidate.png", tmp_path)
    nodes = page.get_by_test_id("lineage").get_by_test_id("lineage-node")
    parent = next(n for n in nodes.all() if int(n.get_attribute("data-id")) != child)
    parent_id = parent.get_attribute("data-id")
    parent.click()
    page.wait_for_url(re.compile(rf"/candidate/{parent_id}$"))
    page.get_by_test_id("child-link").filter(has_text=f"#{child}").click()
    page.wait_for_url(re.compile(rf"/candidate/{child}$"))
    page.get_by_role("link", name="side by side").first.click()
    page.wait_for_url(re.compile(r"/compare\?"))
    assert page.get_by_test_id("candidate-diff").locator("table.diff").count() == 1


def test_a_hostile_reply_renders_as_text_and_runs_nothing(page, ui_server):
    page.goto(ui_server + "/run/llm-run")
    page.get_by_test_id("filter-status").locator("option[value=failed]").wait_for(state="attached")
    page.get_by_test_id("filter-status").select_option("failed")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#candidates tbody tr')].length >= 1 && "
        "[...document.querySelectorAll('#candidates tbody tr td:nth-child(5)')]"
        ".every(td => td.textContent === 'failed')"
    )
    page.get_by_test_id("candidate-link").first.click()
    page.wait_for_url(re.compile(r"/candidate/\d+$"))
    failure = page.get_by_test_id("failure").inner_text()
    assert "</script><script>window.__pwned = 1" in failure
    assert "</script><script>window.__pwned = 1" in page.get_by_test_id("reply").inner_text()
    assert "<img src=x" in page.get_by_test_id("candidate-code").inner_text()
    page.get_by_test_id("back-to-run").click()
    page.get_by_test_id("candidates-table").locator("tbody tr").first.wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__pwned") is None
    assert page.dialogs == []


def _add(store: RunStore, acc: float) -> None:
    metrics = {"val_accuracy": acc, "params": int(1000 + 10_000 * acc), "flops": 50_000}
    result = EvalResult(status=Status.OK, metrics=metrics)
    store.add_candidate(source=f"# candidate {acc}\n", operator="random", result=result,
                        hash=str(acc), descriptors=compute_descriptors(metrics))  # fmt: skip


def test_pages_update_while_a_run_is_writing(page, ui_server, ui_runs):
    config = RunConfig(task="nb201-cifar10", strategy="random", budget=10).model_dump(mode="json")
    with RunStore.create(ui_runs[0] / "live", config=config) as store:
        _add(store, 0.5)
        page.goto(ui_server + "/")
        row = page.locator("tr[data-run=live]")
        row.wait_for()
        assert row.locator("[data-field=status]").inner_text() == "running"
        page.goto(ui_server + "/run/live")
        count = page.locator("#run-summary [data-field=candidates]")
        rows = page.get_by_test_id("candidates-table").locator("tbody tr")
        rows.first.wait_for()
        assert count.inner_text() == "1"
        _add(store, 0.7)
        _add(store, 0.6)
        page.wait_for_function(
            "() => document.querySelector('#run-summary [data-field=candidates]').textContent === '3'"
        )
        page.wait_for_function(
            "() => document.querySelectorAll('#candidates tbody tr').length === 3"
        )
        assert page.get_by_test_id("heatmap-cell").count() >= 1
