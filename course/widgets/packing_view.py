"""Packing viewer: documents laid end to end into fixed-length blocks.

Rows are blocks, columns positions; each cell is coloured by the document it belongs to
and shows its token. The EOS that closes each document is outlined, padding is grey, and
a dropped tail is shown faded below the blocks. Hovering a cell shows the input token
and its target (the label one position to the right: the model shifts by one), and the
"show" control switches the cell text between inputs and targets. The blocks come from
`course.packing.pack_documents`.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import plotly.colors
import plotly.graph_objects as go

from course.errors import PackingError
from course.packing import IGNORE_INDEX, PAD_DOC_ID, PackedBlocks, pack_documents
from course.widgets._base import Explorer, set_note, short, title, token_label

__all__ = ["packing_figure", "packing_viewer"]

_PAD_COLOUR = "#d9d9d9"
MAX_BLOCK_SIZE = 64  # the block-size slider stops here
_DOC_COLOURS = plotly.colors.qualitative.Pastel + plotly.colors.qualitative.Set3


def _colorscale(n_docs: int) -> list[list]:
    """A stepped colour scale: value -1 (padding) grey, then one colour per document."""
    colours = [_PAD_COLOUR] + [_DOC_COLOURS[d % len(_DOC_COLOURS)] for d in range(n_docs)]
    n = len(colours)
    scale = []
    for k, c in enumerate(colours):
        scale += [[k / n, c], [(k + 1) / n, c]]
    return scale


def _namer(tokenizer, eos_id: int):
    def name(i: int) -> str:
        if i == eos_id:
            return token_label("<|endoftext|>")
        return token_label(tokenizer.token_str(i)) if tokenizer is not None else str(i)
    return name


def packing_figure(
    docs: Sequence[Sequence[int]],
    block_size: int,
    *,
    eos_id: int | None = None,
    tokenizer=None,
    tail: str = "drop",
    pad_id: int | None = None,
    show: str = "inputs",
    max_blocks: int = 40,
) -> tuple[go.Figure, PackedBlocks]:
    """Figure of `pack_documents(docs, block_size, eos_id, tail, pad_id)` and the blocks themselves.

    `data[0]` is the (N, block_size) heatmap of document ids (-1 = padding), one row per
    block; a dropped tail, if any, is a separate faded trace named "dropped". `eos_id`
    defaults to the tokenizer's, else to one more than the largest id in `docs`.
    `show` = "inputs" writes each position's input token in its cell, "targets" its label
    shifted by one (what that position is trained to predict). Only the first
    `max_blocks` blocks are drawn (the title says so); the returned blocks are all of them.
    """
    if eos_id is None:
        eos_id = tokenizer.eos_id if tokenizer is not None else 1 + max(
            (max(d) for d in docs if len(d)), default=-1)
    if show not in ("inputs", "targets"):
        raise PackingError(f"show must be 'inputs' or 'targets', got {show!r}")
    packed = pack_documents(docs, block_size, eos_id, tail=tail, pad_id=pad_id)
    name = _namer(tokenizer, eos_id)
    n_all = len(packed)
    N, T, D = min(n_all, max_blocks), block_size, len(docs)
    ids, labels = packed.input_ids[:N].tolist(), packed.labels[:N].tolist()  # (N, T) each
    dids = packed.doc_ids[:N].tolist()  # (N, T)

    cell, hover = [], []
    for b in range(N):
        row_text, row_hover = [], []
        for t in range(T):
            pad = dids[b][t] == PAD_DOC_ID
            tok = "pad" if pad else name(ids[b][t])
            if t + 1 < T:
                nxt = labels[b][t + 1]
                target = "(padding: no loss)" if nxt == IGNORE_INDEX else name(nxt)
            else:
                target = "(none in this block: the last position has no target)"
            where = "padding" if pad else f"document {dids[b][t]}"
            row_hover.append(f"block {b}, position {t} ({where})<br>input {tok} → target {target}")
            shown = tok if show == "inputs" else ("" if t + 1 >= T or target.startswith("(") else target)
            row_text.append(short(shown, 6))
        cell.append(row_text)
        hover.append(row_hover)

    fig = go.Figure(go.Heatmap(
        z=dids, x=list(range(T)), y=list(range(N)), text=cell, hovertext=hover, hoverinfo="text",
        texttemplate="%{text}", textfont=dict(size=11), coloraxis="coloraxis", xgap=2, ygap=2,
        name="blocks",
    ))
    # The EOS that ends every document, outlined.
    eos = [(t, b) for b in range(N) for t in range(T) if ids[b][t] == eos_id and dids[b][t] != PAD_DOC_ID]
    fig.add_trace(go.Scatter(x=[t for t, _ in eos], y=[b for _, b in eos], mode="markers", name="EOS",
                             marker=dict(symbol="square-open", size=22, color="#202124",
                                         line=dict(width=2)), hoverinfo="skip"))
    ticks = [f"block {b}" for b in range(N)]
    if N < n_all:
        ticks.append(f"… {n_all - N} more")
    if tail == "drop" and packed.num_dropped:
        # The dropped tokens are exactly the real tokens of the last block of the padded packing.
        full = pack_documents(docs, block_size, eos_id, tail="pad", pad_id=pad_id)
        last_ids, last_docs = full.input_ids[-1].tolist(), full.doc_ids[-1].tolist()
        n = packed.num_dropped
        fig.add_trace(go.Heatmap(
            z=[last_docs[:n]], x=list(range(n)), y=[len(ticks)], text=[[short(name(i), 6) for i in last_ids[:n]]],
            texttemplate="%{text}", textfont=dict(size=11), coloraxis="coloraxis", opacity=0.35,
            xgap=2, ygap=2, name="dropped", hoverinfo="text",
            hovertext=[[f"dropped tail, document {d}: {name(i)} (never trained on)"
                        for i, d in zip(last_ids[:n], last_docs[:n], strict=True)]],
        ))
        ticks.append("dropped")
    if tail == "pad":
        summary = f"{packed.num_padded} padding position(s) fill the last block"
    else:
        summary = f"{packed.num_dropped} tail token(s) dropped"
    fig.update_layout(
        title=title(f"{D} documents → {n_all} block(s) × {T} tokens (tail={tail!r}): {summary}",
                    "columns: position in block · rows: blocks"),
        coloraxis=dict(colorscale=_colorscale(D), cmin=PAD_DOC_ID - 0.5, cmax=D - 0.5, showscale=False),
        xaxis=dict(tickmode="array", tickvals=list(range(T)), side="top"),
        yaxis=dict(tickmode="array", tickvals=list(range(len(ticks))), ticktext=ticks,
                   autorange="reversed"),
        height=min(900, 180 + 40 * len(ticks)), margin=dict(l=10, r=10, t=105, b=10),
        showlegend=False, plot_bgcolor="white",
    )
    note = ("Colour = document, outlined = EOS, grey = padding. Hover a cell: its input and its "
            "<b>target</b>, the next position's label; switch <i>show</i> to see the targets.")
    return set_note(fig, note), packed


class _PackingViewer(Explorer):
    def __init__(self, docs, block_size: int, tokenizer, tail: str, eos_id, pad_id) -> None:
        self.docs = [list(d) for d in docs]
        self.tokenizer, self.eos_id, self.pad_id = tokenizer, eos_id, pad_id
        self.packed: PackedBlocks | None = None
        stream = sum(len(d) + 1 for d in self.docs)  # every document plus its EOS
        top = max(2, min(stream, MAX_BLOCK_SIZE))  # wider blocks would not fit on a screen
        controls = {
            "block_size": widgets.IntSlider(value=max(2, min(block_size, top)), min=2,
                                            max=top, description="block size",
                                            continuous_update=False),
            "tail": widgets.Dropdown(options=["drop", "pad"], value=tail, description="tail"),
            "show": widgets.Dropdown(options=["inputs", "targets"], value="inputs", description="show"),
        }
        super().__init__(controls, self._draw)
        self.refresh()

    def _draw(self, block_size: int, tail: str, show: str) -> go.Figure:
        fig, self.packed = packing_figure(self.docs, block_size, eos_id=self.eos_id,
                                          tokenizer=self.tokenizer, tail=tail, pad_id=self.pad_id,
                                          show=show)
        return fig


def packing_viewer(
    docs: Sequence[Sequence[int]],
    block_size: int = 8,
    tokenizer=None,
    tail: str = "drop",
    *,
    eos_id: int | None = None,
    pad_id: int | None = None,
) -> Explorer:
    """Interactive view of packing `docs` (lists of token ids) into blocks.

    Controls: `block_size` (slider), `tail` ("drop" / "pad"), `show` ("inputs" /
    "targets"). `.packed` is the current `PackedBlocks`, `.figure` the figure.
    Token ids are named by `tokenizer` when given.
    """
    if isinstance(docs, str) or not isinstance(docs, Sequence) or not docs:
        raise PackingError("docs must be a non-empty list of token-id lists; encode texts first, "
                           "e.g. [tokenizer.encode(t) for t in texts]")
    if tail not in ("drop", "pad"):
        raise PackingError(f"tail must be 'drop' or 'pad', got {tail!r}")
    return _PackingViewer(docs, block_size, tokenizer, tail, eos_id, pad_id)
