"""Checks for lesson 09 (other pretraining objectives).

* `mlm_mask`: `mlm_mask(input_ids, mask_id, vocab_size, *, prob=0.15, generator,
  special_ids=()) -> (inputs, labels)`, BERT's 80/10/10 masking. The learner's random
  numbers differ from ours (and may be drawn in any order), so this check counts: over
  8 seeded batches (~130 K tokens, ~17 K chosen positions) the number of chosen tokens and
  the numbers of masked / random / kept ones must fall inside exact binomial acceptance
  intervals whose total false-rejection probability is below 1e-9, while the wrong splits
  80/15/5, 85/10/5 and 75/15/10 land dozens of standard deviations outside. The exact parts
  (labels at chosen positions, untouched inputs elsewhere, specials never chosen nor
  injected as random tokens, same generator seed → same output) are exact.
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

import math
import random
from collections.abc import Callable
from typing import Any

from course.checks._core import (
    CheckFailed,
    call,
    exercise,
    expect_contract,
    expect_equal,
    show,
)

__all__ = ["check_fim_psm", "check_mlm_mask", "check_prefix_lm_batch", "check_span_corrupt"]


# ============================================================== mlm_mask

_MLM_V = 64
_MLM_MASK = 62
_MLM_SPECIALS = (0, 63)  # an end-of-text and a padding id


def _mlm_case(seed: int, shape: tuple[int, ...]) -> Any:
    import torch

    # Not the seed of the generator handed to the learner: with the same seed, a learner who
    # draws its random ids first would draw exactly these tokens again.
    g = torch.Generator().manual_seed(10_000 + seed)
    ids = torch.randint(1, 62, shape, generator=g)
    flat = ids.view(-1)
    flat[:: 11] = 0  # some end-of-text tokens ...
    flat[5:: 37] = 63  # ... and some padding
    return ids


def _call(name: str, fn: Callable[..., Any], *args: Any, in_place_hint: str,
          **kwargs: Any) -> Any:
    """`call` (which fails when an argument comes back changed), with a lesson-specific hint
    for an in-place change."""
    try:
        return call(name, fn, *args, **kwargs)
    except CheckFailed as e:
        if " in place" in e.detail:
            raise CheckFailed(name, e.detail, in_place_hint) from None
        raise


def _expect_tensor_like(name: str, desc: str, what: str, got: Any, ref: Any) -> None:
    """`got` (already known to be a torch.Tensor) has the shape and dtype of `ref`."""
    if got.shape != ref.shape:
        raise CheckFailed(name, f"on input {desc} — {what} has shape {tuple(got.shape)}, "
                                f"expected {tuple(ref.shape)} (the shape of input_ids)",
                          hint="keep the shape: work with boolean masks of input_ids' shape "
                               "instead of flattening or selecting")
    if got.dtype != ref.dtype:
        raise CheckFailed(name, f"on input {desc} — {what} has dtype {got.dtype}, expected "
                                f"{ref.dtype} (the dtype of input_ids)",
                          hint="token ids are integers: keep input_ids' dtype (torch.long), "
                               "e.g. by starting from a clone of input_ids")


def _binomial_interval(n: int, p: float, alpha: float) -> tuple[int, int]:
    """[lo, hi] such that a Binomial(n, p) count falls below lo with probability <= alpha and
    above hi with probability <= alpha (exact tails, summed with math.lgamma)."""
    if n == 0:
        return 0, 0
    if p <= 0.0 or p >= 1.0:
        return (0, 0) if p <= 0.0 else (n, n)
    log_p, log_q = math.log(p), math.log1p(-p)
    head = math.lgamma(n + 1)

    def pmf(k: int) -> float:
        return math.exp(head - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p
                        + (n - k) * log_q)

    lo, tail = 0, 0.0
    while lo <= n and tail + pmf(lo) <= alpha:  # P(X < lo + 1) still <= alpha
        tail += pmf(lo)
        lo += 1
    hi, tail = n, 0.0
    while hi >= 0 and tail + pmf(hi) <= alpha:  # P(X > hi - 1) still <= alpha
        tail += pmf(hi)
        hi -= 1
    return lo, hi


# The false-rejection budget of the mlm_mask check: every two-sided interval below uses
# alpha = 1e-10 per tail, and there are 5 of them (the chosen share at prob=0.15, the three
# outcomes of the 80/10/10 split, the chosen share at prob=0.5): a correct implementation,
# whatever order it draws its random numbers in, fails with probability <= 10 · 1e-10 = 1e-9.
_ALPHA = 1e-10
_MLM_SEEDS = range(8)  # 8 batches of (64, 256): ~14.4 K ordinary tokens, ~2.2 K chosen, each

# (mask, random, keep) splits a learner may have written instead of BERT's (0.8, 0.1, 0.1),
# with the hint that names each.
_WRONG_SPLITS = [
    ((0.80, 0.15, 0.05), "that is an 80/15/5 split (mask / random / unchanged), not BERT's "
                         "80/10/10: 5 % too many random tokens and 5 % too few unchanged ones; "
                         "check where your uniform draw separates 'random' from 'keep'"),
    ((0.85, 0.10, 0.05), "that is an 85/10/5 split (mask / random / unchanged), not BERT's "
                         "80/10/10: 5 % too many masks and 5 % too few unchanged tokens; check "
                         "your thresholds on the uniform draw"),
    ((0.75, 0.15, 0.10), "that is a 75/15/10 split (mask / random / unchanged), not BERT's "
                         "80/10/10: 5 % too few masks and 5 % too many random tokens; check "
                         "where your uniform draw separates 'mask' from 'random'"),
    ((0.80, 0.02, 0.18), "that is about 80/2/18: 'mask with probability 0.8, then random with "
                         "probability 0.1 among the rest' gives only 0.2 × 0.1 = 2 % random "
                         "tokens. Split ONE uniform draw per chosen position into three "
                         "intervals of 80 %, 10 % and 10 %"),
    ((1.00, 0.00, 0.00), "of the chosen tokens only 80% become mask_id; 10% become a random "
                         "token and 10% stay unchanged (one uniform draw per position decides "
                         "which)"),
]


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
                               "id, never mask_id): make a tensor of the allowed ids once and "
                               "index it with random positions drawn from generator")


@exercise("mlm_mask", hints=(
    "Two random decisions per position, both from `generator`: is it chosen (probability prob, "
    "never a special id), and, for a chosen one, which of three corruptions it gets (80 % "
    "mask_id, 10 % a random ordinary id, 10 % unchanged). Labels: the original id where chosen, "
    "-100 elsewhere. Return the tuple (inputs, labels), two new tensors shaped like input_ids.",
    "Build boolean masks of input_ids' shape: special (torch.isin with special_ids and mask_id), "
    "chosen (a uniform draw < prob, and not special), then split the chosen ones with a second "
    "uniform draw cut into three intervals. Random ids come from a tensor of the ordinary ids, "
    "indexed with torch.randint(..., generator=generator). Work on clones: input_ids must not "
    "change.",
))
def check_mlm_mask(mlm_mask: Callable[..., Any]) -> int:
    """Statistical and exact checks of BERT's 80/10/10 masking (see the module docstring)."""
    import torch

    name = "mlm_mask"
    cases = 0
    specials = _MLM_SPECIALS
    in_place_hint = ("work on a copy: clone input_ids before writing into it (and build labels "
                     "in a new tensor too); the caller's input_ids must stay as they were")

    def run(ids: Any, seed: int, prob: float = 0.15, sp: tuple[int, ...] = specials,
            mask_id: int = _MLM_MASK, vocab_size: int = _MLM_V, what: str | None = None
            ) -> tuple[Any, Any, str]:
        desc = (f"input_ids {what or f'of shape {tuple(ids.shape)}'}, mask_id={mask_id}, "
                f"vocab_size={vocab_size}, prob={prob}, special_ids={sp}, generator seeded "
                f"with {seed}")
        got = _call(name, mlm_mask, ids, mask_id, vocab_size, prob=prob,
                    generator=torch.Generator().manual_seed(seed), special_ids=sp,
                    inputs_desc=desc, in_place_hint=in_place_hint)
        expect_contract(name, desc, tuple[torch.Tensor, torch.Tensor], got,
                        hint="return the tuple (inputs, labels): two tensors shaped like "
                             "input_ids")
        inputs, labels = got
        _expect_tensor_like(name, desc, "inputs", inputs, ids)
        _expect_tensor_like(name, desc, "labels", labels, ids)
        return inputs, labels, desc

    # --- 8 large seeded batches: the exact contract on each, then the statistics on all
    n_ord_all = n_chosen_all = n_masked_all = n_random_all = n_kept_all = 0
    first: tuple[Any, Any, Any, str] | None = None
    for seed in _MLM_SEEDS:
        ids = _mlm_case(seed, (64, 256))
        inputs, labels, desc = run(ids, seed=seed)
        cases += 1
        if first is None:
            first = (ids, inputs, labels, desc)
        chosen = labels != -100
        ordinary = ~torch.isin(ids, torch.tensor(specials))
        n_ord = int(ordinary.sum())
        n = int(chosen.sum())
        if n == 0:
            raise CheckFailed(name, f"on input {desc} — no position has a label (labels are all "
                                    "-100)",
                              hint="choose each ordinary position with probability prob (a "
                                   "uniform draw from generator, compared with prob) and put "
                                   "the original token in labels there")
        if n / n_ord > 0.5:
            raise CheckFailed(name, f"on input {desc} — {n / ids.numel():.0%} of the positions "
                                    "have a label (not -100), so almost every token would carry "
                                    "a loss",
                              hint="labels must be -100 at every position that was not chosen: "
                                   "only the ~15% chosen positions carry a loss (start from a "
                                   "tensor full of -100)")
        if bool((chosen & ~ordinary).any()):
            raise CheckFailed(name, f"on input {desc} — a special token (one of special_ids) was "
                                    "chosen",
                              hint="never choose special tokens: exclude positions whose id is "
                                   "in special_ids before drawing (e.g. torch.isin(input_ids, "
                                   "...))")
        wrong_label = chosen & (labels != ids)
        if bool(wrong_label.any()):
            as_input = bool((labels[chosen] == inputs[chosen]).all())
            raise CheckFailed(name, f"on input {desc} — at {int(wrong_label.sum())} chosen "
                                    "positions the label is not the original token",
                              hint=("labels hold the ORIGINAL token (what the model must "
                                    "recover), not the corrupted input: build labels from "
                                    "input_ids before masking" if as_input else
                                    "at a chosen position the label is the original token "
                                    "input_ids[t]"))
        touched = ~chosen & (inputs != ids)
        if bool(touched.any()):
            raise CheckFailed(name, f"on input {desc} — the input changed at "
                                    f"{int(touched.sum())} positions that have no label",
                              hint="only chosen positions are corrupted; apply the 80/10/10 "
                                   "split to the chosen positions only (AND with the chosen "
                                   "mask)")
        _check_random_ids(name, desc, ids, inputs, chosen, _MLM_V, specials)
        n_ord_all += n_ord
        n_chosen_all += n
        n_masked_all += int((chosen & (inputs == _MLM_MASK)).sum())
        n_kept_all += int((chosen & (inputs == ids)).sum())
    n_random_all = n_chosen_all - n_masked_all - n_kept_all
    seeds = f"{len(_MLM_SEEDS)} seeded batches of input_ids (64, 256) (seeds {_MLM_SEEDS.start}"\
            f"..{_MLM_SEEDS.stop - 1}), mask_id={_MLM_MASK}, vocab_size={_MLM_V}, prob=0.15, " \
            f"special_ids={specials}"

    # The share of chosen tokens: Binomial(ordinary tokens, 0.15).
    lo, hi = _binomial_interval(n_ord_all, 0.15, _ALPHA)
    if not lo <= n_chosen_all <= hi:
        raise CheckFailed(name, f"on input {seeds} — {n_chosen_all / n_ord_all:.1%} of the "
                                f"{n_ord_all} ordinary tokens were chosen, expected about 15% "
                                f"(a correct choice lands in {lo / n_ord_all:.1%} .. "
                                f"{hi / n_ord_all:.1%})",
                          hint="choose each non-special position independently with probability "
                               "prob (the argument, 0.15 here)")
    # The split of the chosen tokens. A random replacement is drawn among the 61 ordinary ids
    # (1..61), so it equals the original token with probability 1/61 and then counts as kept.
    coincide = 1 / (_MLM_V - len(specials) - 1)
    shares = (n_masked_all / n_chosen_all, n_random_all / n_chosen_all,
              n_kept_all / n_chosen_all)
    observed = (f"{shares[0]:.1%} of the {n_chosen_all} chosen tokens became the mask token, "
                f"{shares[1]:.1%} a random other token, {shares[2]:.1%} stayed unchanged; "
                "expected about 80% mask / 10% random / 10% unchanged")
    expected_p = (0.8, 0.1 * (1 - coincide), 0.1 * (1 + coincide))
    for count, p in zip((n_masked_all, n_random_all, n_kept_all), expected_p, strict=True):
        lo, hi = _binomial_interval(n_chosen_all, p, _ALPHA)
        if lo <= count <= hi:
            continue
        hint = None
        for (a, b, c), split_hint in _WRONG_SPLITS:
            like = (a, b * (1 - coincide), c + b * coincide)
            if max(abs(x - y) for x, y in zip(like, shares, strict=True)) < 0.02:
                hint = split_hint
                break
        raise CheckFailed(name, f"on input {seeds} — {observed}", hint=hint or (
            "decide per chosen position with ONE uniform draw split into three intervals of "
            "80 %, 10 % and 10 % (mask / random ordinary id / unchanged)"))
    assert first is not None
    ids, inputs, labels, desc = first

    # --- random ids are never mask_id. A replacement that draws mask_id looks like a mask, so
    # only the count shows it: with 2 ordinary ids (1, 2) and mask_id 3, a draw among 1..3
    # turns a third of the random 10 % into extra masks (83.3 % masks instead of 80 %).
    few = torch.randint(1, 3, (128, 256), generator=torch.Generator().manual_seed(11))
    f_inputs, f_labels, f_desc = run(few, seed=11, prob=1.0, sp=(0,), mask_id=3, vocab_size=4,
                                     what="of shape (128, 256) holding only the ordinary ids 1 "
                                          "and 2")
    cases += 1
    f_chosen = f_labels != -100
    _check_random_ids(name, f_desc, few, f_inputs, f_chosen, 4, (0,), mask_id=3)
    n_f, n_f_masked = int(f_chosen.sum()), int((f_chosen & (f_inputs == 3)).sum())
    if n_f and n_f_masked > _binomial_interval(n_f, 0.8, _ALPHA)[1]:
        raise CheckFailed(name, f"on input {f_desc} — {n_f_masked / n_f:.1%} of the chosen "
                                "tokens became mask_id, expected about 80 % (a random "
                                "replacement that may draw mask_id adds a third of the "
                                "random 10 % here)",
                          hint="draw the random replacement among the ordinary ids only: "
                               "leave out special_ids AND mask_id")

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
    ids2 = _mlm_case(1, (32, 256))
    inputs2, labels2, desc2 = run(ids2, seed=1, prob=0.5)
    cases += 1
    n_ord2 = int((~torch.isin(ids2, torch.tensor(specials))).sum())
    n2 = int((labels2 != -100).sum())
    lo, hi = _binomial_interval(n_ord2, 0.5, _ALPHA)
    if not lo <= n2 <= hi:
        raise CheckFailed(name, f"on input {desc2} — {n2 / n_ord2:.1%} of the ordinary tokens "
                                "were chosen, expected about 50%",
                          hint="use the prob argument, not a hard-coded 0.15")

    # --- random replacements are ordinary tokens: with half of this vocabulary special,
    # ids drawn from the whole vocabulary are special about half of the time (~200 draws)
    sp_many = (0, 1, 2, 3, 4, 5)
    ids_s = torch.randint(6, 11, (64, 64), generator=torch.Generator().manual_seed(5))
    ids_s[:, ::9] = 0
    inputs_s, labels_s, desc_s = run(ids_s, seed=5, prob=0.5, sp=sp_many, mask_id=11,
                                     vocab_size=12,
                                     what="of shape (64, 64) holding ids 6..10 and some 0s")
    cases += 1
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


