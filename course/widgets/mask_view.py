"""Mask explorer: who may attend to whom, over the tokens of a real sentence.

Each cell (row i, column j) of the heatmap says whether query i may read key j. Picking
a query row shows what that position sees and which token it has to predict (the next
one, i + 1): under a causal mask the target is always hidden, under a bidirectional mask
it is visible, which is why a bidirectional model cannot be trained on next-token
prediction. The matrices come from `course.masks`; nothing is re-implemented here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from course import masks
from course.errors import ConfigError
from course.widgets._base import Explorer, set_max, set_note, short, title, token_label

__all__ = ["MASK_KINDS", "DEFAULT_SENTENCE", "mask_matrix", "mask_figure", "parse_boundaries",
           "default_boundaries", "split_words", "mask_explorer"]

# value -> label shown in the dropdown
MASK_KINDS = {
    "causal": "causal",
    "bidirectional": "bidirectional",
    "prefix_lm": "prefix-LM",
    "document": "packed documents",
    "sliding_window": "sliding window",
}
DEFAULT_SENTENCE = "The cat sat on the mat. The dog ate my homework."
_VISIBLE, _HIDDEN = "#3b6fb6", "#eef0f3"


def split_words(text: str) -> list[str]:
    """Words with their leading whitespace (" cat"), as GPT-2's pre-tokenizer cuts text."""
    return re.findall(r"\s*\S+", text)


def parse_boundaries(text: str | Sequence[int], T: int) -> list[int]:
    """Document start positions from "4, 9" (or a list), sorted, inside 1..T-1.

    Position 0 always starts a document, so 0 and positions >= T are ignored.
    """
    if isinstance(text, str):
        parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"document boundaries must be whole numbers separated by commas, "
                              f"got {text!r}; e.g. '4, 9' starts new documents at positions 4 and 9"
                              ) from None
    else:
        values = [int(v) for v in text]
    if any(v < 0 for v in values):
        raise ConfigError(f"document boundaries must be positions >= 0, got {values}")
    return sorted({v for v in values if 0 < v < T})


