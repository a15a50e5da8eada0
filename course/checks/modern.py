"""Checks for lesson 12 (the modern block): RMSNorm, RoPE, SwiGLU, grouped-query attention.

Every check compares with an independent reference: `course.model.RMSNorm`, Hugging
Face's own Llama rotary embedding (`LlamaRotaryEmbedding` + `apply_rotary_pos_emb`), the
SwiGLU formula, and PyTorch's `scaled_dot_product_attention(..., enable_gqa=True)` (or,
before PyTorch 2.5, SDPA on key/value heads repeated with `repeat_interleave`). When the
answer is wrong the usual mistakes are recomputed, so the message names the mistake
(LayerNorm instead of RMSNorm, the interleaved RoPE layout, the gate on the wrong half,
heads tiled instead of repeated, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from course.checks._core import (
    FLOAT_ATOL,
    FLOAT_RTOL,
    CheckFailed,
    call,
    exercise,
    expect_close,
    expect_contract,
    first_float_match,
    float_close,
    one_thread,
)


def _linear_crash(name: str, e: CheckFailed) -> CheckFailed:
    if "cannot be multiplied" in e.detail or "size of tensor" in e.detail:
        return CheckFailed(name, e.detail, hint=(
            "the weights are stored as nn.Linear stores them, (out_features, in_features): a "
            "projection is x @ W.T (or F.linear(x, W))"))
    return e


# ------------------------------------------------------------------------------ RMSNorm


def _rms_case(fn: Callable[..., Any], shape: tuple[int, ...], eps: float, g: Any) -> None:
    import torch

    from course.model import RMSNorm

    name = "rms_norm"
    C = shape[-1]
    x = 3.0 * torch.randn(shape, generator=g) + 1.5  # a non-zero mean: LayerNorm would differ
    weight = 1.0 + 0.5 * torch.randn(C, generator=g)
    ref = RMSNorm(C, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(weight)
        expected = ref(x)
    desc = f"x of shape {tuple(shape)}, weight of shape ({C},), eps={eps}"
    with torch.no_grad():
        got = call(name, fn, x, weight, eps, inputs_desc=desc)
    expect_contract(name, desc, torch.Tensor, got, hint="return the normalised tensor, same shape as x")
    if float_close(got, expected):
        return
    ms = x.pow(2).mean(-1, keepdim=True)
    with torch.no_grad():
        hint = first_float_match(got, [
            ("that is LayerNorm: RMSNorm does not subtract the mean, it divides x by the root "
             "of the mean of its squares",
             lambda: torch.nn.functional.layer_norm(x, (C,), weight, None, eps)),
            ("the weight (the learned gain) is missing: multiply the normalised x by it",
             lambda: x * torch.rsqrt(ms + eps)),
            ("eps goes inside the square root, added to the mean square: sqrt(mean(x²) + eps)",
             lambda: x / (ms.sqrt() + eps) * weight),
            ("you used the standard deviation (which subtracts the mean); RMSNorm uses the root "
             "mean square", lambda: x / (x.std(-1, keepdim=True) + eps) * weight),
            ("you averaged over the wrong axis: normalise each position over its C channels "
             "(the last dimension)", lambda: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight),
            ("that divides by the root of the SUM of squares; RMSNorm uses their MEAN",
             lambda: x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight),
        ]) or "x times 1 / sqrt(mean over the last axis of x² + eps), times weight"
    expect_close(name, desc, expected, got, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)


@exercise("rms_norm", hints=(
    "RMSNorm rescales each position's vector (the last axis, C channels) so that its root "
    "mean square is 1, then multiplies by the learned gain. Unlike LayerNorm it neither "
    "subtracts the mean nor adds a bias.",
    "Compute the mean of x squared over the last axis (keep the dimension so it broadcasts), "
    "add eps inside the square root, divide, multiply by weight. torch.rsqrt is 1/sqrt.",
))
def rms_norm(fn: Callable[..., Any]) -> int:
    """`fn(x, weight, eps)` against `course.model.RMSNorm`."""
    import torch

    g = torch.Generator().manual_seed(12)
    cases = [((1, 4), 1e-5), ((2, 3, 8), 1e-5), ((3, 5, 16), 1e-6), ((2, 1, 6), 0.1)]
    with one_thread():
        for shape, eps in cases:
            _rms_case(fn, shape, eps, g)
    return len(cases)


# ------------------------------------------------------------------------------ RoPE


def _hf_rope(x: Any, positions: Any, theta: float) -> Any:
    """Hugging Face's Llama rotary embedding applied to x (B, H, T, D) at `positions` (T,)."""
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    B, H, T, D = x.shape
    config = LlamaConfig(hidden_size=H * D, num_attention_heads=H, rope_theta=theta,
                         max_position_embeddings=int(positions.max()) + 1)
    cos, sin = LlamaRotaryEmbedding(config=config)(x, positions[None].expand(B, T))
    rotated, _ = apply_rotary_pos_emb(x, torch.zeros_like(x), cos, sin)
    return rotated


