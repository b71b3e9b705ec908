"""Tabular NAS-Bench-201 tasks: registry, table, static lookups, failures, NB201 sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmnas.gate import check
from llmnas.nb201_cell import CellGenotype
from llmnas.records import FailureKind, Status
from llmnas.spaces import space_of
from llmnas.spaces.cell import CellSpace
from llmnas.tasks import TASKS, TaskError, get_task
from llmnas.tasks.nb201 import NB201Task, load_table

NAMES = ("nb201-cifar10", "nb201-cifar100", "nb201-imagenet16-120")
ZC_JSON = Path("/work/shared/data/nb201/zc_nasbench201.json")


def source_for(indices: str) -> str:
    return CellSpace("nb201").render(CellGenotype.from_op_indices(indices))


def test_registered_tasks() -> None:
    shapes = {}
    for name in NAMES:
        task = get_task(name)
        assert name in TASKS and task.name == name
        assert isinstance(task, NB201Task) and task.tabular
        shapes[name] = (task.input_shape, task.num_classes)
        with pytest.raises(TaskError):
            task.load()
    assert shapes == {
        "nb201-cifar10": ((3, 32, 32), 10),
        "nb201-cifar100": ((3, 32, 32), 100),
        "nb201-imagenet16-120": ((3, 16, 16), 120),
    }


def test_table_contents() -> None:
    best = {"cifar10": 0.9157, "cifar100": 0.7326, "imagenet16_120": 0.473333}
    for dataset, value in best.items():
        table = load_table(dataset)
        assert len(table) == 15625
        assert all(0.0 <= v <= 1.0 for v in table.values())
        assert max(table.values()) == pytest.approx(value, abs=1e-6)
    assert load_table("ImageNet16-120") == load_table("imagenet16_120")
    with pytest.raises(TaskError):
        load_table("mnist")


@pytest.mark.parametrize(
    ("name", "indices", "accuracy"),
    [
        ("nb201-cifar10", "230232", 0.9157),  # best cifar10 cell
        ("nb201-cifar100", "320223", 0.7326),
        ("nb201-imagenet16-120", "320222", 0.473333),
        ("nb201-cifar10", "220222", 0.9093),  # the README's example cell
        ("nb201-cifar100", "220222", 0.7318),
        ("nb201-imagenet16-120", "220222", 0.464333),
        ("nb201-cifar10", "111111", 0.10),  # disconnected: chance level
    ],
)
def test_known_values(name: str, indices: str, accuracy: float) -> None:
    result = get_task(name).evaluate_source(source_for(indices))
    assert result.status is Status.OK and result.failure is None
    assert result.metrics["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_nb201_published_sizes() -> None:
    """The NB201 API's params/FLOPs ranges (all-conv3x3 max, conv-free min), per dataset."""
    expected = {
        "nb201-cifar10": ((1_531_546, 220_119_690), (73_306, 7_783_050)),
        "nb201-cifar100": ((1_537_396, 220_125_540), (79_156, 7_788_900)),
        "nb201-imagenet16-120": ((1_538_696, 55_037_560), (80_456, 1_953_400)),
    }
    for name, (largest, smallest) in expected.items():
        task = get_task(name)
        for indices, sizes in (("222222", largest), ("000000", smallest), ("141014", smallest)):
            metrics = task.evaluate_source(source_for(indices)).metrics
            assert (metrics["params"], metrics["flops"]) == sizes


@pytest.mark.skipif(not ZC_JSON.exists(), reason="NASLib's zc_nasbench201.json not available")
def test_params_match_naslib_for_every_listed_cell() -> None:
    data = json.loads(ZC_JSON.read_text())
    for dataset, name in zip(data, NAMES, strict=True):
        task = get_task(name)
        space = space_of(task)
        for key, entry in data[dataset].items():
            genotype = CellGenotype.from_op_indices(
                tuple(int(d) for d in key.strip("()").split(","))
            )
            assert space.cost(genotype)[0] / 1e6 == pytest.approx(
                entry["params"]["score"], abs=1e-9
            )
            assert task.lookup(genotype.to_arch_str()) == pytest.approx(
                entry["val_accuracy"] / 100, abs=1e-12
            )


def test_contract_failures() -> None:
    task = get_task("nb201-cifar10")
    good = source_for("230232")
    missing = good.replace("NB201_ARCH = ", "ARCH = ")
    not_a_string = good.replace('NB201_ARCH = "', 'NB201_ARCH = str("').replace('|"\n', '|")\n', 1)
    bad_op = good.replace("nor_conv_1x1~0", "sep_conv_5x5~0", 1)
    for source in (missing, not_a_string, bad_op):
        assert check(source).ok
        result = task.evaluate_source(source)
        assert result.status is Status.FAILED
        assert result.failure is not None and result.failure.kind is FailureKind.CONTRACT
        assert "NB201_ARCH" in result.failure.message
    syntax = task.evaluate_source(good + "\ndef broken(:\n")
    assert syntax.failure is not None and syntax.failure.kind is FailureKind.SYNTAX
    banned = task.evaluate_source("import os\n" + good)
    assert banned.failure is not None and banned.failure.kind is FailureKind.IMPORT


def test_never_executes_the_candidate() -> None:
    hostile = source_for("230232") + "\nraise SystemExit('ran')\nwhile True:\n    pass\n"
    result = get_task("nb201-cifar10").evaluate_source(hostile)
    assert result.ok and result.metrics["val_accuracy"] == pytest.approx(0.9157)


def test_results_are_fresh_copies_and_seeds_evaluate() -> None:
    task = get_task("nb201-cifar10")
    first = task.evaluate_source(source_for("230232"))
    first.metrics["val_accuracy"] = 1.0
    assert task.evaluate_source(source_for("230232")).metrics["val_accuracy"] == 0.9157
    for name in NAMES:
        seeds = get_task(name).seed_programs()
        assert seeds and all(get_task(name).evaluate_source(s).ok for s in seeds.values())


def test_gate_can_be_skipped_by_a_caller_that_gated() -> None:
    task = get_task("nb201-cifar10")
    banned = "import os\n" + source_for("230232")
    assert task.evaluate_source(banned).failure is not None
    assert task.evaluate_source(banned, gate=False).metrics["val_accuracy"] == 0.9157
