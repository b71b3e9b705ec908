"""Shared helpers for the zero-cost proxies: which weights count, output checks, errors.

**Which weights a proxy sums over.** The reference code (Abdelfattah et al. 2021) sums every
per-weight score over the weights of ``nn.Conv2d`` and ``nn.Linear`` layers only (no biases, no
normalisation parameters). Here the "linear-like" weights are:

- ``weight`` of every ``nn.Linear`` (this includes ``MultiheadAttention.out_proj``) and every
  convolution (``Conv1d/2d/3d`` and the transposed variants);
- the 2-D weight matrices of recurrent layers (``nn.RNN/GRU/LSTM``: ``weight_ih_l*``,
  ``weight_hh_l*``, ``weight_hr_l*``; the ``*Cell`` variants: ``weight_ih``, ``weight_hh``);
- the input projections of ``nn.MultiheadAttention`` (``in_proj_weight`` or
  ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``).

Recurrent and attention matrices are treated as linear layers (each matrix is one "layer" for
per-layer norms). Weights shared between modules are counted once.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ProxyUndefined",
    "check_logits",
    "has_uninitialized",
    "linear_like_weights",
    "proxy_modules",
]


class ProxyUndefined(Exception):
    """Raised by a proxy when it is not defined for a model; the message is the reason."""


_CONV_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd,)
_RECURRENT_TYPES: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase)
_ATTENTION_NAMES = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def proxy_modules(model: nn.Module) -> list[nn.Module]:
    """The ``nn.Linear`` and convolution modules of ``model`` that own a weight tensor."""
    found = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, *_CONV_TYPES)) and isinstance(
            getattr(module, "weight", None), torch.Tensor
        ):
            found.append(module)
    return found


def linear_like_weights(model: nn.Module) -> list[torch.Tensor]:
    """All linear-like weight tensors of ``model`` (see the module docstring), deduplicated."""
    weights: list[torch.Tensor] = []
    seen: set[int] = set()

    def add(tensor: object) -> None:
        if isinstance(tensor, torch.Tensor) and id(tensor) not in seen:
            seen.add(id(tensor))
            weights.append(tensor)

    for module in model.modules():
        if isinstance(module, (nn.Linear, *_CONV_TYPES)):
            add(getattr(module, "weight", None))
        elif isinstance(module, _RECURRENT_TYPES):
            for name, param in module.named_parameters(recurse=False):
                if name.startswith("weight_") and param.dim() == 2:
                    add(param)
        elif isinstance(module, nn.MultiheadAttention):
            for name in _ATTENTION_NAMES:
                add(getattr(module, name, None))
    return weights


def has_uninitialized(model: nn.Module) -> bool:
    """Whether ``model`` still holds lazy (uninitialised) parameters or buffers."""
    lazy = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
    return any(isinstance(t, lazy) for t in (*model.parameters(), *model.buffers()))


def check_logits(out: object, batch: int, num_classes: int | None) -> torch.Tensor:
    """Return ``out`` if it is a ``(batch, num_classes)`` tensor, else raise ProxyUndefined."""
    if not isinstance(out, torch.Tensor):
        raise ProxyUndefined(f"forward returned {type(out).__name__}, not a tensor")
    want = (batch, num_classes) if num_classes is not None else None
    if out.dim() != 2 or out.shape[0] != batch or (want is not None and tuple(out.shape) != want):
        raise ProxyUndefined(f"forward returned shape {tuple(out.shape)}, expected {want}")
    return out
