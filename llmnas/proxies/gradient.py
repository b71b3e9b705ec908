"""Gradient-based zero-cost proxies (Abdelfattah et al. 2021, "Zero-Cost Proxies for
Lightweight NAS", and its ``zero-cost-nas`` code).

Notation: ``L`` is the mean cross-entropy of the logits on the batch ``(x, y)``, ``W_l`` ranges
over the linear-like weights (see :mod:`llmnas.proxies._common`: conv, linear, recurrent and
attention weight matrices, biases excluded) and ``g_l = dL/dW_l``. The model is in train mode
(as freshly built) unless stated. Sums run over every element of every ``W_l``.

- ``grad_norm = sum_l ||g_l||_2`` (per-layer Frobenius norms, summed).
- ``snip = sum_l sum |W_l * g_l|``. The reference multiplies each weight by a mask of ones and
  takes the mask's gradient, which equals ``W_l * g_l``; we compute that product directly.
- ``grasp = sum_l sum (-W_l * (H g)_l)``, with ``g`` the gradient of a first forward pass and
  ``H g`` the Hessian-gradient product from a second pass (temperature 1, one iteration), the
  sign convention of the reference code. Unused weights contribute 0.
- ``fisher``: each conv/linear module's output ``a`` (its pre-activation) is recorded with
  ``dL/da``. Per output channel ``k``: ``F_k = 0.5 * mean_n (sum_s a[n,k,s] * dL/da[n,k,s])^2``
  (``s`` runs over the spatial / sequence positions: for ``Conv`` the channel axis is 1, for
  ``Linear`` the last axis). As in the reference, the channel value is broadcast to the
  ``fan = W.numel() / channels`` weights of that channel before summing, so
  ``fisher = sum_l sum_k fan_l * |F_k|``. Deviation: modules called several times accumulate one
  term per call (the reference pairs every gradient with the last call's activation). Only
  ``nn.Linear`` and convolution modules are hooked: the internals of recurrent layers are not
  visible; without such modules the proxy is undefined.
- ``synflow = sum_l sum |W_l * dR/dW_l|`` with ``R = sum(f(1))``: all state tensors replaced by
  their absolute values, the model in float64 and eval mode with every batch-norm layer made the
  identity (the reference builds the network without batch norm), the input a single all-ones
  example shaped like ``x[0]``; the signs are restored afterwards. It does not depend on the
  content of ``x`` nor on ``y``. Deviation: if the forward fails in float64 (a candidate that
  builds float32 tensors itself), the pass is repeated in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmnas.proxies._common import (
    ProxyUndefined,
    check_logits,
    linear_like_weights,
    proxy_modules,
)

__all__ = ["fisher", "grad_norm", "grasp", "snip", "synflow"]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    weights = [w for w in linear_like_weights(model) if w.requires_grad]
    if not weights:
        raise ProxyUndefined("no trainable conv/linear/recurrent weights")
    return weights


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    out = check_logits(model(x), x.shape[0], num_classes)
    return F.cross_entropy(out, y)


def _backward(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One forward/backward pass; pairs of (weight, gradient) with zeros for unused weights."""
    model.train()
    weights = _weights(model)
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        _loss(model, x, y, num_classes).backward()
    return [(w.detach(), torch.zeros_like(w) if w.grad is None else w.grad) for w in weights]


def grad_norm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``sum_l ||dL/dW_l||_2``."""
    pairs = _backward(model, x, y, num_classes)
    return float(sum(g.double().norm() for _, g in pairs))


def snip(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``sum_l sum |W_l * dL/dW_l|``."""
    pairs = _backward(model, x, y, num_classes)
    return float(sum((w.double() * g.double()).abs().sum() for w, g in pairs))


