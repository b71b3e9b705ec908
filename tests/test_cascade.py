"""Tests for the evaluation cascade (llmnas.cascade), on constructed results: no sandbox."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from llmnas.cascade import Cascade, CascadeConfig
from llmnas.proxies import ALL_PROXIES
from llmnas.records import EvalResult, FailureKind, Status


def result0(
    params: int = 1000,
    flops: int = 10_000,
    values: dict[str, float | None] | None = None,
    **proxies: float | None,
) -> EvalResult:
    """An epochs-0 result: built, counted, proxies computed (``values`` for ``params``/``flops``)."""
    return EvalResult(
        status=Status.OK,
        metrics={"params": params, "flops": flops},
        proxies={**(values or {}), **proxies},
    )


def trained(acc: float, **proxies: float | None) -> EvalResult:
    return EvalResult(
        status=Status.OK,
        metrics={"params": 1000, "val_accuracy": acc, "train_seconds": 1.0},
        proxies=dict(proxies),
    )


def test_defaults_pass_everything() -> None:
    cascade = Cascade(config=CascadeConfig(), seed=0)
    assert not cascade.needs_screen and cascade.proxy_names == ()
    assert cascade.screen(result0(params=10**9, synflow=-1.0)) is None
    assert not cascade.wants_long(trained(0.99))


@pytest.mark.parametrize(
    ("kwargs", "params", "flops", "words"),
    [
        ({"max_params": 5000}, 6000, 1, "params=6,000 above max_params=5,000"),
        ({"min_params": 5000}, 4000, 1, "params=4,000 below min_params=5,000"),
        ({"max_flops": 100}, 1, 200, "flops=200 above max_flops=100"),
        ({"min_flops": 100}, 1, 50, "flops=50 below min_flops=100"),
    ],
)
def test_limits_reject_with_stage_limits(kwargs, params, flops, words) -> None:
    cascade = Cascade(config=CascadeConfig(**kwargs), seed=0)
    assert cascade.needs_screen
    failure = cascade.screen(result0(params=params, flops=flops))
    assert failure is not None
    assert failure.kind is FailureKind.REJECTED and failure.stage == "limits"
    assert words in failure.message
    assert cascade.screen(result0(params=5000, flops=100)) is None
    assert cascade.counts["limits"] == 1


def test_failed_result_is_left_alone() -> None:
    cascade = Cascade(config=CascadeConfig(max_params=1), seed=0)
    failed = EvalResult.failed(FailureKind.SHAPE, "bad shape", stage="shape")
    assert cascade.screen(failed) is None


def test_quantile_rule_warmup_then_rejects_below_quantile() -> None:
    config = CascadeConfig(prefilter="synflow", keep_top=0.5, warmup=10)
    cascade = Cascade(config=config, seed=0)
    assert cascade.proxy_names == ("synflow",)
    for value in range(10):  # warm-up: even the worst passes
        assert cascade.screen(result0(synflow=float(-value))) is None
        cascade.observe(result0(synflow=float(-value)))
    # history now 0..-9, median -4.5
    failure = cascade.screen(result0(synflow=-5.0))
    assert failure is not None and failure.stage == "proxies"
    assert "proxy synflow=-5 below the 50% quantile -4.5 of 10 seen" in failure.message
    assert cascade.screen(result0(synflow=-4.5)) is None  # at the quantile: kept
    assert cascade.screen(result0(synflow=3.0)) is None


def test_missing_proxy_passes_or_rejects() -> None:
    base = {"prefilter": "naswot", "min_score": 1.0}
    assert Cascade(config=CascadeConfig(**base), seed=0).screen(result0(naswot=None)) is None
    strict = Cascade(config=CascadeConfig(**base, on_missing="reject"), seed=0)
    failure = strict.screen(result0(naswot=None))
    assert failure is not None and "undefined" in failure.message


def test_threshold_rule_and_direction() -> None:
    cascade = Cascade(config=CascadeConfig(prefilter="zen", min_score=2.0), seed=0)
    failure = cascade.screen(result0(zen=1.5))  # absolute: no warm-up needed
    assert failure is not None and "proxy zen=1.5 below min_score=2" in failure.message
    assert cascade.screen(result0(zen=2.0)) is None
    lower = CascadeConfig(prefilter="flops", min_score=-100.0, directions={"flops": -1})
    assert Cascade(config=lower, seed=0).screen(result0(values={"flops": 50.0})) is None
    failure = Cascade(config=lower, seed=0).screen(result0(values={"flops": 500.0}))
    assert failure is not None and "proxy flops=-500 below min_score=-100" in failure.message


def test_ensemble_rank_average_rule() -> None:
    names = ["synflow", "snip"]
    config = CascadeConfig(prefilter="ensemble", proxies=names, keep_top=0.5, warmup=4)
    cascade = Cascade(config=config, seed=0)
    history = [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0), (4.0, 40.0)]
    for s, n in history:
        assert cascade.screen(result0(synflow=s, snip=n)) is None  # warm-up
        cascade.observe(result0(synflow=s, snip=n))
    # best on both proxies -> rank score 1.0; worst on both -> 0.0
    assert cascade.score(result0(synflow=9.0, snip=99.0)) == pytest.approx(1.0)
    assert cascade.screen(result0(synflow=9.0, snip=99.0)) is None
    failure = cascade.screen(result0(synflow=0.0, snip=0.0))
    assert failure is not None and failure.stage == "proxies"
    assert "ensemble rank of 2 proxies=0 below the 50% quantile" in failure.message
    # good on one, bad on the other: rank average in the middle, the median decides
    mixed = cascade.score(result0(synflow=9.0, snip=0.0))
    assert mixed is not None and 0.3 < mixed < 0.7
    assert CascadeConfig(prefilter="ensemble", keep_top=0.5).proxy_names == ALL_PROXIES


def test_ranker_falls_back_then_fits() -> None:
    config = CascadeConfig(
        prefilter="ranker", proxies=["synflow"], keep_top=0.5, warmup=5, ranker_min_examples=12
    )
    cascade = Cascade(config=config, seed=3)
    for i in range(12):
        cascade.observe(trained(i / 20, synflow=float(i)))
        label_fitted = cascade._ranker is not None and cascade._ranker.fitted
        assert label_fitted == (i == 11)
    failure = cascade.screen(result0(synflow=0.5))
    assert failure is not None and "ranker predicted accuracy" in failure.message
    assert cascade.screen(result0(synflow=11.0)) is None


def test_wants_long_picks_top_fraction() -> None:
    config = CascadeConfig(long_epochs=60, long_top=0.25)
    cascade = Cascade(config=config, seed=0)
    accs = [0.5, 0.6, 0.4, 0.9, 0.3, 0.7, 0.2, 0.8]
    picked = []
    for acc in accs:
        picked.append(cascade.wants_long(trained(acc)))
        cascade.observe(trained(acc))
    # n=1..3: floor(0.25 n) = 0 slots; n=4: 0.9 is best of 4; later: 0.7 is 2nd of 6 (1 slot)
    assert picked == [False, False, False, True, False, False, False, True]
    assert cascade.wants_long(trained(0.85))  # 2nd of 9, 2 slots
    assert not cascade.wants_long(trained(0.75))  # 3rd of 9
    assert not cascade.wants_long(EvalResult.failed(FailureKind.TIMEOUT, "slow"))


def _drive(seed: int) -> tuple[list[str | None], Cascade]:
    config = CascadeConfig(
        prefilter="ranker", keep_top=0.5, warmup=8, ranker_min_examples=10, ranker_refit_every=5
    )
    cascade = Cascade(config=config, seed=0)
    rng = random.Random(seed)
    decisions: list[str | None] = []
    for _ in range(40):
        proxies = {n: rng.gauss(0, 1) for n in ("synflow", "snip", "naswot")}
        failure = cascade.screen(result0(**proxies))
        decisions.append(None if failure is None else failure.message)
        acc = 0.5 + 0.1 * proxies["synflow"] + 0.02 * rng.gauss(0, 1)
        cascade.observe(trained(acc, **proxies) if failure is None else result0(**proxies))
    return decisions, cascade


@pytest.mark.slow
def test_deterministic() -> None:
    first, _ = _drive(7)
    second, _ = _drive(7)
    assert first == second
    assert any(d is None for d in first) and any(d is not None for d in first)


@pytest.mark.slow
def test_replay_rebuilds_the_same_decisions() -> None:
    _, cascade = _drive(11)
    probes = [result0(synflow=x / 4, snip=-x / 3, naswot=x) for x in range(-6, 7)]
    # rebuilding by re-observing the stored results in order gives the same decisions
    replayed = Cascade(config=cascade.config, seed=0)
    for row in cascade.history:
        acc = row.val_accuracy
        replayed.observe(trained(acc, **row.proxies) if acc is not None else result0(**row.proxies))
    assert [replayed.score(p) for p in probes] == [cascade.score(p) for p in probes]


def test_merge_carries_proxies() -> None:
    merged = Cascade.merge(result0(synflow=2.0), trained(0.8))
    assert merged.proxies == {"synflow": 2.0} and merged.metrics["val_accuracy"] == 0.8


def test_config_validation_and_toml(tmp_path) -> None:
    with pytest.raises(ValidationError, match="promotion rule"):
        CascadeConfig(prefilter="synflow")
    with pytest.raises(ValidationError, match="prefilter must be"):
        CascadeConfig(prefilter="bogus", keep_top=0.5)
    with pytest.raises(ValidationError):
        CascadeConfig(max_prams=3)
    assert CascadeConfig(prefilter="none").prefilter is None
    path = tmp_path / "run.toml"
    path.write_text(
        'task = "mnist1d"\n[cascade]\nmax_params = 100_000\nprefilter = "ensemble"\n'
        'proxies = ["synflow", "naswot"]\nkeep_top = 0.5\nwarmup = 20\nlong_epochs = 60\n'
    )
    config = CascadeConfig.from_toml(path)
    assert config.max_params == 100_000 and config.proxy_names == ("synflow", "naswot")
    assert config.long_epochs == 60 and config.long_top == 0.1
    empty = tmp_path / "empty.toml"
    empty.write_text('task = "mnist1d"\n')
    assert CascadeConfig.from_toml(empty) == CascadeConfig()


class FakeEvaluator:
    """Stands in for the sandboxed evaluator: records calls, answers from a table."""

    def __init__(self, synflow: dict[str, float], acc: dict[str, float]) -> None:
        self.synflow, self.acc, self.calls = synflow, acc, []

    def evaluate(self, source: str, settings, gated: bool = False) -> EvalResult:
        self.calls.append((source, settings.epochs, tuple(settings.proxies)))
        proxies = {n: self.synflow[source] for n in settings.proxies}
        if settings.epochs == 0:
            return result0(params=100, **proxies)
        bonus = 0.05 if settings.epochs == 60 else 0.0
        return trained(self.acc[source] + bonus, **proxies)


def test_run_drives_the_stages() -> None:
    from llmnas.evaluator import EvalSettings

    config = CascadeConfig(
        prefilter="synflow", keep_top=0.5, warmup=2, long_epochs=60, long_top=0.5
    )
    cascade = Cascade(config=config, seed=0)
    fake = FakeEvaluator({"a": 1.0, "b": 2.0, "c": 0.5, "d": 3.0}, {"a": 0.5, "b": 0.6, "d": 0.9})
    settings = EvalSettings(epochs=None, proxies=("zen",))
    results = {}
    for src in "abcd":
        results[src] = cascade.run(fake, src, settings)
        cascade.observe(results[src])
    assert results["c"].status is Status.REJECTED and results["c"].failure.stage == "proxies"
    assert results["c"].proxies == {"zen": 0.5, "synflow": 0.5}
    assert results["b"].metrics["val_accuracy"] == 0.6 and results["b"].proxies["synflow"] == 2.0
    assert "long_val_accuracy" not in results["a"].metrics  # floor(0.5 * 1) = 0 slots
    assert results["b"].metrics["long_val_accuracy"] == pytest.approx(0.65)
    assert results["d"].metrics["long_epochs"] == 60
    assert fake.calls[:2] == [("a", 0, ("zen", "synflow")), ("a", None, ())]
    plain = Cascade(config=CascadeConfig(), seed=0)
    assert plain.run(fake, "a", settings).metrics["val_accuracy"] == 0.5
    assert fake.calls[-1] == ("a", None, ("zen",))
