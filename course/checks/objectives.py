"""Checks for lesson 09 (other pretraining objectives).

* `mlm_mask`: `mlm_mask(input_ids, mask_id, vocab_size, *, prob=0.15, generator,
  special_ids=()) -> (inputs, labels)`, BERT's 80/10/10 masking. The learner's random
  numbers differ from ours, so this check is statistical: on ~16 K seeded tokens the
  shares (chosen, masked, random, kept) must fall within wide bounds (about 6 standard
  deviations), and the exact parts (labels at chosen positions, untouched inputs
  elsewhere, specials never chosen nor injected as random tokens, same generator seed →
  same output) are exact.
* `span_corrupt`: `span_corrupt(ids, noise_mask, sentinel_ids) -> (inputs, targets)`,
  T5's span corruption for a given noise mask; exact, against
  `course.objectives.span_corrupt`.
* `prefix_lm_batch`: `prefix_lm_batch(ids, prefix_len) -> (attn_mask, labels)`; exact,
  against `course.masks.prefix_lm_mask` and `course.objectives.prefix_lm_batch`.
* `fim_psm`: `fim_psm(ids, i, j, pre_id, suf_id, mid_id) -> list`, the PSM layout with
  given cut points; exact, against `course.objectives.fim_arrange`.

Each check recomputes the typical wrong answers (masking every chosen token, one sentinel
for all spans, a causal prefix, suffix and middle swapped, ...) and names the one the
learner's output matches.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from course.checks._core import (
    CheckFailed,
    call,
    exercise,
    expect_equal,
    expect_type,
    show,
)

__all__ = ["check_fim_psm", "check_mlm_mask", "check_prefix_lm_batch", "check_span_corrupt"]


# ============================================================== mlm_mask

_MLM_V = 64
_MLM_MASK = 62
_MLM_SPECIALS = (0, 63)  # an end-of-text and a padding id


def _mlm_case(seed: int, shape: tuple[int, ...]) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 62, shape, generator=g)
    flat = ids.view(-1)
    flat[:: 11] = 0  # some end-of-text tokens ...
    flat[5:: 37] = 63  # ... and some padding
    return ids


def _as_pair(name: str, desc: str, got: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        extra = " (did the function forget to `return`?)" if got is None else ""
        raise CheckFailed(name, f"on input {desc} — expected a pair {what}, got {show(got)}{extra}",
                          hint=f"end with `return {what.strip('()')}`")
    return got[0], got[1]


def _expect_tensor_like(name: str, desc: str, what: str, got: Any, ref: Any) -> None:
    import torch

    expect_type(name, f"{desc} ({what})", torch.Tensor, got,
                hint=f"return {what} as a tensor of the same shape as input_ids")
    if got.shape != ref.shape:
        raise CheckFailed(name, f"on input {desc} — {what} has shape {tuple(got.shape)}, "
                                f"expected {tuple(ref.shape)} (the shape of input_ids)",
                          hint="keep the shape: work with boolean masks of input_ids' shape "
                               "instead of flattening or selecting")
    if got.dtype.is_floating_point or got.dtype == torch.bool:
        raise CheckFailed(name, f"on input {desc} — {what} has dtype {got.dtype}",
                          hint="token ids are integers: keep input_ids' dtype (torch.long)")


def _check_random_ids(name: str, desc: str, ids: Any, inputs: Any, chosen: Any, vocab_size: int,
                     specials: tuple[int, ...], mask_id: int = _MLM_MASK) -> None:
    """The random replacements must be ordinary ids of the vocabulary."""
    import torch

    injected = inputs[chosen & (inputs != ids) & (inputs != mask_id)]
    if injected.numel() and (int(injected.min()) < 0 or int(injected.max()) >= vocab_size):
        raise CheckFailed(name, f"on input {desc} — a random replacement is outside [0, vocab_size)",
                          hint="draw random ids among the vocabulary's ids 0 .. vocab_size - 1")
    bad = injected[torch.isin(injected, torch.tensor(specials, dtype=injected.dtype))]
    if bad.numel():
        raise CheckFailed(name, f"on input {desc} — {bad.numel()} random replacement(s) are special "
                                f"tokens (e.g. id {int(bad[0])}, one of special_ids)",
                          hint="draw the random token among the ordinary ids only (never a special "
                               "id, never mask_id): e.g. ordinary = torch.tensor([i for i in "
                               "range(vocab_size) if i not in special_ids and i != mask_id]), then "
                               "ordinary[torch.randint(len(ordinary), shape, generator=generator)]")


@exercise("mlm_mask")
def check_mlm_mask(mlm_mask: Callable[..., Any]) -> int:
    """Statistical and exact checks of BERT's 80/10/10 masking (see the module docstring)."""
    import torch

    name = "mlm_mask"
    cases = 0
    specials = _MLM_SPECIALS

    def run(ids: Any, seed: int, prob: float = 0.15, sp: tuple[int, ...] = specials) -> tuple[Any, Any, str]:
        desc = (f"input_ids of shape {tuple(ids.shape)}, mask_id={_MLM_MASK}, vocab_size={_MLM_V}, "
                f"prob={prob}, special_ids={sp}, generator seeded with {seed}")
        before = ids.clone()
        got = call(name, mlm_mask, ids, _MLM_MASK, _MLM_V, prob=prob,
                   generator=torch.Generator().manual_seed(seed), special_ids=sp, inputs_desc=desc)
        inputs, labels = _as_pair(name, desc, got, "(inputs, labels)")
        if not torch.equal(ids, before):
            raise CheckFailed(name, f"on input {desc} — your function changed input_ids in place",
                              hint="work on a copy: inputs = input_ids.clone() (and labels too)")
        _expect_tensor_like(name, desc, "inputs", inputs, ids)
        _expect_tensor_like(name, desc, "labels", labels, ids)
        return inputs, labels, desc

    # --- a large case: the exact contract, then the statistics
    ids = _mlm_case(0, (64, 256))
    inputs, labels, desc = run(ids, seed=0)
    cases += 1
    chosen = labels != -100
    ordinary = ~torch.isin(ids, torch.tensor(specials))
    n_ord = int(ordinary.sum())
    n = int(chosen.sum())
    if n == 0:
        raise CheckFailed(name, f"on input {desc} — no position has a label (labels are all -100)",
                          hint="choose each ordinary position with probability prob "
                               "(torch.rand(shape, generator=generator) < prob) and put the "
                               "original token in labels there")
    share = n / n_ord
    if share > 0.5:
        raise CheckFailed(name, f"on input {desc} — {n / ids.numel():.0%} of the positions have a label "
                                "(not -100), so almost every token would carry a loss",
                          hint="labels must be -100 at every position that was not chosen: only "
                               "the ~15% chosen positions carry a loss (start from "
                               "torch.full_like(input_ids, -100))")
    if bool((chosen & ~ordinary).any()):
        raise CheckFailed(name, f"on input {desc} — a special token (one of special_ids) was chosen",
                          hint="never choose special tokens: exclude positions whose id is in "
                               "special_ids before drawing (e.g. torch.isin(input_ids, ...))")
    wrong_label = chosen & (labels != ids)
    if bool(wrong_label.any()):
        as_input = bool((labels[chosen] == inputs[chosen]).all())
        raise CheckFailed(name, f"on input {desc} — at {int(wrong_label.sum())} chosen positions "
                                "the label is not the original token",
                          hint=("labels hold the ORIGINAL token (what the model must recover), "
                                "not the corrupted input: build labels from input_ids before "
                                "masking" if as_input else
                                "at a chosen position the label is the original token input_ids[t]"))
    touched = ~chosen & (inputs != ids)
    if bool(touched.any()):
        raise CheckFailed(name, f"on input {desc} — the input changed at {int(touched.sum())} "
                                "positions that have no label",
                          hint="only chosen positions are corrupted; apply the 80/10/10 split "
                               "to the chosen positions only (AND with the chosen mask)")
    if not 0.12 <= share <= 0.18:
        raise CheckFailed(name, f"on input {desc} — {share:.1%} of the ordinary tokens were chosen, "
                                "expected about 15%", hint="choose each non-special position "
                                "independently with probability prob (the argument, 0.15 here)")
    masked = int((chosen & (inputs == _MLM_MASK)).sum()) / n
    kept = int((chosen & (inputs == ids)).sum()) / n
    rand = 1.0 - masked - kept
    if masked > 0.95:
        raise CheckFailed(name, f"on input {desc} — {masked:.1%} of the chosen tokens became "
                                "the mask token, expected about 80%",
                          hint="of the chosen tokens only 80% become mask_id; 10% become a random "
                               "token and 10% stay unchanged (one uniform draw per position "
                               "decides which)")
    for what, value, lo, hi in (("became the mask token", masked, 0.74, 0.86),
                                ("became a random other token", rand, 0.05, 0.15),
                                ("stayed unchanged", kept, 0.05, 0.15)):
        if not lo <= value <= hi:
            raise CheckFailed(name, f"on input {desc} — {value:.1%} of the chosen tokens {what}; "
                                    "expected about 80% mask / 10% random / 10% unchanged",
                              hint="decide per chosen position with u = torch.rand(...): "
                                   "u < 0.8 → mask_id, 0.8 <= u < 0.9 → random id, else keep")
    _check_random_ids(name, desc, ids, inputs, chosen, _MLM_V, specials)

    # --- the same seed must give the same masks: every random number from `generator`
    again, again_labels, _ = run(ids, seed=0)
    cases += 1
    if not (torch.equal(again, inputs) and torch.equal(again_labels, labels)):
        raise CheckFailed(name, f"on input {desc}, called twice — two calls with identically "
                                "seeded generators gave different masks",
                          hint="draw every random number from `generator` "
                               "(torch.rand(..., generator=generator), torch.randint(..., "
                               "generator=generator)), never from the global RNG")

    # --- prob is an argument
    inputs2, labels2, desc2 = run(_mlm_case(1, (32, 256)), seed=1, prob=0.5)
    cases += 1
    share2 = int((labels2 != -100).sum()) / int((~torch.isin(_mlm_case(1, (32, 256)),
                                                             torch.tensor(specials))).sum())
    if not 0.45 <= share2 <= 0.55:
        raise CheckFailed(name, f"on input {desc2} — {share2:.1%} of the ordinary tokens were "
                                "chosen, expected about 50%",
                          hint="use the prob argument, not a hard-coded 0.15")

    # --- random replacements are ordinary tokens: with half of this vocabulary special,
    # ids drawn from the whole vocabulary are special about half of the time (~200 draws)
    sp_many = (0, 1, 2, 3, 4, 5)
    ids_s = torch.randint(6, 11, (64, 64), generator=torch.Generator().manual_seed(5))
    ids_s[:, ::9] = 0
    desc_s = (f"input_ids of shape (64, 64) holding ids 6..10 and some 0s, mask_id=11, vocab_size=12, "
              f"prob=0.5, special_ids={sp_many}, generator seeded with 5")
    got = call(name, mlm_mask, ids_s, 11, 12, prob=0.5, generator=torch.Generator().manual_seed(5),
               special_ids=sp_many, inputs_desc=desc_s)
    cases += 1
    inputs_s, labels_s = _as_pair(name, desc_s, got, "(inputs, labels)")
    _expect_tensor_like(name, desc_s, "inputs", inputs_s, ids_s)
    _expect_tensor_like(name, desc_s, "labels", labels_s, ids_s)
    _check_random_ids(name, desc_s, ids_s, inputs_s, labels_s != -100, 12, sp_many, mask_id=11)

    # --- edge cases: a 1-D input, only specials, no specials given
    for ids_e, seed, sp in ((_mlm_case(2, (300,)), 2, specials),
                            (torch.tensor([0, 63, 0, 0, 63]), 3, specials),
                            (_mlm_case(4, (2, 8)).clamp(1, 61), 4, ())):
        inputs_e, labels_e, desc_e = run(ids_e, seed=seed, sp=sp)
        cases += 1
        chosen_e = labels_e != -100
        sp_mask = torch.isin(ids_e, torch.tensor(sp, dtype=torch.long)) if sp else torch.zeros_like(chosen_e)
        if bool((chosen_e & sp_mask).any()) or not torch.equal(labels_e[chosen_e], ids_e[chosen_e]) \
                or not torch.equal(inputs_e[~chosen_e], ids_e[~chosen_e]):
            raise CheckFailed(name, f"on input {desc_e} — labels or inputs break the rules "
                                    "(labels: original token at chosen positions, -100 elsewhere; "
                                    "inputs unchanged where not chosen; specials never chosen)",
                              hint="test your function on a 1-D tensor and on one made only of "
                                   "special tokens")
    return cases


