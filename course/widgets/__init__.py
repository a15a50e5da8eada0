"""Interactive figures for the lessons: one function per idea, to play with.

| widget | what to play with |
|---|---|
| `mask_explorer(text)` | attention masks (causal, bidirectional, prefix-LM, packed documents, sliding window) |
| `packing_viewer(docs)` | documents packed into blocks: EOS, padding, dropped tail, shifted labels |
| `attention_viewer(model, tok, prompt)` | a model's attention weights, per layer and head |
| `LiveLossPlot()` | `train(..., callback=plot)`: loss and learning rate, live |
| `sampling_explorer(model, tok, prompt)` | temperature, top-k, top-p on the next-token distribution |
| `budget_explorer(fit)` | a compute budget -> the fitted law's compute-optimal N, D and loss |
| `mixture_explorer(grid)` | domain weights of a data mixture -> per-domain validation loss |

Each widget is a pure figure function (`mask_figure`, `packing_figure`, ...) that
builds a plotly `Figure` from plain arguments, wrapped in ipywidgets controls. The
wrappers return the container (display it as a cell's value) with `.controls` (name ->
control) and `.figure` (the current figure). Only core ipywidgets are used, so they work
in JupyterLab, Binder and Colab (ipywidgets 7 or 8).

To draw your own figure into an `Output` (a slider of your own), use `show_in(out, fig)`
rather than `with out: fig.show()`: it replaces the Output's content in one state update,
which headless runs (nbclient, nbconvert, CI) execute without ever stalling.
"""

from course.widgets._base import Explorer, in_notebook, show_in
from course.widgets.attention_view import attention_figure, attention_viewer, attention_weights
from course.widgets.loss_plot import LiveLossPlot, live_loss_plot, loss_figure
from course.widgets.mask_view import MASK_KINDS, mask_explorer, mask_figure, mask_matrix
from course.widgets.mixture import mixture_explorer, mixture_figure
from course.widgets.packing_view import packing_figure, packing_viewer
from course.widgets.sampling_view import filtered_distribution, sampling_explorer, sampling_figure
from course.widgets.scaling_view import budget_explorer, budget_figure

__all__ = [
    "Explorer",
    "in_notebook",
    "show_in",
    "MASK_KINDS",
    "mask_matrix",
    "mask_figure",
    "mask_explorer",
    "packing_figure",
    "packing_viewer",
    "attention_weights",
    "attention_figure",
    "attention_viewer",
    "loss_figure",
    "LiveLossPlot",
    "live_loss_plot",
    "filtered_distribution",
    "sampling_figure",
    "sampling_explorer",
    "budget_figure",
    "budget_explorer",
    "mixture_figure",
    "mixture_explorer",
]
