"""Tests for the zero-cost proxies (llmnas.proxies) and their ensembles."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmnas.proxies import (
    ALL_PROXIES,
    compute_proxies,
    parse_proxy_selection,
)
from llmnas.proxies.activation import JACOB_K, ZEN_ALPHA
from llmnas.proxies.ensemble import OnlineRanker, rank_average
from llmnas.proxies.gradient import synflow

SEEDS = ("logistic", "mlp", "cnn", "gru")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster and robust to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NO_RELU = {"logistic", "gru"}


def _batch(n: int = 64, shape: tuple[int, ...] = (1, 40), classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def _seed_cls(name: str) -> type[nn.Module]:
    return importlib.import_module(f"llmnas.tasks.seeds.mnist1d.{name}").Model


class FlatLinear(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.linear = nn.Linear(int(np.prod(input_shape)), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def _linear_case(n: int = 8, d: int = 5, c: int = 3):
    x, y = _batch(n, (1, d), c, seed=1)
    values, reasons, _ = compute_proxies(
        lambda: FlatLinear((1, d), c), x, y, ALL_PROXIES, seed=3, num_classes=c
    )
    torch.manual_seed(3)
    ref = FlatLinear((1, d), c)
    w = ref.linear.weight.detach().double()
    b = ref.linear.bias.detach().double()
    xf = x.flatten(1).double()
    return values, reasons, x, y, w, b, xf


def test_single_linear_closed_forms() -> None:
    n, d, c = 8, 5, 3
    values, reasons, x, y, w, b, xf = _linear_case(n, d, c)
    z = xf @ w.T + b
    dz = (torch.softmax(z, 1) - F.one_hot(y, c).double()) / n  # dL/dz of the mean CE
    grad_w = dz.T @ xf
    assert values["params"] == d * c + c
    assert values["flops"] == 2 * d * c
    assert values["l2_norm"] == pytest.approx(float(w.norm()), rel=1e-6)
    assert values["grad_norm"] == pytest.approx(float(grad_w.norm()), rel=1e-5)
    assert values["snip"] == pytest.approx(float((w * grad_w).abs().sum()), rel=1e-5)
    # synflow: R = sum(|W| 1 + |b|), dR/dW_ij = 1, so the score is sum |W|
    assert values["synflow"] == pytest.approx(float(w.abs().sum()), rel=1e-10)
    # fisher: one channel per class, activation z, broadcast over the d inputs
    assert values["fisher"] == pytest.approx(float(0.5 * ((z * dz) ** 2).mean(0).sum() * d), 1e-5)
    # jacob_cov: every row of the Jacobian is sum_c W_c, so C is all ones (eigen n, 0, ...)
    expect = -(math.log(n + JACOB_K) + 1 / (n + JACOB_K)) - (n - 1) * (
        math.log(JACOB_K) + 1 / JACOB_K
    )
    assert values["jacob_cov"] == pytest.approx(expect, rel=1e-6)
    # zen: the classifier's input is the Gaussian input itself; no batch norm
    g = torch.Generator().manual_seed(3)
    torch.randn(x.shape, generator=g)
    x2 = torch.randn(x.shape, generator=g).double()
    assert values["zen"] == pytest.approx(math.log(ZEN_ALPHA * x2.abs().sum() / n), rel=1e-5)
    assert values["naswot"] is None and reasons["naswot"] == "no ReLU activations"


def test_single_linear_grasp_matches_hessian() -> None:
    n, d, c = 8, 5, 3
    values, _, _, y, w, b, xf = _linear_case(n, d, c)

    def loss(flat_w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(xf @ flat_w.reshape(c, d).T + b, y)

    flat = w.reshape(-1).clone().requires_grad_(True)
    g = torch.autograd.grad(loss(flat), flat)[0]
    hess = torch.autograd.functional.hessian(loss, flat.detach())
    assert values["grasp"] == pytest.approx(float(-(flat.detach() * (hess @ g)).sum()), rel=1e-4)


class TwoLayer(nn.Module):
    def __init__(self, functional: bool = False):
        super().__init__()
        self.functional = functional
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(F.relu(h) if self.functional else self.act(h))


@pytest.mark.parametrize("functional", [False, True])
def test_naswot_hand_kernel(functional: bool) -> None:
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = torch.tensor([0, 1, 0, 1])
    # codes (W1 x > 0): 111, 100, 010, 000; K_ij = 3 - Hamming(c_i, c_j)
    kernel = np.array([[3, 1, 1, 0], [1, 3, 1, 2], [1, 1, 3, 2], [0, 2, 2, 3]], dtype=float)
    values, _, _ = compute_proxies(
        lambda: TwoLayer(functional), x, y, ["naswot"], seed=0, num_classes=2
    )
    assert values["naswot"] == pytest.approx(math.log(np.linalg.det(kernel)), rel=1e-9)


def test_naswot_singular_kernel_is_none() -> None:
    x = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, 1.0]])  # first two share their codes
    values, reasons, _ = compute_proxies(
        lambda: TwoLayer(), x, torch.tensor([0, 1, 0]), ["naswot"], seed=0, num_classes=2
    )
    assert values["naswot"] is None and "singular" in reasons["naswot"]


def test_synflow_ignores_batch_content_and_restores_signs() -> None:
    cls = _seed_cls("cnn")
    x1, y1 = _batch(seed=1)
    x2, y2 = _batch(seed=2)
    names = ["synflow", "zen"]
    a = compute_proxies(lambda: cls((1, 40), 10), x1, y1, names, seed=5, num_classes=10)
    b = compute_proxies(lambda: cls((1, 40), 10), x2 * 3, y2, names, seed=5, num_classes=10)
    assert a.values == b.values
    torch.manual_seed(0)
    model = cls((1, 40), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    synflow(model, x1, y1, num_classes=10)
    after = model.state_dict()
    assert all(torch.allclose(before[k].double(), after[k].double()) for k in before)


class BNNet(nn.Module):
    def __init__(self, bn: bool):
        super().__init__()
        self.fc1 = nn.Linear(6, 32)
        self.bn = nn.BatchNorm1d(32) if bn else nn.Identity()
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def test_synflow_disables_batch_norm_and_zen_has_bn_term() -> None:
    x, y = _batch(16, (6,), 3)
    with_bn = compute_proxies(lambda: BNNet(True), x, y, ALL_PROXIES, seed=0, num_classes=3)
    without = compute_proxies(lambda: BNNet(False), x, y, ALL_PROXIES, seed=0, num_classes=3)
    assert with_bn.values["synflow"] == pytest.approx(without.values["synflow"], rel=1e-12)
    assert with_bn.values["zen"] != pytest.approx(without.values["zen"])
    assert all(v is not None for v in with_bn.values.values()), with_bn.reasons


class Float32State(nn.Module):
    """Builds its own float32 initial state: synflow falls back to float32."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.rnn = nn.GRU(1, 6, batch_first=True)
        self.head = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(1, x.shape[0], 6)
        out, _ = self.rnn(x.transpose(1, 2), h0)
        return self.head(out[:, -1])