# ============================================================== span_corrupt

_SENT = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115]


def _span_cases() -> list[tuple[list[int], list[bool]]]:
    # The T5 paper's sentence, as word ids: Thank you [for inviting] me to your party [last] week .
    t5 = ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0])
    cases = [
        t5,
        ([], []),
        ([7, 8, 9], [0, 0, 0]),  # no noise: one closing sentinel
        ([7, 8, 9], [1, 0, 0]),  # a span at the very start
        ([7, 8, 9], [0, 0, 1]),  # ... at the very end
        ([7, 8, 9, 10], [1, 1, 1, 1]),  # everything is one span
        ([5, 6, 7, 8, 9], [1, 0, 1, 0, 1]),  # three single-token spans
        ([3, 3, 3, 3, 3, 3], [0, 1, 1, 0, 1, 1]),  # repeated tokens
    ]
    rng = random.Random(9)
    for _ in range(12):
        n = rng.randint(5, 40)
        ids = [rng.randint(0, 99) for _ in range(n)]
        mask, on = [], False
        for _ in range(n):
            if rng.random() < (0.3 if on else 0.12):
                on = not on
            mask.append(on)
        if sum(1 for k in range(n) if mask[k] and (k == 0 or not mask[k - 1])) < len(_SENT):
            cases.append((ids, [int(b) for b in mask]))
    return [(ids, [bool(b) for b in m]) for ids, m in cases]


