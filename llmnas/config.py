"""Run configuration: one frozen pydantic model, loadable from TOML, overridable from the CLI.

Precedence: defaults < ``--config FILE.toml`` < command-line options. The resolved config is
stored in the run's store, and ``llmnas resume`` rebuilds the run from it. Every field is
used somewhere; unknown keys in a TOML file are an error (a typo must not be silently ignored).

Example ``run.toml``::

    task = "mnist1d"
    strategy = "ast"
    budget = 50
    seed = 0
    workers = 2

    [archive]
    descriptors = ["log10_params", "log10_flops"]
    selection = "tournament"

    [cascade]            # see llmnas/cascade.py
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmnas.archive_config import ArchiveConfig

__all__ = [
    "ConfigError",
    "EvolutionSettings",
    "ExecutorSettings",
    "LLMSettings",
    "RepeatSettings",
    "RunConfig",
    "load_config",
]

STRATEGIES = ("auto", "llm", "ast", "random", "regevo", "darts")
MOVED_TO_EVOLUTION = {"crossover_rate", "fix_rate", "parents"}
"""Keys that lived under ``[llm]`` before they moved to ``[evolution]``."""


class ConfigError(ValueError):
    """A configuration problem; the message is one line."""


class LLMSettings(BaseModel):
    """The language model used by the ``llm`` strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str | None = None
    url: str | None = None
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    max_tokens: int = Field(2048, ge=64)
    max_concurrency: int = Field(2, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    patience_s: float = Field(
        600.0, ge=0, description="how long a run waits for an unavailable LLM before it stops"
    )
    max_cost: float | None = Field(None, gt=0)
    max_tokens_total: int | None = Field(None, gt=0)
    prompts: str | None = None


class EvolutionSettings(BaseModel):
    """What code evolution optimises and what its prompts carry (``llm`` and ``ast``).

    Accuracy is always the first objective; ``objectives`` lists the second ones, kept on the
    Pareto front and named in prompts as "at equal accuracy, fewer is better" (never a cap).
    ``max_params``/``max_flops`` are hard budgets: stated in prompts and enforced by the
    cascade's limits (over-budget programs are rejected without training).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    objectives: list[Literal["params", "flops", "latency_ms"]] = Field(
        default_factory=lambda: ["params"]
    )
    max_params: int | None = Field(None, ge=1)
    max_flops: int | None = Field(None, ge=1)
    memory: int = Field(8, ge=0, description="recent attempts shown in each prompt")
    prompt_tokens: int = Field(
        6000, ge=500, description="prompt size budget (estimated as characters / 4)"
    )
    niche_rate: float = Field(0.25, ge=0.0, le=1.0, description="mutations aimed at a niche")
    crossover_rate: float = Field(0.2, ge=0.0, le=1.0, description="share of crossover requests")
    fix_rate: float = Field(
        0.3, ge=0.0, le=1.0, description="chance to repair a recent failure (llm only)"
    )
    parents: int = Field(2, ge=1, le=8, description="parents per mutation request")
    prompt_style: Literal["auto", "code", "space"] = Field(
        "auto",
        description="LLM prompts show the program (code) or the search space's notation "
        "(space); auto: space for tabular tasks and with strategy_options.space, else code",
    )


class RepeatSettings(BaseModel):
    """Repeated training of the best candidates with other training seeds, after the search.

    The ``top_k`` most accurate candidates (single run), plus the accuracy/params Pareto front
    when ``pareto`` is set, are trained ``seeds - 1`` more times (training seeds recipe.seed + 1,
    + 2, ...); the incumbent is then the best mean. ``top_k = 0`` turns repeats off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: int = Field(1, ge=0)
    seeds: int = Field(3, ge=2, description="trainings per repeated candidate, the first included")
    pareto: bool = False


class ExecutorSettings(BaseModel):
    """Where candidates are evaluated: the local sandbox pool, or sandbox pools in Ray actors.

    With ``kind = "ray"`` each actor holds ``workers_per_node`` warm sandbox workers (default:
    the run's ``workers``); ``actors`` unset starts one actor per alive node. ``address`` is
    ``"auto"`` (a cluster started with ``ray start``), ``"ray://host:10001"`` (Ray Client) or
    unset (a local Ray started for the run). Each worker reserves ``threads_per_worker`` CPUs
    and ``num_gpus_per_worker`` GPUs (fractions share a device).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    workers_per_node: int | None = Field(None, ge=1)
    actors: int | None = Field(None, ge=1, description="Ray actors; unset: one per alive node")
    threads_per_worker: int = Field(1, ge=1)
    num_gpus_per_worker: float = Field(0.0, ge=0.0)


class RunConfig(BaseModel):
    """Everything a run needs; stored with the run so it can be resumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = "mnist1d"
    strategy: Literal["auto", "llm", "ast", "random", "regevo", "darts"] = "auto"
    budget: int = Field(50, ge=1, description="candidates to record, whatever their fate")
    seed: int = 0
    out: str | None = None
    epochs: int | None = Field(None, ge=0, description="training epochs (default: task recipe)")
    workers: int = Field(1, ge=1)
    device: str = "cpu"
    timeout_s: float = Field(600.0, gt=0)
    memory_mb: int = Field(4096, gt=0)
    wall_time_s: float | None = Field(None, gt=0)
    proxies: list[str] = Field(default_factory=list, description="proxies recorded per candidate")
    proposal_queue: int = Field(2, ge=1, description="proposals prepared ahead per worker")
    sequential: bool = Field(
        False,
        description="ask only when nothing is in flight: reproducible, workers idle meanwhile",
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    repeats: RepeatSettings = Field(default_factory=RepeatSettings)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    cascade: dict[str, Any] = Field(default_factory=dict)
    strategy_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """Configs written before these keys moved from ``[llm]`` to ``[evolution]`` still load."""
        llm = data.get("llm") if isinstance(data, dict) else None
        if isinstance(llm, dict) and MOVED_TO_EVOLUTION & set(llm):
            llm = dict(llm)
            evolution = dict(data.get("evolution") or {})
            for key in MOVED_TO_EVOLUTION & set(llm):
                evolution.setdefault(key, llm.pop(key))
            data = {**data, "llm": llm, "evolution": evolution}
        return data

    def with_overrides(self, **overrides: Any) -> RunConfig:
        """A copy with the given (non-None) fields replaced and validated."""
        data = self.model_dump()
        for key, value in overrides.items():
            if value is None:
                continue
            if key.startswith("llm_"):
                data["llm"][key[4:]] = value
            elif key.startswith("executor_"):
                data["executor"][key[9:]] = value
            else:
                data[key] = value
        return validated(data)


def validated(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"config {where}: {first['msg']}") from None


def load_config(path: str | Path | None) -> RunConfig:
    """Defaults, or the TOML file at ``path``; :class:`ConfigError` on any problem."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return validated(data)
