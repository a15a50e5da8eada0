"""Checks for lesson 04 (causal attention): the mask, masked attention, heads in and out.

References: the lower triangle of an all-True matrix for the mask (what `course.masks.causal_mask` returns),
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
    expect_contract,
    expect_equal,
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


@exercise("causal_mask", hints=(
    "Row i is query i, column j is key j. Write down the condition on i and j for 'query i may "
    "read key j' (a position may read itself), then build a (T, T) boolean tensor that is True "
    "exactly there.",
    "Two ways: compare a column of positions with a row of positions (torch.arange and "
    "broadcasting give all (i, j) pairs at once), or start from an all-True (T, T) boolean "
    "matrix and keep its lower triangle (PyTorch has a function for that: look up torch.tril).",
))
def causal_mask(fn: Callable[[int], Any]) -> int:
    """`fn(T)` -> bool (T, T), True where key j <= query i (the lower triangle)."""
    import torch

    name = "causal_mask"
    sizes = [4, 5, 2, 1, 8, 16]
    for T in sizes:
        desc = f"T={T}"
        got = call(name, fn, T, inputs_desc=desc)
        expect_contract(name, desc, torch.Tensor, got, hint="return a torch.Tensor of shape (T, T)")
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
                        "see the keys j <= i, i.e. the lower triangle; the upper one lets "
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
                hint = ("True exactly where key j <= query i (row i, column j): the lower "
                        "triangle, diagonal included, and False above the diagonal")
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
         "fill where the mask is False instead (invert the mask)",
         lambda: softmax_av((scores / math.sqrt(D)).masked_fill(mask, neg))),
        ("the mask is not applied at all: fill the scores where mask is False with "
         "float('-inf') before the softmax",
         lambda: softmax_av(scores / math.sqrt(D))),
        ("the mask is transposed: mask[i, j] says whether query i may read key j, and "
         "scores[..., i, j] = q_i · k_j, so apply it as is",
         lambda: softmax_av((scores / math.sqrt(D)).masked_fill(~mask.transpose(-2, -1), neg))),
        ("the scores are transposed: row i must hold query i's scores, scores[..., i, j] = "
         "q_i · k_j, i.e. q times the transpose of k, not k times the transpose of q",
         lambda: softmax_av((scores.transpose(-2, -1) / math.sqrt(D)).masked_fill(~mask, neg))),
    ]
    return variants


_UNDERFLOW = ("masking after the softmax and dividing by the row sum is right on paper, but here "
              "a forbidden key's score is far above every allowed one: the allowed weights "
              "underflow to 0 in float32, the row sum is 0, and 0 / 0 = NaN. Remove the forbidden "
              "keys BEFORE the softmax (their scores must be -inf), so they never compete")
_OVERFLOW_TIMES_MASK = ("exp() of a score above ~88 overflows float32 to inf, and multiplying "
                        "by the mask gives inf * 0 = NaN (then inf / inf = NaN too). Set the "
                        "forbidden scores to -inf and use torch.softmax, which subtracts each "
                        "row's maximum before exponentiating")
_OVERFLOW = ("your output has NaN: exp() of large scores overflows to inf (inf / inf = "
             "NaN); use torch.softmax, which subtracts each row's maximum first")


def _nan_mistakes(q: Any, k: Any, v: Any, mask: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Wrong versions that are right on small scores and give NaN on large ones."""
    import torch

    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    m = mask.to(s.dtype)

    def renormalised(w: Any) -> Any:
        return (w / w.sum(-1, keepdim=True)) @ v

    return [
        (_UNDERFLOW, lambda: renormalised(torch.softmax(s, dim=-1) * m)),
        (_UNDERFLOW, lambda: renormalised(torch.softmax(s, dim=-1).masked_fill(~mask, 0.0))),
        (_UNDERFLOW, lambda: renormalised(torch.exp(s - s.amax(-1, keepdim=True)) * m)),
        (_OVERFLOW_TIMES_MASK, lambda: renormalised(torch.exp(s) * m)),
        (_OVERFLOW, lambda: renormalised(torch.exp(s).masked_fill(~mask, 0.0))),
        (_OVERFLOW, lambda: renormalised(torch.exp(s.masked_fill(~mask, float("-inf"))))),
    ]