def _to_int_list(name: str, desc: str, what: str, got: Any,
                 flat_hint: str = "extend it with a span's tokens, do not append the span as one list"
                 ) -> list[int]:
    if hasattr(got, "tolist") and not isinstance(got, (list, tuple)):
        got = got.tolist()
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(name, f"on input {desc} — {what} is {show(got)}, not a list of ids",
                          hint=f"return {what} as a list of token ids")
    bad = [x for x in got if isinstance(x, bool) or not isinstance(x, int)]
    if bad:
        raise CheckFailed(name, f"on input {desc} — {what} holds {show(bad[0])} "
                                f"({type(bad[0]).__name__}), not only int ids",
                          hint=f"{what} must be a flat list of ints ({flat_hint})")
    return list(got)


def _span_variants(ids: list[int], mask: list[bool]) -> dict[str, tuple[list[int], list[int]]]:
    """The typical wrong answers, for naming the learner's mistake."""
    spans: list[list[int]] = []
    gaps: list[list[int]] = [[]]
    for t, tok in enumerate(ids):
        if mask[t]:
            if t == 0 or not mask[t - 1]:
                spans.append([])
                gaps.append([])
            spans[-1].append(tok)
        else:
            gaps[-1].append(tok)

    def build(sentinel_of: Callable[[int], int], final: bool, with_sentinels: bool = True):
        inp, tgt = list(gaps[0]), []
        for k, span in enumerate(spans):
            inp += [sentinel_of(k), *gaps[k + 1]]
            tgt += ([sentinel_of(k)] if with_sentinels else []) + span
        if final:
            tgt.append(sentinel_of(len(spans)))
        return inp, tgt

    per_token_same = [(_SENT[0] if m else t) for t, m in zip(ids, mask, strict=True)]
    per_token_next, k = [], 0
    for t, m in zip(ids, mask, strict=True):
        per_token_next.append(_SENT[k] if m else t)
        k += bool(m)
    no_final = build(lambda k: _SENT[k], False)
    return {
        "final is the list's last": (no_final[0], no_final[1] + [_SENT[-1]]),
        "final repeats the last span's": (no_final[0], no_final[1] + [_SENT[max(len(spans) - 1, 0)]]),
        "counting from 1": build(lambda k: _SENT[k + 1], True),
        "one sentinel for all": build(lambda k: _SENT[0], True),
        "one sentinel for all, no final": build(lambda k: _SENT[0], False),
        "no final sentinel": build(lambda k: _SENT[k], False),
        "no sentinels in targets": build(lambda k: _SENT[k], False, with_sentinels=False),
        "no sentinels in targets, final": build(lambda k: _SENT[k], True, with_sentinels=False),
        "per token": (per_token_same, None),
        "per token, counting": (per_token_next, None),
    }


