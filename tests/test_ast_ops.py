"""Tests for the classical AST operators (llmnas.operators.ast_ops).

Candidate code is never executed in this process: every produced program is built and run in
one subprocess (``sys.executable -c``), batched in a module-scoped fixture.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from llmnas import gate
from llmnas.operators.ast_ops import (
    CROSSOVERS,
    MUTATIONS,
    Edit,
    NotApplicable,
    apply_crossover,
    apply_mutation,
    crossover,
    mutate,
)
from llmnas.tasks import get_task

MNIST1D = get_task("mnist1d").seed_programs()
DIGITS = get_task("digits").seed_programs()
SHAPES = {"mnist1d": (1, 40), "digits": (1, 8, 8)}

HANDWRITTEN = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv1d(input_shape[0], 16, 3, padding=1)
        self.conv2 = nn.Conv1d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * input_shape[1], num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))
"""

RESIDUAL = """
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.stem = nn.Conv1d(input_shape[0], 32, 3, padding=1)
        self.block = nn.Sequential(nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = x + self.block(x)
        return self.fc(self.pool(x).flatten(1))
"""

MODULELIST = """
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.stem = nn.Conv1d(input_shape[0], 8, 3, padding=1)
        self.layers = nn.ModuleList([nn.Linear(8 * input_shape[1], 64), nn.Linear(64, 64)])
        self.out = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(1)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.out(x)
"""

PROGRAMS: dict[str, tuple[str, tuple[int, ...]]] = {
    **{f"mnist1d/{k}": (v, SHAPES["mnist1d"]) for k, v in MNIST1D.items()},
    **{f"digits/{k}": (v, SHAPES["digits"]) for k, v in DIGITS.items()},
    "handwritten": (HANDWRITTEN, SHAPES["mnist1d"]),
    "residual": (RESIDUAL, SHAPES["mnist1d"]),
    "modulelist": (MODULELIST, SHAPES["mnist1d"]),
}

CHECKER = r"""
import json, sys, torch
torch.set_num_threads(1)
out = []
for job in json.load(sys.stdin):
    try:
        ns = {"__name__": "candidate"}
        exec(compile(job["source"], "candidate.py", "exec"), ns)
        shape = tuple(job["shape"])
        model = ns["Model"](shape, 10)
        if any(isinstance(p, torch.nn.parameter.UninitializedParameter)
               for p in model.parameters()):
            raise RuntimeError("lazy parameter left uninitialised")
        y = model(torch.randn(4, *shape))
        model.eval()
        z = model(torch.randn(1, *shape))
        assert tuple(y.shape) == (4, 10) and tuple(z.shape) == (1, 10), (y.shape, z.shape)
        out.append(None)
    except BaseException as exc:
        out.append(f"{type(exc).__name__}: {exc}"[:300])
print(json.dumps(out))
"""


