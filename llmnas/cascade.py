"""The evaluation cascade: which candidates go on to (longer) training, and why.

Every strategy's candidates pass through the same ordered stages (the loop drives them):

a. **build** (always): the sandbox builds ``Model``, checks the output shape on a batch of 2
   and counts parameters and FLOPs. A fault here is the sandbox's failure, not the cascade's.
b. **limits** (optional): ``min_params <= params <= max_params`` and
   ``min_flops <= flops <= max_flops``; an unknown count passes.
c. **proxies** (optional prefilter): a score per candidate, from
   ``prefilter = "<proxy name>"`` (the raw proxy value; ``directions[name] < 0`` negates it),
   ``"ensemble"`` (the candidate's rank average among the history plus itself over
   ``proxies``, see :func:`llmnas.proxies.ensemble.rank_average`, rescaled to ``[0, 1]``) or
   ``"ranker"`` (the accuracy predicted by :class:`~llmnas.proxies.ensemble.OnlineRanker`,
   fitted on the trained history; until it has ``ranker_min_examples`` trained rows the
   ``ensemble`` score stands in). Promotion rules, both applied when both are set:

   - **threshold**: ``score >= min_score``;
   - **quantile**: ``score >= q``, with ``q`` the ``(1 - keep_top)`` quantile (numpy's linear
     interpolation) of the history's scores, e.g. ``keep_top = 0.5`` keeps candidates at or
     above the median of the scores seen so far.

   With fewer than ``warmup`` scored rows in the history, every candidate passes the quantile
   rule, and the threshold rule too when the score is relative (``ensemble``). A candidate
   whose score is undefined (the proxy is ``None``) passes unless ``on_missing = "reject"``.
d. **short training**: the task's search recipe (not the cascade's business).
e. **long training** (optional, successive-halving style): with ``long_epochs`` set, a trained
   candidate is retrained for ``long_epochs`` when it is among the best
   ``floor(long_top * n)`` validation accuracies of the ``n`` trained so far, itself included
   (the asynchronous successive-halving rule; nothing is promoted while that floor is 0).

A rejection is a :class:`~llmnas.records.Failure` of kind ``rejected`` whose ``stage`` is
``limits`` or ``proxies`` and whose message gives the numbers, e.g.
``proxy synflow=1.2e+03 below the 50% quantile 3.4e+03 of 20 seen``.

The loop can hand a gated source to :meth:`Cascade.run` (evaluator calls for every stage,
then ``observe`` the returned result when it is committed), or drive the stages itself. The
calls, per candidate: ``screen(result0)`` on the epochs-0 result (build, counts and
``proxy_names`` computed); for a survivor, train it, then ``wants_long(trained)`` **before**
``observe(trained)``; ``observe`` once per candidate with its final short-fidelity result (use
:meth:`Cascade.merge` to put the epochs-0 proxies onto the trained result; observe rejected
and failed candidates too, long-training results never). Decisions depend only on the config,
the seed and the observed history, so they are deterministic. A resumed run rebuilds the
cascade by observing the stored results again in their original order (the ranker is refitted
at the same history sizes), so the cascade has no state of its own to persist.
"""

from __future__ import annotations

import contextlib
import math
import threading
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmnas.proxies import ALL_PROXIES
from llmnas.proxies.ensemble import OnlineRanker, rank_average
from llmnas.records import EvalResult, Failure, FailureKind, Status

if TYPE_CHECKING:
    from llmnas.evaluator import EvalSettings, Evaluator

__all__ = ["Cascade", "CascadeConfig", "HistoryRow"]

_RELATIVE = ("ensemble", "ranker")