def _nan_hint(got: Any, q: Any, k: Any, v: Any, mask: Any) -> str:
    """Why `got` has NaN where the reference has none: the known variant with the same NaN
    positions, else an explanation of where NaN comes from in attention."""
    import torch

    got_nan = torch.isnan(got)
    for hint, compute in _nan_mistakes(q, k, v, mask):
        try:
            if torch.equal(torch.isnan(compute()), got_nan):
                return hint
        except Exception:
            continue
    return ("your output has NaN where the reference has none. In attention NaN comes from "
            "0 / 0, inf / inf or inf * 0: exp() of large scores (here up to ~170) overflows to "
            "inf, and weights that underflow to 0 before a renormalisation sum to 0. Set the "
            "forbidden scores to -inf before the softmax and let torch.softmax exponentiate")


_SCALED_IN_PLACE = ("scaling in place (q /= math.sqrt(D), q.div_(...), q *= ...) changes the "
                    "caller's q: the next cell reuses the same q and gets a different answer. "
                    "Compute the scaled scores as a new tensor instead")


@exercise("masked_attention", hints=(
    "Follow the shapes: q (B, H, T, D) times k with its last two axes swapped gives one score "
    "per (query, key) pair, (B, H, T, T); divide by the square root of the head size D.",
    "Forbidden keys must end with weight exactly 0 and the others must still sum to 1: set "
    "their scores to -inf BEFORE the softmax (Tensor.masked_fill, where the mask is False), "
    "take the softmax along the keys (the last axis), then multiply the weights by v. Build new "
    "tensors; never scale q or k in place.",
))
def masked_attention(fn: Callable[..., Any]) -> int:
    """`fn(q, k, v, mask)` against `F.scaled_dot_product_attention(q, k, v, attn_mask=mask)`."""
    import torch
    import torch.nn.functional as F

    name = "masked_attention"
    cases = _attention_cases()
    for desc, q, k, v, mask in cases:
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        originals = {"q": q.clone(), "k": k.clone(), "v": v.clone()}
        with torch.no_grad():
            try:  # the caller's own tensors: changing one in place must not go unnoticed
                got = call(name, fn, q, k, v, mask, inputs_desc=desc)
            except CheckFailed as e:
                if "in place" not in e.detail:
                    raise
                D = q.size(-1)
                scaled = [x for x, t in zip("qkv", (q, k, v), strict=True) if any(
                    torch.allclose(t, originals[x] * f, rtol=1e-5, atol=1e-6)
                    for f in (1 / math.sqrt(D), 1 / D, math.sqrt(D)))]
                hint = (_SCALED_IN_PLACE.replace("caller's q", f"caller's {scaled[0]}")
                        if scaled else e.hint)
                raise CheckFailed(name, e.detail, hint=hint) from None
        if isinstance(got, (tuple, list)) and got and isinstance(got[0], torch.Tensor):
            raise CheckFailed(name, f"on input {desc} — expected one tensor (B, H, T, D), got a "
                              f"{type(got).__name__} of {len(got)} items",
                              hint="return only the output, softmax(q kᵀ / √D) v, not the weights")
        expect_contract(name, desc, torch.Tensor, got, hint="return the output tensor (B, H, T, D)")
        if _close(got, expected):
            continue
        hint = _first_match(got, _attention_mistakes(q, k, v, mask))
        if hint is None and got.shape == expected.shape and \
                bool(torch.isnan(got).any()) and not bool(torch.isnan(expected).any()):
            hint = _nan_hint(got, q, k, v, mask)
        if hint is None:
            hint = ("compare your steps with the formula: one score per (query, key) pair, "
                    "scaled by 1/√D; forbidden scores set to -inf; softmax over the keys (the "
                    "last axis); the weights times v")
        expect_close(name, desc, expected, got, rtol=_RTOL, atol=_ATOL, hint=hint)
    return len(cases)


# --------------------------------------------------------------------------- heads