def build_in_subprocess(jobs: list[tuple[str, tuple[int, ...]]]) -> list[str | None]:
    payload = json.dumps([{"source": s, "shape": list(shape)} for s, shape in jobs])
    proc = subprocess.run(
        [sys.executable, "-c", CHECKER], input=payload, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mutation_cases() -> dict[str, tuple[Edit, tuple[int, ...]]]:
    cases = {}
    for name, (source, shape) in PROGRAMS.items():
        for kind in MUTATIONS:
            for seed in range(2):
                try:
                    edit = apply_mutation(kind, source, random.Random(seed), shape)
                except NotApplicable:
                    continue
                cases[f"{name}:{kind}:{seed}"] = (edit, shape)
        for chain in range(3):  # mutate the mutants: four generations deep
            rng, current = random.Random(100 + chain), source
            for depth in range(4):
                edit = mutate(current, rng, input_shape=shape)
                assert edit is not None
                cases[f"{name}:chain{chain}:{depth}"] = (edit, shape)
                current = edit.source
    cnn, mlp, gru = MNIST1D["cnn"], MNIST1D["mlp"], MNIST1D["gru"]
    for label, (a, b) in {
        "cnn+mlp": (cnn, mlp),
        "mlp+cnn": (mlp, cnn),
        "gru+cnn": (gru, cnn),
        "residual+cnn": (RESIDUAL, cnn),
        "modulelist+cnn": (MODULELIST, cnn),
    }.items():
        for kind in CROSSOVERS:
            for seed in range(3):
                try:
                    edit = apply_crossover(kind, a, b, random.Random(seed), (1, 40))
                except NotApplicable:
                    continue
                cases[f"{label}:{kind}:{seed}"] = (edit, (1, 40))
    return cases


CASES = _mutation_cases()


@pytest.fixture(scope="module")
def built() -> dict[str, str | None]:
    names = list(CASES)
    errors = build_in_subprocess([(CASES[n][0].source, CASES[n][1]) for n in names])
    return dict(zip(names, errors, strict=True))


@pytest.mark.slow
def test_every_edit_passes_the_gate_and_builds(built: dict[str, str | None]) -> None:
    assert len(CASES) > 100
    failures = {}
    for name, (edit, _) in CASES.items():
        result = gate.check(edit.source)
        if not result.ok:
            failures[name] = f"gate: {result.failure}"
        elif built[name] is not None:
            failures[name] = f"{edit.description}: {built[name]}"
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


@pytest.mark.slow
def test_seed_programs_build_unchanged() -> None:
    assert build_in_subprocess([(s, shape) for s, shape in PROGRAMS.values()]) == [None] * len(
        PROGRAMS
    )


def test_every_kind_applies_somewhere() -> None:
    applied = {name.split(":")[1] for name in CASES}
    assert set(MUTATIONS) <= applied
    assert set(CROSSOVERS) <= applied


@pytest.mark.parametrize(
    ("program", "kind"),
    [
        ("mnist1d/cnn", "width"),
        ("mnist1d/cnn", "kernel"),
        ("mnist1d/cnn", "stride"),
        ("mnist1d/cnn", "pool"),
        ("mnist1d/cnn", "norm"),
        ("mnist1d/mlp", "skip"),
        ("mnist1d/mlp", "shallow"),
        ("mnist1d/gru", "width"),
        ("mnist1d/logistic", "deepen"),
        ("digits/cnn", "activation"),
        ("digits/cnn", "deepen"),
        ("handwritten", "width"),
        ("handwritten", "activation"),
    ],
)
def test_expected_kinds_apply(program: str, kind: str) -> None:
    assert f"{program}:{kind}:0" in CASES


def test_not_applicable_is_reported() -> None:
    with pytest.raises(NotApplicable):
        apply_mutation("kernel", MNIST1D["logistic"], random.Random(0), (1, 40))
    with pytest.raises(NotApplicable):
        apply_crossover("graft_segment", MNIST1D["mlp"], MNIST1D["gru"], random.Random(0))
    bare = (
        "import torch\nclass Model(torch.nn.Module):\n"
        "    def __init__(self, input_shape, num_classes):\n        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.zeros(40, num_classes))\n"
        "    def forward(self, x):\n        return x.flatten(1) @ self.w\n"
    )
    assert mutate(bare, random.Random(0)) is None
    with pytest.raises(ValueError, match="unknown mutation"):
        apply_mutation("nope", bare, random.Random(0))


def test_forward_residuals_and_module_lists_are_respected() -> None:
    # the hand-written residual x + self.block(x) must keep block's width; the ModuleList
    # consumer of stem is invisible to the chain, so stem's width cannot change
    for seed in range(6):
        for kind in ("width", "stride", "pool"):
            for source in (RESIDUAL, MODULELIST):
                try:
                    edit = apply_mutation(kind, source, random.Random(seed), (1, 40))
                except NotApplicable:
                    continue
                assert "at block" not in edit.description
                assert source is not MODULELIST, edit.description
    with pytest.raises(NotApplicable):
        apply_crossover("graft_frontend", MODULELIST, MNIST1D["cnn"], random.Random(0))


@pytest.mark.slow
def test_checker_detects_broken_programs() -> None:
    broken = MNIST1D["mlp"].replace("nn.Linear(100, 100)", "nn.Linear(99, 100)")
    assert build_in_subprocess([(broken, (1, 40))])[0] is not None


def test_determinism_under_a_seed() -> None:
    source = MNIST1D["cnn"]
    for kind in ("width", "kernel", "pool", "norm", "deepen"):
        a = apply_mutation(kind, source, random.Random(7), (1, 40))
        b = apply_mutation(kind, source, random.Random(7), (1, 40))
        assert a == b
    runs = [mutate(source, random.Random(3), input_shape=(1, 40)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert mutate(source, np.random.default_rng(5)) == mutate(source, np.random.default_rng(5))
    assert mutate(source, 11) == mutate(source, 11)
    outcomes = {mutate(source, random.Random(s)).source for s in range(12)}  # type: ignore[union-attr]
    assert len(outcomes) > 5, "different seeds should give different edits"
    x = crossover(MNIST1D["cnn"], MNIST1D["mlp"], random.Random(2), input_shape=(1, 40))
    y = crossover(MNIST1D["cnn"], MNIST1D["mlp"], random.Random(2), input_shape=(1, 40))
    assert x is not None and x == y


def test_width_keeps_consumers_consistent() -> None:
    edit = apply_mutation("width", MNIST1D["mlp"], random.Random(1), (1, 40))
    old, new = edit.description.split(" ")[2].split("->")
    assert edit.description.startswith("width Linear")
    # the changed layer and its consumer agree on the new width
    assert edit.source.count(f", {new})") == 1 and f"nn.Linear({new}," in edit.source
    assert old != new


@pytest.mark.slow
def test_input_shape_guard_refuses_collapsing_feature_maps() -> None:
    # digits: 8x8 -> conv -> pool 4x4 -> ...; stacking pools must stop before 1x1 breaks
    source, rng = DIGITS["cnn"], random.Random(0)
    for _ in range(6):
        try:
            source = apply_mutation("stride", source, rng, (1, 8, 8)).source
        except NotApplicable:
            break
    for _ in range(6):
        try:
            source = apply_mutation("pool", source, rng, (1, 8, 8)).source
        except NotApplicable:
            break
    assert build_in_subprocess([(source, (1, 8, 8))]) == [None]


def test_crossover_grafts_code_from_the_second_parent() -> None:
    edit = apply_crossover("graft_frontend", MNIST1D["mlp"], MNIST1D["cnn"], random.Random(0))
    assert (
        "self.stem = nn.Sequential(" in edit.source
        and "nn.Conv1d(input_shape[0], 25" in edit.source
    )
    assert "x = self.stem(x)" in edit.source
    edit = apply_crossover("graft_segment", MNIST1D["cnn"], MNIST1D["mlp"], random.Random(0))
    assert "nn.Linear(" in edit.source and "100" in edit.source
