"""Assemble a run from its config: task, evaluator, strategy, store, archive, cascade, loop.

``start_run`` creates ``archive/<name>/`` and runs; ``resume_run`` reopens it with the config
that was stored and continues. Both return the loop's statistics. User-facing problems raise
:class:`RunError` (one line); the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmnas.archive_config import ArchiveConfig
from llmnas.config import RunConfig, validated
from llmnas.descriptors import seed_ranges
from llmnas.devices import resolve_device
from llmnas.evaluator import EvalSettings, Evaluator
from llmnas.executors import ExecutorError
from llmnas.islands import make_archive
from llmnas.loop import CallQueue, LoopStats, RunLoop
from llmnas.pipeline import CandidatePipeline
from llmnas.preflight import PreflightError, preflight
from llmnas.store import RunStore, StoreError
from llmnas.tasks import Task, TaskError, get_task

__all__ = ["RunError", "Run", "choose_strategy", "resume_run", "start_run"]


class RunError(Exception):
    """A run cannot start (bad config, unknown task, LLM misconfigured); one line."""


@dataclass
class Run:
    config: RunConfig
    store: RunStore
    loop: RunLoop
    evaluator: Evaluator
    strategy_name: str
    llm_spec: str | None
    on_repeat: Callable[[int, int], None] | None = None


def choose_strategy(config: RunConfig) -> tuple[str, str | None, str]:
    """The concrete strategy, the LLM spec (if any) and a one-line explanation."""
    spec = config.llm.spec
    if config.strategy != "auto":
        if config.strategy == "llm" and spec is None:
            spec = _spec_from_env()
            if spec is None:
                raise RunError(
                    "--strategy llm needs --llm SPEC (or OPENAI_BASE_URL/OPENAI_API_KEY)"
                )
        return config.strategy, spec if config.strategy == "llm" else None, ""
    if spec is None:
        spec = _spec_from_env()
    if spec is not None:
        return "llm", spec, f"strategy auto: using the LLM operator ({spec})"
    return "ast", None, "strategy auto: no LLM configured, using the AST operator"


def _spec_from_env() -> str | None:
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        return "openai:" + os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    return None


def _strategy(
    name: str, spec: str | None, config: RunConfig, task: Task, archive, calls, seed, store
):
    opts = dict(config.strategy_options)
    if name == "darts":
        from llmnas.strategies.darts import make_darts

        try:
            return make_darts(config, task, seed)
        except ValueError as exc:
            raise RunError(str(exc)) from None
    if name in ("random", "regevo"):
        from llmnas.spaces import make_space, space_of
        from llmnas.strategies.random_search import RandomSearch
        from llmnas.strategies.regevo import RegularizedEvolution

        kind = opts.pop("space", "cell")
        space = (
            space_of(task)
            if task.tabular
            else make_space(
                kind, task.input_shape, task.num_classes, **opts.pop("space_options", {})
            )
        )
        if name == "random":
            return RandomSearch(space=space, seed=seed, **opts)
        return RegularizedEvolution(space=space, seed=seed, **opts)
    from llmnas.operators.code_ops import ASTOperator, LLMOperator
    from llmnas.strategies.evolution import EvolutionStrategy

    if name == "ast":
        operator: Any = ASTOperator(input_shape=task.input_shape)
    elif name == "llm":
        from llmnas.llm import Budget, LLMConfigError, make_llm

        budget = Budget(max_tokens=config.llm.max_tokens_total, max_cost=config.llm.max_cost)
        try:
            llm = make_llm(
                spec or "", url=config.llm.url, device=resolve_device(config.device),
                recorder=calls, max_concurrency=config.llm.max_concurrency,
                timeout_s=config.llm.timeout_s, max_retries=config.llm.max_retries, seed=seed,
                budget=budget,
            )  # fmt: skip
        except LLMConfigError as exc:
            raise RunError(str(exc)) from None
        from llmnas.task_facts import task_facts

        sent = {c["prompt_sha256"] for c in store.llm_calls() if c["prompt_sha256"]}
        if _space_style(config, task):
            return _space_strategy(config, task, archive, llm, seed, sent)
        if getattr(task, "blind", False):
            raise RunError(f"task {task.name} is blind: it takes space prompts only "
                           "([evolution] prompt_style = \"space\" or \"auto\")")  # fmt: skip
        operator = LLMOperator(
            llm=llm, task=task, settings=config.llm, seed=seed, evolution=config.evolution,
            facts=task_facts(task, config.epochs), sent=sent,
        )  # fmt: skip
    else:
        raise RunError(
            f"strategy {name!r} is not available; expected auto, llm, ast, random, regevo or darts"
        )
    return EvolutionStrategy(
        operator=operator,
        archive=archive,
        seeds=task.seed_programs(),
        seed=seed,
        parents=config.evolution.parents,
        crossover_rate=config.evolution.crossover_rate,
        fix_rate=config.evolution.fix_rate,
        niche_rate=config.evolution.niche_rate if name == "llm" else 0.0,
        memory=config.evolution.memory if name == "llm" else 0,
    )


def _space_style(config: RunConfig, task: Task) -> bool:
    style = config.evolution.prompt_style
    if style == "auto":
        return bool(task.tabular or "space" in config.strategy_options)
    return style == "space"


SPACE_SEEDS = 4
"""Random architectures that start a space-prompted run on a trained task."""


def _space_strategy(config: RunConfig, task: Task, archive, llm, seed: int, sent: set[str]):
    """The ``llm`` strategy with space prompts (:mod:`llmnas.operators.space_ops`)."""
    import random

    from llmnas.operators.space_ops import SpaceLLMOperator
    from llmnas.spaces import make_space, space_of
    from llmnas.spaces.text import space_text
    from llmnas.strategies.evolution import EvolutionStrategy
    from llmnas.task_facts import task_facts

    opts = dict(config.strategy_options)
    try:
        if task.tabular:
            space, seeds = space_of(task), task.seed_programs()
        else:
            space = make_space(opts.pop("space", "cell"), task.input_shape, task.num_classes,
                               **opts.pop("space_options", {}))  # fmt: skip
            rng = random.Random(seed)
            seeds = {f"sample{i}": space.render(space.sample(rng)) for i in range(SPACE_SEEDS)}
        text = space_text(space, blind_seed=seed if getattr(task, "blind", False) else None)
    except (ValueError, TypeError) as exc:
        raise RunError(f"space prompts: {exc}") from None
    operator = SpaceLLMOperator(
        llm=llm, task=task, text=text, settings=config.llm, evolution=config.evolution,
        facts=None if task.tabular else task_facts(task, config.epochs), sent=sent,
    )  # fmt: skip
    return EvolutionStrategy(
        operator=operator, archive=archive, seeds=seeds, seed=seed,
        parents=config.evolution.parents, crossover_rate=config.evolution.crossover_rate,
        memory=max(config.budget, config.evolution.memory, 1),  # the prompt lists every result
        seeds_in_history=True,
    )  # fmt: skip


def archive_layout(config: RunConfig, task: Task, evaluator: Evaluator, store: RunStore):
    """The run's archive config: ``log10_*`` ranges the user did not set come from the task's
    seed programs (their params and FLOPs, measured once with ``--epochs 0``, widened by
    :data:`~llmnas.descriptors.SEED_RANGE_FACTOR`). Kept in the store's state, so a resumed
    run and ``llmnas archive`` rebuild the same map."""
    stored = store.get_state("archive")
    if stored is not None:
        return ArchiveConfig.model_validate(stored)
    layout = config.archive
    names = [n for n in layout.descriptors if n.startswith("log10_") and n not in layout.ranges]
    seeds = {} if task.tabular or not names else task.seed_programs()
    if seeds:
        probe = EvalSettings(epochs=0, timeout_s=config.timeout_s, memory_mb=config.memory_mb)
        results = evaluator.evaluate_many(list(seeds.values()), probe)
        derived = seed_ranges(names, [r.metrics for r in results if r.ok])
        layout = layout.model_copy(update={"ranges": {**derived, **layout.ranges}})
    store.set_state("archive", layout.model_dump(mode="json"))
    return layout


def _evaluator(config: RunConfig, task: Task) -> Evaluator:
    """The run's evaluator; a local pool's workers start booting now and are waited for at
    their first job (so a run's own imports and checks overlap their start-up)."""
    try:
        evaluator = Evaluator(task, workers=config.workers, device=config.device,
                              executor=config.executor)  # fmt: skip
    except (ExecutorError, TaskError) as exc:  # TaskError: the task's data cannot be loaded
        raise RunError(str(exc)) from None
    from llmnas.proxies import parse_proxy_selection  # imports torch: after the spawn

    try:
        proxies = tuple(parse_proxy_selection(",".join(config.proxies) or "none"))
    except ValueError as exc:
        evaluator.close()
        raise RunError(f"config proxies: {exc}") from None
    evaluator.settings = EvalSettings(epochs=config.epochs, timeout_s=config.timeout_s,
                                      memory_mb=config.memory_mb, proxies=proxies)  # fmt: skip
    return evaluator


def _build(
    config: RunConfig, store: RunStore, on_progress, evaluator: Evaluator | None = None
) -> Run:
    if evaluator is None:
        try:
            task = get_task(config.task)
        except TaskError as exc:
            raise RunError(str(exc)) from None
        evaluator = _evaluator(config, task)
    task, settings = evaluator.task, evaluator.settings
    name, spec, _ = choose_strategy(config)
    try:
        archive = make_archive(archive_layout(config, task, evaluator, store))
        calls = CallQueue()
        # a resumed run continues with fresh randomness: the seed mixes in the committed count
        count = store.count()
        seed = config.seed if count == 0 else int(
            np.random.SeedSequence([config.seed, count]).generate_state(1)[0])  # fmt: skip
        strategy = _strategy(name, spec, config, task, archive, calls, seed, store)
    except BaseException:
        evaluator.close()
        raise
    cascade = None
    evo = config.evolution
    limits = {k: v for k, v in (("max_params", evo.max_params), ("max_flops", evo.max_flops))
              if v is not None}  # fmt: skip
    if config.cascade or limits:
        from llmnas.cascade import Cascade, CascadeConfig

        merged = {**config.cascade}
        for key, value in limits.items():  # a hard budget tightens any limit already set
            merged[key] = min(value, merged.get(key) or value)
        cascade = Cascade(config=CascadeConfig.model_validate(merged), seed=config.seed)
    pipeline = CandidatePipeline(
        evaluator=evaluator, settings=settings, cascade=cascade, find_hash=store.find_hash
    )
    loop = RunLoop(
        strategy=strategy,
        store=store,
        archive=archive,
        pipeline=pipeline,
        budget=config.budget,
        workers=evaluator.workers,
        calls=calls,
        wall_time_s=config.wall_time_s,
        queue_per_worker=config.proposal_queue,
        sequential=config.sequential,
        llm_patience_s=config.llm.patience_s,
        on_progress=on_progress,
    )
    return Run(config, store, loop, evaluator, name, spec)


def _execute(run: Run) -> LoopStats:
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum, frame):  # first Ctrl-C: stop gracefully; second: default
        run.loop.stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, interrupt)
    # what readers such as `llmnas ui` show; a killed run leaves "running" behind, so they also
    # check the process (same host) or how recently the store was written
    life = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    run.store.set_state("lifecycle", {**life, "status": "running"})
    reason = "stopped by an error"
    try:
        stats = run.loop.run()
        if stats.stopped.startswith("budget") and run.config.repeats.top_k > 0:
            _repeat(run)
        reason = stats.stopped
        return stats
    finally:
        run.store.set_state("lifecycle", {**life, "status": "stopped", "reason": reason})
        signal.signal(signal.SIGINT, previous)
        run.evaluator.close()
        run.store.close()


