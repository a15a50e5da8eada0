"""Checks of lesson 04 (causal attention): references pass, realistic mistakes fail with the
right hint."""

from __future__ import annotations

import math

import pytest
import torch
from lookalikes import AlwaysEqualTensor

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.masks import to_additive


def todo(*args):
    raise NotImplementedError("Exercise: implement it")


# ---------------------------------------------------------------------- causal mask


def mask_ok(T):
    i = torch.arange(T)
    return i[None, :] <= i[:, None]  # key j <= query i


def mask_transposed(T):
    return torch.ones(T, T, dtype=torch.bool).triu()


def mask_strict(T):
    return torch.ones(T, T, dtype=torch.bool).tril(-1)


def mask_hidden_positions(T):
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def mask_float(T):
    return torch.ones(T, T).tril()


def mask_additive(T):
    return to_additive(torch.ones(T, T, dtype=torch.bool).tril())


def test_causal_mask_reference_passes(capsys):
    check.causal_mask(mask_ok)
    assert capsys.readouterr().out == "✓ causal_mask: 6 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (mask_transposed, "your mask is transposed (upper triangle)"),
    (mask_strict, "the diagonal is missing"),
    (mask_hidden_positions, "these are the positions to HIDE"),
    (mask_float, "return a boolean tensor"),
    (mask_additive, "additive 0 / -inf form"),
])
def test_causal_mask_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="causal_mask: on input T=4") as info:
        check.causal_mask(wrong)
    assert hint in str(info.value)


def mask_arange(T):  # another correct style
    return torch.arange(T)[:, None] >= torch.arange(T)


def test_causal_mask_other_styles_pass_and_wrong_containers_fail():
    check.causal_mask(mask_arange)
    for wrong, got in [(lambda T: mask_ok(T).tolist(), "got a list"),
                       (lambda T: mask_ok(T).numpy(), "got a ndarray"),
                       (lambda T: mask_ok(T).as_subclass(AlwaysEqualTensor), "AlwaysEqualTensor")]:
        with pytest.raises(CheckFailed, match="causal_mask: on input T=4 — expected torch.Tensor") as info:
            check.causal_mask(wrong)
        assert got in str(info.value)


def test_causal_mask_fallback_hint_does_not_give_the_answer():
    def mask_band(T):  # causal, but only the last two keys
        i = torch.arange(T)
        return (i[None, :] <= i[:, None]) & (i[None, :] >= i[:, None] - 1)

    with pytest.raises(CheckFailed) as info:
        check.causal_mask(mask_band)
    message = str(info.value)
    assert "True exactly where key j <= query i" in message and "tril" not in message


def test_causal_mask_not_attempted():
    with pytest.raises(NotAttempted):
        check.causal_mask(todo)


# ------------------------------------------------------------------------ attention


def attention_ok(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_additive(q, k, v, mask):  # another valid style: an additive mask
    scores = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5 + to_additive(mask)
    return scores.softmax(-1) @ v


def attention_wrong_axis(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-2) @ v


def attention_unscaled(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_mask_after_softmax(q, k, v, mask):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights.masked_fill(~mask, 0.0) @ v


def attention_inverted_mask(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_fill_zero(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, 0.0)
    return torch.softmax(scores, dim=-1) @ v


def attention_transposed_mask(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~mask.transpose(-2, -1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_scores_transposed(q, k, v, mask):
    scores = (k @ q.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_no_mask(q, k, v, mask):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) @ v


def attention_divided_by_d(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / q.size(-1)).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_scaled_by_t(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-2))).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_softmax_over_heads(q, k, v, mask):  # dim=1, as if the scores were 2-D (T, T)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=1) @ v


def attention_naive_exp(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, float("-inf"))
    e = torch.exp(scores)
    return (e / e.sum(-1, keepdim=True)) @ v


def attention_returns_weights(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return w @ v, w


def test_attention_reference_passes(capsys):
    check.masked_attention(attention_ok)
    assert capsys.readouterr().out == "✓ masked_attention: 6 cases passed\n"


def test_attention_additive_mask_passes():
    check.masked_attention(attention_additive)


@pytest.mark.parametrize("wrong, hint", [
    (attention_wrong_axis, "softmax over the wrong axis"),
    (attention_unscaled, "the scores are not scaled"),
    (attention_mask_after_softmax, "the mask is applied after the softmax"),
    (attention_inverted_mask, "masked_fill(mask, -inf) hides the keys that MAY be attended"),
    (attention_fill_zero, "the forbidden scores are set to 0"),
    (attention_transposed_mask, "the mask is transposed"),
    (attention_no_mask, "the mask is not applied at all"),
    (attention_scores_transposed, "the scores are transposed"),
    (attention_divided_by_d, "the scores are divided by D"),
    (attention_scaled_by_t, "the scale uses the sequence length"),
    (attention_softmax_over_heads, "dim=1 of (B, H, T, T) is the heads axis"),
])
def test_attention_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=r"masked_attention: on input q, k, v of shape \(2, 3, 5, 16\), "
                                          "a causal mask") as info:
        check.masked_attention(wrong)
    assert hint in str(info.value)


def test_attention_overflow_is_explained():
    with pytest.raises(CheckFailed, match="large scores") as info:
        check.masked_attention(attention_naive_exp)
    assert "torch.softmax, which subtracts each row's maximum" in str(info.value)


def attention_softmax_mask_renormalise(q, k, v, mask):  # right on paper, NaN on large scores
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) * mask
    return (w / w.sum(-1, keepdim=True)) @ v


def attention_stable_exp_mask_renormalise(q, k, v, mask):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    e = torch.exp(s - s.max(dim=-1, keepdim=True).values) * mask
    return e / e.sum(dim=-1, keepdim=True) @ v


def attention_exp_mask_renormalise(q, k, v, mask):
    e = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))) * mask
    return e / e.sum(-1, keepdim=True) @ v


