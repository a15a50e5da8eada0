"""Attention viewer: how much each query position reads each key, per layer and head.

The weights come from `GPT.attention_maps` (computed once when the widget is made; the
dropdowns only pick a slice). Each row is a softmax, so it sums to 1; everything above
the diagonal is exactly 0 because the mask hid those keys before the softmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch

from course.errors import ConfigError
from course.widgets._base import Explorer, set_note, short, title, token_label

__all__ = ["MEAN", "attention_weights", "attention_figure", "attention_viewer"]

MEAN = -1  # the head value that averages the layer's heads


def _prompt_ids(model, tokenizer, prompt: str | Sequence[int] | torch.Tensor) -> tuple[list[int], bool]:
    """Prompt as token ids (cut to the model's block_size, keeping the end) and whether it was cut."""
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
    elif torch.is_tensor(prompt):
        ids = prompt.reshape(-1).tolist()
    else:
        ids = [int(i) for i in prompt]
    if not ids:
        raise ConfigError("the prompt is empty; give at least one token")
    limit = model.config.block_size
    return ids[-limit:], len(ids) > limit


def attention_weights(model, ids: Sequence[int]) -> np.ndarray:
    """(n_layer, H, T, T) attention probabilities of `model` on one sequence `ids`."""
    device = next(model.parameters()).device
    idx = torch.tensor([list(ids)], dtype=torch.long, device=device)  # (1, T)
    maps = model.attention_maps(idx)  # n_layer x (1, H, T, T)
    return torch.stack([m[0] for m in maps]).float().cpu().numpy()  # (L, H, T, T)


def attention_figure(weights: np.ndarray, tokens: Sequence[str], heading: str = "attention") -> go.Figure:
    """Heatmap of one (T, T) attention matrix: row = query, column = key, row 0 at the top.

    `data[0].z` holds the weights unchanged (zeros included), so what is hidden is seen.
    """
    weights = np.asarray(weights, dtype=float)
    T = len(tokens)
    if weights.shape != (T, T):
        raise ConfigError(f"weights must have shape ({T}, {T}) for {T} tokens, got {weights.shape}")
    labels = [token_label(t) for t in tokens]
    ticks = [f"{i} {short(lab)}" for i, lab in enumerate(labels)]
    hover = [[f"query {i} {labels[i]} reads key {j} {labels[j]}: {weights[i, j]:.3f}"
              for j in range(T)] for i in range(T)]
    fig = go.Figure(go.Heatmap(
        z=weights.tolist(), x=list(range(T)), y=list(range(T)), zmin=0.0, zmax=1.0,
        colorscale="Blues", text=hover, hoverinfo="text", xgap=1, ygap=1, name="attention",
        colorbar=dict(title="weight", thickness=12),
        texttemplate="%{z:.2f}" if T <= 16 else None, textfont=dict(size=9),
    ))
    fig.update_layout(
        title=title(heading, "columns: keys (attended to) · rows: queries (attending)"),
        xaxis=dict(tickmode="array", tickvals=list(range(T)),
                   ticktext=ticks, side="top", tickangle=-60, constrain="domain"),
        yaxis=dict(title="query (attending)", tickmode="array", tickvals=list(range(T)),
                   ticktext=ticks, autorange="reversed", scaleanchor="x"),
        height=min(900, 280 + 28 * T), width=min(1050, 400 + 28 * T),
        margin=dict(l=10, r=10, t=130, b=10), plot_bgcolor="white",
    )
    return fig


class _AttentionViewer(Explorer):
    def __init__(self, weights: np.ndarray, tokens: list[str], cut: bool) -> None:
        self.weights = weights  # (L, H, T, T), computed once
        self.tokens = tokens
        self.cut = cut
        L, H = weights.shape[:2]
        controls = {
            "layer": widgets.Dropdown(options=[(f"layer {i}", i) for i in range(L)], value=0,
                                      description="layer"),
            "head": widgets.Dropdown(options=[(f"head {h}", h) for h in range(H)] + [("mean of heads", MEAN)],
                                     value=0, description="head"),
        }
        super().__init__(controls, self._draw)
        self.refresh()

    def _draw(self, layer: int, head: int) -> go.Figure:
        w = self.weights[layer].mean(axis=0) if head == MEAN else self.weights[layer, head]  # (T, T)
        which = "mean of heads" if head == MEAN else f"head {head}"
        fig = attention_figure(w, self.tokens, f"attention weights, layer {layer}, {which}")
        note = ("Each row is one query's softmax over the keys (it sums to 1); the cells above "
                "the diagonal are 0: the causal mask hid those keys.")
        if self.cut:
            note += f" The prompt was longer than the context: only its last {len(self.tokens)} tokens are shown."
        return set_note(fig, note)


def attention_viewer(model, tokenizer, prompt: str | Sequence[int]) -> Explorer:
    """Attention weights of `model` on `prompt`, with layer and head dropdowns.

    Controls: `layer`, `head` (`MEAN` = -1 averages the heads). `.weights` holds every
    map, shape (n_layer, H, T, T), computed once with `model.attention_maps`.
    """
    ids, cut = _prompt_ids(model, tokenizer, prompt)
    tokens = [tokenizer.token_str(i) for i in ids] if tokenizer is not None else [str(i) for i in ids]
    return _AttentionViewer(attention_weights(model, ids), tokens, cut)
