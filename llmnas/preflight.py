"""Check a run's settings before anything is created: one line per problem, never a traceback.

:func:`preflight` validates what :class:`~llmnas.config.RunConfig` keeps as open tables or
checks only in the module that uses it: ``[cascade]`` against
:class:`~llmnas.cascade.CascadeConfig`, ``[strategy_options]`` against the chosen strategy's
typed options (:data:`STRATEGY_OPTIONS`; DARTS checks its own), the search space those options
name, and the archive layout (by building it). A problem raises :class:`PreflightError` whose
message names the key, what was expected and what was given; the CLI turns it into exit code
2, and no run folder is made.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmnas.config import RunConfig

__all__ = ["STRATEGY_OPTIONS", "PreflightError", "preflight"]


class PreflightError(ValueError):
    """A setting that cannot work; the message is one line."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SpaceOptions(_Options):
    space: Literal["cell", "chain"] = "cell"
    space_options: dict[str, Any] = Field(default_factory=dict)


class RandomOptions(_SpaceOptions):
    unique: bool = True


class RegevoOptions(_SpaceOptions):
    population_size: int = Field(10, ge=1)
    sample_size: int = Field(3, ge=1)


class LLMOptions(_Options):
    space: Literal["cell", "chain"] | None = None  # set: space prompts over this space
    space_options: dict[str, Any] = Field(default_factory=dict)


STRATEGY_OPTIONS: dict[str, type[_Options]] = {
    "random": RandomOptions,
    "regevo": RegevoOptions,
    "llm": LLMOptions,
    "ast": _Options,
}
"""The typed ``[strategy_options]`` of each strategy (``darts`` checks its own keywords)."""


def _line(table: str, exc: ValidationError, model: type[BaseModel]) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        known = ", ".join(model.model_fields) or "none"
        return f"config {table}.{where}: unknown key; expected some of: {known}"
    return f"config {table}.{where}: {first['msg']} (given {first.get('input')!r})"


def preflight(config: RunConfig, strategy: str, task: Any) -> None:
    """Raise :class:`PreflightError` for the first setting of ``config`` that cannot work."""
    from llmnas.archive import ArchiveError
    from llmnas.cascade import CascadeConfig
    from llmnas.islands import make_archive
    from llmnas.spaces import make_space

    try:
        CascadeConfig.model_validate(config.cascade)
    except ValidationError as exc:
        raise PreflightError(_line("cascade", exc, CascadeConfig)) from None
    model = STRATEGY_OPTIONS.get(strategy)
    if model is not None:
        try:
            options = model.model_validate(config.strategy_options)
        except ValidationError as exc:
            raise PreflightError(
                _line("strategy_options", exc, model).replace(
                    "unknown key;", f"unknown key for strategy {strategy};"
                )
            ) from None
        kind = getattr(options, "space", None)
        if kind is not None and not task.tabular:
            try:
                make_space(kind, task.input_shape, task.num_classes, **options.space_options)
            except (TypeError, ValueError) as exc:
                raise PreflightError(f"config strategy_options.space_options: {exc}") from None
    try:
        make_archive(config.archive)
    except (ArchiveError, ValueError) as exc:
        raise PreflightError(f"config archive: {exc}") from None
    _executor(config)


def _executor(config: RunConfig) -> None:
    """Ray installed when asked for, and devices that Ray can give."""
    from llmnas.executors.base import RAY_MISSING

    ex = config.executor
    if ex.kind != "ray":
        if ex.num_gpus_per_worker > 0:
            raise PreflightError(
                'config executor.num_gpus_per_worker: applies to kind = "ray" only '
                "(the local pool uses --device)"
            )
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise PreflightError(RAY_MISSING) from None
    if config.device.startswith("cuda:"):
        raise PreflightError(
            f"config device: Ray chooses each worker's GPU; expected cpu, cuda or auto with "
            f"the ray executor, got {config.device!r}"
        )
    if config.device.startswith("cuda") and ex.num_gpus_per_worker <= 0:
        raise PreflightError(
            "config executor.num_gpus_per_worker: expected > 0 for device cuda with the ray "
            "executor (e.g. 1, or 0.5 for two workers per GPU)"
        )
