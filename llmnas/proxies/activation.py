"""Activation- and Jacobian-based zero-cost proxies.

- ``jacob_cov`` (Mellor et al. 2021, NASWOT v1; as in the zero-cost-nas code): with the model in
  train mode, ``J[n] = d(sum_c f(x)[n, c]) / dx[n]`` flattened (one row per example of the whole
  batch); ``C = corrcoef(J)`` (an ``N x N`` correlation matrix), ``lambda`` its eigenvalues and
  ``k = 1e-5``: ``jacob_cov = -sum_i (log(lambda_i + k) + 1 / (lambda_i + k))``. Eigenvalues come
  from ``numpy.linalg.eigvalsh`` in float64 and round-off negatives are clipped to 0 (``C`` is
  positive semi-definite). Undefined when a row of ``J`` is constant (zero variance).
- ``naswot`` (Mellor et al. 2021, v2): the first ``min(NASWOT_BATCH_SIZE, N)`` examples of the
  batch (``NASWOT_BATCH_SIZE = 64``; scores are comparable only at equal batch size) go through
  the model in train mode. Every call of a ReLU-family function yields binary codes
  ``c = (input > 0)`` flattened per example: ``relu``, ``relu_``, ``leaky_relu(_)`` and
  ``hardtanh(x, 0, ...)`` (which is what ``relu6`` runs), whether called through modules,
  ``torch.nn.functional``, ``torch`` or tensor methods (the reference hooks only modules whose
  type name contains ``ReLU``). The kernel is ``K = sum_calls (c c^T + (1 - c)(1 - c)^T)``,
  i.e. ``K[i, j] = N_A - Hamming(c_i, c_j)``, and ``naswot = log|det K|`` (``slogdet``).
  Undefined without ReLU calls. ``K`` is singular (``log det = -inf``, reported as undefined)
  when two inputs share their codes, and always when the ``N_A`` ReLU units number fewer than
  ``N - 1`` (``rank K <= N_A + 1``): small networks need a small batch.
- ``zen`` (Lin et al. 2021, Zen-NAS): linear-like weights (see :mod:`llmnas.proxies._common`,
  recurrent and attention matrices included) re-initialised ``N(0, 1)`` with zero biases, batch
  and group norm weights 1 and biases 0; two Gaussian inputs ``x1, x2`` shaped like the batch
  (a generator seeded with ``seed``) and ``x_mix = x1 + ZEN_ALPHA * x2`` (``ZEN_ALPHA = 0.01``),
  model in train mode, ``no_grad``, one repeat (the content of ``x`` is not used). With ``phi``
  the features fed to the last ``nn.Linear`` call of the forward (the classifier's input; the
  logits if no ``nn.Linear`` runs), ``Delta = mean_n sum_j |phi(x1)[n, j] - phi(x_mix)[n, j]|`` and
  ``zen = log(Delta) + sum_i log(sigma_i)`` where ``sigma_i = sqrt(mean_k var_k)`` is the
  batch-norm layer ``i``'s per-channel batch variance (biased) of its input on the ``x1`` pass,
  averaged over channels (the Zen-NAS paper's definition). For models without batch norm the
  variance term is 0. Deviations: Zen-NAS measures the pre-global-average-pooling feature map of
  its own backbones, which a generic candidate does not expose; its code reads ``running_var``
  after both passes (momentum-blended with the initial ones) instead of the batch statistic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from llmnas.proxies._common import ProxyUndefined, check_logits, linear_like_weights

__all__ = ["NASWOT_BATCH_SIZE", "ZEN_ALPHA", "jacob_cov", "naswot", "zen"]

NASWOT_BATCH_SIZE = 64
"""Examples used by ``naswot`` (the first ones of the batch)."""

ZEN_ALPHA = 0.01
"""Mixup coefficient of the second Gaussian input in ``zen``."""

JACOB_K = 1e-5

_WEIGHTED_TYPES = (
    nn.Linear,
    nn.modules.conv._ConvNd,
    nn.RNNBase,
    nn.RNNCellBase,
    nn.MultiheadAttention,
)

_RELU_FUNCS: frozenset[Callable[..., object]] = frozenset(
    {
        F.relu,
        F.relu_,
        F.leaky_relu,
        F.leaky_relu_,
        torch.relu,
        torch.relu_,
        torch.Tensor.relu,
        torch.Tensor.relu_,
    }
)


def jacob_cov(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``-sum_i (log(lambda_i + k) + 1/(lambda_i + k))`` of the input-Jacobian correlations."""
    if x.shape[0] < 2:
        raise ProxyUndefined("needs a batch of at least 2 examples")
    model.train()
    model.zero_grad(set_to_none=True)
    inp = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = check_logits(model(inp), x.shape[0], num_classes)
        out.backward(torch.ones_like(out))
    if inp.grad is None:
        raise ProxyUndefined("the output does not depend on the input")
    jac = inp.grad.detach().reshape(x.shape[0], -1).double().cpu().numpy()
    if not np.all(np.isfinite(jac)):
        raise ProxyUndefined("non-finite input Jacobian")
    if np.any(jac.std(axis=1) == 0):
        raise ProxyUndefined("a constant Jacobian row: correlation undefined")
    corr = np.corrcoef(jac)
    eig = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(-np.sum(np.log(eig + JACOB_K) + 1.0 / (eig + JACOB_K)))


