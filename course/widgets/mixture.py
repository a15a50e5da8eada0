"""Mixture explorer: move the domain weights, read every domain's validation loss.

The losses come from a precomputed grid (`course.curation.load_mixture_grid()`: one small
model trained per mixture), so moving a slider trains nothing: it looks the mixture up.
Two sliders set the first two domains' weights; the last domain gets the rest. Blue bars
are the chosen mixture's per-domain losses; grey bars the best loss any mixture of the grid
reaches on that domain (the specialist trained on it alone, usually).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

from course.errors import ConfigError
from course.widgets._base import Explorer, set_note, title

__all__ = ["grid_row", "mixture_explorer", "mixture_figure"]

_CHOSEN, _BEST = "#1a73e8", "#c8ccd2"


def grid_row(grid: Mapping[str, Any], weights: Mapping[str, float]) -> dict[str, Any]:
    """The grid's row whose weights equal `weights` (to 1e-6); ConfigError if it has none."""
    domains = list(grid["domains"])
    for row in grid["rows"]:
        if all(math.isclose(row["weights"][d], float(weights.get(d, 0.0)), abs_tol=1e-6) for d in domains):
            return row
    step = grid.get("step")
    raise ConfigError(f"the grid has no mixture {dict(weights)}: its weights are multiples of "
                      f"{step} that sum to 1")


def mixture_figure(grid: Mapping[str, Any], weights: Mapping[str, float]) -> go.Figure:
    """Bars of the per-domain validation loss of the mixture `weights` (trace 0) next to the
    best loss of the whole grid on each domain (trace 1)."""
    domains = list(grid["domains"])
    row = grid_row(grid, weights)
    loss = [float(row["val_loss"][d]) for d in domains]
    best = [min(float(r["val_loss"][d]) for r in grid["rows"]) for d in domains]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=domains, y=loss, name="this mixture", marker_color=_CHOSEN,
                         text=[f"{v:.3f}" for v in loss], textposition="outside"))
    fig.add_trace(go.Bar(x=domains, y=best, name="best in the grid", marker_color=_BEST,
                         text=[f"{v:.3f}" for v in best], textposition="outside"))
    mix = ", ".join(f"{d} {float(row['weights'][d]):.2f}" for d in domains)
    fig.update_layout(
        title=title(f"validation loss per domain, mixture: {mix}",
                    f"mean over domains {sum(loss) / len(loss):.3f} nats/char "
                    f"(best possible mean here {min(sum(r['val_loss'].values()) for r in grid['rows']) / len(domains):.3f})"),
        barmode="group", yaxis=dict(title="val loss (nats per character)",
                                    range=[min(best) - 0.3, max(loss + best) + 0.25]),
        height=380, margin=dict(l=10, r=10, t=80, b=10), plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.6),
    )
    gaps = ", ".join(f"{d} +{v - b:.2f}" for d, v, b in zip(domains, loss, best, strict=True))
    return set_note(fig, f"Distance to the best mixture on each domain: {gaps}.")


class _MixtureExplorer(Explorer):
    def __init__(self, grid: Mapping[str, Any]) -> None:
        self.grid = grid
        self.domains = list(grid["domains"])
        step = float(grid["step"])
        first, second, last = self.domains
        start = grid["rows"][len(grid["rows"]) // 2]["weights"]
        controls = {
            first: widgets.FloatSlider(value=start[first], min=0.0, max=1.0, step=step,
                                       description=first, continuous_update=False),
            second: widgets.FloatSlider(value=start[second], min=0.0, max=1.0, step=step,
                                        description=second, continuous_update=False),
        }
        for c in controls.values():
            c.style = {"description_width": "initial"}
        self.last = last
        super().__init__(controls, self._draw)
        self.refresh()

    def _draw(self, **values: float) -> go.Figure:
        rest = 1.0 - sum(values.values())
        if rest < -1e-6:
            raise ConfigError(f"the weights add up to {sum(values.values()):.2f} > 1: lower one "
                              f"of them ({self.last} gets what is left)")
        return mixture_figure(self.grid, {**values, self.last: max(rest, 0.0)})


def mixture_explorer(grid: Mapping[str, Any] | None = None) -> Explorer:
    """Sliders for the first two domains' weights (the third gets the rest) and the grid's
    per-domain validation losses for that mixture. `grid` defaults to the shipped one."""
    if grid is None:
        from course.curation import load_mixture_grid

        grid = load_mixture_grid()
    if len(grid.get("domains", ())) != 3:
        raise ConfigError("the mixture explorer needs a grid over exactly three domains")
    return _MixtureExplorer(grid)
