"""What every widget shares: a container that redraws a figure into an `Output`.

Design (the same for every widget of the course):

* a *pure* function turns plain arguments into a plotly `Figure` (tested headless);
* a `Explorer` (an ipywidgets `VBox`) holds the controls, an `Output` and the current
  figure; whenever a control changes it rebuilds the figure and, inside a notebook,
  replaces the `Output`'s content by it (`show_in`: one update of its `outputs` state,
  never the `with out:` capture context; see `show_in` for why).

Only core ipywidgets are used (Colab ships ipywidgets 7) and never plotly's
`FigureWidget` (it needs anywidget, which Colab lacks). The figure is rendered as a
small JSON bundle (`plotly_mimetype`; Colab gets its own renderer), never with plotly.js
embedded. Outside a running kernel (a script, pytest) nothing is drawn, but the figure
is still built and kept in `.figure`, so tests can check it.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

from course.errors import CourseError

EOS_LABEL = "⟨EOS⟩"  # how the end-of-text token is written on axes and in hover texts


def in_notebook() -> bool:
    """True inside a running Jupyter kernel (JupyterLab, Colab, VS Code), False elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def renderer() -> str:
    """The plotly renderer for figures shown by widgets: light JSON, never embedded plotly.js."""
    return "colab" if "google.colab" in sys.modules else "plotly_mimetype"


def figure_output(fig: go.Figure) -> dict[str, Any]:
    """`fig` as one notebook output: the `display_data` that `fig.show()` would send."""
    import plotly.io as pio

    shown_by = pio.renderers[renderer()]
    shown_by.activate()
    return {"output_type": "display_data", "data": shown_by.to_mimebundle(fig.to_dict()),
            "metadata": {}}


def show_in(out: widgets.Output, fig: go.Figure) -> None:
    """Replace what `out` shows by `fig` (no-op outside a kernel: there is nowhere to draw).

    One assignment to the Output's `outputs` state: the old figure stays until the new one
    replaces it, and the kernel only ever *sends* (a widget state update on IOPub).

    Never `with out: fig.show()`. Output *capture* makes headless runners answer: nbclient
    (under nbconvert, papermill, nbclient itself and `course solutions execute`) emulates a
    front end's Output widget and writes every captured output back to the kernel on the
    shell socket, while it is waiting on that same socket for the cell's execute_reply.
    jupyter_client sends through a blocking shadow of the asyncio socket; that send can
    consume the socket's edge-triggered wake-up for a reply that has just arrived, and the
    run then waits with the kernel idle until the cell's timeout (forever without one).
    """
    if not in_notebook():
        return
    out.outputs = (figure_output(fig),)


def show_text_in(out: widgets.Output, text: str) -> None:
    """Replace what `out` shows by plain `text`; works with or without a kernel."""
    out.outputs = ()
    out.append_stdout(text if text.endswith("\n") else text + "\n")


def token_label(tok: str, eos: str | None = None) -> str:
    """A token as plotly text: whitespace made visible, EOS named, HTML special chars escaped.

    Plotly reads `<...>` in labels as markup, so `<|endoftext|>` would vanish without this.
    """
    if eos is not None and tok == eos:
        return EOS_LABEL
    if tok == "<|endoftext|>":
        return EOS_LABEL
    visible = tok.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return html.escape(visible, quote=False) if visible else "∅"


def short(label: str, width: int = 10) -> str:
    """Cut long labels for axes (hover texts keep the full label)."""
    return label if len(label) <= width else label[: width - 1] + "…"


class Explorer(widgets.VBox):
    """Controls + status line + figure, redrawn whenever a control's value changes.

    Attributes for lessons and tests:

    * `controls`: name -> control widget (set `.value` to drive the widget);
    * `figure`: the current plotly `Figure` (rebuilt on every change);
    * `message`: an `HTML` line with a short explanation, or the error a bad input caused;
    * `output`: the `Output` the figure is drawn into.

    `build(**values)` gets every control's value by name and returns the figure; a
    `CourseError` it raises is shown in `message` (the previous figure stays), so a typo
    in a text box never produces a traceback.
    """

    def __init__(
        self,
        controls: dict[str, widgets.Widget],
        build: Callable[..., go.Figure],
        *,
        rows: list[list[str]] | None = None,
        extra: list[widgets.Widget] | None = None,
    ) -> None:
        self.controls = dict(controls)
        self.output = widgets.Output()
        self.message = widgets.HTML(value="")
        self.figure: go.Figure = go.Figure()
        self._build_figure = build
        self._held = False
        names = rows or [list(self.controls)]
        boxes = [widgets.HBox([self.controls[n] for n in row]) for row in names]
        super().__init__(children=[*boxes, self.message, self.output, *(extra or [])])
        for control in self.controls.values():
            control.observe(self._on_change, names="value")

    # -------------------------------------------------------------------- driving
    def values(self) -> dict[str, Any]:
        """Every control's current value, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def set(self, **values: Any) -> Explorer:
        """Set several controls at once with a single redraw; returns self."""
        with self.hold():
            for name, value in values.items():
                if name not in self.controls:
                    raise CourseError(f"unknown control {name!r}; this widget has {sorted(self.controls)}")
                self.controls[name].value = value
        return self

    @contextmanager
    def hold(self):
        """Inside `with w.hold():` control changes do not redraw; one redraw at the end."""
        was, self._held = self._held, True
        try:
            yield
        finally:
            self._held = was
        if not was:
            self.refresh()

    def _on_change(self, change: dict[str, Any]) -> None:
        if not self._held:
            self.refresh()

    def sync_controls(self) -> None:
        """Hook: adjust dependent controls (slider ranges, options) before a redraw."""

    def refresh(self) -> None:
        """Rebuild the figure from the controls and redraw it."""
        with self._quiet():
            self.sync_controls()
        try:
            fig = self._build_figure(**self.values())
        except CourseError as err:
            self.message.value = f"<span style='color:#b00020'>⚠ {html.escape(str(err))}</span>"
            return
        self.figure = fig
        note = fig.layout.meta.get("note", "") if isinstance(fig.layout.meta, dict) else ""
        self.message.value = note
        show_in(self.output, fig)

    @contextmanager
    def _quiet(self):
        was, self._held = self._held, True
        try:
            yield
        finally:
            self._held = was


def set_note(fig: go.Figure, note: str) -> go.Figure:
    """Attach a one-line HTML explanation that the widget shows above the figure."""
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    meta["note"] = note
    fig.update_layout(meta=meta)
    return fig


def title(text: str, sub: str | None = None) -> dict[str, Any]:
    """A figure title pinned to the top edge, so axes drawn on top never run into it."""
    full = text if sub is None else f"{text}<br><sup>{sub}</sup>"
    return dict(text=full, font=dict(size=15), x=0.02, xanchor="left", yref="container", y=1.0,
                yanchor="top", pad=dict(t=12))


def set_max(slider: widgets.Widget, maximum: int, minimum: int | None = None) -> None:
    """Change an int slider's range, keeping its value inside (ipywidgets clamps it)."""
    if minimum is not None and minimum > slider.max:
        slider.max = minimum
    if minimum is not None:
        slider.min = minimum
    slider.max = max(maximum, slider.min)
