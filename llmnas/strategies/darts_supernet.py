"""The DARTS supernet over the NB201 cell space, its search steps, and discretisation.

Trusted framework code: it runs in the host process (only candidate programs go through the
sandbox). The macro skeleton mirrors :data:`llmnas.nb201_cell.TEMPLATE` exactly (stem, one
stage per ``preset.channels`` entry with ``preset.cells_per_stage`` cells, NB201's stride-2
residual block between stages, BN-ReLU, global average pool, linear classifier), so the
genotype discretised from the architecture weights renders to the network that was searched.

Every cell edge is a :class:`MixedOp`: ``sum_k softmax(alpha[e])_k * op_k(x)`` over
:data:`llmnas.nb201_cell.OPS`. The architecture weights ``alpha`` (shape ``(6, 5)``, edges in
NB201 string order, ops in :data:`OPS` order) are shared by all cells, as in DARTS. As in the
paper, the batch norms inside searched ops have no affine parameters during the search.
``none`` is never computed (its output is zero), but its weight stays in the softmax, so its
gradient is the exact DARTS gradient.

Discretisation helpers: :func:`search_split` (the train-only half/half split),
:func:`discretise` / :func:`ranked_genotypes` (non-``none`` argmax and the k best cells) and
the skip guard's rule :func:`skip_guard_fires`.

Optional DARTS- auxiliary skip (Chu et al., 2021): each edge adds ``beta * x`` to its mixed
output; the caller decays ``beta`` from 1 to 0 over the search.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmnas.nb201_cell import OPS, STRING_EDGES, CellGenotype, CellPreset

__all__ = [
    "MixedOp",
    "SearchCell",
    "Supernet",
    "discretise",
    "first_order_alpha_grad",
    "ranked_genotypes",
    "search_split",
    "skip_count",
    "skip_guard_fires",
    "unrolled_alpha_grad",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_CHOICES = [k for k, op in enumerate(OPS) if op != "none"]
_SKIP = OPS.index("skip_connect")


def _layers(dims: int) -> tuple[type, type, type]:
    if dims == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d


def _relu_conv_bn(
    dims: int, c_in: int, c_out: int, kernel: int, stride: int, affine: bool
) -> nn.Sequential:
    conv, norm, _ = _layers(dims)
    return nn.Sequential(
        nn.ReLU(),
        conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        norm(c_out, affine=affine),
    )


class MixedOp(nn.Module):
    """One edge: the softmax-weighted sum of every op of :data:`OPS` (``none`` contributes 0)."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        pool = _layers(dims)[2]
        self.ops = nn.ModuleDict(
            {
                "skip_connect": nn.Identity(),
                "nor_conv_1x1": _relu_conv_bn(dims, channels, channels, 1, 1, affine=False),
                "nor_conv_3x3": _relu_conv_bn(dims, channels, channels, 3, 1, affine=False),
                "avg_pool_3x3": pool(3, stride=1, padding=1, count_include_pad=False),
            }
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        out = beta * x if beta else torch.zeros_like(x)
        for k, name in enumerate(OPS):
            if name != "none":
                out = out + weights[k] * self.ops[name](x)
        return out


class SearchCell(nn.Module):
    """The NB201 cell DAG with a :class:`MixedOp` on each of its 6 edges."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(dims, channels) for _ in STRING_EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total = None
            for e, (src, tgt) in enumerate(STRING_EDGES):
                if tgt == node:
                    y = self.edges[e](nodes[src], weights[e], beta)
                    total = y if total is None else total + y
            nodes.append(total)
        return nodes[-1]


class _Reduction(nn.Module):
    """NB201's stride-2 residual block (as in the rendered template)."""

    def __init__(self, dims: int, c_in: int, c_out: int) -> None:
        super().__init__()
        conv, _, pool = _layers(dims)
        self.conv_a = _relu_conv_bn(dims, c_in, c_out, 3, 2, affine=True)
        self.conv_b = _relu_conv_bn(dims, c_out, c_out, 3, 1, affine=True)
        self.downsample = nn.Sequential(
            pool(2, stride=2, ceil_mode=True), conv(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Supernet(nn.Module):
    """The preset's macro network with searched cells; ``alpha`` is a separate parameter.

    ``weights()`` are the network weights (trained on the search-train half), ``alpha`` the
    architecture logits (trained on the search-validation half).
    """

    def __init__(
        self,
        preset: CellPreset,
        input_shape: tuple[int, ...],
        num_classes: int,
        alpha: torch.Tensor,
    ) -> None:
        super().__init__()
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ValueError(f"expected (C, L) or (C, H, W) inputs, got {input_shape}")
        if tuple(alpha.shape) != (len(STRING_EDGES), len(OPS)):
            raise ValueError(f"alpha must have shape (6, 5); got {tuple(alpha.shape)}")
        conv, norm, _ = _layers(dims)
        channels = preset.channels
        self.stem = nn.Sequential(
            conv(input_shape[0], channels[0], 3, padding=1, bias=False), norm(channels[0])
        )
        layers: list[nn.Module] = []
        c_prev = channels[0]
        for stage, c in enumerate(channels):
            if stage > 0:
                layers.append(_Reduction(dims, c_prev, c))
            layers.extend(SearchCell(dims, c) for _ in range(preset.cells_per_stage))
            c_prev = c
        self.layers = nn.ModuleList(layers)
        self.lastact = nn.Sequential(norm(c_prev), nn.ReLU())
        self.classifier = nn.Linear(c_prev, num_classes)
        self.alpha = nn.Parameter(alpha.detach().clone())
        self.beta = 0.0
        """DARTS- auxiliary skip coefficient (0 disables it)."""

    def weights(self) -> list[nn.Parameter]:
        """Network weights: every parameter except ``alpha``."""
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mix = F.softmax(self.alpha, dim=-1)
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, mix, self.beta) if isinstance(layer, SearchCell) else layer(x)
        x = self.lastact(x)
        return self.classifier(x.flatten(2).mean(-1))


def first_order_alpha_grad(
    net: Supernet, loss_fn: Loss, x_val: torch.Tensor, y_val: torch.Tensor
) -> torch.Tensor:
    """``d L_val(w, alpha) / d alpha`` at the current weights (first-order DARTS)."""
    loss = loss_fn(net(x_val), y_val)
    (grad,) = torch.autograd.grad(loss, [net.alpha])
    return grad


def unrolled_alpha_grad(
    net: Supernet,
    loss_fn: Loss,
    batch_train: tuple[torch.Tensor, torch.Tensor],
    batch_val: tuple[torch.Tensor, torch.Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    momentum_buffers: list[torch.Tensor | None],
) -> torch.Tensor:
    """Second-order DARTS gradient for ``alpha`` (Liu et al. 2019, eqs. 6-8).

    One virtual SGD step ``w' = w - xi * (m * v + grad L_train(w) + wd * w)`` with ``xi`` the
    current weight learning rate, then
    ``grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / 2eps``
    with ``w+- = w +- eps * grad_w' L_val(w', alpha)`` and ``eps = 0.01 / ||grad_w' L_val||``
    (finite-difference Hessian-vector product). The weights are restored before returning.
    """
    weights = net.weights()
    x_tr, y_tr = batch_train
    x_val, y_val = batch_val
    original = [w.detach().clone() for w in weights]
    grads = torch.autograd.grad(loss_fn(net(x_tr), y_tr), weights, allow_unused=True)
    with torch.no_grad():
        for w, g, buf in zip(weights, grads, momentum_buffers, strict=True):
            step = torch.zeros_like(w) if g is None else g + weight_decay * w
            if buf is not None:
                step = step + momentum * buf
            w.sub_(lr * step)
    # gradients at the virtual weights w'
    val_grads = torch.autograd.grad(
        loss_fn(net(x_val), y_val), [net.alpha, *weights], allow_unused=True
    )
    alpha_grad = val_grads[0]
    vector = [
        torch.zeros_like(w) if g is None else g for w, g in zip(weights, val_grads[1:], strict=True)
    ]
    norm = torch.sqrt(sum((v * v).sum() for v in vector))
    eps = 0.01 / (float(norm) + 1e-12)
    hessian: list[torch.Tensor] = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, w0, v in zip(weights, original, vector, strict=True):
                w.copy_(w0 + sign * eps * v)
        (g,) = torch.autograd.grad(loss_fn(net(x_tr), y_tr), [net.alpha])
        hessian.append(g)
    with torch.no_grad():
        for w, w0 in zip(weights, original, strict=True):
            w.copy_(w0)
    return alpha_grad - lr * (hessian[0] - hessian[1]) / (2 * eps)


# ---------------------------------------------------------------- discretisation


def search_split(n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the task's training split: ``(weights half, alpha half)``, disjoint,
    covering ``range(n_train)``, from a seeded permutation (sorted)."""
    if n_train < 2:
        raise ValueError(f"DARTS needs at least 2 training examples; got {n_train}")
    order = np.random.default_rng([int(seed), 0xDA]).permutation(n_train)
    half = n_train // 2
    return np.sort(order[:half]), np.sort(order[half:])


def discretise(alpha: torch.Tensor | np.ndarray) -> CellGenotype:
    """Per-edge argmax over the non-``none`` ops."""
    return ranked_genotypes(alpha, 1)[0]


def ranked_genotypes(
    alpha: torch.Tensor | np.ndarray, k: int, skip_limit: int | None = None
) -> list[CellGenotype]:
    """The ``k`` best non-``none`` discretisations by summed log-softmax (ties: op order);
    with ``skip_limit``, only those with fewer than ``skip_limit`` skip edges."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach().cpu().numpy()
    logits = np.asarray(alpha, dtype=np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    choices = np.array(list(itertools.product(_CHOICES, repeat=len(STRING_EDGES))))
    if skip_limit is not None:
        choices = choices[(choices == _SKIP).sum(1) < skip_limit]
    scores = logp[np.arange(len(STRING_EDGES)), choices].sum(1)
    order = sorted(range(len(choices)), key=lambda i: (-scores[i], tuple(choices[i])))
    return [CellGenotype(tuple(OPS[c] for c in choices[i])) for i in order[: max(0, k)]]


def skip_count(alpha: torch.Tensor | np.ndarray) -> int:
    """Edges whose discretised op is ``skip_connect``."""
    return discretise(alpha).ops.count("skip_connect")


def skip_guard_fires(alpha: torch.Tensor | np.ndarray, skip_limit: int = 3) -> bool:
    """The skip guard's rule: ``skip_connect`` wins ``skip_limit`` or more edges."""
    return skip_count(alpha) >= skip_limit
