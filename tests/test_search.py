"""The search policies: task facts, targets, memory, distinct prompts, repeats and the store."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from llmnas.config import EvolutionSettings, LLMSettings
from llmnas.llm.base import Completion, estimate_tokens, prompt_sha256
from llmnas.memory import attempts_table, elite_summary, layer_types
from llmnas.operators.code_ops import LLMOperator
from llmnas.records import Candidate, EvalResult, FailureKind, Status
from llmnas.repeats import choose, pareto_front, repeat_stats
from llmnas.store import SCHEMA_VERSION, RunStore
from llmnas.strategies.evolution import Request
from llmnas.targets import (
    Objectives,
    direction_of_niche,
    fit_niche,
    parse_instruction,
    targets_block,
)
from llmnas.task_facts import standard_error, task_facts
from llmnas.tasks import get_task

CNN = """import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 8, 3), nn.BatchNorm1d(8), nn.ReLU())
        self.head = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.body(x).mean(-1))
"""


def _cand(cid: int, acc: float | None, params: int = 1000, **meta) -> Candidate:
    if acc is None:
        result = EvalResult.failed(FailureKind.SHAPE, "mat1 and mat2 `shapes` | differ\nline 2")
    else:
        metrics = {"val_accuracy": acc, "params": params, "flops": params * 20}
        result = EvalResult(status=Status.OK, metrics=metrics)
    return Candidate(
        id=cid, source=CNN, operator="mutate", parent_ids=[1], result=result, meta=meta
    )


# ---------------------------------------------------------------------- facts and targets


def test_standard_error_is_binomial_with_a_floor() -> None:
    assert standard_error(0.95, 500) == pytest.approx(math.sqrt(0.95 * 0.05 / 500))
    assert standard_error(1.0, 500) == pytest.approx(1 / 500)
    assert standard_error(None, 100) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="positive"):
        standard_error(0.5, 0)


@pytest.mark.slow
def test_task_facts_come_from_the_task() -> None:
    facts = task_facts(get_task("mnist1d"))
    assert (facts.n_train, facts.n_val, facts.batch_size, facts.epochs) == (3500, 500, 100, 15)
    assert facts.steps == 525 and facts.optimizer == "adam" and facts.lr == 0.01
    assert task_facts(get_task("mnist1d"), epochs=1).fields()["epochs"] == "1 epoch"
    assert task_facts(get_task("nb201-cifar10")) is None


def test_accuracy_target_is_one_standard_error_or_says_it_is_noise() -> None:
    text = targets_block([(0.9, 5000, 1e5), (0.8, 100, 1e3)], n_val=500, objectives=Objectives())
    se = standard_error(0.9, 500)
    assert f"above {0.9 + se:.4f}" in text and "no cap" in text
    near = targets_block([(0.999, 5000, 1e5)], n_val=500, objectives=Objectives())
    assert "within the noise" in near and "above" not in near


def test_targets_agree_with_the_instruction_and_the_budget() -> None:
    parents = [(0.9, 4000, 1e5)]
    grow = targets_block(parents, n_val=500, objectives=Objectives(), direction="grow")
    assert "about 6,000 to 12,000" in grow and "grows" in grow
    shrink = targets_block(parents, n_val=500, objectives=Objectives(), direction="shrink")
    assert "about 1,200 to 2,800" in shrink
    capped = targets_block(
        parents, n_val=500, objectives=Objectives(max_params=5210), direction="grow"
    )
    assert "about 5,210 to 5,210" in capped or "about 5,210" in capped
    assert "at most 5,210 (a hard budget" in capped
    flops = targets_block(parents, n_val=500, objectives=Objectives(secondary=("flops",)))
    assert "FLOPs: a second objective" in flops and "parameters" not in flops


def test_niche_targets_and_direction() -> None:
    niche = {"log10_params": (3.0, 3.4), "log10_flops_per_param": (1.0, 1.2)}
    text = targets_block([(0.9, 4000, 1e5)], n_val=500, objectives=Objectives(), niche=niche)
    assert "niche: parameters 1,000 to 2,512, FLOPs per parameter 10.0 to 15.8" in text
    assert "kept even if it is less accurate" in text
    assert direction_of_niche(niche, math.log10(4000)) == "shrink"
    assert direction_of_niche(niche, 2.5) == "grow"
    assert direction_of_niche(niche, 3.2) == "same"


def test_niches_are_clipped_to_hard_budgets() -> None:
    niche = {"log10_params": (3.5, 3.9), "log10_flops_per_param": (1.0, 1.2)}
    budget = Objectives(max_params=5210)
    assert fit_niche(niche, budget)["log10_params"] == (3.5, pytest.approx(math.log10(5210)))
    assert fit_niche({**niche, "log10_params": (3.8, 4.2)}, budget) is None  # wholly above
    assert fit_niche(niche, Objectives()) == niche and fit_niche(None, budget) is None


def test_instruction_directions_parse() -> None:
    assert parse_instruction("grow: make it wider").direction == "grow"
    assert parse_instruction("shrink:  halve it").text == "halve it"
    assert parse_instruction("use a kernel: 5").direction == "same"  # not a direction prefix


# ---------------------------------------------------------------------- memory


def test_attempts_table_shows_outcomes_and_cleans_failure_text() -> None:
    rows = [_cand(5, 0.91, 2000, instruction="add dropout"), _cand(6, None)]
    table = attempts_table(rows, elite_ids=[5]).splitlines()
    assert table[0] == "| id | made by | parents | outcome |"
    assert table[2] == (
        "| #5 | mutate: add dropout | #1 | val 0.9100, 2,000 params, 40,000 FLOPs, "
        "entered the archive |"
    )
    assert table[3] == "| #6 | mutate | #1 | shape: mat1 and mat2 'shapes' / differ |"
    assert attempts_table([], []) == ""


def test_elite_summary_names_shared_layers() -> None:
    assert layer_types(CNN) == {"Sequential", "Conv1d", "BatchNorm1d", "ReLU", "Linear"}
    assert layer_types("def broken(:") == set()
    text = elite_summary([_cand(2, 0.9), _cand(3, 0.95), _cand(4, None)])
    assert text.startswith("2 programs; the 2 most accurate reach 0.9000 to 0.9500")
    assert "Conv1d (2/2)" in text
    assert elite_summary([]) == "the archive is empty so far"


# ---------------------------------------------------------------------- the LLM operator


class _EchoLLM:
    """Answers every prompt with the first parent's program; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[list[dict[str, str]]] = []

    async def sample(self, messages, **kw):
        self.asked.append(messages)
        return [Completion(text=f"```python\n{CNN}```", finish_reason="stop", model="echo")]


