"""Data-free cost proxies: parameter count, FLOPs and the weight L2 norm.

- ``params``: the number of scalar parameters, ``sum(p.numel() for p in model.parameters())``
  (shared parameters counted once, buffers excluded).
- ``flops``: floating-point operations of one forward pass on a batch of one example (the first
  example of the batch), as counted by :class:`torch.utils.flop_counter.FlopCounterMode`. That
  counter knows matrix products and convolutions (a multiply-add counts 2); element-wise ops,
  normalisation and activations count 0. The model runs in eval mode under ``no_grad`` (batch
  norm with a batch of one is undefined in train mode). Recurrent layers on CPU decompose into
  matrix products and are counted.
- ``l2_norm``: as in the reference code, the sum over linear-like weights ``W_l`` of their
  Frobenius norms, ``sum_l ||W_l||_2`` (per-layer norms summed, not the global norm).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from llmnas.proxies._common import ProxyUndefined, linear_like_weights

__all__ = ["flops", "l2_norm", "params"]


def params(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """Number of parameters (``x`` and ``y`` are unused)."""
    return float(sum(p.numel() for p in model.parameters()))


def flops(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """FLOPs of one forward pass on ``x[:1]`` as counted by ``FlopCounterMode``."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(x[:1])
    if not isinstance(out, torch.Tensor):
        raise ProxyUndefined(f"forward returned {type(out).__name__}, not a tensor")
    return float(counter.get_total_flops())


def l2_norm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """Sum of the Frobenius norms of the linear-like weights."""
    weights = linear_like_weights(model)
    if not weights:
        raise ProxyUndefined("no conv/linear/recurrent weights")
    with torch.no_grad():
        return float(sum(w.detach().double().norm() for w in weights))
