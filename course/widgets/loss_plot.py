"""Live training plot: a callback for `course.train.train` that redraws the loss curves.

    plot = LiveLossPlot()
    train(model, train_blocks, val_blocks, cfg, callback=plot)
    plot.figure()          # the final static figure, anywhere (notebook, script, test)

In a notebook the plot shows itself at the first record (or where you display `plot`)
and is redrawn in place, at most every `every` records and `min_interval` seconds; an
evaluation record (with `val_loss`) and the last step are always drawn. In a terminal or
a headless run it draws nothing and never raises: the records are kept, and `figure()`
builds the figure on demand.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from course.errors import ConfigError
from course.widgets._base import in_notebook, show_in, title

__all__ = ["loss_figure", "LiveLossPlot", "live_loss_plot"]


def _value(record: Mapping[str, Any], key: str) -> float | None:
    v = record.get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None


def loss_figure(records: Iterable[Mapping[str, Any]], *, x: str = "step") -> go.Figure:
    """Train / validation loss (top) and learning rate (bottom) against `x` ("step" or "tokens").

    Traces, in order: "train loss" (one point per record), "val loss" (one per record that
    has `val_loss`), "learning rate" (one per record that has `lr`).
    """
    if x not in ("step", "tokens"):
        raise ConfigError(f"x must be 'step' or 'tokens', got {x!r}")
    records = list(records)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28],
                        vertical_spacing=0.06)
    for key, name, row, style in (
        ("train_loss", "train loss", 1, dict(mode="lines", line=dict(color="#1a73e8"))),
        ("val_loss", "val loss", 1, dict(mode="lines+markers", line=dict(color="#e8710a"))),
        ("lr", "learning rate", 2, dict(mode="lines", line=dict(color="#5f6368"))),
    ):
        points = [(r.get(x), _value(r, key)) for r in records if _value(r, key) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=name, **style),
                      row=row, col=1)
    if records:
        last = records[-1]
        parts = [f"{x} {last.get(x)}", f"train {_value(last, 'train_loss') or float('nan'):.3f}"]
        vals = [r for r in records if _value(r, "val_loss") is not None]
        if vals:
            parts.append(f"val {_value(vals[-1], 'val_loss'):.3f}")
        heading = "training: " + ", ".join(parts)
    else:
        heading = "training: waiting for the first record"
    fig.update_layout(title=title(heading), height=480,
                      margin=dict(l=10, r=10, t=80, b=10), legend=dict(orientation="h", y=1.02, x=0),
                      plot_bgcolor="white")
    fig.update_yaxes(title_text="loss (nats/token)", row=1, col=1, gridcolor="#eee")
    fig.update_yaxes(title_text="lr", row=2, col=1, gridcolor="#eee", exponentformat="e")
    fig.update_xaxes(title_text=x, row=2, col=1, gridcolor="#eee")
    return fig


class LiveLossPlot:
    """Callable `callback(record)` for `train`, drawing live in notebooks, silent elsewhere.

    `every`: draw at most every this many records; `min_interval`: and at most this often
    (seconds); `total_steps`: the step whose record is always drawn (the end of training);
    `x`: "step" or "tokens". `records` holds every record received.
    """

    def __init__(self, every: int = 1, min_interval: float = 0.5, total_steps: int | None = None,
                 x: str = "step") -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be an integer >= 1, got {every!r}")
        if x not in ("step", "tokens"):
            raise ConfigError(f"x must be 'step' or 'tokens', got {x!r}")
        self.every, self.min_interval, self.total_steps, self.x = every, float(min_interval), total_steps, x
        self.records: list[dict[str, Any]] = []
        self.draws = 0  # how many times the figure was sent to the notebook
        self._output = None  # ipywidgets.Output, made only inside a kernel
        self._shown = False
        self._pending = 0
        self._last_draw = -math.inf
        self._warned = False

    # ---------------------------------------------------------------- the callback
    def __call__(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        self._pending += 1
        if not in_notebook():
            return  # terminal / headless: keep the record, draw nothing
        try:
            if not self._shown:
                from IPython.display import display

                display(self)  # shows the Output and draws (via _ipython_display_)
            elif self._due(record):
                self.draw()
        except Exception as err:  # a plot must never stop a training run
            if not self._warned:
                warnings.warn(f"LiveLossPlot could not draw ({err!r}); training goes on, and "
                              "plot.figure() still gives the figure", stacklevel=2)
                self._warned = True

    def _due(self, record: Mapping[str, Any]) -> bool:
        if "val_loss" in record:
            return True
        if self.total_steps is not None and record.get("step", -1) >= self.total_steps:
            return True
        return self._pending >= self.every and time.monotonic() - self._last_draw >= self.min_interval

    # ---------------------------------------------------------------- figure and drawing
    def figure(self) -> go.Figure:
        """The figure of every record so far (a fresh static plotly Figure)."""
        return loss_figure(self.records, x=self.x)

    @property
    def widget(self):
        """The `Output` the plot draws into (made on first use)."""
        if self._output is None:
            import ipywidgets as widgets

            self._output = widgets.Output()
        return self._output

    def draw(self) -> None:
        """Redraw now (no-op outside a notebook)."""
        self._pending = 0
        self._last_draw = time.monotonic()
        if in_notebook():
            show_in(self.widget, self.figure())
            self.draws += 1

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if in_notebook():
            display(self.widget)
            self._shown = True
            self.draw()
        else:
            print(repr(self))

    def __repr__(self) -> str:
        return f"LiveLossPlot({len(self.records)} records; call .figure() for the plot)"


def live_loss_plot(every: int = 1, min_interval: float = 0.5, total_steps: int | None = None,
                   x: str = "step") -> LiveLossPlot:
    """A new `LiveLossPlot` (see there); pass it as `train(..., callback=plot)`."""
    return LiveLossPlot(every=every, min_interval=min_interval, total_steps=total_steps, x=x)