def _operator(**evolution) -> tuple[LLMOperator, _EchoLLM]:
    llm = _EchoLLM()
    op = LLMOperator(
        llm=llm,
        task=get_task("mnist1d"),
        settings=LLMSettings(),
        seed=0,
        evolution=EvolutionSettings(**evolution),
        facts=task_facts(get_task("mnist1d")),
    )
    return op, llm


def test_no_prompt_is_sent_twice() -> None:
    op, llm = _operator()
    parents = [_cand(1, 0.9)]
    proposals = op.run([Request("mutate", parents, seed=7) for _ in range(3)])
    hashes = [prompt_sha256(m) for m in llm.asked]
    assert len(proposals) == 3 and len(set(hashes)) == 3  # other instructions were tried
    instructions = [p.meta["instruction"] for p in proposals]
    assert len(set(instructions)) == 3
    # a crossover has one variant: the second identical request is skipped
    pair = [_cand(1, 0.9), _cand(2, 0.8)]
    assert len(op.run([Request("crossover", pair, seed=1), Request("crossover", pair, 2)])) == 1
    assert op.skipped == 1
    # a resumed run knows what was sent before
    again = LLMOperator(
        llm=_EchoLLM(),
        task=get_task("mnist1d"),
        settings=LLMSettings(),
        seed=0,
        facts=task_facts(get_task("mnist1d")),
        sent=op.sent,
    )
    assert again.run([Request("crossover", pair, seed=3)]) == []


