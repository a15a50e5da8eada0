"""course.scaling: FLOP counts against the model and FlopCounterMode, fits that recover
known laws, sweep plans that honour their budgets, seeded runs, the shipped sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from course import scaling
from course.errors import ConfigError
from course.model import GPT, GPTConfig

CONFIGS = [
    GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64),
    GPTConfig(vocab_size=9, block_size=32, n_layer=1, n_head=1, n_embd=8),
    GPTConfig(vocab_size=100, block_size=16, n_layer=3, n_head=4, n_embd=48, bias=False),
]


# ------------------------------------------------------------------------ compute


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"L{c.n_layer}C{c.n_embd}b{c.bias}")
def test_param_counts_and_flops_match_the_model(config):
    model = GPT(config)
    assert scaling.model_params(config) == model.num_params()
    wte = model.transformer.wte.weight.numel()
    assert scaling.kaplan_params(config) == model.num_params() - wte
    for tokens in (0, 1, 12_345):
        assert scaling.train_flops(config, tokens) == model.flops_per_token() * tokens
    assert isinstance(scaling.train_flops(config, 10**15), int)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=["L2C64", "L1C8"])
def test_flop_counter_agrees_with_the_formula_up_to_the_elementwise_parameters(config):
    """With the manual attention every matmul is visible to FlopCounterMode: the measured
    count is the formula minus 6 FLOPs per token for each bias and LayerNorm parameter
    (they are added or multiplied elementwise, never in a matmul)."""
    model = GPT(GPTConfig(**{**config.to_dict(), "attn_impl": "manual"}))
    measured = scaling.measure_train_flops(model, batch_size=3)
    tokens = 3 * config.block_size
    assert measured["tokens"] == tokens
    vectors = sum(p.numel() for p in model.parameters() if p.dim() == 1)
    assert measured["total"] == scaling.train_flops(config, tokens) - 6 * vectors * tokens
    assert set(measured["per_op"]) >= {"aten.mm", "aten.bmm"}
    assert all(p.grad is None for p in model.parameters())  # cleared afterwards


def test_train_flops_rejects_bad_token_counts():
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ConfigError, match="tokens"):
            scaling.train_flops(CONFIGS[0], bad)


# ------------------------------------------------------------------------ fits


def test_power_law_fit_recovers_an_exact_law_and_matches_least_squares():
    x = np.geomspace(1e9, 1e12, 6)
    k, a = scaling.fit_power_law(x, 0.3 * x**0.52)
    assert k == pytest.approx(0.3, rel=1e-9) and a == pytest.approx(0.52, rel=1e-9)
    rng = np.random.default_rng(0)
    y = 2 * x**-0.2 * np.exp(rng.normal(0, 0.1, len(x)))
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    assert scaling.fit_power_law(x, y) == pytest.approx((math.exp(intercept), slope))
    with pytest.raises(ConfigError):
        scaling.fit_power_law([1.0], [2.0])
    with pytest.raises(ConfigError):
        scaling.fit_power_law([1.0, -2.0], [2.0, 3.0])


def test_isoflop_optimum_is_the_vertex_in_log_n():
    n = np.array([1e3, 3e3, 1e4, 3e4])
    losses = 2.0 + 0.04 * (np.log(n) - math.log(5e3)) ** 2
    n_opt, l_opt = scaling.isoflop_optimum(n, losses)
    assert n_opt == pytest.approx(5e3, rel=1e-8) and l_opt == pytest.approx(2.0, abs=1e-10)
    with pytest.raises(ConfigError, match="at least 3"):
        scaling.isoflop_optimum(n[:2], losses[:2])
    with pytest.raises(ConfigError, match="opens downwards"):
        scaling.isoflop_optimum(n, -losses)


def test_isoflop_optima_skip_budgets_whose_minimum_is_not_bracketed():
    runs = []
    for budget, n0 in ((1e10, 4e3), (1e11, 1.5e4), (1e12, 1e7)):
        for n in (1e3, 3e3, 1e4, 3e4, 1e5):
            runs.append({"budget": budget, "params": n, "flops": budget * 1.01,
                         "val_loss": 1.0 + 0.05 * math.log(n / n0) ** 2})
    optima = scaling.isoflop_optima(runs)
    assert [o["budget"] for o in optima] == [1e10, 1e11]  # 1e12's best is the largest size
    assert optima[0]["n_opt"] == pytest.approx(4e3, rel=1e-6)
    assert optima[1]["d_opt"] == pytest.approx(1.01e11 / (6 * 1.5e4), rel=1e-6)


def _law_points(seed: int | None = None):
    n = np.repeat([2e3, 5e3, 1e4, 3e4, 1e5], 4)
    d = np.tile([1e5, 4e5, 2e6, 1e7], 5)
    true = {"E": 0.8, "A": 60.0, "alpha": 0.55, "B": 400.0, "beta": 0.4}
    loss = true["E"] + true["A"] / n ** true["alpha"] + true["B"] / d ** true["beta"]
    if seed is not None:
        loss = loss * np.exp(np.random.default_rng(seed).normal(0, 0.003, len(loss)))
    return n, d, loss, true


def test_parametric_fit_recovers_the_law_it_was_given():
    n, d, loss, true = _law_points()
    fit = scaling.fit_parametric(n, d, loss)
    for key, value in true.items():
        assert getattr(fit, key) == pytest.approx(value, rel=1e-4), key
    assert fit.n_points == 20
    assert fit.loss(1e4, 1e6) == pytest.approx(
        true["E"] + true["A"] / 1e4 ** true["alpha"] + true["B"] / 1e6 ** true["beta"])


def test_parametric_fit_is_robust_to_noise_and_to_one_stray_run():
    n, d, loss, true = _law_points(seed=1)
    loss[7] += 0.5  # a diverged run
    fit = scaling.fit_parametric(n, d, loss)
    assert fit.E == pytest.approx(true["E"], abs=0.05)
    good = np.ones(len(loss), bool)
    good[7] = False
    rel = np.abs(fit.loss(n[good], d[good]) / loss[good] - 1)
    assert rel.max() < 0.02  # the Huber loss kept the stray run from dragging the fit


def test_parametric_fit_rejects_too_few_or_non_positive_points():
    with pytest.raises(ConfigError, match="at least 5"):
        scaling.fit_parametric([1, 2, 3], [1, 2, 3], [1, 2, 3])
    with pytest.raises(ConfigError, match="positive"):
        scaling.fit_parametric([1, 2, 3, 4, -5], [1] * 5, [1] * 5)


def test_compute_optimal_minimises_the_law_on_the_budget():
    fit = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    for flops in (1e18, 5.76e23):
        n_opt, d_opt = scaling.compute_optimal(flops, fit)
        assert 6 * n_opt * d_opt == pytest.approx(flops, rel=1e-12)
        grid = n_opt * np.geomspace(0.5, 2.0, 401)
        law = scaling.ParametricFit(**fit)
        losses = law.loss(grid, flops / (6 * grid))
        assert grid[np.argmin(losses)] == pytest.approx(n_opt, rel=0.005)
    with pytest.raises(ConfigError):
        scaling.compute_optimal(0.0, fit)


# ------------------------------------------------------------------------ sweep


def test_plans_spend_the_budget_and_stay_inside_the_window():
    settings = scaling.SweepSettings(corpus="default")
    plans = scaling.planned_runs(settings, vocab_size=76)
    assert {p.budget for p in plans} == set(settings.budgets)
    for p in plans:
        per_step = settings.batch_size * settings.block_size
        cfg = p.size.config(76, settings.block_size)
        assert p.tokens == p.steps * per_step
        assert p.flops == scaling.train_flops(cfg, p.tokens)
        # the nearest whole step: within half a step's FLOPs of the budget
        assert abs(p.flops - p.budget) <= scaling.train_flops(cfg, per_step) / 2
        assert settings.min_tokens_per_param <= p.tokens_per_param <= settings.max_tokens_per_param
        assert p.steps >= settings.min_steps
    for budget in settings.budgets:
        assert len([p for p in plans if p.budget == budget]) >= 3


def test_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="corpus"):
        scaling.SweepSettings(corpus="wikipedia")
    with pytest.raises(ConfigError, match="budgets"):
        scaling.SweepSettings(budgets=(1e10, -1.0))
    with pytest.raises(ConfigError, match="batch_size"):
        scaling.SweepSettings(batch_size=0)
    s = scaling.SweepSettings(budgets=(3e10, 1e10, 1e10))
    assert s.budgets == (1e10, 3e10)


def test_lr_rule_is_bounded_and_falls_with_width():
    rates = [scaling.lr_for(s.n_embd) for s in scaling.SIZES]
    assert all(2e-3 <= r <= 1e-2 for r in rates)
    assert rates == sorted(rates, reverse=True)


@pytest.mark.slow
def test_a_sweep_point_is_seeded_and_recorded_completely():
    settings = scaling.SweepSettings(corpus="synthetic", budgets=(2e9,), synthetic_docs=60,
                                     val_blocks=16, min_steps=5)
    data = scaling.prepare_data(settings)
    assert data.entropy_rate == pytest.approx(
        scaling.synthetic_entropy_rate(settings), rel=1e-12)
    plan = scaling.plan_run(2e9, scaling.SIZES[0], data.vocab_size, settings)
    a = scaling.run_point(data, plan, settings)
    b = scaling.run_point(data, plan, settings)
    assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]
    assert a["params"] == scaling.model_params(plan.size.config(data.vocab_size, 64))
    assert a["params_total"] == a["params"] + 64 * plan.size.n_embd  # + position embeddings
    assert a["flops"] == plan.flops and a["steps"] == plan.steps
    assert 0 < a["val_loss"] < math.log(data.vocab_size) + 0.5
    assert torch.get_num_threads() >= 1


# ------------------------------------------------------------------------ shipped data


def test_the_shipped_sweep_is_complete_and_consistent():
    doc = scaling.load_sweep()
    assert doc["command"].startswith("course scaling sweep")
    assert {"course", "torch", "numpy", "python"} <= set(doc["versions"])
    assert set(doc["corpora"]) == set(scaling.CORPORA)
    syn = doc["corpora"]["synthetic"]
    settings = scaling.settings_from_doc(doc, "synthetic")
    assert syn["entropy_rate"] == pytest.approx(scaling.synthetic_entropy_rate(settings))
    for corpus in scaling.CORPORA:
        runs = scaling.runs_of(doc, corpus)
        settings = scaling.settings_from_doc(doc, corpus)
        vocab = doc["corpora"][corpus]["vocab_size"]
        planned = scaling.planned_runs(settings, vocab)
        assert [(r["budget"], r["name"]) for r in runs] == [(p.budget, p.size.name) for p in planned]
        for r, p in zip(runs, planned, strict=True):
            assert r["flops"] == p.flops and r["tokens"] == p.tokens and r["params"] == p.params
            assert math.isfinite(r["val_loss"]) and r["wall_s"] > 0
    if syn["entropy_rate"] is not None:
        assert min(r["val_loss"] for r in scaling.runs_of(doc, "synthetic")) > syn["entropy_rate"] - 0.05


def test_load_sweep_explains_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="course scaling sweep"):
        scaling.load_sweep(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a sweep JSON"):
        scaling.load_sweep(bad)
    bad.write_text(json.dumps({"format": 99, "runs": []}))
    with pytest.raises(ConfigError, match="format"):
        scaling.load_sweep(bad)


# ------------------------------------------------------------------------ widget


def test_budget_widget_marks_the_compute_optimal_size_and_follows_the_slider():
    from course.widgets import budget_explorer, budget_figure

    fit = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    fig = budget_figure(fit, 1e21, floor=1.69)
    curve, star = fig.data[0], fig.data[1]
    n_opt, d_opt = scaling.compute_optimal(1e21, fit)
    assert star.x[0] == pytest.approx(n_opt, rel=1e-6)
    assert min(curve.y) >= star.y[0] - 1e-4  # the star is the curve's minimum
    assert f"{n_opt:,.0f}" in fig.layout.meta["note"]
    w = budget_explorer(fit, log10_range=(18.0, 24.0), log10_flops=20.0)
    w.controls["log10_flops"].value = 23.0
    assert w.figure.data[1].x[0] == pytest.approx(scaling.compute_optimal(1e23, fit)[0], rel=1e-6)
    with pytest.raises(ConfigError, match="missing"):
        budget_figure({"E": 1.0}, 1e20)
    with pytest.raises(ConfigError, match="positive"):
        budget_figure(fit, -1.0)
    runs = [{"params": 1e9, "val_loss": 2.5, "flops": 1.2e21}, {"params": 1e9, "val_loss": 2.0,
                                                                 "flops": 1e23}]
    assert len(budget_figure(fit, 1e21, runs=runs).data) == 3  # only the run near the budget


def test_the_shipped_prediction_follows_from_the_shipped_sweep():
    """Its predictions are what fitting the shipped sweep gives (recomputed here, without
    training), and its measurement is the run of the chosen model at the new budget."""
    sweep, shipped = scaling.load_sweep(), scaling.load_prediction()
    assert [c["corpus"] for c in shipped["checks"]] == list(scaling.CORPORA)
    for check in shipped["checks"]:
        again = scaling.predict_and_check(sweep, check["corpus"], check["factor"], train_it=False)
        assert again["chosen"] == check["chosen"]
        assert again["budget"] == check["budget"] > check["largest_sweep_budget"]
        for key in ("predicted_loss", "n_opt_isoflop", "n_opt_parametric"):
            assert again[key] == pytest.approx(check[key], rel=1e-6), key
        measured = check["measured"]
        assert measured["flops"] == check["chosen"]["flops"] and measured["name"] == check["chosen"]["name"]
        assert check["measured_loss"] == measured["val_loss"] and math.isfinite(measured["val_loss"])


def test_parametric_fit_with_a_known_floor_fits_the_other_four():
    n, d, loss, true = _law_points()
    fit = scaling.fit_parametric(n, d, loss, e_fixed=true["E"])
    assert fit.E == true["E"]
    for key in ("A", "alpha", "B", "beta"):
        assert getattr(fit, key) == pytest.approx(true[key], rel=1e-4), key
    worse = scaling.fit_parametric(n, d, loss, e_fixed=0.5)  # a wrong floor fits worse
    assert worse.E == 0.5 and worse.objective > fit.objective + 1e-6
    with pytest.raises(ConfigError, match="below every loss"):
        scaling.fit_parametric(n, d, loss, e_fixed=5.0)


@pytest.mark.parametrize("corpus", scaling.CORPORA)
def test_the_parametric_fit_does_not_depend_on_rounding(corpus):
    """Losses that differ in the 12th digit (what another CPU's kernels give) fit to the
    same law: L-BFGS runs to the minimum instead of stopping wherever its iteration budget
    ends in the flat B-β valley (a single 150-iteration step moved B by 18 % here)."""
    runs = scaling.runs_of(scaling.load_sweep(), corpus)
    n, d = [r["params"] for r in runs], [r["tokens"] for r in runs]
    loss = np.array([r["val_loss"] for r in runs])
    base = scaling.fit_parametric(n, d, loss)
    wobble = np.where(np.arange(len(loss)) % 2, 1.0, -1.0)
    again = scaling.fit_parametric(n, d, loss * (1 + 1e-12 * wobble))
    for key in ("E", "A", "alpha", "B", "beta"):
        assert getattr(again, key) == pytest.approx(getattr(base, key), rel=1e-4), key
