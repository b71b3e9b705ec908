"""Space prompts: the notation, blind tasks, the space-aware operator in a run, bench LLM rows."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from llmnas.nb201_cell import OPS
from llmnas.spaces import CellSpace, ChainSpace
from llmnas.spaces.text import BLIND_TOKENS, CellText, ChainText, space_text
from llmnas.store import RunStore
from llmnas.tasks import get_task

GOLDEN = Path(__file__).parent / "golden"
LLMNAS = [sys.executable, "-m", "llmnas"]
REAL_WORDS = ("nor_conv", "skip_connect", "avg_pool", "NB201", "NAS-Bench", "params", "import")


def _cassette(path: Path, text: CellText | ChainText, space, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = [json.dumps({"response": f"Reasoning first.\nARCH: {text.show(space.sample(rng))}"})
             for _ in range(n)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------- notation


def test_cell_notation_round_trips_and_parses_tagged_or_bare_replies() -> None:
    space, rng = CellSpace(), random.Random(3)
    text = CellText(space)
    for _ in range(20):
        g = space.sample(rng)
        shown = text.show(g)
        assert shown == g.to_arch_str()
        assert text.parse(f"Let me think.\n**ARCH:** `{shown}`\n") == g
        assert text.parse(f"The new cell is {shown}, which keeps the convs.") == g
    with pytest.raises(ValueError, match="expected ARCH: "):
        text.parse("ARCH: conv then pool")
    with pytest.raises(ValueError, match="not a cell"):
        text.parse("ARCH: |none~0|+|none~0|none~1|")


def test_blind_names_are_a_seeded_permutation_and_map_back() -> None:
    space, rng = CellSpace(), random.Random(0)
    views = {seed: CellText(space, blind_seed=seed) for seed in range(6)}
    assert len({tuple(sorted(v._to_shown.items())) for v in views.values()}) > 1
    for seed, view in views.items():
        assert sorted(view._to_shown) == sorted(OPS)
        assert sorted(view._to_shown.values()) == sorted(BLIND_TOKENS)
        assert CellText(space, blind_seed=seed)._to_shown == view._to_shown  # reproducible
        g = space.sample(rng)
        shown = view.show(g)
        assert not any(op in shown for op in OPS) and view.parse("ARCH: " + shown) == g
        with pytest.raises(ValueError):
            view.parse("ARCH: " + g.to_arch_str())  # real names are not the blind notation
    blind = views[0].describe(tabular=True)
    assert not any(word in blind for word in REAL_WORDS) and "hidden on purpose" in blind


def test_chain_notation_round_trips_and_rejects_values_outside_the_choices() -> None:
    space, rng = ChainSpace((1, 40), 10), random.Random(1)
    text = ChainText(space)
    for _ in range(20):
        g = space.sample(rng)
        assert text.parse("ARCH: " + text.show(g)) == g
    with pytest.raises(ValueError, match="width or activation"):
        text.parse("ARCH: conv 33 k3 relu")
    with pytest.raises(ValueError, match="unknown op"):
        text.parse("ARCH: attention 32 k3 relu")
    with pytest.raises(ValueError, match="layers"):
        text.parse("ARCH: " + "; ".join(["pool k3"] * 9))
    with pytest.raises(ValueError, match="blind"):
        space_text(space, blind_seed=0)


def test_blind_tasks_answer_from_the_same_table_and_hide_the_benchmark() -> None:
    plain, blind = get_task("nb201-cifar10"), get_task("nb201-cifar10-blind")
    g = CellSpace().sample(random.Random(2))
    source = CellSpace().render(g)
    assert blind.blind and not plain.blind and blind.tabular
    assert blind.evaluate_source(source).metrics == plain.evaluate_source(source).metrics
    assert not any(w in blind.space_description for w in REAL_WORDS)
    assert "NB201_ARCH" not in plain.space_description
    for name in ("nb201-cifar100-blind", "nb201-imagenet16-120-blind"):
        assert get_task(name).blind


# ---------------------------------------------------------------------- runs


def _llm_run(task: str, cassette: Path, budget: int, seed: int, out: Path, *extra: str):
    """``llmnas run`` of the llm strategy replaying ``cassette``."""
    return _run("run", "--task", task, "--strategy", "llm", "--budget", str(budget), "--seed",
                str(seed), "--llm", f"replay:{cassette}", "--out", str(out), *extra)  # fmt: skip


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMNAS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_blind_run_shows_only_neutral_names_and_results(tmp_path: Path) -> None:
    seed = 4
    text = CellText(CellSpace(), blind_seed=seed)
    cassette = _cassette(tmp_path / "c.jsonl", text, CellSpace(), 30)
    (tmp_path / "c.jsonl").write_text(cassette.read_text() + '{"response": "no idea"}\n')
    proc = _llm_run("nb201-cifar10-blind", cassette, 12, seed, tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(tmp_path / "r", read_only=True) as store:
        cands = store.candidates()
        calls = store.llm_calls()
    llm = [c for c in cands if c.operator in ("mutate", "crossover")]
    assert len(calls) == len(llm) == 11
    assert sorted(call["candidate_id"] for call in calls) == [c.id for c in llm]  # linked
    for c in llm:
        prompt = "\n".join(m["content"] for m in c.meta["prompt"])
        assert not any(w in prompt for w in REAL_WORDS), prompt
        assert all(tok in prompt for tok in BLIND_TOKENS) and "ARCH: " in prompt
        assert c.meta["prompt_style"] == "space" and c.meta["reply_tokens_est"] < 40
    ok = [c for c in llm if c.status.value == "ok"]
    assert ok and all(text.parse(c.meta["reply"]) == CellSpace().from_source(c.source) for c in ok)
    shown = _run("archive", "lineage", str(tmp_path / "r"), str(ok[-1].id), "--full")
    assert shown.returncode == 0 and "LLM call #" in shown.stdout
    assert "prompt of #" in shown.stdout and ok[-1].meta["reply"].split("\n")[-2] in shown.stdout
    last = llm[-1].meta["prompt"][1]["content"]
    assert sum(f"#{c.id} " in last for c in cands if c.status.value == "ok") >= 8  # all listed

    code_toml = _toml(tmp_path / "code.toml", '[evolution]\nprompt_style = "code"\n')
    code = _llm_run("nb201-cifar10-blind", cassette, 2, 0, tmp_path / "code", "--config",
                    str(code_toml))  # fmt: skip
    assert code.returncode == 2 and "blind" in code.stderr and "Traceback" not in code.stderr


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.slow
def test_the_first_space_prompt_matches_its_golden_text(tmp_path: Path) -> None:
    cassette = _cassette(tmp_path / "c.jsonl", CellText(CellSpace()), CellSpace(), 3)
    proc = _llm_run("nb201-cifar10", cassette, 2, 0, tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(tmp_path / "r", read_only=True) as store:
        prompt = store.get(2).meta["prompt"]
    got = "\n\n".join(f"## {m['role']}\n{m['content']}" for m in prompt) + "\n"
    assert got == (GOLDEN / "space_prompt_nb201.txt").read_text()


@pytest.mark.slow
def test_space_prompts_on_a_trained_task_with_the_chain_space(tmp_path: Path) -> None:
    space = ChainSpace((1, 8, 8), 10)
    cassette = _cassette(tmp_path / "c.jsonl", ChainText(space), space, 10, seed=5)
    config = _toml(tmp_path / "run.toml", '[strategy_options]\nspace = "chain"\n'
                   '[strategy_options.space_options]\nmax_depth = 3\n')  # fmt: skip
    proc = _run("run", "--task", "synthetic", "--strategy", "llm", "--budget", "6", "--epochs",
                "1", "--llm", f"replay:{cassette}", "--config", str(config),
                "--out", str(tmp_path / "r"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(tmp_path / "r", read_only=True) as store:
        cands = store.candidates()
    seeds = [c for c in cands if c.operator == "seed"]
    assert len(seeds) == 4 and all(space.from_source(c.source) for c in seeds)
    llm = [c for c in cands if c.operator != "seed"]
    prompt = llm[-1].meta["prompt"][1]["content"]
    assert "How every program is trained" in prompt and "conv W kK ACT" in prompt
    assert all(c.meta["prompt_style"] == "space" for c in llm)


# ---------------------------------------------------------------------- bench rows


@pytest.mark.slow
def test_bench_llm_rows_replay_per_seed_cassettes_beside_the_config(tmp_path: Path) -> None:
    for seed in (0, 1):
        _cassette(tmp_path / f"cells-{seed}.jsonl", CellText(CellSpace()), CellSpace(), 20, seed)
    config = _toml(
        tmp_path / "grid.toml",
        """task = "nb201-cifar10"
strategies = [
    {name = "llm", strategy = "llm", llm = "replay:cells-{seed}.jsonl", run = {sequential = true}},
    "random",
]
seeds = 2
budget = 12
out = "not-used"
[[anchors]]
name = "a paper"
value = "1.0"
protocol = "another protocol"
""",
    )
    out = tmp_path / "out"
    proc = _run("bench", "--config", str(config), "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert "## LLM operator" in report and "| llm | space | 22 |" in report
    assert "| a paper | 1.0 | another protocol |" in report
    data = json.loads((out / "report.json").read_text())
    assert data["llm"]["llm"]["operators"]["mutate"]["n"] >= 1
    with RunStore.open(out / "llm-1", read_only=True) as store:
        replies = [c.meta["reply"] for c in store.candidates() if c.operator != "seed"]
    expected = [json.loads(x)["response"] for x in (tmp_path / "cells-1.jsonl").read_text()
                .splitlines()]  # fmt: skip
    assert replies == expected[: len(replies)]  # seed 1 replayed its own cassette
