"""DARTS (Liu et al., ICLR 2019) as an ask/tell strategy over the NB201 cell space.

The first ``ask`` trains the supernet of :mod:`llmnas.strategies.darts_supernet` in the host
process (trusted code: no candidate program is run) and proposes the discretised cell rendered
by the space, with ``operator="darts"``.

Search protocol
    * Data: the task's **training split only**, cut in two halves by a seeded permutation
      (:func:`search_split`): network weights train on one half, the architecture weights
      ``alpha`` on the other. The task's validation and test labels are never touched.
    * Weights: SGD, lr 0.025 cosine-annealed per step to 0.001, momentum 0.9, weight decay
      3e-4, gradient norm clipped at 5. ``alpha`` (shape ``(6, 5)``, shared by all cells,
      initialised to ``1e-3 * N(0, 1)``): Adam, lr 3e-4, betas (0.5, 0.999), weight decay
      1e-3. Each step updates ``alpha`` on a validation batch, then the weights on a training
      batch. ``order="first"`` uses the gradient at the current weights; ``order="second"``
      the unrolled gradient with a finite-difference Hessian-vector product.
    * ``time_budget_s`` stops the search after the step that exceeds it (the partial epoch is
      recorded in the history, ``stopped`` says why).

Discretisation (``none`` handling)
    As in the paper, ``none`` takes part in the softmax during the search but is never chosen:
    each edge gets its strongest op among the four others. Proposal ``k`` is the ``k``-th best
    discretisation, ranking every choice of non-``none`` ops by the summed log-softmax of the
    chosen ops (:func:`ranked_genotypes`): proposal 0 is the per-edge argmax, proposal 1
    swaps in the second-best op on the least certain edge, and so on. Genotypes already
    proposed or told are skipped. After ``max_proposals`` proposals ``ask`` raises
    :class:`~llmnas.strategies.base.Exhausted`.

Anti-collapse (``anti_collapse``, DARTS' failure mode is cells full of ``skip_connect``)
    * ``"none"``: plain DARTS.
    * ``"skip_guard"`` (default; DARTS+-style early stopping): after every epoch, if
      ``skip_connect`` is the discretised op on ``skip_limit`` (default 3) or more of the 6
      edges, the guard fires and the search stops. The genotypes are then derived from the
      ``alpha`` of the last epoch that passed the check (the current ``alpha`` if none did),
      and every proposal is the best-ranked discretisation with fewer than ``skip_limit``
      skip edges.
    * ``"aux_skip"`` (DARTS-): every edge adds an auxiliary ``beta * x`` skip whose
      coefficient decays linearly per step from 1 to 0 over the search, so ``alpha`` need
      not favour ``skip_connect`` to keep gradients flowing.
    * ``"skip_guard+aux_skip"``: both.

Meta of every proposal: ``genotype`` (NB201 string), ``space``, ``rank``, ``alpha`` (final
logits used for the ranking), ``alpha_history`` (softmax of ``alpha`` after every epoch; rows:
edges in NB201 string order; columns: :data:`~llmnas.nb201_cell.OPS`), ``search_seconds``,
``epochs_completed``, ``guard_fired``, ``stopped``, ``order``, ``anti_collapse``. Resume: told
stored DARTS candidates, the strategy adopts their ``alpha`` and does not search again.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from llmnas.nb201_cell import OPS, STRING_EDGES
from llmnas.records import Candidate, Proposal
from llmnas.spaces import CellSpace
from llmnas.strategies.base import Exhausted
from llmnas.strategies.darts_supernet import (
    Supernet,
    discretise,
    first_order_alpha_grad,
    ranked_genotypes,
    search_split,
    skip_count,
    skip_guard_fires,
    unrolled_alpha_grad,
)
from llmnas.tasks.base import Task

__all__ = ["ANTI_COLLAPSE", "DARTS", "SearchOutcome", "discretise", "make_darts",
           "ranked_genotypes", "search_split", "skip_count", "skip_guard_fires"]  # fmt: skip

ANTI_COLLAPSE = ("none", "skip_guard", "aux_skip", "skip_guard+aux_skip")


@dataclass
class SearchOutcome:
    """What a DARTS search produced."""

    alpha: list[list[float]]
    """Architecture logits the genotypes are derived from."""
    alpha_history: list[list[list[float]]] = field(default_factory=list)
    seconds: float = 0.0
    epochs_completed: int = 0
    guard_fired: bool = False
    stopped: str = "epochs done"


def _require_trainable(task: Task) -> None:
    if task.tabular:
        raise ValueError(
            f"DARTS needs a trainable task with training data; {task.name} is a lookup table, "
            "so no supernet can be trained on it"
        )


def _softmax_rows(alpha: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in F.softmax(alpha.detach(), -1)]


class DARTS:
    """Differentiable architecture search; implements :class:`llmnas.strategies.base.Strategy`.

    Keywords: ``task`` (a trainable task; a tabular one raises :class:`ValueError`),
    ``seed``, ``space`` (a :class:`CellSpace` for the task's input shape: its preset is the
    supernet's skeleton), ``epochs`` (default 50, the paper's count), ``order``
    (``"first"`` | ``"second"``), ``batch_size`` (64, as in the paper), ``anti_collapse``
    (:data:`ANTI_COLLAPSE`, see the module docstring) with ``skip_limit``,
    ``time_budget_s`` (search wall-time cap, default 420 s; ``None`` for none),
    ``max_proposals`` (default 1: the argmax cell), the optimiser settings ``w_lr``,
    ``w_lr_min``, ``w_momentum``, ``w_weight_decay``, ``alpha_lr``, ``alpha_weight_decay``,
    ``grad_clip``, ``threads`` (``torch.set_num_threads`` during the search, restored after;
    default 1: the supernet's tensors are small, so on MNIST-1D a second thread doubles the
    CPU time for no speed-up and slows ten-fold when the other core is busy; ``None`` keeps
    the process setting), ``device`` and ``alpha_init`` (starting logits,
    6 x 5; default ``1e-3 * N(0, 1)`` from the seed).
    """

    name = "darts"

    def __init__(
        self,
        *,
        task: Task,
        seed: int,
        space: CellSpace,
        epochs: int = 50,
        order: Literal["first", "second"] = "first",
        batch_size: int = 64,
        anti_collapse: str = "skip_guard",
        time_budget_s: float | None = 420.0,
        max_proposals: int = 1,
        skip_limit: int = 3,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        alpha_lr: float = 3e-4,
        alpha_weight_decay: float = 1e-3,
        grad_clip: float = 5.0,
        threads: int | None = 1,
        device: str = "cpu",
        alpha_init: Sequence[Sequence[float]] | None = None,
    ) -> None:
        _require_trainable(task)
        if not isinstance(space, CellSpace):
            raise ValueError(f"DARTS searches the cell space; got {type(space).__name__}")
        if tuple(space.input_shape) != tuple(task.input_shape):
            raise ValueError(
                f"space input shape {space.input_shape} != task input shape {task.input_shape}"
            )
        if order not in ("first", "second"):
            raise ValueError(f"DARTS order must be 'first' or 'second'; got {order!r}")
        if anti_collapse not in ANTI_COLLAPSE:
            raise ValueError(f"anti_collapse must be one of {ANTI_COLLAPSE}; got {anti_collapse!r}")
        if epochs < 1 or batch_size < 1 or max_proposals < 1 or skip_limit < 1:
            raise ValueError("epochs, batch_size, max_proposals and skip_limit must be >= 1")
        self.task, self.space, self.seed = task, space, int(seed)
        self.epochs, self.order, self.batch_size = int(epochs), order, int(batch_size)
        self.anti_collapse, self.skip_limit = anti_collapse, int(skip_limit)
        self.time_budget_s = None if time_budget_s is None else float(time_budget_s)
        self.max_proposals = int(max_proposals)
        self.w_lr, self.w_lr_min, self.w_momentum = w_lr, w_lr_min, w_momentum
        self.w_weight_decay, self.alpha_lr = w_weight_decay, alpha_lr
        self.alpha_weight_decay, self.grad_clip = alpha_weight_decay, grad_clip
        self.threads, self.device = threads, device
        self.alpha_init = None
        if alpha_init is not None:
            self.alpha_init = torch.as_tensor(np.asarray(alpha_init, dtype=np.float32))
            if tuple(self.alpha_init.shape) != (len(STRING_EDGES), len(OPS)):
                raise ValueError(f"alpha_init must be 6 x 5; got {tuple(self.alpha_init.shape)}")
        self.outcome: SearchOutcome | None = None
        self.split: tuple[np.ndarray, np.ndarray] | None = None
        """``(weights half, alpha half)`` indices into the training split, once searched."""
        self.results: list[tuple[str, float | None]] = []
        """``(genotype string, val_accuracy or None)`` of every told DARTS candidate."""
        self._proposed: set[str] = set()
        self._count = 0
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask a running search to stop after its current step (thread-safe); the genotype is
        then derived from the ``alpha`` reached so far."""
        self._cancel.set()

    # ------------------------------------------------------------------ ask / tell

    @property
    def guarded(self) -> bool:
        return "skip_guard" in self.anti_collapse

    def ask(self, n: int) -> list[Proposal]:
        if n <= 0:
            return []
        if self._count >= self.max_proposals:
            raise Exhausted("DARTS proposed its architecture(s)")
        if self.outcome is None:
            self.outcome = self.search()
        out = self.outcome
        limit = self.skip_limit if self.guarded else None
        want = min(int(n), self.max_proposals - self._count)
        ranked = ranked_genotypes(out.alpha, self.max_proposals + len(self._proposed), limit)
        fresh = [g for g in ranked if g.to_arch_str() not in self._proposed][:want]
        if not fresh:
            raise Exhausted("DARTS proposed its architecture(s)")
        proposals = []
        for genotype in fresh:
            arch = self.space.encode(genotype)
            self._proposed.add(arch)
            meta: dict[str, Any] = {
                "genotype": arch,
                "space": self.space.name,
                "origin": "darts",
                "rank": self._count,
                "alpha": out.alpha,
                "alpha_history": out.alpha_history,
                "alpha_ops": list(OPS),
                "alpha_edges": [f"{s}->{t}" for s, t in STRING_EDGES],
                "search_seconds": round(out.seconds, 3),
                "epochs_completed": out.epochs_completed,
                "guard_fired": out.guard_fired,
                "stopped": out.stopped,
                "order": self.order,
                "anti_collapse": self.anti_collapse,
            }
            self._count += 1
            proposals.append(
                Proposal(source=self.space.render(genotype), operator=self.name, meta=meta)
            )
        return proposals

    def tell(self, candidates: Sequence[Candidate]) -> None:
        for candidate in candidates:
            if candidate.operator != self.name:
                continue
            meta = candidate.meta or {}
            arch = meta.get("genotype") or ""
            if arch not in self._proposed:
                self._proposed.add(arch)
                self._count += 1
            if self.outcome is None and "alpha" in meta:  # resume: adopt the stored search
                self.outcome = SearchOutcome(
                    alpha=meta["alpha"],
                    alpha_history=meta.get("alpha_history", []),
                    seconds=float(meta.get("search_seconds", 0.0)),
                    epochs_completed=int(meta.get("epochs_completed", 0)),
                    guard_fired=bool(meta.get("guard_fired", False)),
                    stopped=str(meta.get("stopped", "restored")),
                )
            accuracy = candidate.val_accuracy if candidate.result.ok else None
            self.results.append((arch, accuracy))

    # ------------------------------------------------------------------ search

    def search(self) -> SearchOutcome:
        """Train the supernet (seeded; global RNG state restored) and return the outcome."""
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, 1]).generate_state(1)[0]))
                return self._search()
        finally:
            torch.set_num_threads(threads)

    def _search(self) -> SearchOutcome:
        start = time.monotonic()
        train = self.task.load().train  # the training split only; never val/test labels
        self.split = search_split(len(train.x), self.seed)
        dev = torch.device(self.device)
        halves = [
            (torch.as_tensor(train.x[idx]).to(dev), torch.as_tensor(train.y[idx]).to(dev))
            for idx in self.split
        ]
        gen = torch.Generator().manual_seed(self.seed)
        alpha0 = 1e-3 * torch.randn(len(STRING_EDGES), len(OPS), generator=gen)
        if self.alpha_init is not None:
            alpha0 = self.alpha_init.clone()
        net = Supernet(self.space.preset, self.space.input_shape, self.space.num_classes, alpha0)
        net.to(dev).train()
        weights = net.weights()
        w_opt = torch.optim.SGD(
            weights, lr=self.w_lr, momentum=self.w_momentum, weight_decay=self.w_weight_decay
        )
        a_opt = torch.optim.Adam(
            [net.alpha], self.alpha_lr, betas=(0.5, 0.999), weight_decay=self.alpha_weight_decay
        )
        steps = max(1, min(len(h[0]) for h in halves) // self.batch_size)
        total, step = self.epochs * steps, 0
        aux = "aux_skip" in self.anti_collapse
        out = SearchOutcome(alpha=[])
        passed: torch.Tensor | None = None  # alpha at the last epoch end the guard passed
        for epoch in range(self.epochs):
            perms = [torch.randperm(len(h[0]), generator=gen) for h in halves]
            over, done = False, 0
            while done < steps and not over:
                lr = self.w_lr_min + 0.5 * (self.w_lr - self.w_lr_min) * (
                    1 + math.cos(math.pi * step / total)
                )
                for group in w_opt.param_groups:
                    group["lr"] = lr
                net.beta = 1.0 - step / total if aux else 0.0
                rows = slice(done * self.batch_size, (done + 1) * self.batch_size)
                batch_w, batch_a = (
                    (x[p[rows].to(dev)], y[p[rows].to(dev)])
                    for (x, y), p in zip(halves, perms, strict=True)
                )
                self._alpha_step(net, a_opt, w_opt, batch_w, batch_a, lr)
                w_opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(batch_w[0]), batch_w[1]).backward()
                net.alpha.grad = None
                torch.nn.utils.clip_grad_norm_(weights, self.grad_clip)
                w_opt.step()
                step, done = step + 1, done + 1
                budget = self.time_budget_s
                over = budget is not None and time.monotonic() - start > budget
                if self._cancel.is_set():
                    out.stopped, over = f"cancelled in epoch {epoch + 1}", True
            out.alpha_history.append(_softmax_rows(net.alpha))
            if done == steps:
                out.epochs_completed = epoch + 1
                if self.guarded and skip_guard_fires(net.alpha.detach(), self.skip_limit):
                    out.guard_fired = True
                    out.stopped = f"skip guard fired after epoch {epoch + 1}"
                    break
                passed = net.alpha.detach().clone()
            if self._cancel.is_set():
                break
            if over and epoch < self.epochs - 1:
                out.stopped = (
                    f"time budget of {self.time_budget_s:g} s reached in epoch {epoch + 1}"
                )
                break
        final = passed if out.guard_fired and passed is not None else net.alpha.detach()
        out.alpha = [[float(v) for v in row] for row in final.cpu()]
        out.seconds = time.monotonic() - start
        return out

    def _alpha_step(self, net, a_opt, w_opt, batch_w, batch_a, lr: float) -> None:
        a_opt.zero_grad(set_to_none=True)
        if self.order == "first":
            grad = first_order_alpha_grad(net, F.cross_entropy, *batch_a)
        else:
            buffers = [w_opt.state.get(p, {}).get("momentum_buffer") for p in net.weights()]
            grad = unrolled_alpha_grad(
                net,
                F.cross_entropy,
                batch_w,
                batch_a,
                lr=lr,
                momentum=self.w_momentum,
                weight_decay=self.w_weight_decay,
                momentum_buffers=buffers,
            )
        net.alpha.grad = grad
        a_opt.step()


def make_darts(config: Any, task: Task, seed: int) -> DARTS:
    """Build :class:`DARTS` from a :class:`~llmnas.config.RunConfig`.

    ``config.strategy_options`` may hold any :class:`DARTS` keyword (``epochs``, ``order``,
    ``batch_size``, ``anti_collapse``, ``time_budget_s``, ``max_proposals``, ...) plus
    ``preset`` (cell preset; default as :func:`llmnas.spaces.make_space`). The device is the
    run's ``device`` (``auto`` resolved). Raises :class:`ValueError` (one line) for a tabular
    task or an unknown option.
    """
    from llmnas.devices import resolve_device
    from llmnas.spaces import make_space

    _require_trainable(task)
    opts = dict(config.strategy_options)
    preset = opts.pop("preset", None)
    space = make_space("cell", task.input_shape, task.num_classes, preset=preset)
    known = set(inspect.signature(DARTS).parameters) - {"task", "seed", "space"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(
            f"unknown DARTS strategy_options {unknown}; expected some of {sorted(known)}"
        )
    opts.setdefault("device", resolve_device(config.device))
    return DARTS(task=task, seed=seed, space=space, **opts)