@exercise("span_corrupt")
def check_span_corrupt(span_corrupt: Callable[..., Any]) -> int:
    """Exact comparison with `course.objectives.span_corrupt` on hand-picked and random masks."""
    from course.objectives import span_corrupt as reference

    name = "span_corrupt"
    cases = 0
    for ids, mask in _span_cases():
        desc = f"ids={show(ids)}, noise_mask={show([int(b) for b in mask])}, sentinel_ids={show(_SENT)}"
        got = call(name, span_corrupt, list(ids), list(mask), list(_SENT), inputs_desc=desc)
        cases += 1
        g_in, g_tg = _as_pair(name, desc, got, "(inputs, targets)")
        g_in = _to_int_list(name, desc, "inputs", g_in)
        g_tg = _to_int_list(name, desc, "targets", g_tg)
        e_in, e_tg = reference(ids, _SENT, noise_mask=mask)
        if (g_in, g_tg) == (e_in, e_tg):
            continue
        variants = _span_variants(ids, mask)
        hint = None
        if g_in != e_in and g_in in (variants["per token"][0], variants["per token, counting"][0]):
            hint = ("a span is a run of consecutive noise tokens: replace the whole run by ONE "
                    "sentinel (start a new span only where the mask switches from False to True)")
        elif (g_in, g_tg) in (variants["one sentinel for all"], variants["one sentinel for all, no final"]):
            hint = ("every span needs its own sentinel: span k (counting from 0) is replaced by "
                    "sentinel_ids[k], so the targets say which span goes where")
        elif (g_in, g_tg) == variants["counting from 1"]:
            hint = ("the first span gets sentinel_ids[0]: span k (counting from 0) is replaced by "
                    "sentinel_ids[k]")
        elif (g_in, g_tg) in (variants["final is the list's last"],
                              variants["final repeats the last span's"]):
            hint = ("the closing sentinel is the next unused one, sentinel_ids[number of spans]; "
                    "a sentinel already used, or the last of the list, would be ambiguous")
        elif (g_in, g_tg) == variants["no final sentinel"]:
            hint = ("end the targets with one more sentinel, sentinel_ids[number of spans]: "
                    "it closes the last span (T5's convention)")
        elif (g_in, g_tg) in (variants["no sentinels in targets"], variants["no sentinels in targets, final"]):
            hint = ("the targets need the sentinels too: each span is written after the sentinel "
                    "that replaced it (<X> span <Y> span ... <Z>)")
        if g_in != e_in:
            expect_equal(name, f"{desc} (inputs)", e_in, g_in, hint=hint or (
                "inputs = the kept tokens, with each span replaced by its sentinel"))
        expect_equal(name, f"{desc} (targets)", e_tg, g_tg, hint=hint or (
            "targets = for each span k: sentinel_ids[k] then the span's tokens; "
            "then sentinel_ids[number of spans]"))
    return cases


