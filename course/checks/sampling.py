"""Checks for lesson 08 (sampling): `apply_temperature`, `top_k`, `top_p`, `sample_with_cache`.

The three filters are compared with Hugging Face's own `TemperatureLogitsWarper`,
`TopKLogitsWarper` and `TopPLogitsWarper` on random, peaked, tied and already-filtered
logits: the same tokens must survive (as the original logits) and the others must be
-inf. A wrong answer is explained by how many tokens survived compared with the
reference (k - 1, k + 1, one too few for top-p, none at all, ...).

`sample_with_cache` runs the learner's decoding loop on a small random GPT whose forward
pass records how it was called, so that a loop that never uses the cache, re-feeds the
whole sequence into it, makes a new cache every step, moves `cache.length` by hand or
feeds tokens that are not the sequence's is named as such. Its tokens must equal those
of `course.sample.generate` with the same settings: greedy (temperature 0) and sampled
with a seeded `torch.Generator`; a sampled mismatch is explained by replaying the usual
mistakes (argmax instead of sampling, temperature after the filters, a filter skipped,
the global RNG instead of the generator).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from course.checks._core import (
    CheckFailed,
    NotAttempted,
    call,
    exercise,
    expect_contract,
    one_thread,
)

NEG_INF = float("-inf")


def _call_filter(name: str, fn: Callable[..., Any], desc: str, x: torch.Tensor, arg: Any,
                 crash_hint: str | None = None) -> Any:
    """Call a learner's filter `fn(x, arg)` through `call` (which fails when `x` comes back
    changed), with this lesson's more specific hints for an in-place edit and known crashes."""
    try:
        return call(name, fn, x, arg, inputs_desc=desc)
    except CheckFailed as e:
        if " in place" in e.detail:
            raise CheckFailed(name, e.detail,
                              "do not modify the logits in place (e.g. logits /= t or "
                              "logits.masked_fill_(...)); return a new tensor, because the "
                              "caller still needs the original logits") from None
        if crash_hint and "your code raised" in e.detail:
            raise CheckFailed(name, e.detail, crash_hint) from None
        raise


def _hf(warper: Any, logits: torch.Tensor) -> torch.Tensor:
    """Apply a transformers warper (written for (B, V) scores) to logits of shape (..., V)."""
    V = logits.size(-1)
    return warper(None, logits.reshape(-1, V)).reshape(logits.shape)


def _check_tensor(name: str, desc: str, x: torch.Tensor, got: Any) -> None:
    """The contract (a torch.Tensor of the input's shape and dtype) before any value."""
    expect_contract(name, desc, torch.Tensor, got,
                    hint="return the filtered logits as a new tensor of the input's shape")
    if got.shape != x.shape:
        raise CheckFailed(name, f"on input {desc} — expected shape {tuple(x.shape)}, got shape "
                                f"{tuple(got.shape)}",
                          "keep every axis: work along the last axis (dim=-1) and return logits "
                          "of the same shape, with removed tokens set to -inf")
    if not got.dtype.is_floating_point:
        raise CheckFailed(name, f"on input {desc} — expected floating-point logits, got dtype "
                                f"{got.dtype}", "return logits, not token ids or a mask")
    if got.dtype != x.dtype:
        raise CheckFailed(name, f"on input {desc} — expected dtype {x.dtype} (the input's), got "
                                f"{got.dtype}",
                          "keep the logits' dtype: the filters are chained and compared with "
                          "Hugging Face's warpers, which keep it too")


def _kept(x: torch.Tensor) -> torch.Tensor:
    return ~torch.isneginf(x)


