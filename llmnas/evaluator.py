"""Evaluate candidate programs on a task: static gate, sandboxed run, host-side metrics.

The host never imports candidate code. It hands the sandbox the training split and the
*unlabelled* validation (and test) inputs, receives logits, and computes accuracy and loss
itself with labels that never leave this process. Tabular tasks (NAS-Bench-201) answer from
their table instead, without running anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from llmnas import gate
from llmnas.config import ExecutorSettings
from llmnas.devices import resolve_device
from llmnas.executors import Executor, make_executor
from llmnas.records import EvalResult, Status
from llmnas.tasks import Task

__all__ = ["EvalSettings", "Evaluator", "accuracy", "cross_entropy", "resolve_device"]


@dataclass(frozen=True)
class EvalSettings:
    """Per-evaluation settings. ``epochs=None`` means the task's search recipe."""

    epochs: int | None = None
    timeout_s: float = 600.0
    memory_mb: int = 4096
    proxies: tuple[str, ...] = ()
    proxy_batch: int = 64
    predict_test: bool = False
    save_weights: bool = False
    seed: int | None = None


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _label_hiding_paths() -> list[Path]:
    paths = [Path(os.environ.get("LLMNAS_DATA", Path.home() / ".cache" / "llmnas"))]
    return [p for p in paths if p.exists()]


class Evaluator:
    """Scores candidate sources on one task; several workers share one warm pool.

    ``executor`` chooses where the sandbox runs (:mod:`llmnas.executors`: the local pool by
    default, or Ray actors); :attr:`workers` is then how many jobs it runs at once. Use as a
    context manager (or call :meth:`close`) so the workers are stopped.
    """

    def __init__(
        self,
        task: Task,
        *,
        workers: int = 1,
        device: str = "cpu",
        threads: int | None = None,
        scratch: str | Path | None = None,
        settings: EvalSettings | None = None,
        executor: ExecutorSettings | None = None,
    ):
        self.task = task
        self.settings = settings or EvalSettings()
        self.device = resolve_device(device)
        self.workers = max(1, workers)
        self._pool: Executor | None = None
        self._labels: dict[str, np.ndarray] = {}
        if not task.tabular:
            data = task.load()
            self._labels = {"val": data.val.y, "test": data.test.y}
            self._pool = make_executor(
                executor,
                data={
                    "train_x": data.train.x,
                    "train_y": data.train.y,
                    "val_x": data.val.x,
                    "test_x": data.test.x,
                },
                workers=self.workers,
                device=self.device,
                threads=threads,
                scratch=scratch,
                hidden=_label_hiding_paths(),
            )
            self.workers = self._pool.size

    @property
    def executor(self) -> Executor | None:
        """Where the sandbox runs (``None`` for a tabular task)."""
        return self._pool

    @property
    def isolation(self) -> str:
        return "tabular" if self._pool is None else self._pool.mode

    def evaluate(
        self, source: str, settings: EvalSettings | None = None, *, gated: bool = False
    ) -> EvalResult:
        """Gate, run and score one program. Candidate faults come back as data. ``gated``:
        the source already passed :func:`llmnas.gate.check` (its normalised form)."""
        return self.evaluate_with_weights(source, settings, gated=gated)[0]

    def evaluate_with_weights(
        self, source: str, settings: EvalSettings | None = None, *, gated: bool = False
    ) -> tuple[EvalResult, bytes | None]:
        """As :meth:`evaluate`, plus the trained weights (safetensors bytes) when
        ``settings.save_weights`` is set and training succeeded."""
        settings = settings or self.settings
        start = time.perf_counter()
        if not gated:
            checked = gate.check(source)
            if not checked.ok:
                assert checked.failure is not None
                return EvalResult(status=Status.FAILED, failure=checked.failure), None
            source = checked.source
        weights = None
        if self.task.tabular:
            result = self.task.evaluate_source(source, gate=False)  # type: ignore[attr-defined]
        else:
            result, weights = self._run(source, settings)
        result.timings["eval_seconds"] = time.perf_counter() - start
        return result, weights

    def evaluate_many(
        self, sources: Sequence[str], settings: EvalSettings | None = None
    ) -> list[EvalResult]:
        """Evaluate several programs concurrently on the pool; results in input order."""
        with ThreadPoolExecutor(max_workers=self.workers) as ex:
            return list(ex.map(lambda s: self.evaluate(s, settings), sources))

    def _run(self, source: str, settings: EvalSettings) -> tuple[EvalResult, bytes | None]:
        assert self._pool is not None
        recipe = self.task.recipe
        if settings.seed is not None:
            recipe = replace(recipe, seed=int(settings.seed))
        epochs = recipe.epochs if settings.epochs is None else int(settings.epochs)
        splits = ["val", "test"] if settings.predict_test else ["val"]
        job = {
            "source": source,
            "input_shape": list(self.task.input_shape),
            "num_classes": self.task.num_classes,
            "recipe": {**recipe.__dict__},
            "epochs": epochs,
            "proxies": list(settings.proxies),
            "proxy_batch": settings.proxy_batch,
            "predict": splits,
            "timeout": float(settings.timeout_s),
            "memory_mb": int(settings.memory_mb),
            "save_weights": settings.save_weights,
        }
        expect = {s: len(self._labels[s]) for s in splits}
        report = self._pool.run(job, expect=expect, num_classes=self.task.num_classes)
        if report.failure is not None:
            kind, message, stage = report.failure
            result = EvalResult.failed(
                kind, message, stage=stage, metrics=report.metrics, timings=report.timings
            )
            result.proxies, result.proxy_notes = report.proxies, report.proxy_notes
            return result, None
        metrics = dict(report.metrics)
        metrics["epochs"] = epochs
        for split, logits in report.logits.items():
            metrics[f"{split}_accuracy"] = accuracy(logits, self._labels[split])
            metrics[f"{split}_loss"] = cross_entropy(logits, self._labels[split])
        result = EvalResult(
            status=Status.OK,
            metrics=metrics,
            proxies=report.proxies,
            proxy_notes=report.proxy_notes,
            timings=report.timings,
        )
        return result, report.weights

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
