"""Tabular NAS-Bench-201 tasks: ``nb201-cifar10``, ``nb201-cifar100``, ``nb201-imagenet16-120``.

No training: a candidate is answered from NAS-Bench-201's table of validation accuracies
(shipped in ``llmnas/data``, provenance in ``NB201_PROVENANCE.md``). The candidate's
architecture is the module-level constant ``NB201_ARCH`` (as written by
:func:`llmnas.nb201_cell.render`), read with :mod:`ast`; the code is never executed. The
answer trusts that constant: an edit elsewhere in the program changes nothing here.

``metrics``: ``val_accuracy`` (a fraction in [0, 1]), ``params`` and ``flops`` of the NB201
macro network (preset ``nb201``) for the dataset's input shape and classes, computed
analytically by :func:`llmnas.nb201_cell.cell_cost` with NB201's conventions (they equal
NB201's published parameter counts and FLOPs).

Blind tasks (``nb201-cifar10-blind`` and the like) answer from the same table; they differ only
in what a language model is shown: the LLM strategy's space prompts name the operations with
neutral tokens under a permutation seeded by the run's seed, and show neither code, the
benchmark's name, nor parameter counts (:class:`llmnas.spaces.text.CellText`). The blind task's
description is written for that prompt. Code prompts are refused on blind tasks.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from llmnas.gate import check
from llmnas.nb201_cell import CellGenotype, arch_from_source, cell_cost, render
from llmnas.records import EvalResult, Failure, FailureKind, Status
from llmnas.tasks.base import Task, TaskData, TaskError

__all__ = [
    "DATASETS",
    "TASK_CLASSES",
    "NB201CIFAR10",
    "NB201CIFAR100",
    "NB201ImageNet16",
    "NB201Task",
    "load_table",
]

TABLE_FILE = "nb201_val_accuracy.csv.gz"
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16_120")
"""Dataset names (the table's column names)."""

RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
"""NB201's ResNet-like cell (two 3x3 convolutions and a skip), the seed program."""


def _column(dataset: str) -> str:
    key = dataset.strip().lower().replace("-", "_")
    key = {"imagenet16": "imagenet16_120", "cifar10_valid": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise TaskError(f"unknown NB201 dataset {dataset!r}; expected one of {DATASETS}")
    return key


@functools.cache
def _read_table() -> tuple[list[str], dict[str, list[float]]]:
    raw = resources.files("llmnas").joinpath("data", TABLE_FILE).read_bytes()
    reader = csv.DictReader(io.StringIO(gzip.decompress(raw).decode("utf-8")))
    archs: list[str] = []
    columns: dict[str, list[float]] = {name: [] for name in DATASETS}
    for row in reader:
        archs.append(row["arch"])
        for name in DATASETS:
            columns[name].append(float(row[name]) / 100.0)
    return archs, columns


@functools.cache
def _table(column: str) -> MappingProxyType[str, float]:
    archs, columns = _read_table()
    return MappingProxyType(dict(zip(archs, columns[column], strict=True)))


def load_table(dataset: str) -> dict[str, float]:
    """``{NB201 arch string: validation accuracy as a fraction}`` for all 15,625 cells.

    ``dataset`` is ``cifar10``, ``cifar100`` or ``imagenet16_120`` (``ImageNet16-120`` works
    too). The file is read once per process; each call returns a fresh dict.
    """
    return dict(_table(_column(dataset)))


@dataclass(frozen=True)
class NB201Task(Task):
    """A NAS-Bench-201 lookup task; see the module docstring."""

    name: str = "nb201-cifar10"
    input_shape: tuple[int, ...] = (3, 32, 32)
    num_classes: int = 10
    description: str = (
        "NAS-Bench-201 CIFAR-10 (tabular): NB201 cell networks answered from the benchmark's "
        "validation accuracies, no training. Set NB201_ARCH to the cell's architecture string."
    )
    tabular: bool = True
    dataset: str = "cifar10"
    blind: bool = False

    @property
    def space_description(self) -> str:
        """The description for space prompts, which never show code."""
        return self.description.split(" Set NB201_ARCH")[0]

    def _load(self) -> TaskData:
        raise TaskError(f"task {self.name} is tabular: it has no data, use evaluate_source()")

    def seed_programs(self) -> dict[str, str]:
        return {"resnet": render(CellGenotype.from_arch_str(RESNET_CELL), "nb201")}

    def lookup(self, arch: str) -> float:
        """Validation accuracy (fraction) of a canonical NB201 arch string; KeyError if unknown."""
        return _table(_column(self.dataset))[arch]

    def evaluate_source(self, source: str, *, gate: bool = True) -> EvalResult:
        """Answer a candidate from the table without running it.

        The static gate (:func:`llmnas.gate.check`) runs first unless ``gate=False`` (for a
        caller that has gated the source already); its failures come back as they are. A
        missing or malformed ``NB201_ARCH`` is a ``contract`` failure.
        """
        found = _analyse(source, gate)
        if isinstance(found, Failure):
            status = Status.REJECTED if found.kind is FailureKind.REJECTED else Status.FAILED
            return EvalResult(status=status, failure=found)
        params, flops = _cost(self, found)
        return EvalResult(
            status=Status.OK,
            metrics={
                "val_accuracy": self.lookup(found.to_arch_str()),
                "params": params,
                "flops": flops,
            },
        )


@functools.lru_cache(maxsize=50_000)
def _cost(task: NB201Task, genotype: CellGenotype) -> tuple[int, int]:
    return cell_cost(genotype, "nb201", task.input_shape, task.num_classes)


_ANALYSED: dict[bytes, Failure | CellGenotype] = {}
_ANALYSED_LIMIT = 50_000


def _analyse(source: str, gate: bool) -> Failure | CellGenotype:
    """Static gate (if asked), then ``NB201_ARCH``; memoised by the source's sha256."""
    key = hashlib.sha256(source.encode("utf-8", "replace")).digest() + bytes([gate])
    found = _ANALYSED.get(key)
    if found is not None:
        return found
    gated = check(source) if gate else None
    failure = None if gated is None else gated.failure
    arch = arch_from_source(source if gated is None else gated.source) if failure is None else None
    result: Failure | CellGenotype
    if failure is not None:
        result = failure
    elif arch is None:
        result = Failure(
            kind=FailureKind.CONTRACT,
            message="a tabular NB201 candidate needs a module-level string constant "
            'NB201_ARCH = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"',
            stage="tabular",
        )
    else:
        try:
            result = CellGenotype.from_arch_str(arch)
        except ValueError as exc:
            result = Failure(
                kind=FailureKind.CONTRACT, message=f"NB201_ARCH: {exc}", stage="tabular"
            )
    if len(_ANALYSED) >= _ANALYSED_LIMIT:
        _ANALYSED.clear()
    _ANALYSED[key] = result
    return result


@dataclass(frozen=True)
class NB201CIFAR10(NB201Task):
    pass


@dataclass(frozen=True)
class NB201CIFAR100(NB201Task):
    name: str = "nb201-cifar100"
    num_classes: int = 100
    description: str = (
        "NAS-Bench-201 CIFAR-100 (tabular): NB201 cell networks answered from the benchmark's "
        "validation accuracies, no training. Set NB201_ARCH to the cell's architecture string."
    )
    dataset: str = "cifar100"


@dataclass(frozen=True)
class NB201ImageNet16(NB201Task):
    name: str = "nb201-imagenet16-120"
    input_shape: tuple[int, ...] = (3, 16, 16)
    num_classes: int = 120
    description: str = (
        "NAS-Bench-201 ImageNet16-120 (tabular, 16x16 images, 120 classes): NB201 cell networks "
        "answered from the benchmark's validation accuracies, no training. Set NB201_ARCH to "
        "the cell's architecture string."
    )
    dataset: str = "imagenet16_120"


_FIELD_TYPES = {"name": str, "description": str, "blind": bool}


def _blind(base: type[NB201Task], images: str) -> type[NB201Task]:
    plain = base()
    description = (
        f"A tabular benchmark of cell architectures for {plain.num_classes}-class classification "
        f"of {images}: each cell's validation accuracy is looked up in a table of fully trained "
        "networks. The benchmark and its operations are not named: learn from the results."
    )
    fields = {"name": plain.name + "-blind", "description": description, "blind": True}
    return dataclass(frozen=True)(
        type(base.__name__ + "Blind", (base,), {"__annotations__": _FIELD_TYPES, **fields})
    )


NB201CIFAR10Blind = _blind(NB201CIFAR10, "32x32 colour images")
NB201CIFAR100Blind = _blind(NB201CIFAR100, "32x32 colour images")
NB201ImageNet16Blind = _blind(NB201ImageNet16, "16x16 colour images")

TASK_CLASSES: tuple[type[NB201Task], ...] = (
    NB201CIFAR10, NB201CIFAR100, NB201ImageNet16,
    NB201CIFAR10Blind, NB201CIFAR100Blind, NB201ImageNet16Blind,
)  # fmt: skip
"""Registered by :mod:`llmnas.tasks` under their ``name``."""
