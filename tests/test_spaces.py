"""Cell and chain spaces: encodings, rendering, sampling, mutation; rendered code is built
only in a subprocess (never imported or executed in the test process)."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import random
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from llmnas.gate import check
from llmnas.nb201_cell import OPS, STRING_EDGES, CellGenotype, CellPreset, arch_from_source, render
from llmnas.spaces import ChainSpace, SearchSpace, make_space
from llmnas.spaces.cell import CellSpace
from llmnas.spaces.chain import ChainGenotype, Layer

README_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)

BUILD_SCRIPT = r"""
import json, math, sys
import torch

torch.manual_seed(0)
out = []
for case in json.load(sys.stdin):
    namespace = {"__name__": "candidate"}
    exec(case["source"], namespace)
    model = namespace["Model"](tuple(case["shape"]), case["classes"]).eval()
    flops = [0]

    def hook(module, inputs, output):
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            per_position = module.in_channels * module.out_channels // module.groups
            flops[0] += math.prod(output.shape[2:]) * per_position * math.prod(module.kernel_size)
        elif isinstance(module, torch.nn.Linear):
            flops[0] += (module.in_features + 1) * module.out_features

    for module in model.modules():
        module.register_forward_hook(hook)
    with torch.no_grad():
        y = model(torch.randn(2, *case["shape"]))
    out.append({
        "shape": list(y.shape),
        "finite": bool(torch.isfinite(y).all()),
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops[0],
    })
print(json.dumps(out))
"""


def build_in_subprocess(cases: list[dict]) -> list[dict]:
    """Build and run each rendered program in one child interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- cell genotype encodings ------------------------------------------------------------------


def test_readme_example_op_indices() -> None:
    genotype = CellGenotype.from_op_indices("220222")
    assert genotype.to_arch_str() == README_ARCH
    assert CellGenotype.from_arch_str(README_ARCH).to_op_indices() == "220222"
    assert CellGenotype.from_op_indices((2, 2, 0, 2, 2, 2)) == genotype
    assert genotype.ops[3] == "skip_connect"  # string order: 0->1, 0->2, 1->2, 0->3, ...


def test_every_table_row_round_trips() -> None:
    raw = resources.files("llmnas").joinpath("data", "nb201_val_accuracy.csv.gz").read_bytes()
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode())))
    assert len(rows) == 15625
    for row in rows:
        genotype = CellGenotype.from_op_indices(row["op_indices"])
        assert genotype.to_arch_str() == row["arch"]
        assert CellGenotype.from_arch_str(row["arch"]).to_op_indices() == row["op_indices"]
    disconnected = [r for r in rows if not CellGenotype.from_arch_str(r["arch"]).is_connected()]
    assert len(disconnected) == 341  # the table's chance-level cells
    assert {r["cifar10"] for r in disconnected} == {"10.0"}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|nor_conv_3x3~0|",
        "|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|",
    ],
)
def test_malformed_arch_strings_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        CellGenotype.from_arch_str(bad)


def test_bad_genotypes_raise() -> None:
    with pytest.raises(ValueError):
        CellGenotype(("none",) * 5)
    with pytest.raises(ValueError):
        CellGenotype.from_op_indices("220225")


# -- rendering --------------------------------------------------------------------------------


def test_render_round_trip_and_gate() -> None:
    rng = random.Random(0)
    space = CellSpace("nb201")
    for _ in range(20):
        genotype = space.sample(rng)
        source = space.render(genotype)
        assert check(source).ok, check(source).failure
        assert arch_from_source(source) == genotype.to_arch_str()
        assert space.from_source(source) == genotype
        assert space.decode(space.encode(genotype)) == genotype
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert imported <= {"torch", "math"}
    assert f'NB201_ARCH = "{README_ARCH}"' in render(CellGenotype.from_arch_str(README_ARCH))


def test_arch_from_source_is_static() -> None:
    assert arch_from_source("NB201_ARCH = 3\n") is None
    assert arch_from_source("x = 1\n") is None
    assert arch_from_source("def f(:\n") is None
    assert arch_from_source('NB201_ARCH: str = "a"\nNB201_ARCH = "b"\n') == "b"