def default_boundaries(tokens: Sequence[str]) -> list[int]:
    """Where a new document plausibly starts: after an EOS or a sentence end; else mid-way."""
    T = len(tokens)
    starts = [i + 1 for i, tok in enumerate(tokens[:-1])
              if tok == "<|endoftext|>" or tok.rstrip().endswith((".", "!", "?"))]
    return starts or ([T // 2] if T >= 2 else [])


def doc_ids_from_boundaries(T: int, boundaries: Sequence[int]) -> torch.Tensor:
    """(T,) document index of every position; a new document starts at each boundary."""
    starts = torch.zeros(T, dtype=torch.long)
    for b in boundaries:
        if 0 < b < T:
            starts[b] = 1
    return starts.cumsum(0)  # (T,)


def mask_matrix(kind: str, T: int, *, prefix_len: int = 0, window: int = 1,
                boundaries: Sequence[int] = ()) -> torch.Tensor:
    """(T, T) boolean mask of `kind` (a key of MASK_KINDS), built by `course.masks`."""
    if kind == "causal":
        return masks.causal_mask(T)
    if kind == "bidirectional":
        return masks.bidirectional_mask(T)
    if kind == "prefix_lm":
        return masks.prefix_lm_mask(T, min(prefix_len, T))
    if kind == "sliding_window":
        return masks.sliding_window_mask(T, window)
    if kind == "document":
        return masks.document_mask(doc_ids_from_boundaries(T, boundaries)[None])[0]  # (T, T)
    raise ConfigError(f"unknown mask kind {kind!r}; choose one of {list(MASK_KINDS)}")


def mask_figure(
    tokens: Sequence[str],
    kind: str = "causal",
    *,
    prefix_len: int = 0,
    window: int = 3,
    boundaries: Sequence[int] = (),
    query: int | None = None,
) -> go.Figure:
    """Heatmap of the `kind` mask over `tokens` (strings); row 0 at the top.

    `data[0].z[i][j]` is 1 where query i may attend to key j, else 0. With `query`, row
    `query` is outlined, its target (key `query + 1`) is starred, and the note says
    whether the target leaks into what the query sees.
    """
    T = len(tokens)
    if T == 0:
        raise ConfigError("there are no tokens to show; give a non-empty sentence")
    mask = mask_matrix(kind, T, prefix_len=prefix_len, window=window, boundaries=boundaries)
    z = mask.int().tolist()  # (T, T) 0/1
    labels = [token_label(t) for t in tokens]
    ticks = [f"{i} {short(lab)}" for i, lab in enumerate(labels)]
    hover = [[f"query {i} {labels[i]} → key {j} {labels[j]}: "
              + ("may attend" if z[i][j] else "masked") for j in range(T)] for i in range(T)]

    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(T)), y=list(range(T)), zmin=0, zmax=1,
        colorscale=[[0.0, _HIDDEN], [0.5, _HIDDEN], [0.5, _VISIBLE], [1.0, _VISIBLE]],
        showscale=False, xgap=2, ygap=2, text=hover, hoverinfo="text", name="mask",
    ))
    visible = int(mask.sum())
    extra = {"prefix_lm": f", prefix {min(prefix_len, T)}", "sliding_window": f", window {window}",
             "document": f", documents start at {[0, *[b for b in boundaries if 0 < b < T]]}"}.get(kind, "")
    heading = f"{MASK_KINDS[kind]} mask{extra}: {visible} of {T * T} query→key pairs visible"
    note = "Rows are queries (who reads), columns are keys (who is read). Blue = may attend."
    if query is not None and 0 <= query < T:
        sees = [j for j in range(T) if z[query][j]]
        fig.add_shape(type="rect", x0=-0.5, x1=T - 0.5, y0=query - 0.5, y1=query + 0.5,
                      line=dict(color="#e8710a", width=3))
        seen = "".join(tokens[j] for j in sees)
        if query + 1 < T:
            target = query + 1
            leak = bool(z[query][target])
            fig.add_trace(go.Scatter(
                x=[target], y=[query], mode="markers", name="target",
                marker=dict(symbol="star", size=18, color="#d93025" if leak else "#e8710a",
                            line=dict(color="white", width=1)),
                hovertext=[f"query {query} predicts key {target} {labels[target]}"], hoverinfo="text",
            ))
            verdict = ("<b style='color:#d93025'>it can see its own answer: the target leaks</b>"
                       if leak else "which it cannot see ✓")
            note = (f"Query {query} <b>{labels[query]}</b> sees {len(sees)} key(s) "
                    f"(<code>{token_label(seen)}</code>) and predicts <b>{labels[target]}</b> "
                    f"(position {target}), {verdict}.")
        else:
            note = (f"Query {query} <b>{labels[query]}</b> sees {len(sees)} key(s); it is the last "
                    "position, so its target lies beyond this sequence.")
    fig.update_layout(
        title=title(heading, "columns: keys (attended to) · rows: queries (attending)"),
        xaxis=dict(tickmode="array", tickvals=list(range(T)),
                   ticktext=ticks, side="top", tickangle=-60, constrain="domain"),
        yaxis=dict(title="query (attending)", tickmode="array", tickvals=list(range(T)),
                   ticktext=ticks, autorange="reversed", scaleanchor="x"),
        height=min(900, 260 + 28 * T), width=min(1000, 320 + 28 * T),
        margin=dict(l=10, r=10, t=130, b=10), showlegend=False, plot_bgcolor="white",
    )
    return set_note(fig, note)