def _compare_filtered(name: str, desc: str, x: torch.Tensor, expected: torch.Tensor,
                      got: torch.Tensor, count_hint: Callable[[int, int], str | None]) -> None:
    """Same surviving tokens, kept at their original values, all others exactly -inf."""
    if torch.isnan(got).any():
        raise CheckFailed(name, f"on input {desc} — your result contains NaN",
                          "set removed tokens to float('-inf'); never compute with an all -inf row")
    extra = _kept(got) & ~_kept(expected)
    replaced = extra & (got != x)  # removed by the learner, but not with -inf
    if replaced.any() and torch.equal(replaced, extra) and bool((got[extra] == got[extra][0]).all()):
        raise CheckFailed(name, f"on input {desc} — removed tokens must be -inf, got "
                                f"{got[extra][0].item()!r}",
                          "use float('-inf') for removed tokens so their probability is exactly 0 "
                          "(a large negative number or 0 still leaves them a chance)")
    exp_keep = _kept(expected).reshape(-1, x.size(-1))
    got_keep = _kept(got).reshape(-1, x.size(-1))
    if not torch.equal(exp_keep, got_keep):
        row = int((exp_keep != got_keep).any(dim=-1).nonzero()[0])
        n_exp, n_got = int(exp_keep[row].sum()), int(got_keep[row].sum())
        where = f" in row {row}" if exp_keep.size(0) > 1 else ""
        if n_exp == n_got:
            detail = (f"you keep {n_got} tokens{where}, as many as expected, but not the same "
                      f"ones: expected to keep ids {exp_keep[row].nonzero().flatten().tolist()}, "
                      f"kept {got_keep[row].nonzero().flatten().tolist()}")
        else:
            detail = f"expected {n_exp} surviving (not -inf) tokens{where}, your result keeps {n_got}"
        raise CheckFailed(name, f"on input {desc} — {detail}", count_hint(n_exp, n_got))
    finite_removed = torch.isfinite(got) & ~_kept(expected)
    if finite_removed.any():
        raise CheckFailed(name, f"on input {desc} — removed tokens must be -inf, got "
                                f"{got[finite_removed][0].item()!r}",
                          "use float('-inf') for removed tokens so their probability is exactly 0")
    keep = _kept(expected)
    if not torch.equal(got[keep], x[keep]):
        raise CheckFailed(name, f"on input {desc} — the surviving logits changed value",
                          "keep the surviving logits exactly as they were (no renormalising, no "
                          "softmax): the filter only sets the others to -inf")


def _logit_cases(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    peaked = torch.randn(2, 30, generator=g)
    peaked[0, 4] = 6.0  # about 90% of the probability on one token
    peaked[1, 17] = 9.0  # about 99%
    return {
        "random": torch.randn(12, generator=g),
        "random_batch": 2 * torch.randn(4, 50, generator=g),
        "peaked": peaked,
        "three_dims": torch.randn(2, 3, 9, generator=g),
        "prefiltered": torch.tensor([[1.0, NEG_INF, 0.5, NEG_INF, 2.0, -0.3, 0.1]]),
    }


# ---------------------------------------------------------------------- temperature


@exercise("apply_temperature", hints=(
    "Temperature acts on the logits, before any softmax; it must return a NEW tensor of the "
    "same shape and dtype, leaving the input as it was.",
    "After your function, softmax(result) must equal the distribution p_i(T) of the lesson's "
    "formula: what must happen to z_i so that the softmax computes e^(z_i / T)? Check that "
    "t = 1 returns the logits unchanged and that t = 0.5 doubles the gaps between them.",
))
def apply_temperature(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> int:
    """`fn(logits, t)` must equal TemperatureLogitsWarper(t): logits / t, shape kept."""
    from transformers.generation.logits_process import TemperatureLogitsWarper

    name = "apply_temperature"
    logits = _logit_cases(11)
    cases = [("random", 0.5), ("random_batch", 2.0), ("random", 1.0), ("peaked", 0.7),
             ("three_dims", 1.5), ("prefiltered", 0.8)]
    for key, t in cases:
        x = logits[key]
        desc = f"{key} logits of shape {tuple(x.shape)}, t={t}"
        original = x.clone()
        got = _call_filter(name, fn, desc, x, t)
        _check_tensor(name, desc, x, got)
        expected = _hf(TemperatureLogitsWarper(t), original)
        if torch.allclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True):
            continue
        probs = torch.softmax(original / t, dim=-1)
        if torch.allclose(got, original * t, rtol=1e-6, atol=1e-6):
            hint = "divide by t (t < 1 must sharpen the distribution), do not multiply"
        elif torch.allclose(got, probs, rtol=1e-5, atol=1e-7):
            hint = ("return logits, not probabilities: the softmax comes later, after all the "
                    "filters")
        elif torch.allclose(got, torch.log_softmax(original / t, dim=-1), rtol=1e-5, atol=1e-6,
                            equal_nan=True):
            hint = ("those are log-probabilities; return logits / t itself, as "
                    "TemperatureLogitsWarper does (the later filters compare these numbers)")
        elif torch.allclose(got, torch.softmax(original, dim=-1) / t, rtol=1e-5, atol=1e-7):
            hint = "temperature divides the logits BEFORE the softmax, not the probabilities"
        else:
            hint = ("scale the logits themselves by the temperature: t < 1 must spread them "
                    "apart (a sharper distribution), t > 1 bring them closer (a flatter one), "
                    "and t = 1 change nothing")
        bad = (~torch.isclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)).nonzero()[0]
        where = tuple(bad.tolist())
        raise CheckFailed(name, f"on input {desc} — at index {where[0] if len(where) == 1 else where} "
                                f"expected {expected[where].item()!r}, got {got[where].item()!r}",
                          hint)
    return len(cases)