# ============================================================== prefix_lm_batch


@exercise("prefix_lm_batch")
def check_prefix_lm_batch(prefix_lm_batch: Callable[..., Any]) -> int:
    """Exact comparison of the mask and labels with the package's prefix LM."""
    import torch

    from course.masks import bidirectional_mask, causal_mask, prefix_lm_mask

    name = "prefix_lm_batch"
    g = torch.Generator().manual_seed(0)
    cases_in = [(6, 3), (5, 0), (5, 1), (4, 4), (7, 6), (1, 1), (1, 0), (12, 5), (16, 9)]
    cases = 0
    for T, P in cases_in:
        ids = torch.randint(0, 50, (2, T), generator=g)
        before = ids.clone()
        desc = f"ids={show(ids)}, prefix_len={P}"
        got = call(name, prefix_lm_batch, ids, P, inputs_desc=desc)
        cases += 1
        mask, labels = _as_pair(name, desc, got, "(attn_mask, labels)")
        if not torch.equal(ids, before):
            raise CheckFailed(name, f"on input {desc} — your function changed ids in place",
                              hint="labels = ids.clone() before writing -100 into it, or the "
                                   "input ids themselves get overwritten")
        expect_type(name, f"{desc} (attn_mask)", torch.Tensor, mask,
                    hint="return the mask as a boolean tensor (T, T)")
        if mask.dtype != torch.bool:
            raise CheckFailed(name, f"on input {desc} — attn_mask has dtype {mask.dtype}",
                              hint="a boolean mask: True = may attend (compare with `!= 0` or "
                                   "build it from torch.ones(T, T, dtype=torch.bool))")
        expected = prefix_lm_mask(T, P)
        if mask.shape == (2, T, T) and all(torch.equal(m, expected) for m in mask):
            mask = mask[0]
        if not torch.equal(mask, expected):
            if mask.shape == expected.shape and torch.equal(mask, causal_mask(T)):
                hint = ("this is the causal mask: inside the prefix, positions must see each other "
                        "both ways (every query may see all prefix keys: mask[:, :prefix_len] = True)")
            elif mask.shape == expected.shape and torch.equal(mask, bidirectional_mask(T)):
                hint = ("the mask is bidirectional everywhere: after the prefix attention must stay "
                        "causal, or each suffix token could read the token it has to predict")
            elif mask.shape == expected.shape and torch.equal(mask, expected.T):
                hint = "the mask is transposed: row i (the query) says which keys j it may see"
            elif mask.shape == expected.shape and P < T and torch.equal(
                    mask, causal_mask(T) | (torch.arange(T)[:, None] < P)):
                hint = ("mask[:prefix_len] = True opens whole ROWS: prefix positions would read the "
                        "suffix (the tokens to predict). Open the prefix COLUMNS instead: "
                        "mask[:, :prefix_len] = True (every query may read every prefix key)")
            elif P > 0 and mask.shape == expected.shape and (
                    torch.equal(mask, prefix_lm_mask(T, P - 1)) or (P < T and torch.equal(mask, prefix_lm_mask(T, P + 1)))):
                hint = "off by one: the prefix is positions 0 .. prefix_len - 1"
            else:
                hint = ("start from the causal mask (lower triangle) and let every query see the "
                        "whole prefix: mask[:, :prefix_len] = True")
            expect_equal(name, f"{desc} (attn_mask)", expected, mask, hint=hint)
        expected_labels = ids.clone()
        expected_labels[:, :P] = -100
        expect_type(name, f"{desc} (labels)", torch.Tensor, labels, hint="return labels as a tensor like ids")
        if labels.shape == expected_labels.shape and labels.dtype == expected_labels.dtype and not torch.equal(labels, expected_labels):
            if torch.equal(labels, ids):
                hint = ("the prefix must carry no loss: labels[:, :prefix_len] = -100 (a prefix "
                        "position sees the next prefix token, predicting it would be copying)")
            elif torch.equal(labels == -100, ~(expected_labels == -100)):
                hint = "it is the other way round: -100 over the prefix, the ids over the suffix"
            elif any(torch.equal(labels, ids.masked_fill(torch.arange(T) < q, -100))
                     for q in (P - 1, P + 1) if 0 <= q <= T):
                hint = ("off by one: -100 over exactly the positions 0 .. prefix_len - 1. Do not "
                        "shift the labels yourself: the model scores the logit at P - 1 against "
                        "labels[P], the first suffix token")
            else:
                hint = ("labels = ids with -100 at the prefix positions 0 .. prefix_len - 1 (the "
                        "model shifts, so the first suffix token is still predicted)")
            expect_equal(name, f"{desc} (labels)", expected_labels, labels, hint=hint)
        expect_equal(name, f"{desc} (labels)", expected_labels, labels,
                     hint="labels: same shape and dtype as ids, -100 over the prefix")
    return cases