def _flat_problem(got: Any) -> str | None:
    """A specific hint when a list the docstring wants flat holds lists or strings."""
    items = got if isinstance(got, list) else []
    if any(isinstance(x, str) for x in items):
        return ("the special ids are ints, not strings: use the pre_id / suf_id / mid_id "
                "arguments (a flat list of ints)")
    if any(isinstance(x, (list, tuple)) for x in items):
        return ("must be a flat list of ints: extend it with a span's tokens, do not append "
                "the span as one list")
    return None


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


@exercise("span_corrupt", hints=(
    "Walk through the tokens once, keeping a span counter k. A kept token goes to inputs; the "
    "FIRST token of a run of noise adds sentinel_ids[k] to both lists (then k grows); every "
    "noise token goes to targets. After the loop the targets get one more sentinel. Return "
    "the tuple (inputs, targets) of two new lists of ints.",
    "A noise token starts a new span when it is at position 0 or when the token before it was "
    "not noise. The closing sentinel is the next unused one, sentinel_ids[k] with k the number "
    "of spans. Try the docstring's example by hand: ids [1, 2, 3, 4, 5], mask [0, 1, 1, 0, 1].",
))
def check_span_corrupt(span_corrupt: Callable[..., Any]) -> int:
    """Exact comparison with `course.objectives.span_corrupt` on hand-picked and random masks."""
    from course.objectives import span_corrupt as reference

    name = "span_corrupt"
    cases = 0
    for ids, mask in _span_cases():
        desc = f"ids={show(ids)}, noise_mask={show([int(b) for b in mask])}, sentinel_ids={show(_SENT)}"
        got = _call(name, span_corrupt, ids, mask, _SENT, inputs_desc=desc,
                    in_place_hint="build inputs and targets as new lists; ids, noise_mask and "
                                  "sentinel_ids must stay as they were")
        cases += 1
        flat = None
        if isinstance(got, tuple) and len(got) == 2:
            flat = next((f"{what} {p}" for what, part in zip(("inputs", "targets"), got,
                                                            strict=True)
                         if (p := _flat_problem(part))), None)
        expect_contract(name, desc, tuple[list[int], list[int]], got, hint=flat or (
            "return the tuple (inputs, targets), each a flat list of ints (not tensors)"))
        g_in, g_tg = got
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