@pytest.mark.slow
def test_cell_models_build_with_expected_sizes() -> None:
    """NB201's published sizes: all-conv3x3 1,531,546 params / 220.11969 MFLOPs (CIFAR-10);
    cells without convolutions 73,306 / 7.78305 (the NB201 API's min and max)."""
    cases, expected = [], []
    for preset, shape, classes in [
        ("nb201", (3, 32, 32), 10),
        ("small", (1, 40), 10),
        ("tiny", (1, 8, 8), 10),
        ("tiny", (2, 5, 7), 3),
        ("tiny", (1, 1), 4),
    ]:
        space = CellSpace(preset, shape, classes)
        for indices in ("222222", "111111", "031423"):
            genotype = CellGenotype.from_op_indices(indices)
            cases.append({"source": space.render(genotype), "shape": shape, "classes": classes})
            expected.append((classes, *space.cost(genotype)))
    built = build_in_subprocess(cases)
    for got, (classes, params, flops) in zip(built, expected, strict=True):
        assert got["shape"] == [2, classes] and got["finite"]
        assert (got["params"], got["flops"]) == (params, flops)
    assert (built[0]["params"], built[0]["flops"]) == (1_531_546, 220_119_690)
    assert (built[1]["params"], built[1]["flops"]) == (73_306, 7_783_050)


def test_cell_sampling_and_mutation() -> None:
    space = CellSpace("small", (1, 40), 10)
    a = [space.sample(random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    assert space.sample(np.random.default_rng(0)) == space.sample(np.random.default_rng(0))
    rng = random.Random(1)
    seen = {space.sample(rng) for _ in range(300)}
    assert len(seen) > 250
    genotype = space.sample(rng)
    for _ in range(200):
        child = space.mutate(genotype, rng)
        assert sum(x != y for x, y in zip(child.ops, genotype.ops, strict=True)) == 1
        genotype = child
    assert len(STRING_EDGES) == 6 and len(OPS) == 5


def test_presets_and_factory() -> None:
    assert isinstance(make_space("cell", (3, 32, 32), 10), SearchSpace)
    assert make_space("cell", (3, 32, 32), 10).preset.name == "nb201"
    assert make_space("cell", (1, 40), 10).preset.name == "small"
    assert isinstance(make_space("chain", (1, 40), 10, max_depth=3), ChainSpace)
    custom = CellSpace(CellPreset("mine", (4,), 2), (1, 8), 2)
    assert "CHANNELS = (4,)" in custom.render(custom.sample(random.Random(0)))
    with pytest.raises(ValueError):
        CellSpace("huge")
    with pytest.raises(ValueError):
        make_space("graph", (1, 40), 10)


# -- chain space ------------------------------------------------------------------------------


@pytest.mark.slow
def test_chain_round_trip_mutation_kinds_and_bounds() -> None:
    space = ChainSpace((1, 40), 10, min_depth=2, max_depth=5)
    rng = random.Random(0)
    genotype = space.sample(rng)
    depths, changed_attrs = set(), set()
    for _ in range(400):
        child = space.mutate(genotype, rng)
        assert child != genotype and 2 <= child.depth <= 5
        if child.depth == genotype.depth:
            diffs = [(a, b) for a, b in zip(child.layers, genotype.layers, strict=True) if a != b]
            assert len(diffs) == 1
            changed_attrs |= {
                f
                for f in ("op", "width", "kernel", "activation")
                if getattr(diffs[0][0], f) != getattr(diffs[0][1], f)
            }
        else:
            assert abs(child.depth - genotype.depth) == 1
        depths.add(child.depth)
        source = space.render(child)
        assert check(source).ok, check(source).failure
        assert space.from_source(source) == child
        assert space.decode(json.loads(json.dumps(space.encode(child)))) == child
        genotype = child
    assert depths == {2, 3, 4, 5}
    assert changed_attrs == {"op", "width", "kernel", "activation"}
    with pytest.raises(ValueError):
        space.decode([["conv", 8, 3, "softmax"]])


@pytest.mark.slow
def test_chain_models_build_1d_and_2d() -> None:
    genotype = ChainGenotype(
        (
            Layer("conv", 16, 5, "relu"),
            Layer("pool", 0, 3, "none"),
            Layer("sepconv", 32, 3, "gelu"),
            Layer("mix", 8, 1, "tanh"),
            Layer("pool", 0, 7, "none"),
        )
    )
    rng = random.Random(5)
    cases = []
    for shape, classes in [((1, 40), 10), ((1, 8, 8), 10), ((3, 32, 32), 10), ((1, 1), 2)]:
        space = ChainSpace(shape, classes)
        for g in (genotype, space.sample(rng), space.sample(rng)):
            cases.append({"source": space.render(g), "shape": shape, "classes": classes})
    built = build_in_subprocess(cases)
    for case, got in zip(cases, built, strict=True):
        assert got["shape"] == [2, case["classes"]] and got["finite"]
    # conv 1*16*5 + BN 32; sepconv dw 16*3 + pw 16*32 + BN 64; mix 32*8 + BN 16; head 8*10+10
    assert built[0]["params"] == 80 + 32 + 48 + 512 + 64 + 256 + 16 + 90
