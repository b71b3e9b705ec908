"""Zero-cost proxies, computed inside the sandbox child on one fixed training batch.

Entry point: :func:`compute_proxies`. Every proxy gets a fresh model built by the caller's
factory under ``torch.manual_seed(seed)`` (proxies re-initialise weights, flip signs, switch
modes), runs on the batch ``(x, y)`` chosen by the caller, and is timed. Candidate faults never
raise: an undefined or failing proxy, or a non-finite value, becomes ``None`` with a short reason.

The proxies, in :data:`ALL_PROXIES` order (definitions in the modules' docstrings):

=============  ===============================================  ==========================
name           what                                             module
=============  ===============================================  ==========================
``params``     number of parameters                             :mod:`.static`
``flops``      FLOPs of one example (``FlopCounterMode``)       :mod:`.static`
``grad_norm``  ``sum_l ||dL/dW_l||``                            :mod:`.gradient`
``snip``       ``sum |W * dL/dW|``                              :mod:`.gradient`
``grasp``      ``sum -W * (H g)``                               :mod:`.gradient`
``fisher``     per-channel ``0.5 mean_n (sum a * dL/da)^2``     :mod:`.gradient`
``synflow``    ``sum |W * dR/dW|``, ``R`` the all-ones flow     :mod:`.gradient`
``jacob_cov``  input-Jacobian correlation spectrum              :mod:`.activation`
``naswot``     log-det of the ReLU-code kernel                  :mod:`.activation`
``zen``        Zen-score: Gaussian-init perturbation + BN term  :mod:`.activation`
``l2_norm``    ``sum_l ||W_l||``                                :mod:`.static`
=============  ===============================================  ==========================

This package imports only torch, numpy and the standard library (it runs in the sandbox, and
everything it needs is imported with the package, before the sandbox's import guard goes in).
The ensemble (:mod:`llmnas.proxies.ensemble`, scikit-learn) is host-side and not imported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import torch
from torch import nn

from llmnas.proxies._common import ProxyUndefined, has_uninitialized
from llmnas.proxies.activation import NASWOT_BATCH_SIZE, ZEN_ALPHA, jacob_cov, naswot, zen
from llmnas.proxies.gradient import fisher, grad_norm, grasp, snip, synflow
from llmnas.proxies.static import flops, l2_norm, params

__all__ = [
    "ALL_PROXIES",
    "NASWOT_BATCH_SIZE",
    "PROXIES",
    "ZEN_ALPHA",
    "ProxyFn",
    "ProxyReport",
    "ProxyUndefined",
    "compute_proxies",
    "parse_proxy_selection",
    "warm_up",
]

REASON_LIMIT = 200


class ProxyFn(Protocol):
    """A proxy: ``fn(model, x, y, *, num_classes, seed) -> float``; may raise ProxyUndefined."""

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int
    ) -> float: ...


PROXIES: dict[str, ProxyFn] = {
    "params": params,
    "flops": flops,
    "grad_norm": grad_norm,
    "snip": snip,
    "grasp": grasp,
    "fisher": fisher,
    "synflow": synflow,
    "jacob_cov": jacob_cov,
    "naswot": naswot,
    "zen": zen,
    "l2_norm": l2_norm,
}
"""The registry: proxy name -> function, in the canonical order."""

ALL_PROXIES: tuple[str, ...] = tuple(PROXIES)
"""Every proxy name, in the canonical order."""


class ProxyReport(NamedTuple):
    """What :func:`compute_proxies` returns; unpacks as ``values, reasons, seconds``.

    ``values``: name -> finite float or ``None``; ``reasons``: name -> why, for each ``None``;
    ``seconds``: name -> wall time of that proxy, fresh model construction included.
    """

    values: dict[str, float | None]
    reasons: dict[str, str]
    seconds: dict[str, float]


def parse_proxy_selection(text: str) -> list[str]:
    """Parse ``--proxies all|none|a,b``: ``all`` -> every proxy, ``none`` or empty -> ``[]``.

    Names are comma-separated, case-insensitive, duplicates dropped (first order kept).
    Raises ``ValueError`` (one line listing the known names) for an unknown name.
    """
    cleaned = text.strip().lower()
    if cleaned == "all":
        return list(ALL_PROXIES)
    if cleaned in ("", "none"):
        return []
    chosen: list[str] = []
    for raw in cleaned.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in PROXIES:
            known = ", ".join(ALL_PROXIES)
            raise ValueError(f"unknown proxy {name!r}; expected all, none or some of: {known}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProxyUndefined):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}".strip()
    text = " ".join(text.split())
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def _fresh_model(model_factory: Callable[[], nn.Module], x: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = model_factory()
    if not isinstance(model, nn.Module):
        raise ProxyUndefined(f"model factory returned {type(model).__name__}, not nn.Module")
    model = model.to(x.device)
    if has_uninitialized(model):  # lazy modules: one dry forward materialises them
        with torch.no_grad():
            model(x[:2])
    return model


def _run_one(
    name: str,
    model_factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    num_classes: int,
) -> tuple[float | None, str | None]:
    try:
        model = _fresh_model(model_factory, x, seed)
        value = float(PROXIES[name](model, x, y, num_classes=num_classes, seed=seed))
    except (MemoryError, torch.OutOfMemoryError):
        raise  # the sandbox reports memory faults as such
    except Exception as exc:  # noqa: BLE001 - candidate faults are data
        return None, _reason(exc)
    if not math.isfinite(value):
        return None, f"non-finite value ({value})"
    return value, None


def compute_proxies(
    model_factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str],
    *,
    seed: int,
    num_classes: int,
    time_budget_s: float | None = None,
) -> ProxyReport:
    """Compute the proxies ``names`` (a subset of :data:`ALL_PROXIES`) on the batch ``(x, y)``.

    Each proxy builds its own model with ``model_factory()`` under ``torch.manual_seed(seed)``
    and moves it to ``x.device``. The global RNG state is restored on return. ``y`` holds class
    indices (training labels of the batch). When ``time_budget_s`` is given and the proxies run
    so far have used it up, the remaining ones are skipped (``None``, reason says so); a proxy
    that has started is never interrupted (the sandbox's wall-time limit covers that).

    Returns a :class:`ProxyReport` ``(values, reasons, seconds)``. Unknown names raise
    ``ValueError`` (a caller bug); candidate faults never raise, except memory exhaustion
    (``MemoryError`` / ``torch.OutOfMemoryError``), which propagates to the sandbox.
    """
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; known: {', '.join(ALL_PROXIES)}")
    y = y.to(device=x.device, dtype=torch.long)
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    seconds: dict[str, float] = {}
    cuda = [x.device.index or 0] if x.device.type == "cuda" else []
    spent = 0.0
    with torch.random.fork_rng(devices=cuda):
        for name in names:
            if time_budget_s is not None and spent >= time_budget_s:
                values[name] = None
                reasons[name] = f"skipped: proxy time budget of {time_budget_s:g} s used up"
                seconds[name] = 0.0
                continue
            start = time.perf_counter()
            value, why = _run_one(name, model_factory, x, y, seed=seed, num_classes=num_classes)
            seconds[name] = time.perf_counter() - start
            spent += seconds[name]
            values[name] = value
            if why is not None:
                reasons[name] = why
    return ProxyReport(values, reasons, seconds)


class _WarmUpNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU())
        self.rnn = nn.GRU(4, 4, batch_first=True)
        self.head = nn.Linear(4 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.conv(x).transpose(1, 2))
        return self.head(h.flatten(1))


def warm_up() -> None:
    """Run every proxy once on a tiny model so torch's lazy imports and initialisation happen
    now (about a second, mostly ``FlopCounterMode``'s first use). Meant for a warm worker before
    it forks its children; the RNG state is left as it was."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, generator=gen)
    y = torch.randint(0, 3, (4,), generator=gen)
    compute_proxies(_WarmUpNet, x, y, ALL_PROXIES, seed=0, num_classes=3)
