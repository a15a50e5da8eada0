"""Checks of lesson 04 (causal attention): references pass, realistic mistakes fail with the
right hint."""

from __future__ import annotations

import math

import pytest
import torch

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
    (split_ok, merge_mixed, "merge_heads", "transpose(1, 2) to (B, T, H, D) first"),
    (split_mixed, merge_mixed, "split_heads", "heads and time are mixed up"),  # consistent, still wrong
    (split_ok, merge_view, "merge_heads", "use .reshape(B, T, C) or .contiguous().view"),
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

    with pytest.raises(CheckFailed, match="transpose") as info:
        check.split_merge_heads(split_no_transpose_square, merge_ok)
    assert "the heads must come before time" in str(info.value)


def test_heads_not_attempted():
    with pytest.raises(NotAttempted):
        check.split_merge_heads(todo, merge_ok)
    with pytest.raises(NotAttempted):
        check.split_merge_heads(split_ok, todo)