def _repeat(run: Run) -> None:
    """Train the best candidates again with other seeds (see :mod:`llmnas.repeats`)."""
    from llmnas.repeats import run_repeats

    if run.evaluator.task.tabular:  # a table answers the same for every training seed
        return
    cfg, base = run.config.repeats, run.evaluator.task.recipe.seed
    run_repeats(
        run.store,
        run.evaluator,
        run.loop.pipeline.settings,
        top_k=cfg.top_k,
        seeds=cfg.seeds,
        pareto=cfg.pareto,
        base_seed=base,
        on_progress=run.on_repeat,
        should_stop=run.loop._stop.is_set,
    )


def start_run(
    config: RunConfig, on_ready: Callable[[Run, str], None] | None = None, on_progress=None
) -> LoopStats:
    if config.out is None:
        raise RunError("--out archive/NAME is required")
    name, spec, why = choose_strategy(config)
    try:
        task = get_task(config.task)  # fail on a bad task or setting before anything is made
    except TaskError as exc:
        raise RunError(str(exc)) from None
    # a local pool boots while the checks below import what they need; Ray starts after them
    early = _evaluator(config, task) if config.executor.kind == "local" else None
    out_dir = Path(config.out)
    existed, store = out_dir.exists(), None
    try:
        try:
            preflight(config, name, task)
        except PreflightError as exc:
            raise RunError(str(exc)) from None
        llm = {**config.llm.model_dump(), "spec": spec}
        resolved = validated({**config.model_dump(), "strategy": name, "llm": llm})
        try:
            store = RunStore.create(out_dir, config=resolved.model_dump(mode="json"),
                                    seeds={"seed": config.seed})  # fmt: skip
        except StoreError as exc:
            raise RunError(str(exc)) from None
        run = _build(resolved, store, on_progress, early)
    except BaseException:
        if early is not None:
            early.close()
        if store is not None:
            store.close()
            if not existed:  # nothing ran: leave no half-made run folder behind
                import shutil

                shutil.rmtree(out_dir, ignore_errors=True)
        raise
    if on_ready:
        on_ready(run, why)
    return _execute(run)


def resume_run(run_dir: str | Path, on_ready=None, on_progress=None) -> LoopStats:
    try:
        store = RunStore.open(Path(run_dir))
        config = validated(store.config())
    except StoreError as exc:
        raise RunError(str(exc)) from None
    try:
        run = _build(config, store, on_progress)
    except BaseException:
        store.close()
        raise
    if on_ready:
        on_ready(
            run,
            f"resuming {run_dir}: {store.count()} candidates committed, "
            f"{len(store.pending())} pending",
        )
    return _execute(run)
