"""A compute-budget slider over a fitted scaling law: read off the best model for a budget.

`budget_figure(fit, flops)` draws the law's IsoFLOP curve L(N, C / (6N)) at one budget,
with its minimum (the compute-optimal N, from `course.scaling.compute_optimal`) marked;
`budget_explorer(fit)` puts a slider on the budget (log10 FLOPs) and shows N_opt, D_opt,
tokens per parameter and the predicted loss above the figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from course.errors import ConfigError
from course.widgets._base import Explorer, set_note, title

_KEYS = ("E", "A", "alpha", "B", "beta")


def _law(fit: Mapping[str, float]) -> dict[str, float]:
    missing = [k for k in _KEYS if k not in fit]
    if missing:
        raise ConfigError(f"the fit needs the keys {list(_KEYS)}; missing {missing} (pass "
                          "ParametricFit.as_dict() or a dict like it)")
    return {k: float(fit[k]) for k in _KEYS}


def budget_figure(fit: Mapping[str, float], flops: float, *, floor: float | None = None,
                  runs: Sequence[Mapping[str, Any]] = ()) -> go.Figure:
    """The fitted loss against N on the budget line 6·N·D = `flops`, its optimum marked.

    `floor` (optional) draws a known irreducible loss; `runs` (sweep records with
    "params", "val_loss", "flops") adds the measured runs whose budget is within a factor
    1.5 of `flops`, for comparison.
    """
    from course.scaling import compute_optimal

    law = _law(fit)
    if not (isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0):
        raise ConfigError(f"the budget must be a positive number of FLOPs, got {flops!r}")
    n_opt, d_opt = compute_optimal(flops, law)

    def loss(n: np.ndarray) -> np.ndarray:
        d = flops / (6 * n)
        return law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]

    n = n_opt * np.geomspace(1 / 30, 30, 121)
    l_opt = float(loss(np.array([n_opt]))[0])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=n.round(1).tolist(), y=loss(n).round(4).tolist(), mode="lines",
                             name="fitted L(N, C/6N)"))
    fig.add_trace(go.Scatter(x=[round(n_opt, 1)], y=[round(l_opt, 4)], mode="markers",
                             marker=dict(size=12, symbol="star"), name="compute-optimal"))
    near = [r for r in runs if 1 / 1.5 <= r["flops"] / flops <= 1.5]
    if near:
        fig.add_trace(go.Scatter(x=[r["params"] for r in near],
                                 y=[round(r["val_loss"], 4) for r in near], mode="markers",
                                 name="measured runs near this budget"))
    if floor is not None:
        fig.add_hline(y=floor, line_dash="dash", annotation_text="entropy rate (floor)")
    fig.update_xaxes(type="log", title="N (parameters)")
    fig.update_yaxes(title="loss (nats)")
    fig.update_layout(title=title(f"Budget {flops:.2g} FLOPs"), height=380,
                      template="plotly_white", margin=dict(t=50))
    return set_note(fig, f"N_opt ≈ {n_opt:,.0f} parameters, D_opt ≈ {d_opt:,.0f} tokens "
                         f"({d_opt / n_opt:,.0f} tokens per parameter); predicted loss "
                         f"{l_opt:.3f}")


def budget_explorer(fit: Mapping[str, float], *, floor: float | None = None,
                    runs: Sequence[Mapping[str, Any]] = (),
                    log10_range: tuple[float, float] = (9.0, 15.0),
                    log10_flops: float = 12.0) -> Explorer:
    """A slider on log10(budget) over `budget_figure`: move it and read off the optimum.

    Control: `log10_flops`. `.figure` is the current figure; its note (shown above it)
    gives N_opt, D_opt, tokens per parameter and the predicted loss.
    """
    law = _law(fit)
    lo, hi = log10_range
    if not lo < hi:
        raise ConfigError(f"log10_range must be (low, high) with low < high, got {log10_range}")
    slider = widgets.FloatSlider(value=min(max(log10_flops, lo), hi), min=lo, max=hi, step=0.1,
                                 description="log10 FLOPs", continuous_update=False)
    slider.style = {"description_width": "initial"}

    def draw(log10_flops: float) -> go.Figure:
        return budget_figure(law, 10.0 ** log10_flops, floor=floor, runs=runs)

    w = Explorer({"log10_flops": slider}, draw)
    w.refresh()
    return w