def grasp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``sum_l sum (-W_l * (H g)_l)`` (reference sign convention)."""
    model.train()
    weights = _weights(model)
    with torch.enable_grad():
        first = torch.autograd.grad(_loss(model, x, y, num_classes), weights, allow_unused=True)
        grads = torch.autograd.grad(
            _loss(model, x, y, num_classes), weights, create_graph=True, allow_unused=True
        )
        z = None
        for g_fixed, g in zip(first, grads, strict=True):
            if g_fixed is not None and g is not None:
                term = (g_fixed.detach() * g).sum()
                z = term if z is None else z + term
        if z is None or not z.requires_grad:
            return 0.0  # the gradient does not depend on the weights: H g = 0
        hg = torch.autograd.grad(z, weights, allow_unused=True)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for w, h in zip(weights, hg, strict=True):
        if h is not None:
            total = total + (-w.detach().double() * h.double()).sum()
    return float(total)


def fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``sum_l sum_k fan_l * |0.5 * mean_n (sum_s a * dL/da)^2|`` over conv/linear outputs."""
    modules = [m for m in proxy_modules(model) if isinstance(m.weight, torch.Tensor)]
    if not modules:
        raise ProxyUndefined("no conv/linear modules to hook")
    model.train()
    per_module: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(module: nn.Module):
        channel_axis = -1 if isinstance(module, nn.Linear) else 1

        def forward_hook(_mod: nn.Module, _inp: object, out: object) -> None:
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return
            act = out.detach().clone()  # a later in-place op must not change it

            def grad_hook(grad: torch.Tensor) -> None:
                prod = (act * grad.detach()).double()
                if prod.dim() < 2:
                    prod = prod.unsqueeze(0)
                prod = prod.movedim(channel_axis, 1)
                g_nk = prod.sum(dim=tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod
                del_k = g_nk.pow(2).mean(0).mul(0.5)
                key = id(module)
                per_module[key] = per_module.get(key, 0) + del_k

            out.register_hook(grad_hook)

        return forward_hook

    try:
        for module in modules:
            handles.append(module.register_forward_hook(make_hook(module)))
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            _loss(model, x, y, num_classes).backward()
    finally:
        for handle in handles:
            handle.remove()
    if not per_module:
        raise ProxyUndefined("no conv/linear output received a gradient")
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for module in modules:
        del_k = per_module.get(id(module))
        if del_k is None:
            continue
        fan = module.weight.numel() / max(int(del_k.numel()), 1)
        total = total + del_k.abs().sum() * fan
    return float(total)


def _identity(inp: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return inp


def synflow(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``sum_l sum |W_l * dR/dW_l|``, ``R = sum f_{|theta|}(1)`` in float64, batch norm off.

    Falls back to float32 when the forward cannot run in float64 (e.g. it builds float32
    tensors itself, such as a recurrent layer's initial state).
    """
    _weights(model)
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = _identity  # type: ignore[method-assign]
    try:
        return _synflow_pass(model, x, num_classes, torch.float64)
    except RuntimeError:
        return _synflow_pass(model, x, num_classes, torch.float32)


def _synflow_pass(model: nn.Module, x: torch.Tensor, num_classes: int, dtype: torch.dtype) -> float:
    model.to(dtype)
    weights = _weights(model)  # after the cast: it may replace tensors (recurrent flat weights)
    with torch.no_grad():
        signs = {name: torch.sign(t) for name, t in model.state_dict().items()}
        for t in model.state_dict().values():
            if t.is_floating_point() or t.is_complex():
                t.abs_()
    try:
        model.zero_grad(set_to_none=True)
        ones = torch.ones((1, *x.shape[1:]), dtype=dtype, device=x.device)
        with torch.enable_grad():
            out = check_logits(model(ones), 1, num_classes)
            out.sum().backward()
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for w in weights:
            if w.grad is not None:
                total = total + (w.detach().double() * w.grad.double()).abs().sum()
    finally:
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if t.is_floating_point() or t.is_complex():
                    t.mul_(signs[name])
    return float(total)