# ---------------------------------------------------------------------------- top-k


@exercise("top_k", hints=(
    "Per row (the last axis): find the value of the k-th largest logit, then keep every "
    "logit that is at least that value and set the others to -inf, in a new tensor of the "
    "same shape.",
    "torch.topk(..., dim=-1) returns the k largest values sorted high to low; the last of "
    "them, kept with a trailing axis of size 1, broadcasts against the logits for the "
    "comparison. Comparing values (not keeping topk's indices) keeps ties; clamp k to the "
    "vocabulary size first.",
))
def top_k(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> int:
    """`fn(logits, k)` must equal TopKLogitsWarper(k): keep logits >= the k-th largest."""
    from transformers.generation.logits_process import TopKLogitsWarper

    name = "top_k"
    logits = _logit_cases(12)
    ties = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0], [0.5, 0.5, 2.0, 0.5, -1.0, 0.5]])
    cases: list[tuple[str, torch.Tensor, int]] = [
        ("random logits of shape (12,)", logits["random"], 3),
        ("random logits of shape (12,)", logits["random"], 1),
        ("random logits of shape (4, 50)", logits["random_batch"], 10),
        ("peaked logits of shape (2, 30)", logits["peaked"], 5),
        ("random logits of shape (2, 3, 9)", logits["three_dims"], 4),
        ("logits with ties [[1, 3, 3, 2, 3, 0], [0.5, 0.5, 2, 0.5, -1, 0.5]]", ties, 2),
        ("already filtered logits [[1, -inf, 0.5, -inf, 2, -0.3, 0.1]]", logits["prefiltered"], 3),
        ("random logits of shape (12,) (k = vocabulary size)", logits["random"], 12),
        ("random logits of shape (12,) (k larger than the vocabulary)", logits["random"], 20),
    ]
    for what, x, k in cases:
        desc = f"{what}, k={k}"
        original = x.clone()
        V = x.size(-1)
        hint = ("k can exceed the vocabulary size: then every token is kept (as transformers "
                "does); clamp k to the size of the last axis before asking for the k largest "
                "values") if k > V else None
        got = _call_filter(name, fn, desc, x, k, crash_hint=hint)
        _check_tensor(name, desc, x, got)
        expected = _hf(TopKLogitsWarper(k), original)

        def count_hint(n_exp: int, n_got: int, k: int = k, V: int = V,
                       tied: bool = x is ties) -> str | None:
            if tied and n_got == k < n_exp:
                return ("tokens tied with the k-th largest logit are kept too, as transformers "
                        "does: keep every logit >= the k-th largest value (a mask built from "
                        "topk's indices drops the ties)")
            if n_got == n_exp - 1:
                return ("off by one: you keep k - 1 tokens; keep every logit >= the k-th largest "
                        "(remove only logits < it)")
            if n_got == n_exp + 1:
                return ("off by one: you keep k + 1 tokens; with the values sorted from high to "
                        "low, the k-th largest is at index k - 1")
            if n_got == V and n_exp < n_got:
                return "nothing was removed: set every logit below the k-th largest to -inf"
            return ("find the k-th largest logit of each row (the LAST axis), keep the logits "
                    ">= it and set the rest to -inf")

        _compare_filtered(name, desc, original, expected, got, count_hint)
    return len(cases)


# ---------------------------------------------------------------------------- top-p


_BOUNDARY_DESC = ("logits [0, -ln 2, -ln 4, -ln 4] (probabilities exactly 1/2, 1/4, 1/8, 1/8: "
                  "a prefix holds exactly p)")


def _boundary_logits() -> torch.Tensor:
    """Logits whose float32 softmax is exactly [1/2, 1/4, 1/8, 1/8] (asserted), so that the
    cumulative mass equals p = 0.5 or 0.75 exactly, whatever order a learner sums in."""
    x = torch.tensor([0.0, -math.log(2), -math.log(4), -math.log(4)])
    assert torch.softmax(x, dim=-1).tolist() == [0.5, 0.25, 0.125, 0.125]
    return x