def test_synflow_float32_fallback() -> None:
    x, y = _batch(8)
    values, reasons, _ = compute_proxies(
        lambda: Float32State((1, 40), 10), x, y, ["synflow"], seed=0, num_classes=10
    )
    assert values["synflow"] is not None and values["synflow"] > 0, reasons


def test_determinism_and_rng_isolation() -> None:
    cls = _seed_cls("mlp")
    x, y = _batch()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = compute_proxies(lambda: cls((1, 40), 10), x, y, ALL_PROXIES, seed=7, num_classes=10)
    assert torch.equal(state, torch.get_rng_state())
    b = compute_proxies(lambda: cls((1, 40), 10), x, y, ALL_PROXIES, seed=7, num_classes=10)
    c = compute_proxies(lambda: cls((1, 40), 10), x, y, ALL_PROXIES, seed=8, num_classes=10)
    assert a.values == b.values
    assert a.values["grad_norm"] != c.values["grad_norm"]


class NaNNet(FlatLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


class Broken(FlatLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


class WrongShape(FlatLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, :2]


class NoWeights(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, : self.scale.numel()] * self.scale


@pytest.mark.parametrize("cls", [NaNNet, Broken, WrongShape, NoWeights])
def test_faults_become_none_with_reasons(cls: type[nn.Module]) -> None:
    x, y = _batch()
    values, reasons, seconds = compute_proxies(
        lambda: cls((1, 40), 10), x, y, ALL_PROXIES, seed=0, num_classes=10
    )
    assert set(values) == set(seconds) == set(ALL_PROXIES)
    assert values["params"] is not None
    for name, value in values.items():
        assert value is None or math.isfinite(value)
        if value is None:
            assert reasons[name]
    assert values["grad_norm"] is None
    if cls is NaNNet:
        assert "non-finite" in reasons["grad_norm"]
    if cls is Broken:
        assert "boom" in reasons["grad_norm"]
    if cls is WrongShape:
        assert "shape" in reasons["grad_norm"]
    if cls is NoWeights:
        assert values["l2_norm"] is None and values["jacob_cov"] is not None


class Exotic(nn.Module):
    """LSTM + attention + conv with batch norm + lazy linear: must never crash."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU6())
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.LazyLinear(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).transpose(1, 2)
        h, _ = self.lstm(h)
        h, _ = self.attn(h, h, h)
        return self.head(F.leaky_relu(h.mean(1)))


def test_recurrent_attention_lazy_models() -> None:
    x, y = _batch(16)
    values, reasons, _ = compute_proxies(
        lambda: Exotic((1, 40), 10), x, y, ALL_PROXIES, seed=0, num_classes=10
    )
    assert all(v is not None for v in values.values()), reasons


@pytest.mark.parametrize("name", SEEDS)
def test_mnist1d_seed_models_get_finite_values(name: str) -> None:
    cls = _seed_cls(name)
    x, y = _batch()
    values, reasons, seconds = compute_proxies(
        lambda: cls((1, 40), 10), x, y, ALL_PROXIES, seed=0, num_classes=10
    )
    for proxy in ALL_PROXIES:
        if proxy == "naswot" and name in NO_RELU:
            assert values[proxy] is None and reasons[proxy] == "no ReLU activations"
        else:
            assert values[proxy] is not None and math.isfinite(values[proxy]), reasons
    print(f"\n{name}: " + ", ".join(f"{k}={v * 1e3:.1f}ms" for k, v in seconds.items()))


def test_time_budget_skips_remaining() -> None:
    x, y = _batch(8, (1, 5), 3)
    report = compute_proxies(
        lambda: FlatLinear((1, 5), 3),
        x,
        y,
        ["params", "l2_norm"],
        seed=0,
        num_classes=3,
        time_budget_s=0.0,
    )
    assert report.values == {"params": None, "l2_norm": None}
    assert "budget" in report.reasons["params"]


def test_parse_proxy_selection() -> None:
    assert parse_proxy_selection("all") == list(ALL_PROXIES)
    assert parse_proxy_selection(" none ") == [] and parse_proxy_selection("") == []
    assert parse_proxy_selection("snip, Synflow,snip") == ["snip", "synflow"]
    with pytest.raises(ValueError, match="unknown proxy 'nope'.*synflow") as info:
        parse_proxy_selection("snip,nope")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        compute_proxies(
            lambda: FlatLinear((1, 5), 3), *_batch(4, (1, 5), 3), ["x"], seed=0, num_classes=3
        )


@pytest.mark.slow
def test_package_does_not_import_sklearn() -> None:
    code = "import sys, llmnas.proxies; assert 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_rank_average() -> None:
    rows = [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": None}, {"a": 3.0, "b": 1.0}]
    assert rank_average(rows, ["a"]) == [1.0, 2.0, 3.0]
    # b ranks rows 0 and 2 as 3 and 1 (rescaled to n = 3); row 1 gets the mean rank 2
    assert rank_average(rows, ["a", "b"]) == [2.0, 2.0, 2.0]
    assert rank_average(rows, ["a", "b"], missing="skip") == [2.0, 2.0, 2.0]
    assert rank_average(rows, ["a", "b"], directions={"b": -1}) == [1.0, 2.0, 3.0]
    assert rank_average([{"a": 1.0}, {"a": 1.0}, {"a": 5.0}], ["a"]) == [1.5, 1.5, 3.0]
    assert rank_average([{"a": None}, {"a": float("nan")}], ["a"]) == [1.5, 1.5]
    assert rank_average([], ["a"]) == []


def test_online_ranker() -> None:
    rng = np.random.default_rng(0)
    rows = [{"good": float(v), "noise": float(rng.normal())} for v in rng.normal(size=40)]
    acc = [1 / (1 + math.exp(-r["good"])) for r in rows]
    small = OnlineRanker(seed=0, min_examples=10).fit(rows[:5], acc[:5])
    assert not small.fitted
    assert small.predict(rows[:3]) == [
        (r - 1) / 2 for r in rank_average(rows[:3], ["good", "noise"])
    ]
    ranker = OnlineRanker(seed=0).fit(rows[:30], acc[:30])
    assert ranker.fitted and ranker.names == ["good", "noise"]
    pred = ranker.predict(rows[30:] + [{"good": None, "noise": 0.0}])
    assert len(pred) == 11
    corr = np.corrcoef(pred[:10], acc[30:])[0, 1]
    assert corr > 0.8
    again = OnlineRanker(seed=0).fit(rows[:30], acc[:30]).predict(rows[30:])
    assert again == pred[:10]