_HEADS_MIXED = ("heads and time are mixed up: a direct view(B, H, T, D) of (B, T, C) puts "
                "consecutive positions into different heads. First cut each position's C "
                "channels into H heads of D (time stays the second axis), and only then move "
                "the head axis in front of time")
_MERGE_MIXED = ("heads and time are mixed up: a direct view/reshape of (B, H, T, D) to "
                "(B, T, C) glues positions of one head together. First move time back in "
                "front of the heads, and only then put each position's heads side by side")


@exercise("split_merge_heads", hints=(
    "Head h owns channels h*D .. (h+1)*D - 1 of every position. Split the channel axis first, "
    "keeping time where it is; then reorder the axes so that the heads come before time. "
    "merge_heads undoes the two steps in reverse order.",
    "A view (or reshape) splits the last axis into two, (H, D), or joins two into one; a "
    "transpose swaps two axes. A transposed tensor is not contiguous in memory, so joining its "
    "axes with .view fails where .reshape works.",
))
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
        got = call(name, split_fn, x, H, inputs_desc=f"split_heads({desc})")
        n += 1
        expect_contract(name, f"split_heads({desc})", torch.Tensor, got,
                        hint="return a tensor of shape (B, H, T, D)")
        if not _close(got, expected):
            if tuple(got.shape) == (B, T, H, D) and torch.equal(got, x.reshape(B, T, H, D)) and \
                    not torch.equal(got, expected.reshape(B, T, H, D)):
                hint = ("the heads must come before time: swap the time and head axes of "
                        "your (B, T, H, D) result")
            else:
                hint = _first_match(got, [
                    (_HEADS_MIXED, lambda x=x, B=B, H=H, T=T, D=D: x.reshape(B, H, T, D)),
                    ("head h must get the channels h*D .. (h+1)*D - 1 (a contiguous slice), "
                     "not every H-th channel: view(B, T, H, D), not view(B, T, D, H)",
                     lambda x=x, B=B, H=H, T=T, D=D: x.reshape(B, T, D, H).permute(0, 3, 1, 2)),
                ]) or ("cut the channels of each position into (H, D) first, then bring the "
                       "head axis in front of time: (B, T, C) -> (B, T, H, D) -> (B, H, T, D)")
            expect_equal(name, f"split_heads({desc})", expected, got, hint=hint)

        y = torch.randn(B, H, T, D, generator=g)  # like att @ v: contiguous (B, H, T, D)
        ydesc = f"merge_heads(y of shape {(B, H, T, D)})"
        expected_y = y.transpose(1, 2).reshape(B, T, C)
        try:
            got_y = call(name, merge_fn, y, inputs_desc=ydesc)
        except CheckFailed as e:
            if "view" in e.detail and ("contiguous" in e.detail or "stride" in e.detail):
                raise CheckFailed(name, e.detail, hint=(
                    "after a transpose the tensor is not contiguous in memory, so .view "
                    "fails: use .reshape, which copies when it must, or make the tensor "
                    ".contiguous() before the .view")) from None
            raise
        n += 1
        expect_contract(name, ydesc, torch.Tensor, got_y, hint="return a tensor of shape (B, T, C)")
        if not _close(got_y, expected_y):
            hint = _first_match(got_y, [
                (_MERGE_MIXED, lambda y=y, B=B, T=T, C=C: y.reshape(B, T, C)),
            ]) or ("undo split_heads in reverse order: time back in front of the heads, "
                   "(B, H, T, D) -> (B, T, H, D), then the heads side by side -> (B, T, C)")
            expect_equal(name, ydesc, expected_y, got_y, hint=hint)

    # The two together are the identity, as the model needs.
    x = torch.randn(2, 3, 12, generator=g)
    back = call(name, lambda t: merge_fn(split_fn(t, 4)), x,
                inputs_desc="merge_heads(split_heads(x, 4)) with x of shape (2, 3, 12)")
    expect_contract(name, "merge_heads(split_heads(x, 4)) with x of shape (2, 3, 12)",
                    torch.Tensor, back, hint="both functions return tensors")
    expect_equal(name, "merge_heads(split_heads(x, 4)) with x of shape (2, 3, 12)", x, back,
                 hint="merge_heads must undo split_heads exactly")
    return n + 1

