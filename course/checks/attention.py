"""Checks for lesson 04 (causal attention): the mask, masked attention, heads in and out.

References: `torch.ones(T, T).tril()` for the mask (what `course.masks.causal_mask` returns),
PyTorch's `F.scaled_dot_product_attention` for attention, and the `view` + `transpose` of
`course.model.CausalSelfAttention` for the heads. When an answer is wrong, the usual
mistakes (a transposed or strict mask, softmax over the queries, no 1/sqrt(D), the mask
applied after the softmax, heads and time mixed up, ...) are recomputed on the same input
so the message can name the mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from course.checks._core import (
    CheckFailed,
    call,
    exercise,
    expect_close,
    expect_equal,
    expect_type,
    first_match,
    tensors_close,
)

_RTOL = 1e-4
_ATOL = 1e-5


def _close(a: Any, b: Any) -> bool:
    return tensors_close(a, b, rtol=_RTOL, atol=_ATOL, same_dtype=True, equal_nan=True)


def _first_match(got: Any, variants: list[tuple[str, Callable[[], Any]]]) -> str | None:
    """The hint of the first known mistake whose output equals `got`, else None."""
    return first_match(got, variants, _close)


# ---------------------------------------------------------------------- causal mask


@exercise("causal_mask")
def causal_mask(fn: Callable[[int], Any]) -> int:
    """`fn(T)` -> bool (T, T), True where key j <= query i (the lower triangle)."""
    import torch

    name = "causal_mask"
    sizes = [4, 5, 2, 1, 8, 16]
    for T in sizes:
        desc = f"T={T}"
        got = call(name, fn, T, inputs_desc=desc)
        expect_type(name, desc, torch.Tensor, got, hint="return a torch.Tensor of shape (T, T)")
        expected = torch.ones(T, T, dtype=torch.bool).tril()
        if got.shape == (T, T) and got.dtype != torch.bool:
            if got.is_floating_point() and bool(torch.isinf(got).any()):
                hint = ("that looks like the additive 0 / -inf form; return booleans, True = may "
                        "attend (course.masks.to_additive converts one into the other)")
            else:
                hint = "return a boolean tensor: build it with dtype=torch.bool or add .bool()"
            raise CheckFailed(name, f"on input {desc} — expected dtype torch.bool, got {got.dtype}",
                              hint=hint)
        if got.shape == (T, T) and got.dtype == torch.bool and not torch.equal(got, expected):
            ones = torch.ones(T, T, dtype=torch.bool)
            if torch.equal(got, ones.triu()):
                hint = ("your mask is transposed (upper triangle): row i is the query and must "
                        "see the keys j <= i, i.e. the lower triangle (tril); the upper one lets "
                        "every position read the future")
            elif torch.equal(got, ones.tril(-1)):
                hint = ("the diagonal is missing: position i may attend to itself (j <= i, not "
                        "j < i); without it the first row sees nothing and its softmax is NaN")
            elif torch.equal(got, ones.triu(1)):
                hint = ("these are the positions to HIDE (j > i); the convention here is "
                        "True = may attend, so return the complement (the lower triangle)")
            elif torch.equal(got, ones):
                hint = "every entry is True: that is the bidirectional mask; hide the keys j > i"
            else:
                hint = "True exactly where j <= i: torch.ones(T, T, dtype=torch.bool).tril()"
            expect_equal(name, desc, expected, got, hint=hint)
        expect_equal(name, desc, expected, got,
                     hint="the mask is (T, T): one row per query, one column per key")
    return len(sizes)


# ------------------------------------------------------------------------ attention


def _attention_cases() -> list[tuple[str, Any, Any, Any, Any]]:
    """(description, q, k, v, mask) with seeded random tensors."""
    import torch

    g = torch.Generator().manual_seed(11)

    def qkv(B: int, H: int, T: int, D: int, scale: float = 1.0) -> tuple[Any, Any, Any]:
        return tuple(s * torch.randn(B, H, T, D, generator=g) for s in (scale, scale, 1.0))

    def desc(q: Any, mask: Any, what: str) -> str:
        return f"q, k, v of shape {tuple(q.shape)}, {what} mask of shape {tuple(mask.shape)}"

    cases = []
    q, k, v = qkv(2, 3, 5, 16)
    m = torch.ones(5, 5, dtype=torch.bool).tril()
    cases.append((desc(q, m, "a causal"), q, k, v, m))

    q, k, v = qkv(1, 2, 6, 8)
    rows = torch.randint(0, 6, (6,), generator=g)
    m = torch.zeros(6, 6, dtype=torch.bool)
    m[torch.arange(6), rows] = True  # one visible key per query, not necessarily the diagonal
    m[0] = True  # ... except the first query, which sees all keys
    cases.append((desc(q, m, "a one-key-per-row (except row 0)"), q, k, v, m))

    q, k, v = qkv(2, 2, 7, 32)
    m = torch.ones(7, 7, dtype=torch.bool)
    cases.append((desc(q, m, "an all-True (bidirectional)"), q, k, v, m))

    q, k, v = qkv(1, 1, 1, 4)
    m = torch.ones(1, 1, dtype=torch.bool)
    cases.append((desc(q, m, "a 1-token"), q, k, v, m))

    q, k, v = qkv(2, 4, 6, 16)
    doc = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 2, 2]])
    m = ((doc[:, :, None] == doc[:, None, :]) & torch.ones(6, 6, dtype=torch.bool).tril())[:, None]
    cases.append((desc(q, m, "a packed-document (B, 1, T, T)"), q, k, v, m))

    q, k, v = qkv(1, 2, 8, 16, scale=8.0)  # scores up to ~170: a naive exp() overflows
    m = torch.ones(8, 8, dtype=torch.bool).tril()
    cases.append((desc(q, m, "a causal") + " and large scores (up to ~170 after scaling)", q, k, v, m))
    return cases


def _attention_mistakes(q: Any, k: Any, v: Any, mask: Any) -> list[tuple[str, Callable[[], Any]]]:
    """The usual wrong versions of masked attention, each with the hint that names it."""
    import torch

    D = q.size(-1)
    scores = q @ k.transpose(-2, -1)  # (B, H, T, T) unscaled
    neg = float("-inf")

    def softmax_av(s: Any, dim: int = -1) -> Any:
        return torch.softmax(s, dim=dim) @ v

    wrong_axis = ("softmax over the wrong axis: each query's weights over the KEYS must sum to 1, "
                  "so take the softmax over the last dimension (dim=-1)")
    T = q.size(-2)
    variants = [
        (wrong_axis, lambda: softmax_av((scores / math.sqrt(D)).masked_fill(~mask, neg), dim=-2)),
        (wrong_axis + "; dim=1 of (B, H, T, T) is the heads axis",
         lambda: softmax_av((scores / math.sqrt(D)).masked_fill(~mask, neg), dim=1)),
        ("the scores are not scaled: divide q @ kᵀ by sqrt(D) (D = q.size(-1)) before "
         "the softmax",
         lambda: softmax_av(scores.masked_fill(~mask, neg))),
        ("the scores are divided by D; the scale is 1 / sqrt(D)",
         lambda: softmax_av((scores / D).masked_fill(~mask, neg))),
        ("the scores are multiplied by sqrt(D); divide by it: q @ kᵀ / sqrt(D)",
         lambda: softmax_av((scores * math.sqrt(D)).masked_fill(~mask, neg))),
        ("the scale uses the sequence length T = q.size(-2); it is the head size "
         "D = q.size(-1): divide by sqrt(D)",
         lambda: softmax_av((scores / math.sqrt(T)).masked_fill(~mask, neg))),
        ("the mask is applied after the softmax: zeroing weights afterwards leaves rows that "
         "no longer sum to 1; fill the forbidden SCORES with -inf before the softmax",
         lambda: (torch.softmax(scores / math.sqrt(D), dim=-1) * mask) @ v),
        ("the forbidden scores are set to 0, which still gives them weight exp(0) = 1; "
         "fill them with float('-inf')",
         lambda: softmax_av((scores / math.sqrt(D)).masked_fill(~mask, 0.0))),
        ("masked_fill(mask, -inf) hides the keys that MAY be attended (True = may attend); "
         "fill where the mask is False: masked_fill(~mask, float('-inf'))",
         lambda: softmax_av((scores / math.sqrt(D)).masked_fill(mask, neg))),
        ("the mask is not applied at all: fill the scores where mask is False with "
         "float('-inf') before the softmax",
         lambda: softmax_av(scores / math.sqrt(D))),
        ("the mask is transposed: mask[i, j] says whether query i may read key j, and "
         "scores[..., i, j] = q_i · k_j, so apply it as is",
         lambda: softmax_av((scores / math.sqrt(D)).masked_fill(~mask.transpose(-2, -1), neg))),
        ("the scores are transposed: row i must hold query i's scores, scores[..., i, j] = "
         "q_i · k_j, i.e. q @ k.transpose(-2, -1), not k @ q.transpose(-2, -1)",
         lambda: softmax_av((scores.transpose(-2, -1) / math.sqrt(D)).masked_fill(~mask, neg))),
    ]
    return variants


@exercise("masked_attention")
def masked_attention(fn: Callable[..., Any]) -> int:
    """`fn(q, k, v, mask)` against `F.scaled_dot_product_attention(q, k, v, attn_mask=mask)`."""
    import torch
    import torch.nn.functional as F

    name = "masked_attention"
    cases = _attention_cases()
    for desc, q, k, v, mask in cases:
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        with torch.no_grad():
            got = call(name, fn, q.clone(), k.clone(), v.clone(), mask.clone(), inputs_desc=desc)
        if isinstance(got, (tuple, list)) and got and isinstance(got[0], torch.Tensor):
            raise CheckFailed(name, f"on input {desc} — expected one tensor (B, H, T, D), got a "
                              f"{type(got).__name__} of {len(got)} items",
                              hint="return only the output, softmax(q kᵀ / √D) v, not the weights")
        expect_type(name, desc, torch.Tensor, got, hint="return the output tensor (B, H, T, D)")
        if _close(got, expected):
            continue
        hint = _first_match(got, _attention_mistakes(q, k, v, mask))
        if hint is None and isinstance(got, torch.Tensor) and got.shape == expected.shape and \
                bool(torch.isnan(got).any()) and not bool(torch.isnan(expected).any()):
            hint = ("your output has NaN: exp() of large scores overflows to inf (inf / inf = "
                    "NaN); use torch.softmax, which subtracts each row's maximum first")
        if hint is None:
            hint = ("scores = q @ k.transpose(-2, -1) / sqrt(D) (B, H, T, T); set them to -inf "
                    "where mask is False; softmax over the last axis; multiply by v")
        expect_close(name, desc, expected, got, rtol=_RTOL, atol=_ATOL, hint=hint)
    return len(cases)


# --------------------------------------------------------------------------- heads


_HEADS_MIXED = ("heads and time are mixed up: a direct view(B, H, T, D) of (B, T, C) puts "
                "consecutive positions into different heads. View as (B, T, H, D) first (each "
                "position's C channels split into H heads of D), then transpose(1, 2)")
_MERGE_MIXED = ("heads and time are mixed up: a direct view/reshape of (B, H, T, D) to "
                "(B, T, C) glues positions of one head together. transpose(1, 2) to "
                "(B, T, H, D) first, then reshape to (B, T, C)")


@exercise("split_merge_heads")
def split_merge_heads(split_fn: Callable[..., Any], merge_fn: Callable[..., Any]) -> int:
    """`split_fn(x, n_head)` (B, T, C) -> (B, H, T, D) and `merge_fn(y)` back, against the
    `view` + `transpose` of `course.model.CausalSelfAttention`."""
    import torch

    name = "split_merge_heads"
    g = torch.Generator().manual_seed(13)
    shapes = [(2, 5, 12, 3), (1, 4, 8, 2), (3, 7, 32, 4), (2, 4, 16, 4), (1, 1, 6, 6), (2, 3, 8, 1)]
    n = 0
    for i, (B, T, C, H) in enumerate(shapes):
        D = C // H
        # Half of the inputs are a slice of a wider tensor, like q from c_attn(x).split(C, dim=2).
        x = torch.randn(B, T, 3 * C if i % 2 else C, generator=g)[..., :C]
        desc = f"x of shape {(B, T, C)}, n_head={H}"
        expected = x.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        got = call(name, split_fn, x.clone() if i % 2 == 0 else x, H, inputs_desc=f"split_heads({desc})")
        n += 1
        expect_type(name, f"split_heads({desc})", torch.Tensor, got,
                    hint="return a tensor of shape (B, H, T, D)")
        if not _close(got, expected):
            if tuple(got.shape) == (B, T, H, D) and torch.equal(got, x.reshape(B, T, H, D)) and \
                    not torch.equal(got, expected.reshape(B, T, H, D)):
                hint = "the heads must come before time: transpose(1, 2) the (B, T, H, D) view"
            else:
                hint = _first_match(got, [
                    (_HEADS_MIXED, lambda x=x, B=B, H=H, T=T, D=D: x.reshape(B, H, T, D)),
                    ("head h must get the channels h*D .. (h+1)*D - 1 (a contiguous slice), "
                     "not every H-th channel: view(B, T, H, D), not view(B, T, D, H)",
                     lambda x=x, B=B, H=H, T=T, D=D: x.reshape(B, T, D, H).permute(0, 3, 1, 2)),
                ]) or "x.view(B, T, H, D).transpose(1, 2) gives (B, H, T, D)"
            expect_equal(name, f"split_heads({desc})", expected, got, hint=hint)

        y = torch.randn(B, H, T, D, generator=g)  # like att @ v: contiguous (B, H, T, D)
        ydesc = f"merge_heads(y of shape {(B, H, T, D)})"
        expected_y = y.transpose(1, 2).reshape(B, T, C)
        try:
            got_y = call(name, merge_fn, y.clone(), inputs_desc=ydesc)
        except CheckFailed as e:
            if "view" in e.detail and ("contiguous" in e.detail or "stride" in e.detail):
                raise CheckFailed(name, e.detail, hint=(
                    "after transpose(1, 2) the tensor is not contiguous in memory, so .view "
                    "fails: use .reshape(B, T, C) or .contiguous().view(B, T, C)")) from None
            raise
        n += 1
        expect_type(name, ydesc, torch.Tensor, got_y, hint="return a tensor of shape (B, T, C)")
        if not _close(got_y, expected_y):
            hint = _first_match(got_y, [
                (_MERGE_MIXED, lambda y=y, B=B, T=T, C=C: y.reshape(B, T, C)),
            ]) or "y.transpose(1, 2).reshape(B, T, C) puts the heads side by side again"
            expect_equal(name, ydesc, expected_y, got_y, hint=hint)

    # The two together are the identity, as the model needs.
    x = torch.randn(2, 3, 12, generator=g)
    back = call(name, lambda t: merge_fn(split_fn(t, 4)), x,
                inputs_desc="merge_heads(split_heads(x, 4)) with x of shape (2, 3, 12)")
    expect_equal(name, "merge_heads(split_heads(x, 4)) with x of shape (2, 3, 12)", x, back,
                 hint="merge_heads must undo split_heads exactly")
    return n + 1