@exercise("top_p", hints=(
    "Work on probabilities sorted from high to low: the nucleus is the shortest prefix of that "
    "order whose total reaches p (>= p); the most likely token is always in it. Set every "
    "logit outside it to -inf, in the original vocabulary order, in a new tensor.",
    "torch.sort(..., descending=True) gives the sorted probabilities and the permutation; the "
    "cumulative sum minus the token's own probability is the mass BEFORE it, and a token "
    "stays while that is < p. scatter (with the permutation) puts the sorted decision back "
    "into vocabulary order.",
))
def top_p(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> int:
    """`fn(logits, p)` must equal TopPLogitsWarper(p): the fewest top tokens with mass >= p."""
    from transformers.generation.logits_process import TopPLogitsWarper

    name = "top_p"
    logits = _logit_cases(13)
    g = torch.Generator().manual_seed(14)
    cases: list[tuple[str, torch.Tensor, float]] = [
        ("random logits of shape (12,)", logits["random"], 0.9),
        ("random logits of shape (12,)", logits["random"], 0.5),
        ("random logits of shape (4, 50)", logits["random_batch"], 0.8),
        ("peaked logits of shape (2, 30) (top token ~90% and ~99%)", logits["peaked"], 0.5),
        ("peaked logits of shape (2, 30)", logits["peaked"], 0.95),
        ("random logits of shape (2, 3, 9)", logits["three_dims"], 0.7),
        ("already filtered logits [[1, -inf, 0.5, -inf, 2, -0.3, 0.1]]", logits["prefiltered"], 0.9),
        ("random logits of shape (12,) (tiny p)", logits["random"], 0.01),
        ("random logits of shape (12,) (p = 1)", logits["random"], 1.0),
        ("seeded random logits of shape (16, 40)", 1.5 * torch.randn(16, 40, generator=g), 0.9),
        # Exactly on the boundary: probabilities 1/2, 1/4, 1/8, 1/8, and every partial sum in
        # any order is a float32 number, so "mass before >= p" and "> p" really differ here.
        (_BOUNDARY_DESC, _boundary_logits(), 0.5),
        (_BOUNDARY_DESC, _boundary_logits(), 0.75),
    ]
    for what, x, p in cases:
        desc = f"{what}, p={p}"
        original = x.clone()
        got = _call_filter(name, fn, desc, x, p)
        _check_tensor(name, desc, x, got)
        expected = _hf(TopPLogitsWarper(p), original)

        def count_hint(n_exp: int, n_got: int, boundary: bool = what == _BOUNDARY_DESC
                       ) -> str | None:
            if boundary and n_got == n_exp + 1:
                return ("one token too many at the boundary: here the most likely tokens hold "
                        "EXACTLY p, so the nucleus is already complete and the next token must "
                        "go. A token stays only while the mass before it is strictly below p "
                        "(a mass that reaches p exactly is enough, as in TopPLogitsWarper); "
                        "removing only where that mass is > p keeps one token too many")
            if n_got == 0:
                return ("every token was removed: always keep the most likely token, even when "
                        "it alone holds more than p")
            if n_got == n_exp - 1:
                return ("one token too few, the classic top-p boundary bug: with probabilities "
                        "sorted high to low, keep a token when the mass BEFORE it is < p, so "
                        "the token that crosses p is kept (the cumulative sum at a token "
                        "includes the token itself)")
            if n_got == n_exp + 1:
                return ("one token too many: stop at the first token where the cumulative "
                        "probability reaches p (>= p, equality included); the tokens after it "
                        "are removed")
            return ("sort the probabilities (softmax of the logits) from high to low, keep the "
                    "smallest prefix whose total is >= p, set the other logits to -inf")

        _compare_filtered(name, desc, original, expected, got, count_hint)
    return len(cases)


# ---------------------------------------------------------------- KV-cache decoding


class _Call:
    """One recorded forward pass: the ids fed, the cache passed and its length before."""

    def __init__(self, idx: Any, cache: Any) -> None:
        self.idx = idx.detach().clone() if isinstance(idx, torch.Tensor) else None
        self.cache = cache  # the object itself: Python may reuse the id of a freed one
        self.past = None if cache is None else getattr(cache, "length", None)

    @property
    def T(self) -> int | None:
        return self.idx.size(1) if self.idx is not None and self.idx.dim() == 2 else None


def _spy_model(seed: int) -> Any:
    """A small random GPT that records every forward call (a `_Call`) in `model.calls`."""
    from course.model import GPT, GPTConfig

    class SpyGPT(GPT):
        def forward(self, idx: torch.Tensor, labels: torch.Tensor | None = None,
                    **kwargs: Any) -> Any:
            self.calls.append(_Call(idx, kwargs.get("kv_cache")))
            return super().forward(idx, labels, **kwargs)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpyGPT(GPTConfig(vocab_size=29, block_size=40, n_layer=2, n_head=2, n_embd=24))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.4)  # larger weights than GPT-2's init: clear argmaxes
    model.calls = []
    return model.eval()


