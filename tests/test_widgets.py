"""The interactive widgets, driven headless: set a control's value, check the figure.

Outside a Jupyter kernel the widgets draw nothing but still rebuild `.figure` on every
change, so every behaviour a learner sees can be asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course.masks import causal_mask
from course.model import GPT, GPTConfig
from course.packing import pack_documents
from course.tokenizer import CharTokenizer
from course.widgets import (
    LiveLossPlot,
    attention_viewer,
    filtered_distribution,
    live_loss_plot,
    mask_explorer,
    packing_figure,
    packing_viewer,
    sampling_explorer,
)
from course.widgets._base import in_notebook

SENTENCE = "the cat sat on the mat. the dog ate my homework."


def z_of(fig) -> np.ndarray:
    return np.asarray(fig.data[0].z, dtype=float)


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer().train(SENTENCE)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():  # larger weights: peaked, non-uniform distributions and attention
        for p in m.parameters():
            p.mul_(6.0)
    return m


# ------------------------------------------------------------------------- mask explorer
def test_mask_widget_causal_row_sees_itself_and_its_past():
    w = mask_explorer(SENTENCE)
    assert w.controls["kind"].value == "causal"
    z = z_of(w.figure)
    T = len(z)
    assert T == w.controls["seq_len"].value == 11  # one token per word
    assert z[3].sum() == 4 and list(z[3][:4]) == [1, 1, 1, 1]
    assert np.array_equal(z, causal_mask(T).int().numpy())
    assert w.figure.layout.yaxis.autorange == "reversed"  # row 0 at the top
    assert w.figure.layout.yaxis.ticktext[1].endswith("cat")  # tokens are the axis labels
    w.controls["seq_len"].value = 5
    z = z_of(w.figure)
    assert z.shape == (5, 5) and z[3].sum() == 4
    assert w.controls["window"].max == 5 and w.controls["prefix_len"].max == 5
    assert len(w.controls["query"].options) == 6  # "(none)" + one per position


def test_mask_widget_sliding_window_limits_every_row():
    w = mask_explorer(SENTENCE)
    w.controls["kind"].value = "sliding_window"
    w.controls["window"].value = 2
    z = z_of(w.figure)
    assert (z.sum(axis=1) <= 2).all() and z[0].sum() == 1 and (z.sum(axis=1)[1:] == 2).all()
    assert not np.triu(z, 1).any()  # still causal
    assert "window 2" in w.figure.layout.title.text


def test_mask_widget_prefix_lm_prefix_is_bidirectional():
    w = mask_explorer(SENTENCE)
    w.set(kind="prefix_lm", prefix_len=3)
    z = z_of(w.figure)
    assert (z[:3, :3] == 1).all()  # the first 3 rows see the whole prefix ...
    assert not z[:3, 3:].any()  # ... and nothing after it
    assert np.array_equal(z[3:], np.tril(np.ones_like(z))[3:])  # causal after the prefix
    assert not w.controls["prefix_len"].disabled and w.controls["window"].disabled


def test_mask_widget_packed_documents_block_across_boundary():
    w = mask_explorer(SENTENCE)
    w.controls["kind"].value = "document"
    assert w.controls["boundaries"].value == "6"  # default: after the first sentence
    w.controls["boundaries"].value = "4, 8"
    z = z_of(w.figure)
    docs = [range(0, 4), range(4, 8), range(8, 11)]
    for a in docs:
        for b in docs:
            block = z[np.ix_(list(a), list(b))]
            if a == b:
                assert np.array_equal(block, np.tril(np.ones_like(block)))  # causal inside
            else:
                assert not block.any()  # zero attention across a boundary
    # A bad boundary text is an explanation, not an exception; the figure stays.
    w.controls["boundaries"].value = "four"
    assert "whole numbers" in w.message.value
    assert np.array_equal(z_of(w.figure), z)


def test_mask_widget_query_row_shows_target_and_leak(tok):
    w = mask_explorer("the cat sat", tokenizer=tok)  # character tokens
    assert w.controls["seq_len"].value == 11
    w.controls["query"].value = 2
    star = [t for t in w.figure.data if t.name == "target"][0]
    assert (star.x[0], star.y[0]) == (3, 2)  # query 2 predicts position 3
    assert "cannot see" in w.message.value
    w.controls["kind"].value = "bidirectional"
    assert "leaks" in w.message.value
    w.controls["query"].value = 10  # the last position: its target is outside the sequence
    assert not [t for t in w.figure.data if t.name == "target"]


# ------------------------------------------------------------------------- packing viewer
@pytest.fixture(scope="module")
def docs(tok) -> list[list[int]]:
    return [tok.encode(t) for t in ["the cat", "sat on the mat.", "a dog", "ate my homework."]]


def test_packing_widget_block_count_matches_pack_documents(docs, tok):
    w = packing_viewer(docs, block_size=8, tokenizer=tok)
    for tail in ("drop", "pad"):
        w.controls["tail"].value = tail
        for block_size in (2, 5, 8, 13, 21):
            w.controls["block_size"].value = block_size
            ref = pack_documents(docs, block_size, tok.eos_id, tail=tail)
            z = z_of(w.figure)
            assert z.shape == (len(ref), block_size)
            assert np.array_equal(z, ref.doc_ids.numpy())  # coloured by document, -1 = padding
            assert len(w.packed) == len(ref)
            dropped = [t for t in w.figure.data if t.name == "dropped"]
            if tail == "drop" and ref.num_dropped:
                assert len(dropped[0].z[0]) == ref.num_dropped
            else:
                assert not dropped
            eos = [t for t in w.figure.data if t.name == "EOS"][0]
            assert len(eos.x) == int(((ref.input_ids == tok.eos_id) & (ref.doc_ids >= 0)).sum())
    # Many blocks: only the first `max_blocks` are drawn, the title counts them all.
    fig, packed = packing_figure(docs, 2, tokenizer=tok, max_blocks=3)
    assert len(fig.data[0].z) == 3 and f"→ {len(packed)} block(s)" in fig.layout.title.text


def test_packing_widget_hover_shows_shifted_targets(docs, tok):
    w = packing_viewer(docs, block_size=8, tokenizer=tok, tail="pad")
    hover = w.figure.data[0].hovertext
    assert "input t → target h" in hover[0][0]  # "the cat": t is trained to predict h
    assert "target ⟨EOS⟩" in hover[0][6]  # the last character of doc 0 predicts its EOS
    assert "no target" in hover[0][7]  # the last position of a block has none
    w.controls["show"].value = "targets"
    assert list(w.figure.data[0].text[0][:2]) == ["h", "e"]
    # Padding is grey and takes no loss; the title says how much there is.
    assert f"{w.packed.num_padded} padding" in w.figure.layout.title.text
    # The largest block size: the whole stream (documents and EOS) is exactly one block.
    w.controls["tail"].value = "drop"
    w.controls["block_size"].value = w.controls["block_size"].max
    assert len(w.packed) == 1 and w.packed.num_dropped == 0
    assert w.controls["block_size"].max == sum(len(d) + 1 for d in docs)


# ------------------------------------------------------------------------- attention viewer
def test_attention_widget_causal_rows_sum_to_one(model, tok):
    w = attention_viewer(model, tok, "the cat sat")
    assert w.weights.shape == (2, 2, 11, 11)
    for layer in range(2):
        for head in (0, 1, -1):
            w.set(layer=layer, head=head)
            z = z_of(w.figure)
            assert z.shape == (11, 11)
            assert (np.triu(z, 1) == 0).all()  # zeros above the diagonal, shown as zeros
            np.testing.assert_allclose(z.sum(axis=1), 1.0, atol=1e-5)
    w.set(layer=1, head=1)
    ref = model.attention_maps(torch.tensor([tok.encode("the cat sat")]))[1][0, 1].numpy()
    np.testing.assert_allclose(z_of(w.figure), ref, atol=1e-6)
    assert "layer 1, head 1" in w.figure.layout.title.text


# ------------------------------------------------------------------------- sampling explorer
def test_sampling_widget_top_k_keeps_k_bars_summing_to_one(model, tok):
    w = sampling_explorer(model, tok, "the c")
    kept = np.asarray(w.figure.data[1].y)
    assert (kept > 0).sum() == min(30, tok.vocab_size)  # no filter: every shown token survives
    w.controls["top_k"].value = 5
    kept = np.asarray(w.figure.data[1].y)
    assert (kept > 0).sum() == 5
    assert kept.sum() == pytest.approx(1.0, abs=1e-6)
    assert list(kept[:5] > 0) == [True] * 5  # the five most likely, shown first
    assert "5 of" in w.figure.layout.title.text


def test_sampling_widget_top_p_keeps_smallest_nucleus(model, tok):
    w = sampling_explorer(model, tok, "the c")
    before = np.asarray(w.figure.data[0].y)  # sorted, most likely first
    w.controls["top_p"].value = 0.5
    kept = np.asarray(w.figure.data[1].y)
    n = int((kept > 0).sum())
    assert before[: n - 1].sum() < 0.5 <= before[:n].sum() + 1e-6  # fewest tokens reaching p
    np.testing.assert_allclose(kept[:n], before[:n] / before[:n].sum(), rtol=1e-5)
    assert kept.sum() == pytest.approx(1.0, abs=1e-6)


def test_sampling_widget_temperature_sharpens_and_flattens(model, tok):
    w = sampling_explorer(model, tok, "the c")
    p1 = np.asarray(w.figure.data[1].y)
    w.controls["temperature"].value = 0.5
    cold = np.asarray(w.figure.data[1].y)
    w.controls["temperature"].value = 2.0
    hot = np.asarray(w.figure.data[1].y)
    assert cold[0] > p1[0] > hot[0]  # the favourite gains mass when cold, loses it when hot
    entropy = lambda p: float(-(p[p > 0] * np.log(p[p > 0])).sum())
    assert entropy(cold) < entropy(p1) < entropy(hot)
    before, after = filtered_distribution(w.logits, 2.0)
    torch.testing.assert_close(before, torch.softmax(w.logits / 2.0, -1))
    torch.testing.assert_close(before, after)


def test_sampling_widget_generate_is_seeded(model, tok):
    w = sampling_explorer(model, tok, "the c")
    w.set(top_k=5, max_new_tokens=12)
    w.controls["seed"].value = 3
    a = w.generate()
    assert len(a) == 12 and w.last_generation == a
    assert a in w.generated.outputs[-1]["text"]
    assert w.generate() == a  # same seed, same text
    texts = set()
    for seed in range(4, 8):
        w.controls["seed"].value = seed
        texts.add(w.generate())
    assert len(texts) > 1  # other seeds, other samples


# ------------------------------------------------------------------------- live loss plot
def records(n: int, val_every: int = 5):
    for step in range(1, n + 1):
        r = {"step": step, "train_loss": 4.0 / step, "lr": 1e-3 * step / n, "tokens": 64 * step}
        if step % val_every == 0:
            r["val_loss"] = 4.5 / step
        yield r


def test_live_plot_widget_headless_collects_points():
    assert not in_notebook()  # pytest: no kernel, nothing to draw into
    plot = LiveLossPlot(every=3)
    for r in records(12):
        plot(r)  # never raises without a display
    fig = plot.figure()
    names = [t.name for t in fig.data]
    assert names == ["train loss", "val loss", "learning rate"]
    assert len(fig.data[0].x) == 12 and list(fig.data[0].x) == list(range(1, 13))
    assert len(fig.data[1].x) == 2 and list(fig.data[1].x) == [5, 10]
    assert len(fig.data[2].y) == 12
    assert plot.draws == 0 and "step 12" in fig.layout.title.text
    assert "12 records" in repr(plot)
    assert len(live_loss_plot(x="tokens").figure().data[0].x) == 0  # empty: no error


def test_live_plot_widget_throttles_in_notebook(monkeypatch):
    """Inside a kernel it redraws every `every` records, always on evaluations."""
    import course.widgets._base as base
    import course.widgets.loss_plot as lp

    shown = []
    monkeypatch.setattr(lp, "in_notebook", lambda: True)
    monkeypatch.setattr(lp, "show_in", lambda out, fig: shown.append(len(fig.data[0].x)))
    monkeypatch.setattr(base, "in_notebook", lambda: True)
    displayed = []
    def fake_display(obj):  # what IPython's display does with our objects, recorded
        displayed.append(obj)
        if hasattr(obj, "_ipython_display_"):
            obj._ipython_display_()

    monkeypatch.setattr("IPython.display.display", fake_display)
    plot = LiveLossPlot(every=4, min_interval=0.0)
    for r in records(12, val_every=6):
        plot(r)
    assert displayed[0] is plot and displayed[1:] == [plot.widget]  # shown once, at the first record
    # drawn at record 1 (first display), 5 (4 pending), 6 (evaluation), 10, 12 (evaluation)
    assert shown == [1, 5, 6, 10, 12]
    assert plot.draws == len(shown)


def test_live_plot_widget_as_train_callback(tok):
    from course.train import TrainConfig, train

    ids = torch.tensor([tok.encode(SENTENCE[:32])] * 8)
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(max_steps=6, batch_size=4, eval_interval=3, log_interval=1, warmup_steps=1)
    plot = LiveLossPlot()
    train(m, ids, ids, cfg, callback=plot, progress=False)
    fig = plot.figure()
    assert len(fig.data[0].x) == 6 and len(fig.data[1].x) == 2


# ------------------------------------------------------------- drawing inside a kernel
PLOTLY_JSON = "application/vnd.plotly.v1+json"


@pytest.fixture
def kernel_like(monkeypatch):
    """Widgets believe a kernel runs (so they draw), and any Output capture or `fig.show()` fails.

    Capture (`with out:`) makes nbclient's Output emulation write back to the kernel on the
    shell socket while it waits there for the execute_reply, which can stall a headless run
    with the kernel idle; see `course.widgets._base.show_in`.
    """
    import ipywidgets
    import plotly.graph_objects as go

    import course.widgets._base as base
    import course.widgets.loss_plot as lp

    monkeypatch.setattr(base, "in_notebook", lambda: True)
    monkeypatch.setattr(lp, "in_notebook", lambda: True)

    def no_capture(self, *args):
        raise AssertionError("a widget drew through `with Output:` capture")

    def no_show(self, *args, **kwargs):
        raise AssertionError("a widget called fig.show() (only valid inside a capture)")

    monkeypatch.setattr(ipywidgets.Output, "__enter__", no_capture)
    monkeypatch.setattr(go.Figure, "show", no_show)

    def fake_display(obj):  # what IPython's display does with our objects
        if hasattr(obj, "_ipython_display_"):
            obj._ipython_display_()

    monkeypatch.setattr("IPython.display.display", fake_display)


def drawn(out) -> dict:
    """The one figure an Output shows, as the plotly JSON a front end renders."""
    assert len(out.outputs) == 1, out.outputs
    output = out.outputs[0]
    assert output["output_type"] == "display_data"
    return output["data"][PLOTLY_JSON]


def test_widgets_draw_by_setting_the_output_state_never_by_capture(kernel_like, model, tok, docs):
    mask = mask_explorer(SENTENCE)
    assert drawn(mask.output)["layout"]["title"]["text"] == mask.figure.layout.title.text
    mask.controls["kind"].value = "bidirectional"  # a redraw replaces the figure, never appends
    assert drawn(mask.output)["layout"]["title"]["text"] == mask.figure.layout.title.text
    assert "bidirectional" in mask.figure.layout.title.text.lower()

    pack = packing_viewer(docs, block_size=8, tokenizer=tok)
    assert drawn(pack.output)["layout"]["title"]["text"] == pack.figure.layout.title.text

    attn = attention_viewer(model, tok, SENTENCE[:20])
    assert drawn(attn.output)["layout"]["title"]["text"] == attn.figure.layout.title.text

    samp = sampling_explorer(model, tok, "the c")
    samp.set(temperature=0.5, top_k=3)
    assert drawn(samp.output)["layout"]["title"]["text"] == samp.figure.layout.title.text
    assert "top-k=3" in samp.figure.layout.title.text


def test_live_plot_draws_by_setting_the_output_state(kernel_like):
    plot = LiveLossPlot(every=1, min_interval=0.0)
    for r in records(6, val_every=3):
        plot(r)
    assert plot.draws == 6
    x = drawn(plot.widget)["data"][0]["x"]
    assert list(x) == [1, 2, 3, 4, 5, 6]