@exercise("prefix_lm_batch", hints=(
    "Two things: a (T, T) boolean mask that starts as the causal mask and additionally lets "
    "every query read every key of the prefix, and labels that are a copy of ids with -100 "
    "over the prefix positions. Return the tuple (attn_mask, labels).",
    "torch.ones(T, T, dtype=torch.bool).tril() is the causal mask; the prefix keys are its "
    "first prefix_len COLUMNS (mask[i, j]: query i, key j). The model shifts the labels by "
    "itself: do not shift them, and clone ids before writing -100.",
))
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
        desc = f"ids={show(ids)}, prefix_len={P}"
        got = _call(name, prefix_lm_batch, ids, P, inputs_desc=desc,
                    in_place_hint="write the -100s into a copy of ids (clone it first), or the "
                                  "input ids themselves get overwritten")
        cases += 1
        expect_contract(name, desc, tuple[torch.Tensor, torch.Tensor], got,
                        hint="return the tuple (attn_mask, labels): a boolean (T, T) tensor and "
                             "a tensor like ids")
        mask, labels = got
        if mask.dtype != torch.bool:
            raise CheckFailed(name, f"on input {desc} — attn_mask has dtype {mask.dtype}",
                              hint="a boolean mask: True = may attend (compare with `!= 0` or "
                                   "build it from torch.ones(T, T, dtype=torch.bool))")
        expected = prefix_lm_mask(T, P)
        if mask.shape != (T, T):
            raise CheckFailed(name, f"on input {desc} — attn_mask has shape {tuple(mask.shape)}, "
                                    f"expected ({T}, {T})",
                              hint="one (T, T) mask, shared by every row of the batch: row i "
                                   "(the query) says which keys j it may read")
        if not torch.equal(mask, expected):
            if mask.shape == expected.shape and torch.equal(mask, causal_mask(T)):
                hint = ("this is the causal mask: inside the prefix, positions must see each other "
                        "both ways (every query may see all the prefix keys)")
            elif mask.shape == expected.shape and torch.equal(mask, bidirectional_mask(T)):
                hint = ("the mask is bidirectional everywhere: after the prefix attention must stay "
                        "causal, or each suffix token could read the token it has to predict")
            elif mask.shape == expected.shape and torch.equal(mask, expected.T):
                hint = "the mask is transposed: row i (the query) says which keys j it may see"
            elif mask.shape == expected.shape and P < T and torch.equal(
                    mask, causal_mask(T) | (torch.arange(T)[:, None] < P)):
                hint = ("that opens whole ROWS: prefix positions would read the suffix (the "
                        "tokens to predict). Open the prefix COLUMNS instead (the keys: every "
                        "query may read every prefix key)")
            elif P > 0 and mask.shape == expected.shape and (
                    torch.equal(mask, prefix_lm_mask(T, P - 1)) or (P < T and torch.equal(mask, prefix_lm_mask(T, P + 1)))):
                hint = "off by one: the prefix is positions 0 .. prefix_len - 1"
            else:
                hint = ("start from the causal mask (lower triangle) and let every query see the "
                        "whole prefix: open the prefix COLUMNS")
            expect_equal(name, f"{desc} (attn_mask)", expected, mask, hint=hint)
        expected_labels = ids.clone()
        expected_labels[:, :P] = -100
        if labels.shape != ids.shape or labels.dtype != ids.dtype:
            raise CheckFailed(name, f"on input {desc} — labels have shape {tuple(labels.shape)} "
                                    f"and dtype {labels.dtype}, expected those of ids, "
                                    f"{tuple(ids.shape)} and {ids.dtype}",
                              hint="labels are a copy of ids (same shape and dtype) with -100 "
                                   "over the prefix")
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


@exercise("fim_psm", hints=(
    "Three pieces (prefix ids[:i], middle ids[i:j], suffix ids[j:]) and three special ids; "
    "PSM writes <PRE> prefix <SUF> suffix <MID> middle. Return one new flat list of ints.",
    "Lists concatenate with +; a single id becomes a list with [x]. The middle goes LAST "
    "because it is what the model writes. Check i == j (an empty middle) and i == 0 by hand.",
))
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
        got = _call(name, fim_psm, ids, i, j, _PRE, _SUF, _MID, inputs_desc=desc,
                    in_place_hint="build a new list; ids must stay as it was")
        expect_contract(name, desc, list[int], got, hint=_flat_problem(got) or (
            "return one new flat list of ints (a list, not a tuple or a tensor)"))
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
            hint = ("the right tokens in the wrong order: PSM is <PRE> prefix <SUF> suffix "
                    "<MID> middle")
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
            hint = ("the PSM layout is pre_id, the prefix ids[:i], suf_id, the suffix ids[j:], "
                    "mid_id, then the middle ids[i:j]")
        expect_equal(name, desc, expected, got, hint=hint)
    return len(cases_in)