def _tokens_of(text_or_tokens: str | Sequence[str] | Sequence[int], tokenizer) -> list[str]:
    if isinstance(text_or_tokens, str):
        if tokenizer is None:
            return split_words(text_or_tokens)
        return [tokenizer.token_str(i) for i in tokenizer.encode(text_or_tokens)]
    items = list(text_or_tokens)
    if all(isinstance(t, str) for t in items):
        return items
    if all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return [tokenizer.token_str(i) for i in items] if tokenizer is not None else [str(i) for i in items]
    raise ConfigError("text_or_tokens must be a string, a list of token strings or a list of "
                      "token ids (with their tokenizer)")


class _MaskExplorer(Explorer):
    def __init__(self, tokens: list[str], kind: str, seq_len: int | None) -> None:
        self.tokens = tokens
        N = len(tokens)
        T = N if seq_len is None else max(1, min(seq_len, N))
        bounds = default_boundaries(tokens[:T])
        controls = {
            "kind": widgets.Dropdown(options=[(v, k) for k, v in MASK_KINDS.items()], value=kind,
                                     description="mask"),
            "seq_len": widgets.IntSlider(value=T, min=1, max=N, description="seq length",
                                         continuous_update=False),
            "query": widgets.Dropdown(options=self._query_options(T), value=-1,
                                      description="query row"),
            "prefix_len": widgets.IntSlider(value=min(3, T), min=0, max=T, description="prefix len",
                                            continuous_update=False),
            "window": widgets.IntSlider(value=min(3, T), min=1, max=T, description="window",
                                        continuous_update=False),
            "boundaries": widgets.Text(value=", ".join(map(str, bounds)), description="doc starts",
                                       placeholder="e.g. 4, 9", continuous_update=False),
        }
        super().__init__(controls, self._draw,
                         rows=[["kind", "seq_len", "query"], ["prefix_len", "window", "boundaries"]])
        self.refresh()

    def _query_options(self, T: int) -> list[tuple[str, int]]:
        labels = [token_label(t) for t in self.tokens[:T]]
        return [("(none)", -1)] + [(f"{i}: {short(lab, 14)}", i) for i, lab in enumerate(labels)]

    def sync_controls(self) -> None:
        c = self.controls
        T = c["seq_len"].value
        set_max(c["prefix_len"], T)
        set_max(c["window"], T)
        if len(c["query"].options) != T + 1:
            keep = c["query"].value
            c["query"].options = self._query_options(T)
            c["query"].value = keep if keep < T else -1
        kind = c["kind"].value
        c["prefix_len"].disabled = kind != "prefix_lm"
        c["window"].disabled = kind != "sliding_window"
        c["boundaries"].disabled = kind != "document"

    def _draw(self, kind: str, seq_len: int, query: int, prefix_len: int, window: int,
              boundaries: str) -> go.Figure:
        return mask_figure(self.tokens[:seq_len], kind, prefix_len=prefix_len, window=window,
                           boundaries=parse_boundaries(boundaries, seq_len), query=query)


def mask_explorer(
    text_or_tokens: str | Sequence[str] | Sequence[int] = DEFAULT_SENTENCE,
    tokenizer=None,
    *,
    kind: str = "causal",
    seq_len: int | None = None,
) -> Explorer:
    """Interactive heatmap of attention masks over a sentence's tokens.

    `text_or_tokens`: a text (cut into words, or into tokens by `tokenizer`), a list of
    token strings, or a list of token ids (named by `tokenizer`). Controls (in
    `.controls`): `kind`, `seq_len`, `query` (a row to explain, -1 for none), `prefix_len`
    (prefix-LM), `window` (sliding window), `boundaries` (text "4, 9": positions where a
    new packed document starts). The current figure is `.figure`.
    """
    if kind not in MASK_KINDS:
        raise ConfigError(f"unknown mask kind {kind!r}; choose one of {list(MASK_KINDS)}")
    tokens = _tokens_of(text_or_tokens, tokenizer)
    if not tokens:
        raise ConfigError("mask_explorer needs at least one token; give a non-empty sentence")
    return _MaskExplorer(tokens, kind, seq_len)