def _cache_problem(calls: list[_Call], prompt_len: int) -> str | None:
    """Why the recorded calls are not 'prompt once, then one token at a time into one cache'."""
    if not calls:
        return "your function never called the model"
    if any(c.cache is None for c in calls):
        return ("at least one call did not pass the cache: call model(ids, kv_cache=cache) every "
                "step, otherwise the model recomputes the whole prefix (and a lone new token "
                "would be read as position 0)")
    first = calls[0].cache
    if any(c.cache is not first for c in calls):
        return ("every step started from an empty cache: make ONE cache with "
                "model.new_kv_cache(1) before the loop and pass that same cache every step "
                "(it remembers the keys and values of all earlier positions)")
    filled = 0  # positions the cache should hold before each call
    for step, c in enumerate(calls):
        if c.past is not None and c.past != filled:
            if c.past == 0:
                return (f"before model call {step + 1} the cache was emptied (its length went "
                        f"from {filled} back to 0): do not reset it inside the loop; it must keep "
                        "the keys and values of all earlier positions")
            if c.past > filled:
                return (f"before model call {step + 1} the cache claimed {c.past} positions but "
                        f"only {filled} had been fed: do not change cache.length yourself, the "
                        "model's forward advances it (otherwise the new token gets the wrong "
                        "position and attends to empty slots)")
            return (f"before model call {step + 1} the cache held {c.past} positions instead of "
                    f"{filled}: do not change cache.length yourself, the model's forward "
                    "advances it")
        if c.T and c.T > 1 and filled >= prompt_len:
            return (f"in model call {step + 1} you fed {c.T} tokens into a cache that already "
                    f"held {filled} positions: the model numbers new tokens from position "
                    f"{filled}, so the sequence is processed again at the wrong positions. After "
                    "the prompt, feed only the newest token (ids[:, -1:])")
        filled += c.T or 0
    return None


def _fed_problem(calls: list[_Call], got: torch.Tensor) -> str | None:
    """The ids fed to the cached model, in order, must spell the sequence itself."""
    fed = torch.cat([c.idx.reshape(-1) for c in calls if c.idx is not None])
    seq = got.reshape(-1).long()
    n = min(len(fed), len(seq))
    if n == 0:
        return None
    wrong = (fed[:n] != seq[:n]).nonzero()
    if len(wrong) == 0:
        return None
    i = int(wrong[0])
    return (f"the tokens fed into the cache do not follow the sequence: at position {i} you fed "
            f"token {int(fed[i])}, but your sequence has {int(seq[i])} there. Each step, feed "
            "the token you just chose (shape (1, 1)), right after appending it")


@torch.no_grad()
def _reference(model: Any, prompt: torch.Tensor, n_new: int, temperature: float,
               top_k: int | None, top_p: float | None, seed: int, variant: str = "right"
               ) -> torch.Tensor:
    """The reference loop (what `generate` does), or one of the usual mistakes (`variant`)."""
    from course.sample import temperature_filter, top_k_filter, top_p_filter

    gen = torch.Generator().manual_seed(seed)
    cache = model.new_kv_cache(1)
    ids, new = prompt, prompt
    for _ in range(n_new):
        logits = model(new, kv_cache=cache)[0][:, -1, :]  # (1, V)
        if variant == "argmax":
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            if variant != "no_temperature" and variant != "temperature_last":
                logits = temperature_filter(logits, temperature)
            if variant != "no_truncation":
                if top_k is not None:
                    logits = top_k_filter(logits, top_k)
                if top_p is not None:
                    logits = top_p_filter(logits, top_p)
            if variant == "temperature_last":
                logits = logits / temperature
            nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=gen)  # (1, 1)
        ids = torch.cat([ids, nxt], dim=1)
        new = nxt
    return ids


