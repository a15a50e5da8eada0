"""Checks for lesson 07 (perplexity): `perplexity_from_logits`, `bits_per_byte`, `bigram_nll`.

(The first is not called `perplexity`: that name is this module's, and `check.perplexity`
would find the module, not the check.)

Every check compares the learner's function with a reference computed here in float64
(PyTorch's `cross_entropy` for perplexity, the formula of `course.evaluate` for bits
per byte, explicit counts for the bigram model) on hand-picked and seeded random
inputs. When an answer is wrong, the check also computes the answers of the usual
mistakes (no shift, averaging over ignored positions, nats instead of bits, no
smoothing, ...) and names the one the learner's number matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from course.checks._core import CheckFailed, call, exercise, expect_contract, first_match, show

IGNORE = -100
LN2 = math.log(2)


def _as_number(name: str, desc: str, got: Any, what: str) -> float:
    """The learner's result, which the docstring promises to be a float (a Python float; NumPy
    floats pass too): a tensor, even a 0-dim one, is refused with a hint that says what to do."""
    if isinstance(got, torch.Tensor):
        hint = ("reduce to a single number: average over every counted position at once"
                if got.numel() > 1 else
                "return a Python float: call .item() on the one-element tensor (a tensor "
                "would break the formatting and the comparisons of the cells below)")
        raise CheckFailed(name, f"on input {desc} — expected float ({what}), got {show(got)}",
                          hint)
    expect_contract(name, desc, float, got,
                    hint=f"return {what} as a Python float")
    return float(got)


def _close(a: float, b: float, rtol: float = 1e-4) -> bool:
    if math.isnan(a) or math.isnan(b):
        return False
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-9)


def _first_match(got: float, variants: list[tuple[Callable[[], float], str]], rtol: float = 1e-4
                 ) -> str | None:
    """The hint of the first mistake whose answer equals `got` (each variant computed lazily)."""
    return first_match(got, [(hint, compute) for compute, hint in variants],
                       lambda a, b: _close(a, b, rtol))


# ------------------------------------------------------------------------ perplexity


def _ce(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V).double(), targets.reshape(-1),
                           ignore_index=IGNORE, reduction=reduction)


def reference_perplexity(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """exp(mean NLL) over the counted positions, after the one-position shift."""
    return math.exp(float(_ce(logits[:, :-1], labels[:, 1:])))


def _perplexity_mistakes(logits: torch.Tensor, labels: torch.Tensor
                         ) -> list[tuple[Callable[[], float], str]]:
    B, T, V = logits.shape
    x, y = logits[:, :-1].double(), labels[:, 1:]
    counted = y != IGNORE

    def all_positions() -> float:
        return math.exp(float(_ce(x, y, "sum")) / (B * (T - 1)))

    def ignored_as_token_zero() -> float:
        return math.exp(float(_ce(x, y.clamp(min=0))))

    def row_means() -> float:
        rows = [float(_ce(x[b], y[b])) for b in range(B) if counted[b].any()]
        return math.exp(sum(rows) / len(rows))

    def wrong_axis() -> float:
        logp = torch.log_softmax(x, dim=1)  # over time instead of the vocabulary
        picked = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]
        return math.exp(float(-picked[counted].mean()))

    return [
        (lambda: math.exp(float(_ce(logits, labels))),
         "you compared logits[:, t] with labels[:, t]; the logit at position t predicts the "
         "NEXT token, so score logits[:, :-1] against labels[:, 1:]"),
        (lambda: math.exp(float(_ce(logits[:, 1:], labels[:, :-1]))),
         "the shift goes the other way: logits[:, :-1] (every position but the last) predict "
         "labels[:, 1:] (every token but the first)"),
        (all_positions,
         "you divided by every position, ignored ones included; average only over the "
         "positions whose label is not -100 (cross_entropy(..., ignore_index=-100) does that)"),
        (ignored_as_token_zero,
         "positions labelled -100 must not be scored at all; you scored them (as token 0?). "
         "Drop them, e.g. with ignore_index=-100"),
        (row_means,
         "you averaged each row first and then the row means; rows count different numbers "
         "of positions, so average over all counted positions of the batch at once"),
        (wrong_axis, "the softmax runs over the vocabulary (the last axis), not over time"),
        (lambda: float(_ce(x, y)),
         "that is the mean NLL (the cross-entropy); perplexity is exp(mean NLL)"),
        (lambda: math.exp(float(_ce(x, y, "sum"))),
         "exponentiate the MEAN NLL, not the sum"),
        (lambda: 2 ** float(_ce(x, y)),
         "the NLL from cross_entropy is in nats (natural log), so perplexity is exp(mean NLL), "
         "not 2 ** mean NLL"),
    ]


def _perplexity_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    cases = []
    # 1. A hand-sized case without ignored positions.
    logits = torch.tensor([[[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [1.5, -0.5, 0.3], [0.2, 0.2, 2.0]]])
    labels = torch.tensor([[0, 1, 0, 2]])
    cases.append(("logits (1, 4, 3), labels [[0, 1, 0, 2]]", logits, labels))
    # 2. Uniform logits over 7 tokens: perplexity = 7, the effective number of choices.
    cases.append(("uniform logits (2, 5, 7) (all zeros), labels without -100",
                  torch.zeros(2, 5, 7), torch.randint(0, 7, (2, 5), generator=g)))
    # 3. Padding at the end of the second row (what tail="pad" packing produces).
    logits = 2 * torch.randn(2, 6, 5, generator=g)
    labels = torch.randint(0, 5, (2, 6), generator=g)
    labels[1, 3:] = IGNORE
    cases.append(("random logits (2, 6, 5), labels[1, 3:] = -100 (padding)", logits, labels))
    # 4. Ignored positions at the start and in the middle, a different count per row.
    logits = 3 * torch.randn(3, 8, 6, generator=g)
    labels = torch.randint(0, 6, (3, 8), generator=g)
    labels[0, :3] = IGNORE
    labels[2, 2:7] = IGNORE
    cases.append(("random logits (3, 8, 6), labels[0, :3] and labels[2, 2:7] = -100",
                  logits, labels))
    # 5-6. Seeded random batches with about a fifth of the labels ignored.
    for B, T, V in ((4, 16, 11), (2, 33, 40)):
        logits = 2 * torch.randn(B, T, V, generator=g)
        labels = torch.randint(0, V, (B, T), generator=g)
        labels[torch.rand(B, T, generator=g) < 0.2] = IGNORE
        labels[:, 1] = torch.randint(0, V, (B,), generator=g)  # every row counts something
        cases.append((f"random logits ({B}, {T}, {V}), ~20% of labels -100", logits, labels))
    return cases


@exercise("perplexity_from_logits", hints=(
    "Three steps: pair each prediction with its target (the logits at position t score the "
    "label at t + 1, so drop the last logit position and the first label), compute each "
    "pair's NLL from the log-softmax over the vocabulary, then average over the pairs whose "
    "label is not -100 and exponentiate. Return a Python float.",
    "gather (on the last axis) picks each target's log-probability; -100 is not a valid "
    "index, so replace it by any valid id first and drop those positions with a boolean mask "
    "before taking the mean. Check your number against torch.exp(F.cross_entropy(..., "
    "ignore_index=-100)) on the flattened pairs.",
))
def perplexity_from_logits(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> int:
    """`fn(logits (B, T, V), labels (B, T))` must return exp(mean NLL) over counted positions."""
    name = "perplexity_from_logits"
    cases = _perplexity_cases()
    for desc, logits, labels in cases:
        got = call(name, fn, logits, labels, inputs_desc=desc)  # fails if either is changed
        value = _as_number(name, desc, got, "the perplexity")
        expected = reference_perplexity(logits, labels)
        if not _close(value, expected):
            hint = _first_match(value, _perplexity_mistakes(logits, labels)) or (
                "compute the NLL of each prediction (logit position t, label t + 1) from the "
                "log-softmax over the vocabulary, average it over the counted positions only, "
                "then exponentiate")
            raise CheckFailed(name, f"on input {desc} — expected {expected:.6g}, got {value:.6g}",
                              hint)
    return len(cases)


# --------------------------------------------------------------------- bits per byte


def _bpb_cases() -> list[tuple[float, int]]:
    return [
        (0.0, 10),  # a perfect model: 0 bits
        (100 * LN2, 100),  # 100 bytes, each costing exactly one bit
        (2000.0, 4000),
        (12345.678, 5003),
        (3.0, 1),
        (8 * LN2 * 64, 64),  # a uniform guess over 256 byte values: 8 bits per byte
    ]


@exercise("bits_per_byte", hints=(
    "Bits per byte is a total amount of information, measured in bits, shared out over the "
    "bytes of the text. The input total is in nats (natural logarithms). Return a Python "
    "float.",
    "One bit is ln 2 ≈ 0.693 nats, so a number of nats is a larger number of bits. Check "
    "your function on the lesson's example: a uniform guess over 256 byte values costs "
    "8 · ln 2 nats per byte and must give exactly 8.",
))
def bits_per_byte(fn: Callable[[float, int], float]) -> int:
    """`fn(total_nll_nats, n_bytes)` must return total / (ln 2 · n_bytes)."""
    name = "bits_per_byte"
    cases = _bpb_cases()
    for total, n_bytes in cases:
        desc = f"total_nll_nats={total!r}, n_bytes={n_bytes}"
        value = _as_number(name, desc, call(name, fn, total, n_bytes, inputs_desc=desc),
                           "the bits per byte")
        expected = total / (LN2 * n_bytes)
        if _close(value, expected, 1e-6):  # float32 arithmetic is accurate enough
            continue
        mistakes = [
            (lambda t=total, n=n_bytes: t * LN2 / n,
             "the conversion goes the other way: one bit is ln 2 ≈ 0.693 nats, so "
             "bits = nats / ln 2 (you multiplied by ln 2)"),
            (lambda t=total, n=n_bytes: t / n,
             "that is nats per byte; convert nats to bits by dividing by ln 2"),
            (lambda t=total, n=n_bytes: t / (math.log(10) * n),
             "divide by ln 2 (bits are base-2 logarithms), not by ln 10"),
            (lambda t=total, n=n_bytes: math.log2(t) / n,
             "convert the amount: bits = nats / ln 2; do not take log2 of the NLL"),
            (lambda t=total, n=n_bytes: t / (LN2 * n * 8),
             "per BYTE, not per bit: divide by the number of bytes, without a factor 8"),
            (lambda t=total, n=n_bytes: 8 * t / (LN2 * n),
             "per byte: divide the bits by the number of bytes, without a factor 8"),
            (lambda t=total, n=n_bytes: n / (LN2 * t),
             "the total NLL goes in the numerator: bits per byte = total bits / bytes"),
        ]
        hint = _first_match(value, mistakes, 1e-6) or (
            "two conversions: the total from nats to bits (how many nats make one bit?), then "
            "from a total to a rate per byte")
        raise CheckFailed(name, f"on input {desc} — expected {expected:.6g}, got {value:.6g}", hint)
    return len(cases)


# ------------------------------------------------------------------- bigram model


def _bigram_counts(train: torch.Tensor, V: int) -> torch.Tensor:
    counts = torch.zeros(V, V, dtype=torch.float64)
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1, dtype=torch.float64),
                      accumulate=True)
    return counts  # (V, V): counts[a, b] = how often b follows a


def reference_bigram_nll(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """Mean NLL (nats) of val_ids[1:] under add-one-smoothed bigram counts of train_ids."""
    counts = _bigram_counts(train_ids, vocab_size) + 1.0
    logp = (counts / counts.sum(dim=1, keepdim=True)).log()
    return float(-logp[val_ids[:-1], val_ids[1:]].mean())


def _bigram_mistakes(train: torch.Tensor, val: torch.Tensor, V: int
                     ) -> list[tuple[Callable[[], float], str]]:
    raw = _bigram_counts(train, V)
    a, b = val[:-1], val[1:]

    def nll(probs: torch.Tensor, mean_over: int | None = None) -> float:
        total = -probs.log()[a, b].sum()
        return float(total / (len(a) if mean_over is None else mean_over))

    def no_smoothing() -> float:
        return nll(raw / raw.sum(dim=1, keepdim=True).clamp(min=1e-300))

    def plus_one_denominator() -> float:
        return nll((raw + 1) / (raw.sum(dim=1, keepdim=True) + 1))

    def transposed() -> float:
        c = raw + 1
        return nll(c / c.sum(dim=0, keepdim=True))

    def unigram_denominator() -> float:
        uni = torch.bincount(train, minlength=V).double()
        return nll((raw + 1) / (uni[:, None] + V))

    def fit_on_val() -> float:
        c = _bigram_counts(val, V) + 1
        return nll(c / c.sum(dim=1, keepdim=True))

    smoothed = (raw + 1) / (raw + 1).sum(dim=1, keepdim=True)
    return [
        (no_smoothing,
         "without smoothing a pair never seen in training gets probability 0 (infinite NLL); "
         "add one to every count: P(b | a) = (count(a, b) + 1) / (count(a) + V)"),
        (plus_one_denominator,
         "after adding 1 to each of the V counts of a row, the row total grows by V, not by 1: "
         "divide by count(a) + vocab_size so the probabilities sum to 1"),
        (transposed,
         "your table is transposed: normalise each ROW (the previous token a) so that "
         "P(b | a) sums to 1 over the next token b"),
        (unigram_denominator,
         "count(a) must be the number of bigrams that START with a (the row sum of the bigram "
         "counts); the last training token starts none"),
        (fit_on_val, "count the bigrams of train_ids, then score val_ids with them"),
        (lambda: nll(smoothed, len(val)),
         "there are len(val_ids) - 1 predictions (the first token has no predecessor); "
         "divide the total NLL by that"),
        (lambda: nll(smoothed, 1), "return the MEAN NLL per predicted token, not the sum"),
        (lambda: nll(smoothed) / LN2, "use natural logarithms (nats), not log2"),
        (lambda: -nll(smoothed), "the NLL is the NEGATIVE log-probability: it is >= 0"),
    ]


def _bigram_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(3)
    cases = [
        ("train_ids=[0, 1, 0, 1, 1], val_ids=[0, 1, 1, 0], vocab_size=2",
         torch.tensor([0, 1, 0, 1, 1]), torch.tensor([0, 1, 1, 0]), 2),
        ("train_ids=[0, 1, 2, 0, 1, 2, 0], val_ids=[2, 1, 3, 0] (pairs and a token never "
         "seen in training), vocab_size=4",
         torch.tensor([0, 1, 2, 0, 1, 2, 0]), torch.tensor([2, 1, 3, 0]), 4),
        ("train_ids=[4, 2], val_ids=[2, 4] (one training pair, one prediction), vocab_size=5",
         torch.tensor([4, 2]), torch.tensor([2, 4]), 5),
    ]
    for n_train, n_val, V in ((200, 50, 6), (1000, 300, 20)):
        # Skewed token frequencies, like text: some bigrams common, many never seen.
        weights = torch.rand(V, generator=g) ** 3 + 0.01
        train = torch.multinomial(weights, n_train, replacement=True, generator=g)
        val = torch.multinomial(weights, n_val, replacement=True, generator=g)
        cases.append((f"seeded random train_ids ({n_train} tokens), val_ids ({n_val} tokens), "
                      f"vocab_size={V}", train, val, V))
    return cases


@exercise("bigram_nll", hints=(
    "Build a (vocab_size, vocab_size) table of counts, row = previous token a, column = next "
    "token b, from the consecutive pairs of train_ids; smooth it by adding one to every cell; "
    "normalise each row into P(b | a); score the consecutive pairs of val_ids. Return a "
    "Python float.",
    "The pairs of a 1-D tensor ids are (ids[:-1], ids[1:]); index_put_ with accumulate=True "
    "(or bincount of a * V + b) counts them without a loop. After adding one to each of the V "
    "cells of a row, its total is count(a) + V. The mean runs over len(val_ids) - 1 "
    "predictions, in nats.",
))
def bigram_nll(fn: Callable[[torch.Tensor, torch.Tensor, int], float]) -> int:
    """`fn(train_ids, val_ids, vocab_size)`: mean NLL of an add-one bigram model, in nats."""
    name = "bigram_nll"
    cases = _bigram_cases()
    for desc, train, val, V in cases:
        value = _as_number(name, desc, call(name, fn, train, val, V, inputs_desc=desc),
                           "the mean NLL in nats")
        expected = reference_bigram_nll(train, val, V)
        if not math.isfinite(value):
            raise CheckFailed(name, f"on input {desc} — expected {expected:.6g}, got {value}",
                              _bigram_mistakes(train, val, V)[0][1])
        if not _close(value, expected, 1e-5):
            hint = _first_match(value, _bigram_mistakes(train, val, V), 1e-5) or (
                "count the pairs of train_ids, add one to every cell of the (V, V) table, turn "
                "each row (the previous token) into probabilities, and average -ln P over the "
                "len(val_ids) - 1 pairs of val_ids")
            raise CheckFailed(name, f"on input {desc} — expected {expected:.6g}, got {value:.6g}",
                              hint)
    return len(cases)
