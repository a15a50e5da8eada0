"""The checks of lesson 11: correct code passes (several ways), the usual mistakes fail
with the right hint, and the contracts (types, unmodified inputs) are enforced."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lookalikes import AlwaysEqualFloat, AlwaysEqualList

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.model import GPT

# ------------------------------------------------------------------------ train_flops


def flops_by_hand(config, tokens):
    C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    vec = 13 * C if config.bias else 2 * C  # biases and LayerNorms of one block
    n = V * C + L * (12 * C * C + vec) + (2 * C if config.bias else C)
    return (6 * n + 12 * L * C * T) * tokens


def flops_from_the_model(config, tokens):
    # building GPT-2 small takes a moment but is a legitimate way to count
    return GPT(config).flops_per_token() * tokens


def flops_numpy_int(config, tokens):
    exact = flops_by_hand(config, tokens)
    return np.int64(exact) if exact < 2**62 else exact  # GPT-2's count overflows int64


def flops_no_attention(config, tokens):
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    vec = 13 * C if config.bias else 2 * C
    n = V * C + L * (12 * C * C + vec) + (2 * C if config.bias else C)
    return 6 * n * tokens


def flops_kaplan(config, tokens):
    C, L, T = config.n_embd, config.n_layer, config.block_size
    return (6 * 12 * L * C * C + 12 * L * C * T) * tokens


def flops_with_wpe(config, tokens):
    return flops_by_hand(config, tokens) + 6 * config.block_size * config.n_embd * tokens


def flops_untied(config, tokens):
    return flops_by_hand(config, tokens) + 6 * config.vocab_size * config.n_embd * tokens


def flops_forward_only(config, tokens):
    return flops_by_hand(config, tokens) // 3


def flops_causal_half(config, tokens):
    C, L, T = config.n_embd, config.n_layer, config.block_size
    return flops_by_hand(config, tokens) - 6 * L * C * T * tokens


def flops_always_biases(config, tokens):
    C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    n = V * C + L * (12 * C * C + 13 * C) + 2 * C
    return (6 * n + 12 * L * C * T) * tokens


def flops_per_token_only(config, tokens):
    return flops_by_hand(config, 1)


def flops_as_float(config, tokens):
    return float(flops_by_hand(config, tokens))


@pytest.mark.parametrize("fn", [flops_by_hand, flops_from_the_model, flops_numpy_int])
def test_train_flops_accepts_correct_code(fn, capsys):
    check.train_flops(fn)
    assert capsys.readouterr().out.startswith("✓ train_flops: 6 cases passed")


@pytest.mark.parametrize("fn, hint", [
    (flops_no_attention, "left out the attention term"),
    (flops_kaplan, "Kaplan's approximation"),
    (flops_with_wpe, "position embedding (wpe) is a lookup"),
    (flops_untied, "counted once"),
    (flops_forward_only, "forward pass only"),
    (flops_causal_half, "do not halve it"),
    (flops_always_biases, "with bias=False"),
    (flops_per_token_only, "multiply by the number of tokens"),
])
def test_train_flops_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.train_flops(fn)
    assert hint in str(info.value)


def test_train_flops_enforces_an_int_and_an_unchanged_config():
    with pytest.raises(CheckFailed, match="expected int, got the float"):
        check.train_flops(flops_as_float)
    with pytest.raises(CheckFailed, match="expected int"):
        check.train_flops(lambda config, tokens: str(flops_by_hand(config, tokens)))
    with pytest.raises(CheckFailed, match="expected int"):
        check.train_flops(lambda config, tokens: AlwaysEqualFloat(1.0))

    def edits(config, tokens):
        config.block_size = 1
        return flops_by_hand(config, tokens)

    with pytest.raises(CheckFailed, match="changed the config"):
        check.train_flops(edits)


def test_train_flops_stub_is_not_attempted():
    def stub(config, tokens):
        raise NotImplementedError("Exercise: train_flops")

    with pytest.raises(NotAttempted):
        check.train_flops(stub)


# ---------------------------------------------------------------------- power law


def power_law_polyfit(x, y):
    a, c = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(c)), float(a)


def power_law_log10(x, y):
    a, c = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(10**c), float(a)


def power_law_by_formula(x, y):
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    a = sum((u - mx) * (v - my) for u, v in zip(lx, ly, strict=True)) / sum((u - mx) ** 2 for u in lx)
    return math.exp(my - a * mx), a


def power_law_numpy_floats(x, y):
    k, a = power_law_polyfit(x, y)
    return np.float64(k), np.float32(a).item()


@pytest.mark.parametrize("fn", [power_law_polyfit, power_law_log10, power_law_by_formula,
                                power_law_numpy_floats])
def test_fit_power_law_accepts_correct_code(fn, capsys):
    check.fit_power_law(fn)
    assert capsys.readouterr().out.startswith("✓ fit_power_law: 6 cases passed")


@pytest.mark.parametrize("fn, hint", [
    (lambda x, y: power_law_polyfit(x, y)[::-1], "the order is (k, a)"),
    (lambda x, y: (math.log(power_law_polyfit(x, y)[0]), power_law_polyfit(x, y)[1]),
     "return k itself, not ln k"),
    (lambda x, y: (math.exp(np.polyfit(np.log10(x), np.log10(y), 1)[1]),
                   float(np.polyfit(np.log10(x), np.log10(y), 1)[0])), "k = 10**intercept"),
    (lambda x, y: tuple(float(v) for v in np.polyfit(x, y, 1)[::-1]), "log-log space"),
    (lambda x, y: (y[0] / x[0] ** (math.log(y[-1] / y[0]) / math.log(x[-1] / x[0])),
                   math.log(y[-1] / y[0]) / math.log(x[-1] / x[0])), "use every point"),
])
def test_fit_power_law_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.fit_power_law(fn)
    assert hint in str(info.value)


def test_fit_power_law_enforces_its_contract():
    with pytest.raises(CheckFailed, match=r"expected tuple\[float, float\], got a list"):
        check.fit_power_law(lambda x, y: list(power_law_polyfit(x, y)))
    with pytest.raises(CheckFailed, match=r"expected tuple\[float, float\]"):
        check.fit_power_law(lambda x, y: AlwaysEqualList([1.0, 2.0]))
    with pytest.raises(CheckFailed, match=r"expected tuple\[float, float\]"):
        check.fit_power_law(lambda x, y: np.polyfit(np.log(x), np.log(y), 1))

    def sorts_in_place(x, y):
        x.sort()
        return power_law_polyfit(x, y)

    with pytest.raises(CheckFailed, match="changed its argument 1 in place"):
        check.fit_power_law(sorts_in_place)


# ------------------------------------------------------------------- IsoFLOP optimum


def vertex_polyfit(n, losses):
    a, b, c = np.polyfit(np.log(n), losses, 2)
    u = -b / (2 * a)
    return float(math.exp(u)), float(a * u * u + b * u + c)


def vertex_log10(n, losses):
    a, b, c = np.polyfit(np.log10(n), losses, 2)
    u = -b / (2 * a)
    return float(10**u), float(np.polyval([a, b, c], u))


def vertex_lstsq(n, losses):
    u = np.log(np.asarray(n, dtype=float))
    X = np.stack([u**2, u, np.ones_like(u)], axis=1)
    (a, b, c), *_ = np.linalg.lstsq(X, np.asarray(losses), rcond=None)
    return float(math.exp(-b / (2 * a))), float(c - b * b / (4 * a))


@pytest.mark.parametrize("fn", [vertex_polyfit, vertex_log10, vertex_lstsq])
def test_isoflop_optimum_accepts_correct_code(fn, capsys):
    check.isoflop_optimum(fn)
    assert capsys.readouterr().out.startswith("✓ isoflop_optimum: 5 cases passed")


def _vertex_variant(kind):
    def fn(n, losses):
        a, b, c = np.polyfit(np.log(n), losses, 2)
        u = -b / (2 * a)
        lo = float(c - b * b / (4 * a))
        if kind == "log":
            return float(u), lo
        if kind == "no2":
            return float(math.exp(-b / a)), lo
        if kind == "sign":
            return float(math.exp(b / (2 * a))), lo
        if kind == "best":
            i = int(np.argmin(losses))
            return float(n[i]), float(losses[i])
        if kind == "swap":
            return lo, float(math.exp(u))
        if kind == "linear":
            p, q, r = np.polyfit(np.asarray(n, dtype=float), losses, 2)
            return float(-q / (2 * p)), float(r - q * q / (4 * p))
        raise AssertionError(kind)

    return fn


@pytest.mark.parametrize("kind, hint", [
    ("log", "not ln N_opt"),
    ("no2", "the 2 is missing"),
    ("sign", "mind the sign"),
    ("best", "not the best of the measured points"),
    ("swap", "the order is (N_opt, loss at N_opt)"),
    ("linear", "fit the parabola in ln N, not in N"),
])
def test_isoflop_optimum_rejects_typical_mistakes_with_their_hint(kind, hint):
    with pytest.raises(CheckFailed) as info:
        check.isoflop_optimum(_vertex_variant(kind))
    assert hint in str(info.value)


def test_isoflop_optimum_enforces_its_contract():
    with pytest.raises(CheckFailed, match=r"expected tuple\[float, float\]"):
        check.isoflop_optimum(lambda n, losses: [*vertex_polyfit(n, losses)])

    def pops(n, losses):
        losses.pop()
        n.pop()
        return vertex_polyfit(n, losses)

    with pytest.raises(CheckFailed, match="in place"):
        check.isoflop_optimum(pops)

    def stub(n, losses):
        raise NotImplementedError

    with pytest.raises(NotAttempted):
        check.isoflop_optimum(stub)


# ------------------------------------------------------------------ compute-optimal


def optimal_closed_form(flops, fit):
    A, a, B, b = fit["A"], fit["alpha"], fit["B"], fit["beta"]
    G = (a * A / (b * B)) ** (1 / (a + b))
    n = G * (flops / 6) ** (b / (a + b))
    return n, flops / (6 * n)


def optimal_by_balance(flops, fit):
    # α·A/N^α = β·B/D^β with D = C/(6N), solved in log space for ln N
    A, a, B, b = fit["A"], fit["alpha"], fit["B"], fit["beta"]
    ln_c6 = math.log(flops / 6)
    ln_n = (math.log(a * A) - math.log(b * B) + b * ln_c6) / (a + b)
    n = math.exp(ln_n)
    return float(n), float(math.exp(ln_c6 - ln_n))


@pytest.mark.parametrize("fn", [optimal_closed_form, optimal_by_balance])
def test_compute_optimal_accepts_correct_code(fn, capsys):
    check.compute_optimal(fn)
    assert capsys.readouterr().out.startswith("✓ compute_optimal: 5 cases passed")


def _optimal_variant(kind):
    def fn(flops, fit):
        A, a, B, b = fit["A"], fit["alpha"], fit["B"], fit["beta"]
        G = (a * A / (b * B)) ** (1 / (a + b))
        if kind == "no6":
            n = G * flops ** (b / (a + b))
            return n, flops / (6 * n)
        if kind == "d_no6":
            n = G * (flops / 6) ** (b / (a + b))
            return n, flops / n
        if kind == "swapped_exponents":
            n = G * (flops / 6) ** (a / (a + b))
            return n, flops / (6 * n)
        if kind == "inverse_g":
            n = (flops / 6) ** (b / (a + b)) / G
            return n, flops / (6 * n)
        if kind == "order":
            n = G * (flops / 6) ** (b / (a + b))
            return flops / (6 * n), n
        raise AssertionError(kind)

    return fn


@pytest.mark.parametrize("kind, hint", [
    ("no6", "not to C"),
    ("d_no6", "D_opt = C / (6·N_opt)"),
    ("swapped_exponents", "the exponents are swapped"),
    ("inverse_g", "not its inverse"),
    ("order", "the order is (N_opt, D_opt)"),
])
def test_compute_optimal_rejects_typical_mistakes_with_their_hint(kind, hint):
    with pytest.raises(CheckFailed) as info:
        check.compute_optimal(_optimal_variant(kind))
    assert hint in str(info.value)


def test_compute_optimal_enforces_its_contract():
    def edits(flops, fit):
        fit["E"] = 0.0
        return optimal_closed_form(flops, fit)

    with pytest.raises(CheckFailed, match="changed its argument 2 in place"):
        check.compute_optimal(edits)
    with pytest.raises(CheckFailed, match=r"expected tuple\[float, float\]"):
        check.compute_optimal(lambda flops, fit: {"N": 1.0, "D": 2.0})


def test_every_scaling_check_has_two_hint_levels():
    from course.checks._core import HINTS

    check.load_all()
    for name in ("train_flops", "fit_power_law", "isoflop_optimum", "compute_optimal"):
        assert len(HINTS[name]) >= 2, name