def _settings(temperature: float, top_k: int | None, top_p: float | None) -> str:
    return f"temperature={temperature}, top_k={top_k}, top_p={top_p}"


@exercise("sample_with_cache", hints=(
    "Before the loop, make one cache and feed the whole prompt once. Each step: the logits of "
    "the LAST position, choose a token (argmax when temperature == 0, else temperature, "
    "top-k, top-p, softmax and one draw from `generator`), append it to the sequence, and "
    "feed only that token (shape (1, 1)) with the same cache.",
    "The model advances cache.length by itself; never touch it. torch.multinomial(probs, 1, "
    "generator=generator) on (1, V) probabilities returns a (1, 1) token, and torch.cat along "
    "dim=1 appends it. Return the prompt followed by the n_new tokens, shape (1, T + n_new), "
    "dtype torch.long.",
))
def sample_with_cache(fn: Callable[..., torch.Tensor]) -> int:
    """`fn(model, prompt_ids (1, T), n_new, temperature=, top_k=, top_p=, generator=)` must
    give the tokens of `generate(...)` with the same settings and seed, using the KV cache
    (prompt once, then one token per step). temperature=0 means greedy."""
    with one_thread():
        return _check_sample_with_cache(fn)


def _check_sample_with_cache(fn: Callable[..., torch.Tensor]) -> int:
    from course.sample import generate

    name = "sample_with_cache"
    # (model seed, prompt, n_new, temperature, top_k, top_p, generator seed)
    cases = [
        (0, [3], 12, 0.0, None, None, 0),
        (1, [5, 1, 7, 7, 2], 20, 0.0, None, None, 0),
        (2, list(range(11, 23)), 25, 0.0, None, None, 0),
        (3, [8, 8], 0, 0.0, None, None, 0),
        (4, [2, 9], 20, 1.0, None, None, 1),
        (5, [1, 2, 3], 18, 0.7, 5, None, 2),
        (6, [4], 20, 1.5, None, 0.8, 3),
        (7, [6, 6, 6], 16, 1.2, 8, 0.9, 4),
    ]
    greedy_passed = False  # a greedy case with new tokens passed: the loop itself runs
    for mseed, prompt_list, n_new, t, k, p, gseed in cases:
        model = _spy_model(mseed)
        prompt = torch.tensor([prompt_list])
        greedy = t == 0
        desc = (f"a random GPT (block_size 40), prompt_ids=tensor({prompt.tolist()}), "
                f"n_new={n_new}, {_settings(t, k, p)}"
                + ("" if greedy else f", generator seeded with {gseed}"))
        expected = generate(model, prompt, n_new, temperature=t, top_k=k, top_p=p, seed=gseed)
        model.calls = []
        original = prompt.clone()
        with torch.random.fork_rng(devices=[]):  # the learner's RNG use must not leak out
            rng_before = torch.random.get_rng_state()
            try:
                got = fn(model, prompt, n_new, temperature=t, top_k=k, top_p=p,
                         generator=torch.Generator().manual_seed(gseed))
            except (CheckFailed, NotAttempted):
                raise
            except NotImplementedError:
                if not greedy and greedy_passed:
                    raise CheckFailed(
                        name, f"on input {desc} your code raised NotImplementedError",
                        "your loop works for greedy decoding, but one of the functions it calls "
                        "to sample is still a placeholder: finish apply_temperature, "
                        "top_k_filter and top_p_filter (exercises 1-3) first") from None
                raise NotAttempted(name) from None
            except Exception as e:
                msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                problem = _cache_problem(model.calls, len(prompt_list)) if model.calls else None
                if problem is None and isinstance(e, TypeError) and "argument" in str(e):
                    problem = ("keep the exercise's signature: fn(model, prompt_ids, n_new, *, "
                               "temperature=1.0, top_k=None, top_p=None, generator=None)")
                elif problem is None and greedy:
                    problem = ("temperature=0 means greedy decoding: take the argmax of the last "
                               "position's logits, without dividing by the temperature or sampling")
                raise CheckFailed(name, f"on input {desc} your code raised {msg}",
                                  problem or "call your function on that input in a cell of its "
                                             "own to see the full traceback") from None
            used_global_rng = not torch.equal(rng_before, torch.random.get_rng_state())
        if not torch.equal(prompt, original):
            raise CheckFailed(name, f"on input {desc} — your function changed prompt_ids in place",
                              "build the output in a new tensor (torch.cat) and leave the prompt "
                              "as it was")
        if n_new > 0:
            problem = _cache_problem(model.calls, len(prompt_list))
            if problem:
                raise CheckFailed(name, f"on input {desc} — the KV cache was not used as intended",
                                  problem)
        expect_contract(name, desc, torch.Tensor, got,
                        hint=f"return a (1, {expected.size(1)}) tensor of token ids: the prompt "
                             "followed by the new tokens")
        if got.shape != expected.shape:
            hint = ("return the prompt followed by the new tokens" if got.numel() == n_new
                    else "return a (1, T + n_new) tensor: the prompt followed by n_new new tokens")
            raise CheckFailed(name, f"on input {desc} — expected shape {tuple(expected.shape)}, "
                                    f"got shape {tuple(got.shape)}", hint)
        if got.dtype != torch.long:
            raise CheckFailed(name, f"on input {desc} — expected token ids of dtype torch.int64, "
                                    f"got dtype {got.dtype}",
                              "return token ids (torch.long, like prompt_ids), not logits or "
                              "probabilities"
                              if got.dtype.is_floating_point or got.dtype == torch.bool else
                              "keep the ids' dtype, torch.long (int64) like prompt_ids: the cells "
                              "below compare your tokens with generate's")
        if torch.equal(got.long(), expected):
            greedy_passed = greedy_passed or (greedy and n_new > 0)
            continue
        detail = _first_difference(desc, expected, got.long())
        diff = int((got.long() != expected).nonzero()[0, 1])
        if diff < len(prompt_list):
            raise CheckFailed(name, detail, "the output must start with the prompt itself")
        problem = _fed_problem(model.calls, got)
        if problem:
            raise CheckFailed(name, detail, problem)
        if greedy:
            hint = ("the first new token is already wrong: take the argmax of the LAST position's "
                    "logits (logits[:, -1, :]) after feeding the prompt" if diff == len(prompt_list)
                    else "each step: argmax of logits[:, -1, :], append it, and feed just that "
                         "token (shape (1, 1)) with the same cache")
            raise CheckFailed(name, detail, hint)
        if used_global_rng:
            raise CheckFailed(name, detail, "your code drew from PyTorch's global random "
                                            "generator: pass generator=generator to "
                                            "torch.multinomial, so that the same seed gives the "
                                            "same tokens")
        raise CheckFailed(name, detail, _sampling_hint(model, prompt, n_new, t, k, p, gseed,
                                                       got.long()))
    return len(cases)