# ============================================================== fim_psm

_PRE, _SUF, _MID = 200, 201, 202


@exercise("fim_psm")
def check_fim_psm(fim_psm: Callable[..., Any]) -> int:
    """Exact comparison with `fim_arrange(..., mode="psm")` for hand-picked and random cuts."""
    from course.objectives import fim_arrange

    name = "fim_psm"
    rng = random.Random(4)
    doc = [10, 11, 12, 13, 14, 15, 16, 17]
    cases_in = [(doc, 2, 5), (doc, 0, 3), (doc, 3, 8), (doc, 4, 4), (doc, 0, 8), (doc, 0, 0),
                (doc, 8, 8), ([], 0, 0), ([42], 0, 1)]
    for _ in range(10):
        ids = [rng.randint(0, 99) for _ in range(rng.randint(1, 30))]
        i, j = sorted(rng.randint(0, len(ids)) for _ in range(2))
        cases_in.append((ids, i, j))
    for ids, i, j in cases_in:
        desc = f"ids={show(ids)}, i={i}, j={j}, pre_id={_PRE}, suf_id={_SUF}, mid_id={_MID}"
        got = call(name, fim_psm, list(ids), i, j, _PRE, _SUF, _MID, inputs_desc=desc)
        got = _to_int_list(name, desc, "the result", got,
                           flat_hint="concatenate lists: [pre_id] + ids[:i] + [suf_id] + ...; "
                                     "the special ids are ints, not strings")
        p, m, s = ids[:i], ids[i:j], ids[j:]
        expected = fim_arrange(p, m, s, pre_id=_PRE, suf_id=_SUF, mid_id=_MID, mode="psm")
        if got == expected:
            continue
        if got == [_PRE, *p, _SUF, *m, _MID, *s]:
            hint = ("suffix and middle are swapped: after <SUF> comes the suffix ids[j:]; the "
                    "middle ids[i:j] goes last, after <MID>, because it is what the model writes")
        elif got == fim_arrange(p, m, s, pre_id=_PRE, suf_id=_SUF, mid_id=_MID, mode="spm"):
            hint = "that is the SPM order; PSM is <PRE> prefix <SUF> suffix <MID> middle"
        elif sorted(got) == sorted(expected) and len(got) == len(expected):
            hint = ("the right tokens in the wrong order: <PRE> ids[:i] <SUF> ids[j:] <MID> "
                    "ids[i:j]")
        elif len(got) == len(ids):
            hint = "add the three special tokens pre_id, suf_id and mid_id"
        elif [got.count(t) for t in (_PRE, _SUF, _MID)] != [1, 1, 1]:
            missing = [n for n, t in (("pre_id", _PRE), ("suf_id", _SUF), ("mid_id", _MID))
                       if got.count(t) != 1]
            hint = (f"each of the three special tokens appears exactly once; check {', '.join(missing)}: "
                    "<PRE> opens the prefix, <SUF> the suffix, <MID> the middle")
        elif len(got) == len(expected) - 1 or len(got) == len(expected) + 1:
            hint = "off by one: prefix = ids[:i], middle = ids[i:j], suffix = ids[j:]"
        else:
            hint = "return [pre_id] + ids[:i] + [suf_id] + ids[j:] + [mid_id] + ids[i:j]"
        expect_equal(name, desc, expected, got, hint=hint)
    return len(cases_in)
