"""Checks for lesson 11 (scaling): `train_flops`, `fit_power_law`, `isoflop_optimum`,
`compute_optimal`.

Each check compares the learner's function with the package's own (`course.scaling`,
whose `train_flops` equals `GPT.flops_per_token` × tokens, tested) on hand-picked and
seeded inputs. When an answer is wrong, the check computes the answers of the usual
mistakes (no attention term, forward FLOPs only, a fit in linear instead of log space,
the vertex formula without its 2, the exponents swapped, ...) and names the one the
learner's answer matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from course.checks._core import CheckFailed, call, exercise, expect_contract, first_match, show

# ------------------------------------------------------------------------ train_flops


def _flops_cases() -> list[tuple[str, Any, int]]:
    from course.model import GPTConfig

    return [
        ("the lesson's model: vocab 65, block 64, 2 layers, 4 heads, 64 wide; 1 token",
         GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64), 1),
        ("the same model, 1,000,000 tokens",
         GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64), 1_000_000),
        ("vocab 9, block 32, 1 layer, 1 head, 8 wide; 123,457 tokens",
         GPTConfig(vocab_size=9, block_size=32, n_layer=1, n_head=1, n_embd=8), 123_457),
        ("bias=False: vocab 100, block 128, 3 layers, 4 heads, 48 wide; 5,000 tokens",
         GPTConfig(vocab_size=100, block_size=128, n_layer=3, n_head=4, n_embd=48, bias=False),
         5_000),
        ("GPT-2 small: vocab 50257, block 1024, 12 layers, 12 heads, 768 wide; 3e11 tokens",
         GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
         300_000_000_000),
        ("no tokens at all: vocab 65, block 64, 2 layers, 64 wide; 0 tokens",
         GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64), 0),
    ]


def _flops_mistakes(config: Any, tokens: int) -> list[tuple[str, Callable[[], float]]]:
    from course.scaling import attention_flops_per_token, kaplan_params, model_params

    V, T, L, C = config.vocab_size, config.block_size, config.n_layer, config.n_embd
    N, att, D = model_params(config), attention_flops_per_token(config), tokens
    with_bias = V * C + L * (12 * C * C + 13 * C) + 2 * C
    return [
        ("you left out the attention term: q·kᵀ and att·v are matmuls without weights, "
         "12·n_layer·n_embd·T FLOPs per token (forward + backward) on top of 6·N",
         lambda: 6 * N * D),
        ("that is the forward pass only (2 FLOPs per weight per token); training adds the "
         "backward pass, which costs twice the forward", lambda: (2 * N + att // 3) * D),
        ("that is the forward pass only (2 FLOPs per weight per token); training adds the "
         "backward pass, which costs twice the forward", lambda: 2 * N * D),
        ("the attention term is 12·n_layer·n_embd·T per token: the model computes the full "
         "T×T score matrix (the mask only hides half of it), so do not halve it",
         lambda: (6 * N + att // 2) * D),
        ("the position embedding (wpe) is a lookup, not a matmul: leave its block_size·n_embd "
         "weights out of N", lambda: (6 * (N + T * C) + att) * D),
        ("the output layer is tied to the token embedding: one (vocab × n_embd) matrix, "
         "counted once", lambda: (6 * (N + V * C) + att) * D),
        ("count the token embedding: tied to the output layer, its vocab·n_embd weights do a "
         "full matmul at the output", lambda: (6 * kaplan_params(config) + att) * D),
        ("12·n_layer·n_embd² is Kaplan's approximation; count every weight and bias of the "
         "blocks, the final LayerNorm and the tied embedding, as num_params() does",
         lambda: (6 * (12 * L * C * C + V * C) + att) * D),
        ("12·n_layer·n_embd² is Kaplan's approximation; count every weight and bias of the "
         "blocks, the final LayerNorm and the tied embedding, as num_params() does",
         lambda: (6 * 12 * L * C * C + att) * D),
        ("with bias=False the Linear layers have no biases and each LayerNorm only its weight "
         "(n_embd, not 2·n_embd)", lambda: (6 * with_bias + att) * D),
        ("that is the cost of ONE token; multiply by the number of tokens",
         lambda: 6 * N + att),
    ]


@exercise("train_flops", hints=(
    "Two parts, both per token, times the number of tokens: 6 FLOPs per parameter N (2 "
    "forward, 4 backward), and the attention matmuls, 12·n_layer·n_embd·block_size. N counts "
    "what the model's num_params() counts. Return a Python int.",
    "Per block: four weight matrices (n_embd × 3·n_embd, n_embd × n_embd, n_embd × 4·n_embd, "
    "4·n_embd × n_embd), their biases, and two LayerNorms with a weight and a bias each; then "
    "the final LayerNorm and the token embedding (vocab × n_embd, shared with the output). "
    "Compare with GPT(config).num_params() for a small config.",
))
def train_flops(fn: Callable[[Any, int], int]) -> int:
    """`fn(config, tokens)` must equal `course.scaling.train_flops` exactly (an int)."""
    from course import scaling

    name = "train_flops"
    cases = _flops_cases()
    for desc, config, tokens in cases:
        before = config.to_dict()
        got = call(name, fn, config, tokens, inputs_desc=desc)
        if config.to_dict() != before:
            raise CheckFailed(name, f"on input {desc} — your function changed the config "
                              f"({before} became {config.to_dict()})",
                              "read the sizes from the config; never assign to its fields")
        if isinstance(got, (float, np.floating)):
            raise CheckFailed(name, f"on input {desc} — expected int, got the float {got!r}",
                              "every term is a whole number: use int arithmetic (no `/`, no "
                              "float factors such as 6.0 or 1e9) and return an int")
        expect_contract(name, desc, int, got, hint="return the FLOP count as a Python int")
        expected = scaling.train_flops(config, tokens)
        if int(got) != expected:
            hint = first_match(int(got), _flops_mistakes(config, tokens),
                               lambda a, b: int(a) == int(b)) or (
                "compare your N with GPT(config).num_params() first, then add the attention "
                "term 12·n_layer·n_embd·block_size per token")
            raise CheckFailed(name, f"on input {desc} — expected {expected:,}, got {int(got):,}",
                              hint)
    return len(cases)


# ---------------------------------------------------------------------- power law


def _power_law_cases() -> list[tuple[str, list[float], list[float]]]:
    rng = np.random.default_rng(11)
    cases = []
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    cases.append(("exact: y = 3·x^0.5 at x = 1, 2, 4, 8, 16", x, [3 * v**0.5 for v in x]))
    x = [1e10, 3e10, 1e11, 3e11, 1e12]
    cases.append(("exact, large x: y = 0.05·x^0.5 at x = 1e10 .. 1e12", x,
                  [0.05 * v**0.5 for v in x]))
    x = [10.0, 100.0, 1000.0, 10000.0]
    cases.append(("exact, falling: y = 20·x^-0.3 at x = 10 .. 10000", x, [20 * v**-0.3 for v in x]))
    x = np.geomspace(1e3, 1e6, 7)
    y = 2e-2 * x**0.7 * np.exp(rng.normal(0.0, 0.1, len(x)))
    cases.append(("noisy: y ≈ 0.02·x^0.7 at 7 points from 1e3 to 1e6 (seeded noise)",
                  [float(v) for v in x], [float(v) for v in y]))
    x = rng.uniform(1.0, 500.0, 9)
    y = 5.0 * x**-1.2 * np.exp(rng.normal(0.0, 0.2, 9))
    cases.append(("noisy, unsorted: y ≈ 5·x^-1.2 at 9 random x in [1, 500]",
                  [float(v) for v in x], [float(v) for v in y]))
    cases.append(("two points: (2, 8) and (4, 32)", [2.0, 4.0], [8.0, 32.0]))
    return cases


def _power_law_mistakes(x: list[float], y: list[float]) -> list[tuple[str, Callable[[], Any]]]:
    lx, ly = np.log(x), np.log(y)
    a, c = np.polyfit(lx, ly, 1)
    a10, c10 = np.polyfit(np.log10(x), np.log10(y), 1)

    def linear_space() -> tuple[float, float]:
        slope, intercept = np.polyfit(np.asarray(x), np.asarray(y), 1)
        return intercept, slope

    return [
        ("the order is (k, a): the prefactor first, then the exponent", lambda: (a, math.exp(c))),
        ("return k itself, not ln k: the intercept of the line in log space is ln k",
         lambda: (c, a)),
        ("you fitted with log10: the intercept is then log10 k, so k = 10**intercept "
         "(not e**intercept)", lambda: (math.exp(c10), a10)),
        ("fit the straight line to (ln x, ln y), not to (x, y): a power law is a line only in "
         "log-log space", linear_space),
        ("use every point in the least-squares fit, not just the first and the last",
         lambda: (y[0] / x[0] ** ((ly[-1] - ly[0]) / (lx[-1] - lx[0])),
                  (ly[-1] - ly[0]) / (lx[-1] - lx[0]))),
    ]


def _close_pair(got: Any, expected: tuple[float, float], rtol: float = 1e-6) -> bool:
    try:
        return all(math.isclose(float(g), float(e), rel_tol=rtol, abs_tol=1e-12)
                   for g, e in zip(got, expected, strict=True))
    except (TypeError, ValueError):
        return False


@exercise("fit_power_law", hints=(
    "A power law y = k·x^a is a straight line in log-log space: ln y = ln k + a·ln x. Fit "
    "that line by least squares (np.polyfit with degree 1 does it) and turn the intercept "
    "back into k. Return (k, a) as a tuple of two Python floats.",
    "np.polyfit(u, v, 1) returns [slope, intercept]: the slope is a, the intercept is ln k "
    "when you used natural logs (log10 k with np.log10). Check on x = [1, 2, 4], "
    "y = [3, 6, 12]: k = 3, a = 1.",
))
def fit_power_law(fn: Callable[[list[float], list[float]], tuple[float, float]]) -> int:
    """`fn(x, y)` must return (k, a) of the least-squares line through (ln x, ln y)."""
    from course import scaling

    name = "fit_power_law"
    cases = _power_law_cases()
    for desc, x, y in cases:
        got = call(name, fn, x, y, inputs_desc=desc)
        expect_contract(name, desc, tuple[float, float], got,
                        hint="return a tuple (k, a) of two Python floats")
        expected = scaling.fit_power_law(x, y)
        if not _close_pair(got, expected):
            hint = first_match(got, _power_law_mistakes(x, y), _close_pair) or (
                "take logs of both x and y, fit a degree-1 polynomial by least squares, and "
                "exponentiate the intercept")
            raise CheckFailed(name, f"on input {desc} — expected (k, a) ≈ "
                              f"({expected[0]:.6g}, {expected[1]:.6g}), got {show(got)}", hint)
    return len(cases)


# ------------------------------------------------------------------- IsoFLOP optimum


def _isoflop_cases() -> list[tuple[str, list[float], list[float]]]:
    rng = np.random.default_rng(5)
    cases = []

    def parabola(n: np.ndarray, n0: float, l0: float, curv: float) -> list[float]:
        return [float(l0 + curv * (math.log(v) - math.log(n0)) ** 2) for v in n]

    n = [1e3, 2e3, 4e3, 8e3, 16e3]
    cases.append(("exact parabola in ln N, vertex at N = 4000, loss 2.0, five sizes ×2 apart",
                  n, parabola(np.asarray(n), 4e3, 2.0, 0.05)))
    n = [1e3, 3e3, 1e4]
    cases.append(("three sizes, vertex between grid points (N ≈ 5000)", n,
                  parabola(np.asarray(n), 5e3, 1.5, 0.1)))
    n = [5e4, 1e5, 3e5, 1e6, 2e6, 5e6]
    cases.append(("unevenly spaced sizes 5e4 .. 5e6, vertex at 4e5", n,
                  parabola(np.asarray(n), 4e5, 3.1, 0.02)))
    n = [int(v) for v in np.geomspace(2e3, 2e5, 6)]
    losses = [v + float(e) for v, e in zip(parabola(np.asarray(n), 2.5e4, 1.8, 0.03),
                                           rng.normal(0.0, 0.004, len(n)), strict=True)]
    cases.append(("noisy losses (seeded) at 6 integer sizes from 2e3 to 2e5", n, losses))
    n = [8e3, 2e3, 32e3, 4e3, 16e3]
    cases.append(("the same sizes, unsorted (8e3, 2e3, 32e3, 4e3, 16e3)", n,
                  parabola(np.asarray(n), 6e3, 2.2, 0.07)))
    return cases


def _isoflop_mistakes(n: list[float], losses: list[float]) -> list[tuple[str, Callable[[], Any]]]:
    ln = np.log(n)
    a, b, c = np.polyfit(ln, losses, 2)
    x0 = -b / (2 * a)
    a10, b10, c10 = np.polyfit(np.log10(n), losses, 2)
    best = int(np.argmin(losses))

    def linear_space() -> tuple[float, float]:
        p, q, r = np.polyfit(np.asarray(n, dtype=float), losses, 2)
        v = -q / (2 * p)
        return float(v), float(r - q * q / (4 * p))

    return [
        ("return N_opt itself, not ln N_opt: the parabola's variable is ln N, so exponentiate "
         "the vertex", lambda: (x0, c - b * b / (4 * a))),
        ("the vertex of a·u² + b·u + c is at u = -b / (2a): the 2 is missing",
         lambda: (math.exp(-b / a), c - b * b / (4 * a))),
        ("the vertex of a·u² + b·u + c is at u = -b / (2a): mind the sign",
         lambda: (math.exp(b / (2 * a)), c - b * b / (4 * a))),
        ("you fitted in log10 N: the vertex is then log10 N_opt, so N_opt = 10**vertex",
         lambda: (math.exp(-b10 / (2 * a10)), c10 - b10 * b10 / (4 * a10))),
        ("fit the parabola in ln N, not in N: IsoFLOP curves are parabolas in log size",
         linear_space),
        ("return the fitted parabola's vertex, not the best of the measured points",
         lambda: (float(n[best]), float(losses[best]))),
        ("the loss at the optimum is the parabola's value at its vertex, c - b²/(4a)",
         lambda: (math.exp(x0), float(losses[best]))),
        ("the order is (N_opt, loss at N_opt)", lambda: (c - b * b / (4 * a), math.exp(x0))),
    ]


@exercise("isoflop_optimum", hints=(
    "Fit a parabola (np.polyfit with degree 2) to the losses as a function of ln N, find the "
    "u = ln N where it is lowest, and return (N at that point, the parabola's value there) as "
    "a tuple of two Python floats.",
    "np.polyfit(u, v, 2) returns [a, b, c] of a·u² + b·u + c; its minimum is at u = -b/(2a) "
    "and is worth c - b²/(4a). The answer is a vertex of the fit, usually between two of the "
    "measured sizes, and N = exp(u).",
))
def isoflop_optimum(fn: Callable[[list[float], list[float]], tuple[float, float]]) -> int:
    """`fn(n_params, losses)` must return the vertex (N_opt, L_opt) of the parabola in ln N."""
    from course import scaling

    name = "isoflop_optimum"
    cases = _isoflop_cases()
    for desc, n, losses in cases:
        got = call(name, fn, n, losses, inputs_desc=desc)
        expect_contract(name, desc, tuple[float, float], got,
                        hint="return a tuple (N_opt, loss_opt) of two Python floats")
        expected = scaling.isoflop_optimum(n, losses)
        if not _close_pair(got, expected, rtol=1e-6):
            hint = first_match(got, _isoflop_mistakes(n, losses),
                               lambda g, e: _close_pair(g, e, 1e-6)) or (
                "fit loss = a·(ln N)² + b·ln N + c by least squares and return the vertex")
            raise CheckFailed(name, f"on input {desc} — expected (N_opt, loss) ≈ "
                              f"({expected[0]:.6g}, {expected[1]:.6g}), got {show(got)}", hint)
    return len(cases)


# ------------------------------------------------------------------ compute-optimal


def _optimal_cases() -> list[tuple[str, float, dict[str, float]]]:
    chinchilla = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    return [
        ("Chinchilla's fit (E 1.69, A 406.4, α 0.34, B 410.7, β 0.28), C = 5.76e23 FLOPs",
         5.76e23, chinchilla),
        ("Chinchilla's fit, C = 1e21 FLOPs", 1e21, dict(chinchilla)),
        ("equal exponents α = β = 0.5, A = B = 10, C = 6e6 (N = D = 1000)", 6e6,
         {"E": 0.5, "A": 10.0, "alpha": 0.5, "B": 10.0, "beta": 0.5}),
        ("a laptop-sized fit (E 1.0, A 30, α 0.6, B 200, β 0.35), C = 3e12", 3e12,
         {"E": 1.0, "A": 30.0, "alpha": 0.6, "B": 200.0, "beta": 0.35}),
        ("α > β (A 5, α 0.8, B 50, β 0.3), C = 1e15", 1e15,
         {"E": 2.0, "A": 5.0, "alpha": 0.8, "B": 50.0, "beta": 0.3}),
    ]


def _optimal_mistakes(flops: float, fit: dict[str, float]) -> list[tuple[str, Callable[[], Any]]]:
    A, a, B, b = fit["A"], fit["alpha"], fit["B"], fit["beta"]

    def solve(c: float, exp_n: float, g_inv: bool = False, d_of: float = 6.0
              ) -> tuple[float, float]:
        G = (a * A / (b * B)) ** (1 / (a + b))
        if g_inv:
            G = 1 / G
        n = G * c ** exp_n
        return n, flops / d_of / n

    return [
        ("the budget is C = 6·N·D: the power laws apply to C/6, not to C",
         lambda: solve(flops, b / (a + b), d_of=6.0)),
        ("the budget is C = 6·N·D: D_opt = C / (6·N_opt)",
         lambda: solve(flops / 6, b / (a + b), d_of=1.0)),
        ("the exponents are swapped: N_opt grows as (C/6)^(β/(α+β)) and D_opt as "
         "(C/6)^(α/(α+β))", lambda: solve(flops / 6, a / (a + b))),
        ("G = (α·A / (β·B))^(1/(α+β)), not its inverse: setting the derivative to zero gives "
         "α·A/N^α = β·B/D^β", lambda: solve(flops / 6, b / (a + b), g_inv=True)),
        ("the order is (N_opt, D_opt)", lambda: solve(flops / 6, b / (a + b))[::-1]),
    ]


@exercise("compute_optimal", hints=(
    "Minimise L(N, D) = E + A/N^α + B/D^β under the constraint 6·N·D = C: write D = C/(6N), "
    "set dL/dN = 0 and solve for N. Return (N_opt, D_opt) as a tuple of two Python floats "
    "with 6·N_opt·D_opt = C.",
    "dL/dN = 0 gives α·A/N^α = β·B/D^β. With D = (C/6)/N this solves to "
    "N_opt = G·(C/6)^(β/(α+β)), where G = (α·A/(β·B))^(1/(α+β)); then D_opt = (C/6)/N_opt. "
    "E plays no part in where the optimum is.",
))
def compute_optimal(fn: Callable[[float, dict[str, float]], tuple[float, float]]) -> int:
    """`fn(flops, fit)` must return the (N, D) minimising the fitted loss at 6·N·D = flops."""
    from course import scaling

    name = "compute_optimal"
    cases = _optimal_cases()
    for desc, flops, fit in cases:
        got = call(name, fn, flops, fit, inputs_desc=desc)  # fails if the dict is changed
        expect_contract(name, desc, tuple[float, float], got,
                        hint="return a tuple (N_opt, D_opt) of two Python floats")
        expected = scaling.compute_optimal(flops, fit)
        if not _close_pair(got, expected, rtol=1e-6):
            hint = first_match(got, _optimal_mistakes(flops, fit),
                               lambda g, e: _close_pair(g, e, 1e-6)) or (
                "check that 6·N·D equals the budget, then that α·A/N^α equals β·B/D^β at "
                "your answer")
            raise CheckFailed(name, f"on input {desc} — expected (N_opt, D_opt) ≈ "
                              f"({expected[0]:.6g}, {expected[1]:.6g}), got {show(got)}", hint)
    return len(cases)
