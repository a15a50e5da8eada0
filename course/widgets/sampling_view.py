"""Sampling explorer: the next-token distribution, and what temperature, top-k and top-p do to it.

The model runs once on the prompt (its next-token logits are cached); every slider move
only re-applies `course.sample`'s filters, in the order `generate` uses (temperature,
then top-k, then top-p). Grey bars are the distribution after temperature; coloured bars
are what sampling actually draws from: the surviving tokens, renormalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from course.errors import ConfigError, CourseError
from course.sample import generate, temperature_filter, top_k_filter, top_p_filter
from course.widgets._base import Explorer, set_note, show_text_in, title, token_label

__all__ = ["filtered_distribution", "sampling_figure", "sampling_explorer"]

_KEPT, _BEFORE = "#1a73e8", "#c8ccd2"


def filtered_distribution(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities after temperature, probabilities sampled from), both (V,).

    `top_k` of None or 0 and `top_p` of None or 1.0 turn that filter off.
    """
    logits = temperature_filter(logits.float(), temperature)  # (V,)
    before = logits.softmax(-1)  # (V,)
    if top_k:
        logits = top_k_filter(logits, int(top_k))
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, float(top_p))
    return before, logits.softmax(-1)  # removed tokens are -inf: probability exactly 0


def sampling_figure(
    logits: torch.Tensor,
    tokens: Sequence[str],
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n_bars: int = 30,
) -> go.Figure:
    """Bar chart of the `n_bars` most likely next tokens (V-vector `logits`, names `tokens`).

    `data[0]` ("after temperature", grey): each token's probability before truncation;
    `data[1]` ("sampled from", coloured where the token survives): the renormalised
    probabilities sampling uses, 0 for removed tokens.
    """
    logits = torch.as_tensor(logits).reshape(-1)
    if len(tokens) != logits.numel():
        raise ConfigError(f"got {logits.numel()} logits but {len(tokens)} token names")
    before, after = filtered_distribution(logits, temperature, top_k, top_p)
    order = torch.argsort(logits, descending=True, stable=True)[:n_bars].tolist()  # fixed x order
    names = [token_label(tokens[i]) for i in order]
    x = [f"{r}:{n}" for r, n in enumerate(names)]  # unique categories even if two names look alike
    kept = after > 0
    n_kept = int(kept.sum())
    kept_mass = float(before[kept].sum())
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=x, y=[float(before[i]) for i in order], name="after temperature", marker_color=_BEFORE,
        hovertext=[f"{n}: p = {float(before[i]):.4f} before truncation" for n, i in zip(names, order, strict=True)],
        hoverinfo="text",
    ))
    fig.add_trace(go.Bar(
        x=x, y=[float(after[i]) for i in order], name="sampled from (renormalised)",
        marker_color=[_KEPT if kept[i] else _BEFORE for i in order], width=0.5,
        hovertext=[f"{n}: p = {float(after[i]):.4f} " + ("(kept)" if kept[i] else "(removed)")
                   for n, i in zip(names, order, strict=True)],
        hoverinfo="text",
    ))
    parts = [f"T={temperature:g}"] + ([f"top-k={top_k}"] if top_k else []) + (
        [f"top-p={top_p:g}"] if top_p is not None and top_p < 1.0 else [])
    fig.update_layout(
        title=title(f"next-token distribution, {', '.join(parts)}: {n_kept} of {logits.numel()} "
                    f"tokens survive, holding {kept_mass:.1%} of the mass"),
        barmode="overlay", xaxis=dict(tickmode="array", tickvals=x, ticktext=names, tickangle=-60,
                                      title=f"the {len(order)} most likely tokens"),
        yaxis=dict(title="probability", rangemode="tozero"), height=430,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), margin=dict(l=10, r=10, t=90, b=10),
        plot_bgcolor="white",
    )
    note = ("Grey: the model's distribution after temperature. Blue: the tokens that survive "
            "top-k / top-p, rescaled to sum to 1 — sampling draws only from these.")
    return set_note(fig, note)


class _SamplingExplorer(Explorer):
    def __init__(self, model, tokenizer, ids: list[int], n_bars: int) -> None:
        self.model, self.tokenizer, self.ids = model, tokenizer, ids
        device = next(model.parameters()).device
        with torch.no_grad():
            was = model.training
            model.eval()
            try:
                logits, _ = model(torch.tensor([ids], dtype=torch.long, device=device))
            finally:
                model.train(was)
        self.logits = logits[0, -1].float().cpu()  # (V,), computed once
        V = self.logits.numel()
        self.token_names = [tokenizer.token_str(i) for i in range(V)]
        self.n_bars = n_bars
        self.last_generation: str | None = None
        controls = {
            "temperature": widgets.FloatSlider(value=1.0, min=0.05, max=3.0, step=0.05,
                                               description="temperature", continuous_update=False),
            "top_k": widgets.IntSlider(value=0, min=0, max=V, description="top-k (0=off)",
                                       continuous_update=False),
            "top_p": widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05,
                                         description="top-p (1=off)", continuous_update=False),
            "seed": widgets.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed"),
            "max_new_tokens": widgets.IntSlider(value=40, min=1, max=200, description="new tokens",
                                                continuous_update=False),
        }
        for c in controls.values():
            c.style = {"description_width": "initial"}
        self.button = widgets.Button(description="generate", button_style="primary", icon="play")
        self.generated = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))
        self.button.on_click(lambda _: self.generate())
        super().__init__(controls, self._draw, rows=[["temperature", "top_k", "top_p"]],
                         extra=[widgets.HBox([controls["seed"], controls["max_new_tokens"], self.button]),
                                self.generated])
        # Seed and length only matter to the button: no redraw when they change.
        for name in ("seed", "max_new_tokens"):
            controls[name].unobserve(self._on_change, names="value")
        self.refresh()

    def _draw(self, temperature: float, top_k: int, top_p: float, **_) -> go.Figure:
        return sampling_figure(self.logits, self.token_names, temperature=temperature,
                               top_k=top_k or None, top_p=top_p, n_bars=self.n_bars)

    def generate(self) -> str:
        """Continue the prompt with the current settings and seed; shown below, and returned."""
        v = self.values()
        try:  # generate() keeps the model's context to block_size by itself
            out = generate(self.model, self.ids, int(v["max_new_tokens"]),
                           temperature=float(v["temperature"]), top_k=int(v["top_k"]) or None,
                           top_p=float(v["top_p"]) if v["top_p"] < 1.0 else None,
                           seed=int(v["seed"]))
        except CourseError as err:
            show_text_in(self.generated, f"⚠ {err}")
            return ""
        new = out[0, len(self.ids):].tolist()
        text = self.tokenizer.decode(new)
        self.last_generation = text
        show_text_in(self.generated, f"{self.tokenizer.decode(self.ids)}[{text}]\n"
                                     f"(seed {v['seed']}; the continuation is in brackets)")
        return text


def sampling_explorer(model, tokenizer, prompt: str | Sequence[int], *, n_bars: int = 30) -> Explorer:
    """Next-token distribution for `prompt`, with temperature / top-k / top-p sliders and a generate button.

    Controls: `temperature`, `top_k` (0 = off), `top_p` (1.0 = off), `seed`, `max_new_tokens`.
    `.logits` (V,) are the cached next-token logits; `.generate()` does what the button does.
    """
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    if not ids:
        raise ConfigError("the prompt is empty; give at least one token (e.g. the EOS id to start a document)")
    ids = ids[-model.config.block_size:]
    return _SamplingExplorer(model, tokenizer, ids, n_bars)