def _first_difference(desc: str, expected: torch.Tensor, got: torch.Tensor) -> str:
    diff = int((got != expected).nonzero()[0, 1])
    return (f"on input {desc} — first difference at position {diff}: expected token "
            f"{int(expected[0, diff])}, got {int(got[0, diff])}; expected {expected.tolist()}, "
            f"got {got.tolist()}")


def _sampling_hint(model: Any, prompt: torch.Tensor, n_new: int, t: float, k: int | None,
                   p: float | None, seed: int, got: torch.Tensor) -> str:
    """Name the mistake whose tokens equal the learner's, else say what each step must do."""
    variants = [
        ("argmax", "with temperature > 0 the next token is SAMPLED: "
                   "torch.multinomial(softmax(filtered logits), 1, generator=generator), not "
                   "the argmax"),
        ("temperature_last", "divide by the temperature FIRST, then apply top-k and top-p (the "
                             "order of generate and of transformers): the nucleus of the "
                             "temperature-scaled distribution is not the same set of tokens"),
        ("no_temperature", "the temperature was not applied: divide the logits by it before "
                           "the filters"),
        ("no_truncation", "top_k / top_p were not applied: when they are not None, filter "
                          "the logits with them before the softmax"),
    ]
    model.calls = []
    for variant, hint in variants:
        if variant == "no_truncation" and k is None and p is None:
            continue
        if variant in ("temperature_last", "no_temperature") and t == 1.0:
            continue
        if torch.equal(_reference(model, prompt, n_new, t, k, p, seed, variant), got):
            return hint
    return ("each step: logits of the last position, temperature, then top-k, then top-p, "
            "softmax, ONE torch.multinomial(probs, 1, generator=generator) draw; append the "
            "token and feed just that token with the same cache")