def _rope_by_layout(x: Any, positions: Any, theta: float, *, interleaved: bool = False,
                    sign: float = 1.0, freq_exp: float = 2.0) -> Any:
    """RoPE written out, with knobs for the usual mistakes."""
    import torch

    D = x.size(-1)
    inv = 1.0 / theta ** (freq_exp * torch.arange(D // 2, dtype=torch.float64) / D)
    ang = positions.double()[:, None] * inv[None]  # (T, D/2)
    cos, sin = ang.cos().to(x.dtype), (sign * ang.sin()).to(x.dtype)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    a, b = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _rope_case(fn: Callable[..., Any], B: int, H: int, T: int, D: int, start: int, theta: float,
               g: Any) -> None:
    import torch

    name = "apply_rope"
    x = torch.randn(B, H, T, D, generator=g)
    positions = torch.arange(start, start + T)
    expected = _hf_rope(x, positions, theta)
    desc = f"x of shape {(B, H, T, D)}, positions {start}..{start + T - 1}, theta={theta}"
    with torch.no_grad():
        got = call(name, fn, x, positions, theta, inputs_desc=desc)
    expect_contract(name, desc, torch.Tensor, got, hint="return the rotated tensor, same shape as x")
    if float_close(got, expected):
        return
    hint = first_float_match(got, [
        ("that is the interleaved layout (pairs of neighbouring channels 2i, 2i+1); Llama and "
         "Hugging Face pair channel i with channel i + D/2 (\"rotate half\")",
         lambda: _rope_by_layout(x, positions, theta, interleaved=True)),
        ("the rotation goes the wrong way: the pair (a, b) becomes (a cos - b sin, a sin + b cos)",
         lambda: _rope_by_layout(x, positions, theta, sign=-1.0)),
        ("the frequencies are off: pair i turns at theta ** (-2i / D), i = 0 .. D/2 - 1",
         lambda: _rope_by_layout(x, positions, theta, freq_exp=1.0)),
        ("the positions are ignored: use the given positions (here they do not start at 0), not "
         "torch.arange(T)", lambda: _rope_by_layout(x, torch.arange(T), theta)),
        ("that is x unchanged", lambda: x),
    ]) or ("angle[t, i] = positions[t] * theta ** (-2i / D) for i < D/2, the same angles for both "
           "halves; out = x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1)")
    expect_close(name, desc, expected, got, rtol=FLOAT_RTOL, atol=1e-4, hint=hint)


@exercise("apply_rope", hints=(
    "RoPE splits the D channels of each head into D/2 pairs, channel i with channel i + D/2, and "
    "rotates each pair by an angle that grows with the position: pair i turns at frequency "
    "theta ** (-2i / D), so the first pairs spin fast and the last slowly.",
    "Build angles of shape (T, D/2) as an outer product of positions and the frequencies, take "
    "cos and sin, and for x = (x1, x2) (the two halves of the last axis) return "
    "(x1·cos - x2·sin, x1·sin + x2·cos) concatenated. Use the positions you are given.",
))
def apply_rope(fn: Callable[..., Any]) -> int:
    """`fn(x, positions, theta)` against transformers' Llama rotary embedding."""
    import torch

    g = torch.Generator().manual_seed(3)
    cases = [(1, 1, 1, 2, 0, 10000.0), (1, 2, 5, 8, 0, 10000.0), (2, 3, 4, 16, 7, 10000.0),
             (1, 2, 6, 8, 3, 500.0)]
    with one_thread():
        for case in cases:
            _rope_case(fn, *case, g)
    # the point of RoPE: scores depend only on the distance between query and key
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)
    with torch.no_grad():
        scores = [float((call("apply_rope", fn, q, torch.tensor([m + 4]), 10000.0)
                         * call("apply_rope", fn, k, torch.tensor([m]), 10000.0)).sum())
                  for m in (0, 9, 30)]
    if max(scores) - min(scores) > 1e-3:
        raise CheckFailed("apply_rope", f"q at position m + 4 and k at m scored {scores} for m = 0, 9, "
                          "30; after RoPE the score must depend on the distance only",
                          hint="rotate q and k by their own positions, with the same frequencies")
    return len(cases) + 1


# ------------------------------------------------------------------------------ SwiGLU


def _swiglu_case(fn: Callable[..., Any], B: int, T: int, C: int, hidden: int, g: Any) -> None:
    import torch
    import torch.nn.functional as F

    name = "swiglu"
    x = 2.0 * torch.randn(B, T, C, generator=g)
    w_gate = torch.randn(hidden, C, generator=g) / math.sqrt(C)
    w_up = torch.randn(hidden, C, generator=g) / math.sqrt(C)
    w_down = torch.randn(C, hidden, generator=g) / math.sqrt(hidden)
    expected = F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
    desc = (f"x of shape {(B, T, C)}, w_gate {tuple(w_gate.shape)}, w_up {tuple(w_up.shape)}, "
            f"w_down {tuple(w_down.shape)}")
    with torch.no_grad():
        try:
            got = call(name, fn, x, w_gate, w_up, w_down, inputs_desc=desc)
        except CheckFailed as e:
            raise _linear_crash(name, e) from None
    expect_contract(name, desc, torch.Tensor, got, hint="return the output tensor (B, T, C)")
    if float_close(got, expected):
        return
    gate, up = F.linear(x, w_gate), F.linear(x, w_up)
    hint = first_float_match(got, [
        ("the SiLU is on the wrong branch: silu(x @ w_gate.T) multiplies x @ w_up.T, not the "
         "other way round", lambda: F.linear(gate * F.silu(up), w_down)),
        ("you used GELU; SwiGLU's gate uses SiLU (x · sigmoid(x), F.silu)",
         lambda: F.linear(F.gelu(gate) * up, w_down)),
        ("you used a plain sigmoid (GLU); SwiGLU uses SiLU, x · sigmoid(x)",
         lambda: F.linear(torch.sigmoid(gate) * up, w_down)),
        ("the gate has no activation (a bilinear layer); apply F.silu to the gate branch",
         lambda: F.linear(gate * up, w_down)),
        ("the up branch is missing: the gated value is silu(gate) TIMES x @ w_up.T",
         lambda: F.linear(F.silu(gate), w_down)),
        ("the two branches were added; SwiGLU multiplies them", lambda: F.linear(F.silu(gate) + up, w_down)),
    ]) or "down( silu(x @ w_gate.T) * (x @ w_up.T) ), with down(h) = h @ w_down.T"
    expect_close(name, desc, expected, got, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)


@exercise("swiglu", hints=(
    "Two projections of the same x to the hidden width: a gate and a value. The gate goes "
    "through SiLU and then multiplies the value, element by element; a third projection brings "
    "the result back to C. No biases.",
    "Each weight is stored (out_features, in_features), so a projection is x @ W.T "
    "(F.linear(x, W)); SiLU is F.silu(h) = h * sigmoid(h) and goes on the gate branch only.",
))
def swiglu(fn: Callable[..., Any]) -> int:
    """`fn(x, w_gate, w_up, w_down)` against the SwiGLU formula."""
    import torch

    g = torch.Generator().manual_seed(7)
    shapes = [(1, 1, 4, 6), (2, 3, 8, 12), (3, 5, 16, 40)]
    with one_thread():
        for shape in shapes:
            _swiglu_case(fn, *shape, g)
    return len(shapes)


# ------------------------------------------------------------------------------ GQA


def _gqa_reference(q: Any, k: Any, v: Any) -> Any:
    import torch.nn.functional as F

    from course.model import _SDPA_GQA

    if _SDPA_GQA:  # PyTorch >= 2.5: the kernel shares the key/value heads itself
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    n_rep = q.size(1) // k.size(1)
    return F.scaled_dot_product_attention(q, k.repeat_interleave(n_rep, 1), v.repeat_interleave(n_rep, 1),
                                          is_causal=True)


def _gqa_case(fn: Callable[..., Any], B: int, H: int, G: int, T: int, D: int, g: Any) -> None:
    import torch
    import torch.nn.functional as F

    name = "gqa_attention"
    q = torch.randn(B, H, T, D, generator=g)
    k = 2.0 * torch.randn(B, G, T, D, generator=g)  # sharp enough that the heads differ clearly
    v = torch.randn(B, G, T, D, generator=g)
    expected = _gqa_reference(q, k, v)
    desc = f"q of shape {(B, H, T, D)}, k and v of shape {(B, G, T, D)}"
    with torch.no_grad():
        got = call(name, fn, q, k, v, inputs_desc=desc)
    expect_contract(name, desc, torch.Tensor, got, hint="return the attention output (B, H, T, D)")
    if float_close(got, expected):
        return
    n = H // G
    sdpa = F.scaled_dot_product_attention
    hint = first_float_match(got, [
        ("the key/value heads are tiled (head h reads k/v head h % G, as .repeat does); query head h "
         "belongs to the group h // (H / G): each k/v head serves H/G CONSECUTIVE query heads "
         "(repeat_interleave)", lambda: sdpa(q, k.repeat(1, n, 1, 1), v.repeat(1, n, 1, 1), is_causal=True)),
        ("the attention is not causal: a query must not see later keys",
         lambda: sdpa(q, k.repeat_interleave(n, 1), v.repeat_interleave(n, 1))),
        ("the scores are not scaled: divide q @ k.T by sqrt(D)",
         lambda: sdpa(q, k.repeat_interleave(n, 1), v.repeat_interleave(n, 1), is_causal=True, scale=1.0)),
    ]) or ("repeat each key and value head H/G times along the head axis (repeat_interleave), then "
           "ordinary causal attention")
    expect_close(name, desc, expected, got, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)


@exercise("gqa_attention", hints=(
    "With grouped-query attention there are H query heads but only G key/value heads; each k/v "
    "head is shared by a group of H/G consecutive query heads (query head h uses k/v head "
    "h // (H/G)). Once every query head has its keys and values, it is ordinary causal attention.",
    "Expand k and v from G to H heads along dim 1 so that each head appears H/G times in a row "
    "(repeat_interleave, not repeat), then softmax(q @ kᵀ / sqrt(D)) with the causal mask, times v "
    "(or F.scaled_dot_product_attention(..., is_causal=True)).",
))
def gqa_attention(fn: Callable[..., Any]) -> int:
    """`fn(q, k, v)` (causal) against SDPA with `enable_gqa=True` (or repeated heads)."""
    import torch

    g = torch.Generator().manual_seed(11)
    cases = [(1, 2, 2, 3, 4), (1, 4, 2, 5, 8), (2, 6, 3, 4, 8), (1, 4, 1, 6, 4)]
    with one_thread():
        for case in cases:
            _gqa_case(fn, *case, g)
    return len(cases)