class CascadeConfig(BaseModel):
    """The ``[cascade]`` table of a run config. The defaults train every candidate."""

    model_config = ConfigDict(extra="forbid")

    max_params: int | None = Field(None, ge=1, description="reject above this many parameters")
    min_params: int | None = Field(None, ge=0, description="reject below this many parameters")
    max_flops: int | None = Field(None, ge=1, description="reject above this many FLOPs")
    min_flops: int | None = Field(None, ge=0, description="reject below this many FLOPs")
    prefilter: str | None = Field(None, description="none | a proxy name | ensemble | ranker")
    proxies: list[str] | None = Field(None, description="for ensemble/ranker; default all")
    directions: dict[str, float] = Field(default_factory=dict, description="-1: lower is better")
    min_score: float | None = Field(None, description="threshold rule")
    keep_top: float | None = Field(None, gt=0.0, le=1.0, description="quantile rule")
    warmup: int = Field(20, ge=0, description="scored rows needed before relative rules bite")
    on_missing: Literal["pass", "reject"] = "pass"
    ranker_min_examples: int = Field(20, ge=2, description="trained rows before the forest")
    ranker_refit_every: int = Field(10, ge=1, description="refit after this many new rows")
    long_epochs: int | None = Field(None, ge=1, description="stage (e) epochs; None: off")
    long_top: float = Field(0.1, gt=0.0, le=1.0, description="fraction promoted to stage (e)")

    @field_validator("prefilter")
    @classmethod
    def _known_prefilter(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "none"):
            return None
        value = value.strip().lower()
        if value not in (*_RELATIVE, *ALL_PROXIES):
            known = ", ".join(ALL_PROXIES)
            raise ValueError(f"prefilter must be none, ensemble, ranker or one of: {known}")
        return value

    @field_validator("proxies")
    @classmethod
    def _known_proxies(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (bad := [n for n in value if n not in ALL_PROXIES]):
            raise ValueError(f"unknown proxies {bad}; expected some of: {', '.join(ALL_PROXIES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CascadeConfig:
        if self.prefilter is not None and self.min_score is None and self.keep_top is None:
            raise ValueError("a prefilter needs a promotion rule: min_score and/or keep_top")
        for low, high in (("min_params", "max_params"), ("min_flops", "max_flops")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low}={lo} is above {high}={hi}")
        return self

    @property
    def proxy_names(self) -> tuple[str, ...]:
        """The proxies the epochs-0 stage must compute (empty without a prefilter)."""
        if self.prefilter is None:
            return ()
        if self.prefilter in _RELATIVE:
            return tuple(self.proxies) if self.proxies else ALL_PROXIES
        return (self.prefilter,)

    @classmethod
    def from_toml(cls, path: str | Path, *, table: str = "cascade") -> CascadeConfig:
        """Load the ``[table]`` of a TOML file; a missing table gives the defaults."""
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        return cls.model_validate(data.get(table, {}))


class HistoryRow(BaseModel):
    """What the cascade remembers of one observed candidate."""

    proxies: dict[str, float | None] = Field(default_factory=dict)
    val_accuracy: float | None = None


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


class Cascade:
    """The cascade's decisions for one run (see the module docstring)."""

    def __init__(self, *, config: CascadeConfig | None = None, seed: int = 0) -> None:
        self.config = config or CascadeConfig()
        self.seed = int(seed)
        self.history: list[HistoryRow] = []
        self.counts: dict[str, int] = {"screened": 0, "limits": 0, "proxies": 0}
        self._ranker: OnlineRanker | None = None
        self._fitted_at = 0

    # -- what the loop asks -------------------------------------------------------------------
    @property
    def proxy_names(self) -> tuple[str, ...]:
        return self.config.proxy_names

    @property
    def needs_screen(self) -> bool:
        """Whether stages (b) or (c) are configured (else an epochs-0 call is unnecessary)."""
        c = self.config
        limits = (c.max_params, c.min_params, c.max_flops, c.min_flops)
        return c.prefilter is not None or any(v is not None for v in limits)

    def screen(self, result0: EvalResult) -> Failure | None:
        """Stages (b) and (c) for an epochs-0 result: a ``rejected`` failure, or ``None`` to
        go on. A result that already failed is left alone (``None``: its failure stands)."""
        if not result0.ok:
            return None
        self.counts["screened"] += 1
        failure = self._limits(result0) or self._prefilter(result0)
        if failure is not None:
            self.counts[failure.stage or "proxies"] += 1
        return failure

    def score(self, result0: EvalResult) -> float | None:
        """The prefilter score of a candidate against the current history (``None`` if none)."""
        if self.config.prefilter is None:
            return None
        return self._scores(result0)[0]

    def observe(self, result: EvalResult) -> None:
        """Add one candidate's short-fidelity result to the history; refit the ranker when due."""
        acc = result.metrics.get("val_accuracy") if result.ok else None
        acc = float(acc) if acc is not None and math.isfinite(float(acc)) else None
        row = HistoryRow(proxies=dict(result.proxies), val_accuracy=acc)
        self.history.append(row)
        if self.config.prefilter == "ranker" and acc is not None and row.proxies:
            self._maybe_refit()

    def wants_long(self, result: EvalResult) -> bool:
        """Stage (e): should this trained (not yet observed) candidate be trained longer?"""
        c = self.config
        acc = result.metrics.get("val_accuracy")
        if c.long_epochs is None or not result.ok or acc is None:
            return False
        accs = [r.val_accuracy for r in self.history if r.val_accuracy is not None]
        slots = math.floor(c.long_top * (len(accs) + 1) + 1e-9)
        better = sum(a > float(acc) for a in accs)
        return slots >= 1 and better < slots

    def run(
        self,
        evaluator: Evaluator,
        source: str,
        settings: EvalSettings,
        lock: threading.Lock | None = None,
    ) -> EvalResult:
        """Drive stages (a)-(e) for one gated source; the caller observes the result later.

        With limits or a prefilter, an epochs-0 call (``settings.proxies`` plus
        :attr:`proxy_names`) comes first and :meth:`screen` may return a ``rejected`` result
        carrying its counts and proxies. Survivors train with ``settings`` and get the epochs-0
        proxies merged in. With ``long_epochs`` and :meth:`wants_long`, the candidate is trained
        again for ``long_epochs``: its ``val_accuracy`` stays the short one (the history's
        fidelity) and the longer run adds ``long_val_accuracy``, ``long_epochs`` and
        ``long_train_seconds`` to the metrics. ``lock`` guards the history against concurrent
        :meth:`observe` calls.
        """
        guard = lock if lock is not None else contextlib.nullcontext()
        result0 = None
        if self.needs_screen:
            names = tuple(dict.fromkeys((*settings.proxies, *self.proxy_names)))
            result0 = evaluator.evaluate(
                source, replace(settings, epochs=0, proxies=names), gated=True
            )
            if not result0.ok:
                return result0
            with guard:
                failure = self.screen(result0)
            if failure is not None:
                return result0.model_copy(update={"status": Status.REJECTED, "failure": failure})
            settings = replace(settings, proxies=())
        result = evaluator.evaluate(source, settings, gated=True)
        if result0 is not None:
            result = Cascade.merge(result0, result)
        if self.config.long_epochs is None or not result.ok:
            return result
        with guard:
            wanted = self.wants_long(result)
        if wanted:
            longer = evaluator.evaluate(
                source, replace(settings, epochs=self.config.long_epochs, proxies=()), gated=True
            )
            if longer.ok and "val_accuracy" in longer.metrics:
                result.metrics["long_val_accuracy"] = longer.metrics["val_accuracy"]
                result.metrics["long_epochs"] = self.config.long_epochs
                result.metrics["long_train_seconds"] = longer.metrics.get("train_seconds", 0.0)
        return result

    @staticmethod
    def merge(result0: EvalResult, trained: EvalResult) -> EvalResult:
        """The trained result carrying the epochs-0 proxies (and their notes and timings)."""
        return trained.model_copy(
            update={
                "proxies": {**result0.proxies, **trained.proxies},
                "proxy_notes": {**result0.proxy_notes, **trained.proxy_notes},
                "timings": {**result0.timings, **trained.timings},
            }
        )

    # -- stages -------------------------------------------------------------------------------
    def _limits(self, result0: EvalResult) -> Failure | None:
        c = self.config
        for what, low, high in (
            ("params", c.min_params, c.max_params),
            ("flops", c.min_flops, c.max_flops),
        ):
            value = result0.metrics.get(what, result0.proxies.get(what))
            if value is None:
                continue
            if high is not None and value > high:
                return _reject("limits", f"{what}={value:,.0f} above max_{what}={high:,}")
            if low is not None and value < low:
                return _reject("limits", f"{what}={value:,.0f} below min_{what}={low:,}")
        return None

    def _prefilter(self, result0: EvalResult) -> Failure | None:
        c = self.config
        if c.prefilter is None:
            return None
        score, seen, label = self._scores(result0)
        if score is None:
            if c.on_missing == "reject":
                note = result0.proxy_notes.get(c.prefilter, "no value")
                return _reject("proxies", f"{label} undefined ({note}); on_missing=reject")
            return None
        warm = len(seen) >= c.warmup
        relative = c.prefilter == "ensemble" or label.startswith("ensemble")
        if c.min_score is not None and (warm or not relative) and score < c.min_score:
            return _reject("proxies", f"{label}={_fmt(score)} below min_score={c.min_score:g}")
        if c.keep_top is not None and c.keep_top < 1.0 and warm and seen:
            q = 1.0 - c.keep_top
            cut = float(np.quantile(np.asarray(seen), q))
            if score < cut:
                return _reject(
                    "proxies",
                    f"{label}={_fmt(score)} below the {q:.0%} quantile {_fmt(cut)} of "
                    f"{len(seen)} seen (keep_top={c.keep_top:g})",
                )
        return None

    def _scores(self, result0: EvalResult) -> tuple[float | None, list[float], str]:
        """``(score of the candidate, scores of the scored history rows, label)``."""
        c = self.config
        names = self.proxy_names
        if c.prefilter not in _RELATIVE:
            name = c.prefilter
            assert name is not None
            sign = -1.0 if c.directions.get(name, 1.0) < 0 else 1.0
            seen = [sign * v for r in self.history if (v := r.proxies.get(name)) is not None]
            value = result0.proxies.get(name)
            return (None if value is None else sign * value), seen, f"proxy {name}"
        rows = [r.proxies for r in self.history if any(r.proxies.get(n) is not None for n in names)]
        mine = dict(result0.proxies)
        if not any(mine.get(n) is not None for n in names):
            return None, [], f"{c.prefilter} of {len(names)} proxies"
        if c.prefilter == "ranker" and self._ranker is not None and self._ranker.fitted:
            preds = self._ranker.predict([*rows, mine])
            return preds[-1], preds[:-1], "ranker predicted accuracy"
        ranks = rank_average([*rows, mine], names, directions=c.directions)
        n = len(ranks)
        scaled = [(r - 1.0) / (n - 1) if n > 1 else 0.5 for r in ranks]
        return scaled[-1], scaled[:-1], f"ensemble rank of {len(names)} proxies"

    def _trained_rows(self) -> list[HistoryRow]:
        return [r for r in self.history if r.val_accuracy is not None and r.proxies]

    def _maybe_refit(self) -> None:
        c = self.config
        trained = self._trained_rows()
        n = len(trained)
        due = n >= c.ranker_min_examples and (
            self._fitted_at == 0 or n - self._fitted_at >= c.ranker_refit_every
        )
        if due:
            self._fit(trained)

    def _fit(self, trained: list[HistoryRow]) -> None:
        ranker = OnlineRanker(
            seed=self.seed, names=self.proxy_names, min_examples=self.config.ranker_min_examples
        )
        ranker.fit([r.proxies for r in trained], [r.val_accuracy for r in trained])
        self._ranker, self._fitted_at = ranker, len(trained)


def _reject(stage: str, message: str) -> Failure:
    return Failure(kind=FailureKind.REJECTED, message=message, stage=stage)