def _is_relu(func: object, args: tuple[object, ...], kwargs: dict[str, object]) -> bool:
    if not args:
        return False
    if func in _RELU_FUNCS:
        return True
    if func in (F.hardtanh, F.hardtanh_):  # nn.ReLU6 / F.relu6 run hardtanh(x, 0, 6)
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        return low == 0
    return False


class _ReluCodes(TorchFunctionMode):
    """Records the binary codes ``input > 0`` of every ReLU-family call with batch size ``n``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.kernel: torch.Tensor | None = None
        self.units = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if _is_relu(func, args, kwargs) and isinstance(args[0], torch.Tensor):
            inp = args[0]
            if inp.dim() >= 1 and inp.shape[0] == self.n:
                # before the call: in-place variants overwrite the input
                codes = (inp.detach() > 0).reshape(self.n, -1).double()
                k = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
                self.kernel = k if self.kernel is None else self.kernel + k
                self.units += codes.shape[1]
        return func(*args, **kwargs)


def naswot(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``log|det K|`` of the ReLU-code kernel on the first ``NASWOT_BATCH_SIZE`` examples."""
    n = min(NASWOT_BATCH_SIZE, x.shape[0])
    model.train()
    recorder = _ReluCodes(n)
    with torch.no_grad(), recorder:
        out = model(x[:n])
    check_logits(out, n, num_classes)
    if recorder.kernel is None:
        raise ProxyUndefined("no ReLU activations")
    sign, logdet = np.linalg.slogdet(recorder.kernel.cpu().numpy())
    if sign <= 0:
        raise ProxyUndefined(
            f"singular ReLU-code kernel ({recorder.units} ReLU units for {n} inputs; "
            "needs units >= inputs - 1 and distinct activation patterns)"
        )
    return float(logdet)


def _gaussian_init(model: nn.Module) -> None:
    with torch.no_grad():
        for w in linear_like_weights(model):
            w.normal_(0.0, 1.0)
        for module in model.modules():
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
                if module.affine:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            elif isinstance(module, _WEIGHTED_TYPES):
                for name, param in module.named_parameters(recurse=False):
                    if "bias" in name:
                        param.zero_()


def zen(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int = 0
) -> float:
    """``log(mean_n sum_j |phi(x1) - phi(x1 + a x2)|) + sum_i log(sigma_i)`` (Zen-NAS)."""
    _gaussian_init(model)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
    x2 = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
    mixed = x1 + ZEN_ALPHA * x2

    state: dict[str, object] = {"features": None, "record_bn": True}
    bn_log_sigma: list[torch.Tensor] = []

    def linear_hook(_mod: nn.Module, inp: tuple[object, ...]) -> None:
        if inp and isinstance(inp[0], torch.Tensor):
            state["features"] = inp[0].detach()

    def bn_hook(_mod: nn.Module, inp: tuple[object, ...]) -> None:
        if state["record_bn"] and inp and isinstance(inp[0], torch.Tensor):
            t = inp[0].detach().double()
            dims = [d for d in range(t.dim()) if d != 1]
            var = t.var(dim=dims, unbiased=False) if t.dim() > 1 else t.var(unbiased=False)
            bn_log_sigma.append(torch.log(torch.sqrt(var.mean())))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_pre_hook(linear_hook))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_pre_hook(bn_hook))
    try:
        with torch.no_grad():
            out1 = check_logits(model(x1), x.shape[0], num_classes)
            phi1 = state["features"] if state["features"] is not None else out1
            state["features"], state["record_bn"] = None, False
            out2 = model(mixed)
            phi2 = state["features"] if state["features"] is not None else out2
    finally:
        for handle in handles:
            handle.remove()
    assert isinstance(phi1, torch.Tensor) and isinstance(phi2, torch.Tensor)
    if phi1.shape != phi2.shape or phi1.shape[0] != x.shape[0]:
        raise ProxyUndefined("classifier features have no batch dimension")
    delta = (phi1.double() - phi2.double()).abs().reshape(x.shape[0], -1).sum(1).mean()
    score = torch.log(delta) + sum(bn_log_sigma, torch.zeros((), dtype=torch.float64))
    return float(score)