@pytest.mark.parametrize("wrong, hint", [
    (attention_softmax_mask_renormalise, "the allowed weights underflow to 0 in float32, the row "
                                         "sum is 0, and 0 / 0 = NaN"),
    (attention_stable_exp_mask_renormalise, "0 / 0 = NaN. Remove the forbidden keys BEFORE the "
                                            "softmax"),
    (attention_exp_mask_renormalise, "multiplying by the mask gives inf * 0 = NaN"),
])
def test_attention_nan_hint_names_the_actual_cause(wrong, hint):
    with pytest.raises(CheckFailed, match="large scores") as info:
        check.masked_attention(wrong)
    message = str(info.value)
    assert "a NaN at index" in message and hint in message


def test_attention_that_scales_q_in_place_is_rejected():
    def attention_scales_q_in_place(q, k, v, mask):
        q /= math.sqrt(q.size(-1))
        scores = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    with pytest.raises(CheckFailed, match="changed its argument 1 in place") as info:
        check.masked_attention(attention_scales_q_in_place)
    assert "scaling in place (q /= math.sqrt(D)" in str(info.value)
    assert "changes the caller's q" in str(info.value)


def test_attention_that_changes_the_mask_is_rejected():
    def attention_inverts_mask_in_place(q, k, v, mask):
        hidden = mask.logical_not_()
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(hidden, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    with pytest.raises(CheckFailed, match="changed its argument 4 in place") as info:
        check.masked_attention(attention_inverts_mask_in_place)
    assert "no in-place tensor ops" in str(info.value)


def test_attention_float64_and_einsum_styles_pass():
    def attention_float64(q, k, v, mask):
        out = attention_ok(q.double(), k.double(), v.double(), mask)
        return out.float()

    def attention_einsum(q, k, v, mask):
        s = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(q.size(-1))
        return torch.einsum("bhij,bhjd->bhid", s.masked_fill(~mask, -math.inf).softmax(-1), v)

    check.masked_attention(attention_float64)
    check.masked_attention(attention_einsum)


@pytest.mark.parametrize("wrong, got", [
    (lambda q, k, v, mask: attention_ok(q, k, v, mask).tolist(), "got a list"),
    (lambda q, k, v, mask: attention_ok(q, k, v, mask).as_subclass(AlwaysEqualTensor),
     "AlwaysEqualTensor"),
])
def test_attention_wrong_container_is_rejected(wrong, got):
    with pytest.raises(CheckFailed, match="expected torch.Tensor") as info:
        check.masked_attention(wrong)
    assert got in str(info.value)


def test_attention_returning_weights_is_explained():
    with pytest.raises(CheckFailed, match="expected one tensor"):
        check.masked_attention(attention_returns_weights)


def test_attention_not_attempted():
    with pytest.raises(NotAttempted):
        check.masked_attention(todo)


# --------------------------------------------------------------------------- heads


def split_ok(x, n_head):
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_ok(y):
    B, H, T, D = y.shape
    return y.transpose(1, 2).reshape(B, T, H * D)


def split_mixed(x, n_head):  # heads and time mixed up: no transpose
    B, T, C = x.shape
    return x.reshape(B, n_head, T, C // n_head)


def merge_mixed(y):
    B, H, T, D = y.shape
    return y.reshape(B, T, H * D)


def merge_view(y):
    B, H, T, D = y.shape
    return y.transpose(1, 2).view(B, T, H * D)


def split_interleaved(x, n_head):
    B, T, C = x.shape
    return x.reshape(B, T, C // n_head, n_head).permute(0, 3, 1, 2)


def split_no_transpose(x, n_head):
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head)


def test_heads_reference_passes(capsys):
    check.split_merge_heads(split_ok, merge_ok)
    assert capsys.readouterr().out == "✓ split_merge_heads: 13 cases passed\n"


def test_heads_einops_style_passes():
    check.split_merge_heads(lambda x, h: x.unflatten(-1, (h, -1)).permute(0, 2, 1, 3),
                            lambda y: y.permute(0, 2, 1, 3).flatten(-2))


@pytest.mark.parametrize("split, merge, where, hint", [
    (split_mixed, merge_ok, "split_heads", "heads and time are mixed up: a direct view(B, H, T, D)"),
    (split_ok, merge_mixed, "merge_heads", "First move time back in front of the heads"),
    (split_mixed, merge_mixed, "split_heads", "heads and time are mixed up"),  # consistent, still wrong
    (split_ok, merge_view, "merge_heads", "use .reshape, which copies when it must"),
    (split_interleaved, merge_ok, "split_heads", "not every H-th channel"),
    (split_no_transpose, merge_ok, "split_heads", "x of shape (2, 5, 12)"),
])
def test_heads_mistakes_are_named(split, merge, where, hint):
    with pytest.raises(CheckFailed, match=f"split_merge_heads: on input {where}") as info:
        check.split_merge_heads(split, merge)
    assert hint in str(info.value)


def test_heads_missing_transpose_is_named_when_shapes_coincide():
    # With T == H the forgotten transpose still has the right shape; the hint must say so.
    def split_no_transpose_square(x, n_head):
        if x.shape[1] == n_head:
            return split_no_transpose(x, n_head)
        return split_ok(x, n_head)

    with pytest.raises(CheckFailed, match=r"n_head=4\) — 96 of 128 values differ") as info:
        check.split_merge_heads(split_no_transpose_square, merge_ok)
    assert "the heads must come before time" in str(info.value)


def test_heads_that_change_their_input_are_rejected():
    def split_in_place_scale(x, n_head):
        x *= 1.0 + 1e-3  # e.g. a stray in-place normalisation
        return split_ok(x, n_head)

    def merge_in_place(y):
        y.transpose_(1, 2)
        B, T, H, D = y.shape
        return y.reshape(B, T, H * D)

    with pytest.raises(CheckFailed, match="split_heads.*changed its argument 1 in place"):
        check.split_merge_heads(split_in_place_scale, merge_ok)
    with pytest.raises(CheckFailed, match="merge_heads.*changed its argument 1 in place"):
        check.split_merge_heads(split_ok, merge_in_place)


def test_heads_wrong_container_is_rejected():
    with pytest.raises(CheckFailed, match="split_heads.*expected torch.Tensor, got a ndarray"):
        check.split_merge_heads(lambda x, h: split_ok(x, h).numpy(), merge_ok)
    with pytest.raises(CheckFailed, match="merge_heads.*AlwaysEqualTensor"):
        check.split_merge_heads(split_ok, lambda y: merge_ok(y).as_subclass(AlwaysEqualTensor))


def test_heads_fallback_hints_do_not_give_the_answer():
    def split_reversed_heads(x, n_head):
        return split_ok(x, n_head).flip(1)

    with pytest.raises(CheckFailed) as info:
        check.split_merge_heads(split_reversed_heads, merge_ok)
    message = str(info.value)
    assert "(B, T, C) -> (B, T, H, D) -> (B, H, T, D)" in message
    assert "transpose(1, 2)" not in message and ".view(B, T" not in message


@pytest.mark.parametrize("name", ["causal_mask", "masked_attention", "split_merge_heads"])
def test_hint_levels_exist_and_do_not_give_the_answer(name, capsys, monkeypatch):
    from course.checks._core import _SHOWN, HINTS

    monkeypatch.setitem(_SHOWN, name, 0)  # as in a fresh session
    levels = HINTS[name]
    assert len(levels) == 2 and all(len(level) > 40 for level in levels)
    for level in levels:
        assert "tril()" not in level and "transpose(1, 2)" not in level
        assert "masked_fill(~mask" not in level and "view(B, T, H" not in level
    check.hint(name)
    check.hint(name)
    out = capsys.readouterr().out
    assert f"{name}: (level 1 of 2)" in out and f"{name}: (level 2 of 2)" in out


def test_heads_not_attempted():
    with pytest.raises(NotAttempted):
        check.split_merge_heads(todo, merge_ok)
    with pytest.raises(NotAttempted):
        check.split_merge_heads(split_ok, todo)
