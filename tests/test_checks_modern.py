"""Checks of lesson 12 (the modern block): references and other correct styles pass,
realistic mistakes fail with the hint that names them, contracts are enforced."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lookalikes import AlwaysEqualTensor

from course import checks as check
from course.checks import CheckFailed, NotAttempted

# ------------------------------------------------------------------------------ RMSNorm


def rms_ok(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rms_fused(x, weight, eps):  # PyTorch's own op: another correct style
    return F.rms_norm(x, (x.size(-1),), weight, eps)


def rms_float64(x, weight, eps):
    return (x.double() / (x.double().pow(2).mean(-1, keepdim=True) + eps).sqrt() * weight.double()).float()


def rms_layernorm(x, weight, eps):
    return F.layer_norm(x, (x.size(-1),), weight, None, eps)


def rms_no_weight(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rms_eps_outside(x, weight, eps):
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight


def rms_sum(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight


def rms_in_place(x, weight, eps):
    x.mul_(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    return x * weight


def test_rms_norm_reference_and_other_styles_pass(capsys):
    for fn in (rms_ok, rms_fused, rms_float64):
        check.rms_norm(fn)
    assert capsys.readouterr().out == "✓ rms_norm: 4 cases passed\n" * 3


@pytest.mark.parametrize("wrong, hint", [
    (rms_layernorm, "that is LayerNorm"),
    (rms_no_weight, "the weight (the learned gain) is missing"),
    (rms_eps_outside, "eps goes inside the square root"),
    (rms_sum, "SUM of squares"),
])
def test_rms_norm_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="rms_norm: on input x of shape") as info:
        check.rms_norm(wrong)
    assert hint in str(info.value)


def test_rms_norm_contract_and_in_place_edits():
    with pytest.raises(CheckFailed, match="changed its argument 1 in place"):
        check.rms_norm(rms_in_place)
    with pytest.raises(CheckFailed, match="got a list"):
        check.rms_norm(lambda *a: rms_ok(*a).tolist())
    with pytest.raises(CheckFailed, match="AlwaysEqualTensor"):
        check.rms_norm(lambda *a: rms_ok(*a).as_subclass(AlwaysEqualTensor))


def test_not_attempted_is_reported_as_such():
    def todo(*args):
        raise NotImplementedError("Exercise: ...")

    for name in ("rms_norm", "apply_rope", "swiglu", "gqa_attention"):
        with pytest.raises(NotAttempted, match=f"{name}: not attempted yet"):
            getattr(check, name)(todo)


# ------------------------------------------------------------------------------ RoPE


def rope_ok(x, positions, theta):
    D = x.size(-1)
    inv = 1.0 / theta ** (torch.arange(0, D, 2).float() / D)  # (D/2,)
    ang = positions.float()[:, None] * inv[None]  # (T, D/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rope_complex(x, positions, theta):  # rotations as complex multiplications
    D = x.size(-1)
    inv = theta ** (-torch.arange(D // 2, dtype=torch.float64) * 2 / D)
    rot = torch.polar(torch.ones(len(positions), D // 2, dtype=torch.float64),
                      positions.double()[:, None] * inv)
    z = torch.complex(x[..., : D // 2].double(), x[..., D // 2 :].double()) * rot
    return torch.cat([z.real, z.imag], -1).to(x.dtype)


def rope_package(x, positions, theta):  # course.model's own functions, indexed at the positions
    from course.model import apply_rope, rope_tables

    cos, sin = rope_tables(x.size(-1), int(positions.max()) + 1, theta)
    return apply_rope(x, cos[positions], sin[positions])


def rope_interleaved(x, positions, theta):
    D = x.size(-1)
    inv = 1.0 / theta ** (torch.arange(0, D, 2).float() / D)
    ang = positions.float()[:, None] * inv[None]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], -1).flatten(-2)


def rope_backwards(x, positions, theta):
    return rope_ok(x, -positions, theta)


def rope_wrong_freq(x, positions, theta):
    D = x.size(-1)
    inv = 1.0 / theta ** (torch.arange(D // 2).float() / D)
    ang = positions.float()[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rope_from_zero(x, positions, theta):
    return rope_ok(x, torch.arange(x.size(-2)), theta)


def test_rope_reference_and_other_styles_pass(capsys):
    for fn in (rope_ok, rope_complex, rope_package):
        check.apply_rope(fn)
    assert capsys.readouterr().out == "✓ apply_rope: 5 cases passed\n" * 3


@pytest.mark.parametrize("wrong, hint", [
    (rope_interleaved, "interleaved layout"),
    (rope_backwards, "the wrong way"),
    (rope_wrong_freq, "frequencies are off"),
    (rope_from_zero, "positions are ignored"),
    (lambda x, p, t: x.clone(), "x unchanged"),
])
def test_rope_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="apply_rope: on input x of shape") as info:
        check.apply_rope(wrong)
    assert hint in str(info.value)


def test_rope_in_place_edit_is_caught():
    def in_place(x, positions, theta):
        out = rope_ok(x, positions, theta)
        x.zero_()
        return out

    with pytest.raises(CheckFailed, match="in place"):
        check.apply_rope(in_place)


# ------------------------------------------------------------------------------ SwiGLU


def swiglu_ok(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def swiglu_fused(x, w_gate, w_up, w_down):  # one matmul for both branches, as course.model does
    gate, up = F.linear(x, torch.cat([w_gate, w_up])).chunk(2, dim=-1)
    return F.linear(gate * torch.sigmoid(gate) * up, w_down)


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, g, u, d: ((x @ g.T) * F.silu(x @ u.T)) @ d.T, "wrong branch"),
    (lambda x, g, u, d: (F.gelu(x @ g.T) * (x @ u.T)) @ d.T, "you used GELU"),
    (lambda x, g, u, d: (torch.sigmoid(x @ g.T) * (x @ u.T)) @ d.T, "plain sigmoid"),
    (lambda x, g, u, d: ((x @ g.T) * (x @ u.T)) @ d.T, "no activation"),
    (lambda x, g, u, d: F.silu(x @ g.T) @ d.T, "up branch is missing"),
    (lambda x, g, u, d: (F.silu(x @ g.T) + x @ u.T) @ d.T, "added"),
])
def test_swiglu_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="swiglu: on input x of shape") as info:
        check.swiglu(wrong)
    assert hint in str(info.value)


def test_swiglu_reference_and_fused_pass_and_untransposed_weights_explain_the_layout(capsys):
    check.swiglu(swiglu_ok)
    check.swiglu(swiglu_fused)
    assert capsys.readouterr().out == "✓ swiglu: 3 cases passed\n" * 2
    with pytest.raises(CheckFailed, match="raised RuntimeError") as info:
        check.swiglu(lambda x, g, u, d: (F.silu(x @ g) * (x @ u)) @ d)
    assert "(out_features, in_features)" in str(info.value)


# ------------------------------------------------------------------------------ GQA


def gqa_ok(q, k, v):
    n = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(n, 1), v.repeat_interleave(n, 1)
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return att.softmax(-1) @ v


def gqa_grouped(q, k, v):  # no copies: view the query heads as (G, H/G) groups
    B, H, T, D = q.shape
    G = k.size(1)
    qg = q.view(B, G, H // G, T, D)
    att = (qg @ k[:, :, None].transpose(-2, -1)) / math.sqrt(D)  # (B, G, H/G, T, T)
    att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return (att.softmax(-1) @ v[:, :, None]).reshape(B, H, T, D)


def gqa_sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def test_gqa_reference_and_other_styles_pass(capsys):
    for fn in (gqa_ok, gqa_grouped, gqa_sdpa):
        check.gqa_attention(fn)
    assert capsys.readouterr().out == "✓ gqa_attention: 4 cases passed\n" * 3


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k, v: F.scaled_dot_product_attention(
        q, k.repeat(1, q.size(1) // k.size(1), 1, 1), v.repeat(1, q.size(1) // k.size(1), 1, 1),
        is_causal=True), "tiled"),
    (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), "not causal"),
    (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True, scale=1.0),
     "not scaled"),
])
def test_gqa_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="gqa_attention: on input q of shape") as info:
        check.gqa_attention(wrong)
    assert hint in str(info.value)


def test_gqa_reference_without_enable_gqa_is_the_same(monkeypatch):
    """Before PyTorch 2.5 the check's reference repeats the heads itself: same verdicts."""
    import course.model

    monkeypatch.setattr(course.model, "_SDPA_GQA", False)
    check.gqa_attention(gqa_ok)
    with pytest.raises(CheckFailed, match="tiled"):
        check.gqa_attention(lambda q, k, v: gqa_ok(q, k.repeat(1, q.size(1) // k.size(1), 1, 1),
                                                   v.repeat(1, q.size(1) // k.size(1), 1, 1)))


def test_every_check_has_two_hint_levels():
    from course.checks._core import HINTS

    for name in ("rms_norm", "apply_rope", "swiglu", "gqa_attention"):
        getattr(check, name)  # registers the module
        assert len(HINTS[name]) == 2, name