def test_prompts_carry_facts_memory_and_fit_the_token_budget() -> None:
    history = [_cand(i, 0.8 + i / 1000, instruction="add dropout") for i in range(10, 40)]
    op, llm = _operator(prompt_tokens=1200)
    (proposal,) = op.run([Request("mutate", [_cand(1, 0.9)], 3, history=history, elites=[])])
    text = llm.asked[0][1]["content"]
    assert "Adam, constant learning rate 0.01" in text and "3,500 training" in text
    assert "| #39 | mutate: add dropout |" in text  # the newest attempts are kept
    assert "| #10 |" not in text  # the oldest were dropped to fit the budget
    assert estimate_tokens(llm.asked[0]) <= 1200
    assert proposal.meta["prompt_tokens_est"] == estimate_tokens(llm.asked[0])


def test_a_niche_request_draws_an_agreeing_instruction() -> None:
    op, llm = _operator()
    parent = _cand(1, 0.9, params=4000)
    parent.descriptors["log10_params"] = math.log10(4000)
    niche = {"log10_params": (2.0, 2.4), "log10_flops_per_param": (1.0, 1.2)}
    shrinking = [i for i in op.instructions if i.direction == "shrink"]
    for seed in range(len(shrinking)):
        (p,) = op.run([Request("mutate", [parent], seed, niche=niche)])
        instruction = next(i for i in op.instructions if i.text == p.meta["instruction"])
        assert instruction.direction == "shrink" and p.meta["niche"] == niche
    assert "- niche: parameters 100 to 251" in llm.asked[-1][1]["content"]
    # every agreeing instruction was asked once: the same request has nothing new to send
    assert op.run([Request("mutate", [parent], 99, niche=niche)]) == []


# ---------------------------------------------------------------------- repeats and the store


def test_pareto_front_and_choice() -> None:
    points = [(1, 0.9, 5000), (2, 0.95, 9000), (3, 0.85, 6000), (4, 0.9, 4000), (5, 0.95, 9000)]
    assert pareto_front(points) == [2, 4]  # 5 ties 2: the lower id stands for both
    cands = [_cand(i, a, int(p)) for i, a, p in points] + [_cand(6, None)]
    assert choose(cands, top_k=1, pareto=False) == [2]  # ties: the lower id
    assert choose(cands, top_k=2, pareto=True) == [2, 4, 5]
    assert choose(cands, top_k=0, pareto=True) == []


def test_repeats_are_stored_and_averaged(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", config={})
    cid = store.add_candidate(
        source=CNN, operator="seed", result=EvalResult(status=Status.OK,
        metrics={"val_accuracy": 0.9, "params": 10}),
    ).id  # fmt: skip
    store.add_repeat(cid, 1, EvalResult(status=Status.OK, metrics={"val_accuracy": 0.8}))
    store.add_repeat(cid, 2, EvalResult.failed(FailureKind.NONFINITE, "nan loss"))
    rep = repeat_stats(store, base_seed=0)[cid]
    assert rep.values == (0.9, 0.8, 0.0) and rep.seeds == (0, 1, 2)  # a failure counts as 0
    assert rep.mean == pytest.approx(1.7 / 3) and rep.n == 3
    assert store.get(cid).val_accuracy == 0.9  # the single-run value stays
    store.close()


def test_an_older_store_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", config={})
    store.close()
    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    db.execute("DROP TABLE repeats")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    with RunStore.open(tmp_path / "run", read_only=True) as old:
        assert old.repeats() == {}  # read-only: nothing changes, nothing breaks
    with RunStore.open(tmp_path / "run") as store:
        store.add_repeat(1, 1, EvalResult(status=Status.OK, metrics={"val_accuracy": 0.5}))
        assert store.repeats() == {1: {1: 0.5}}
    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION
    db.close()


# ---------------------------------------------------------------------- a run, end to end


@pytest.mark.slow
def test_a_run_enforces_budgets_keeps_its_layout_and_repeats_the_best(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    config = tmp_path / "run.toml"
    config.write_text("[evolution]\nmax_params = 1000\n\n[repeats]\ntop_k = 2\nseeds = 3\n")
    run = tmp_path / "run"
    llmnas = [sys.executable, "-m", "llmnas"]
    proc = subprocess.run(
        [*llmnas, "run", "--task", "synthetic", "--strategy", "ast", "--budget", "6",
         "--epochs", "1", "--seed", "0", "--config", str(config), "--out", str(run)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "repeating the best: training 4/4" in proc.stderr
    with RunStore.open(run, read_only=True) as store:
        cands = store.candidates()
        layout = store.get_state("archive")
        reps = store.repeats()
    over = [c for c in cands if (c.result.metrics.get("params") or 0) > 1000]
    assert over and all(c.result.failure.stage == "limits" for c in over)
    assert all(c.status is Status.OK for c in cands if c not in over and c.operator == "seed")
    linear = next(c for c in cands if c.operator == "seed" and c.status is Status.OK)
    params = linear.result.metrics["params"]
    low, high = layout["ranges"]["log10_params"]
    assert low <= math.log10(params) - 1 + 1e-3 and high >= math.log10(params) + 1 - 1e-3
    assert len(reps) == 2 and all(set(r) == {1, 2} for r in reps.values())
    best = json.loads(
        subprocess.run([*llmnas, "archive", "best", str(run), "--json"], capture_output=True,
                       text=True, check=True).stdout
    )  # fmt: skip
    assert best["id"] in reps and best["repeats"]["n"] == 3
    assert best["repeats"]["seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_flops_are_counted_for_batch_norm_on_features() -> None:
    """FLOPs are counted in eval mode: batch norm over (B, features) refuses a batch of one in
    train mode, and a candidate without FLOPs has no place in the archive."""
    from llmnas.evaluator import EvalSettings, Evaluator

    source = CNN.replace("nn.BatchNorm1d(8), nn.ReLU())", "nn.ReLU())").replace(
        "self.head = torch.nn.Linear(8, num_classes)",
        "self.head = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, num_classes))",
    )
    with Evaluator(get_task("synthetic")) as ev:
        result = ev.evaluate(source, EvalSettings(epochs=0))
    assert result.ok, result.failure
    conv = 2 * 8 * 3 * 6  # 8 output channels, kernel 3, 6 positions of an input of length 8
    assert result.metrics["flops"] == conv + 2 * 8 * 8 + 2 * 8 * 4


@pytest.mark.slow
def test_the_committed_search_cassette_replays_to_the_same_candidates(tmp_path: Path) -> None:
    """The first candidates of the recorded capable-model run, replayed offline from its
    cassette. Trained for one epoch instead of fifteen to stay fast, so the accuracies in the
    prompts differ and the replies are served in file order: the candidates come back as the
    same programs, pair by pair (two prompts were answered concurrently, in either order).
    ``benchmarks/search_replay.py`` replays the whole run at full fidelity."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    name = root / "benchmarks" / "cassettes" / "mnist1d-llm-seed0"
    lines = name.with_suffix(".candidates.jsonl").read_text().splitlines()
    config = root / "benchmarks" / "search" / f"{json.loads(lines[0])['config']}.toml"
    recorded = [json.loads(line) for line in lines[1:9]]
    llmnas = [sys.executable, "-m", "llmnas"]
    run = tmp_path / "replay"
    proc = subprocess.run(
        [*llmnas, "run", "--config", str(config), "--llm", f"replay:{name}.jsonl",
         "--budget", str(len(recorded)), "--epochs", "1", "--out", str(run)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = subprocess.run(
        [*llmnas, "archive", "list", str(run), "--json"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    replayed = [json.loads(line) for line in rows]
    pairs = [slice(i, i + 2) for i in range(0, len(recorded), 2)]
    assert [sorted(r["hash"] for r in replayed[p]) for p in pairs] == [
        sorted(r["hash"] for r in recorded[p]) for p in pairs
    ]
