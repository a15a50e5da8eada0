"""The checks of lesson 09 (other objectives): the reference solutions pass, realistic wrong
solutions are rejected with the hint that names their mistake, placeholders are "not attempted"."""

from __future__ import annotations

import pytest
import torch
from lookalikes import AlwaysEqualList, AlwaysEqualTensor

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.objectives import fim_arrange, prefix_lm_batch, span_corrupt

# ------------------------------------------------------------------ reference solutions


def mlm_split(mask_p, random_p):
    """An MLM masker with the (mask, random, keep) split given for the chosen positions."""
    def fn(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
        special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
        chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        u = torch.rand(input_ids.shape, generator=generator)
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids and i != mask_id])
        random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
        inputs = input_ids.clone()
        inputs[chosen & (u < mask_p)] = mask_id
        swap = chosen & (u >= mask_p) & (u < mask_p + random_p)
        inputs[swap] = random_ids[swap]
        return inputs, labels
    return fn


# BERT's 80/10/10: the correct answer
mlm_mask_ok = mlm_split(0.8, 0.1)


def span_corrupt_ok(ids, noise_mask, sentinel_ids):
    inputs, targets, k = [], [], 0
    for t, tok in enumerate(ids):
        if not noise_mask[t]:
            inputs.append(tok)
            continue
        if t == 0 or not noise_mask[t - 1]:
            inputs.append(sentinel_ids[k])
            targets.append(sentinel_ids[k])
            k += 1
        targets.append(tok)
    return inputs, targets + [sentinel_ids[k]]


def prefix_lm_batch_ok(ids, prefix_len):
    T = ids.size(1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    mask[:, :prefix_len] = True
    labels = ids.clone()
    labels[:, :prefix_len] = -100
    return mask, labels


def fim_psm_ok(ids, i, j, pre_id, suf_id, mid_id):
    return [pre_id] + ids[:i] + [suf_id] + ids[j:] + [mid_id] + ids[i:j]


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


def failure(check_fn, fn) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        check_fn(fn)
    return info.value


def test_references_pass_with_one_line(capsys):
    for name, fn in (("mlm_mask", mlm_mask_ok), ("span_corrupt", span_corrupt_ok),
                     ("prefix_lm_batch", prefix_lm_batch_ok), ("fim_psm", fim_psm_ok)):
        getattr(check, name)(fn)
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1 and out[0].startswith(f"✓ {name}: ") and "cases passed" in out[0]


def test_package_implementations_pass(capsys):
    from course.objectives import mlm_mask

    check.mlm_mask(mlm_mask)
    check.span_corrupt(lambda ids, m, s: span_corrupt(ids, s, noise_mask=m))
    check.prefix_lm_batch(lambda ids, p: tuple(prefix_lm_batch(ids, p)))
    check.fim_psm(lambda ids, i, j, p, s, m: fim_arrange(ids[:i], ids[i:j], ids[j:], pre_id=p,
                                                         suf_id=s, mid_id=m))
    assert capsys.readouterr().out.count("✓") == 4


@pytest.mark.parametrize("name", ["mlm_mask", "span_corrupt", "prefix_lm_batch", "fim_psm"])
def test_stubs_are_not_attempted(name):
    with pytest.raises(NotAttempted):
        getattr(check, name)(stub)


# ---------------------------------------------------------------------------- mlm_mask


def mlm_all_masked(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    return input_ids.masked_fill(chosen, mask_id), labels


def mlm_labels_everywhere(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    inputs, _ = mlm_mask_ok(input_ids, mask_id, vocab_size, prob=prob, generator=generator,
                            special_ids=special_ids)
    return inputs, input_ids.clone()


def mlm_labels_but_specials(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    inputs, _ = mlm_mask_ok(input_ids, mask_id, vocab_size, prob=prob, generator=generator,
                            special_ids=special_ids)
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    return inputs, input_ids.masked_fill(special, -100)


def mlm_labels_from_corrupted(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    inputs, labels = mlm_mask_ok(input_ids, mask_id, vocab_size, prob=prob, generator=generator,
                                 special_ids=special_ids)
    return inputs, torch.where(labels != -100, inputs, labels)


def mlm_specials_chosen(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    return mlm_mask_ok(input_ids, mask_id, vocab_size, prob=prob, generator=generator, special_ids=())


def mlm_global_rng(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    return mlm_mask_ok(input_ids, mask_id, vocab_size, prob=prob, generator=torch.Generator().manual_seed(
        int(torch.randint(0, 2**31, ()))), special_ids=special_ids)


def mlm_fixed_prob(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    return mlm_mask_ok(input_ids, mask_id, vocab_size, prob=0.15, generator=generator, special_ids=special_ids)


def mlm_in_place(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    inputs, labels = mlm_mask_ok(input_ids, mask_id, vocab_size, prob=prob, generator=generator,
                                 special_ids=special_ids)
    input_ids.copy_(inputs)
    return input_ids, labels


def mlm_noise_everywhere(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    """Applies the 80/10/10 draw to every position, not only the chosen ones."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[(u < 0.1) & ~chosen] = mask_id
    inputs[chosen & (u < 0.8)] = mask_id
    return inputs, labels


def mlm_random_from_whole_vocab(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    """Hugging Face's collator does this: random tokens may be special ones."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (u < 0.8)] = mask_id
    swap = chosen & (u >= 0.8) & (u < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels


def mlm_mask_all_positions(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    """The 80/10/10 split drawn over every position instead of the chosen ones."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[(u < 0.8) & ~special] = mask_id
    swap = (u >= 0.8) & (u < 0.9) & ~special
    inputs[swap] = torch.randint(1, 62, input_ids.shape, generator=generator)[swap]
    return inputs, labels


def mlm_independent_draws(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    """Mask with p 0.8, then random with p 0.1 of the rest: 80% / 2% / 18% instead of 80/10/10."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    to_mask = chosen & (torch.rand(input_ids.shape, generator=generator) < 0.8)
    to_random = chosen & ~to_mask & (torch.rand(input_ids.shape, generator=generator) < 0.1)
    inputs = input_ids.masked_fill(to_mask, mask_id)
    inputs[to_random] = torch.randint(1, 62, input_ids.shape, generator=generator)[to_random]
    return inputs, labels


def mlm_random_pool_without(leave_out):
    """A masking whose random replacements are drawn from every id except `leave_out(mask_id,
    special_ids)`: one exclusion forgotten, the other kept."""
    def mlm(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
        special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
        chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        u = torch.rand(input_ids.shape, generator=generator)
        excluded = set(leave_out(mask_id, special_ids))
        pool = torch.tensor([i for i in range(vocab_size) if i not in excluded])
        random_ids = pool[torch.randint(len(pool), input_ids.shape, generator=generator)]
        inputs = input_ids.clone()
        inputs[chosen & (u < 0.8)] = mask_id
        swap = chosen & (u >= 0.8) & (u < 0.9)
        inputs[swap] = random_ids[swap]
        return inputs, labels
    return mlm


mlm_mask_not_excluded = mlm_random_pool_without(lambda mask_id, special_ids: [mask_id])
mlm_mask_id_not_excluded = mlm_random_pool_without(lambda mask_id, special_ids: special_ids)


@pytest.mark.parametrize(("wrong", "hint"), [
    (mlm_random_from_whole_vocab, "draw the random token among the ordinary ids only"),
    (mlm_mask_id_not_excluded, "leave out special_ids AND mask_id"),
    (mlm_mask_not_excluded, "draw the random token among the ordinary ids only"),
    (mlm_mask_all_positions, "only chosen positions are corrupted"),
    (mlm_independent_draws, "Split ONE uniform draw per chosen position"),
    (mlm_all_masked, "only 80% become mask_id"),
    (mlm_labels_everywhere, "labels must be -100 at every position that was not chosen"),
    (mlm_labels_but_specials, "labels must be -100 at every position that was not chosen"),
    (mlm_labels_from_corrupted, "ORIGINAL token"),
    (mlm_specials_chosen, "never choose special tokens"),
    (mlm_global_rng, "draw every random number from `generator`"),
    (mlm_fixed_prob, "use the prob argument"),
    (mlm_in_place, "changed its argument 1 in place"),
    (mlm_noise_everywhere, "only chosen positions are corrupted"),
])
def test_mlm_mask_wrong_solutions_get_the_matching_hint(wrong, hint):
    e = failure(check.mlm_mask, wrong)
    assert e.exercise == "mlm_mask"
    assert hint in str(e), str(e)


def test_mlm_mask_wrong_return_values_are_explained():
    e = failure(check.mlm_mask, lambda ids, *a, **k: None)
    assert "forget to `return`" in str(e)
    e = failure(check.mlm_mask, lambda ids, *a, **k: (ids.float(), ids))
    assert "dtype" in str(e)
    e = failure(check.mlm_mask, lambda ids, *a, **k: list(mlm_mask_ok(ids, *a, **k)))
    assert "expected tuple[torch.Tensor, torch.Tensor], got a list" in str(e)
    e = failure(check.mlm_mask, lambda ids, *a, **k: tuple(
        t.as_subclass(AlwaysEqualTensor) for t in mlm_mask_ok(ids, *a, **k)))
    assert "AlwaysEqualTensor" in str(e)
    e = failure(check.mlm_mask, lambda ids, *a, **k: tuple(t.int() for t in mlm_mask_ok(ids, *a, **k)))
    assert "dtype torch.int32" in str(e)


@pytest.mark.parametrize(("mask_p", "random_p", "named"), [
    (0.80, 0.15, "80/15/5 split"), (0.85, 0.10, "85/10/5 split"), (0.75, 0.15, "75/15/10 split"),
])
def test_mlm_mask_wrong_splits_are_rejected_and_named(mask_p, random_p, named):
    e = failure(check.mlm_mask, mlm_split(mask_p, random_p))
    assert named in str(e), str(e)
    assert "seeded batches" in str(e) and "expected about 80% mask / 10% random / 10% unchanged" in str(e)


def mlm_other_draw_order(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    """Correct, drawing in another order: random ids first, then the split, then the choice."""
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids and i != mask_id])
    random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    u = torch.rand(input_ids.shape, generator=generator)
    special = torch.isin(input_ids, torch.tensor([*special_ids, mask_id], dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    inputs = input_ids.clone()
    inputs[chosen & (u >= 0.2)] = mask_id  # the top 80 % of u
    swap = chosen & (u < 0.1)
    inputs[swap] = random_ids[swap]
    return inputs, input_ids.masked_fill(~chosen, -100)


def mlm_one_uniform(input_ids, mask_id, vocab_size, *, prob=0.15, generator, special_ids=()):
    """Correct with ONE uniform per position: u < prob chooses, u / prob splits 80/10/10."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    u = torch.rand(input_ids.shape, generator=generator)
    chosen = (u < prob) & ~special
    v = u / prob
    flat = input_ids.flatten().tolist()
    ordinary = [i for i in range(vocab_size) if i not in special_ids and i != mask_id]
    out = list(flat)
    for t, (c, w) in enumerate(zip(chosen.flatten().tolist(), v.flatten().tolist(), strict=True)):
        if c and w < 0.8:
            out[t] = mask_id
        elif c and w < 0.9:
            out[t] = ordinary[int(torch.randint(len(ordinary), (), generator=generator))]
    inputs = torch.tensor(out, dtype=input_ids.dtype).reshape(input_ids.shape)
    return inputs, torch.where(chosen, input_ids, torch.full_like(input_ids, -100))


@pytest.mark.parametrize("fn", [mlm_other_draw_order, mlm_one_uniform])
def test_mlm_mask_correct_alternatives_pass(fn, capsys):
    check.mlm_mask(fn)
    assert capsys.readouterr().out.startswith("✓ mlm_mask: ")


def test_mlm_mask_acceptance_intervals_are_tight_enough_and_safe_enough():
    import math

    from course.checks.objectives import _ALPHA, _binomial_interval

    # about the number of chosen positions the check sees
    n = 17_000
    coincide = 1 / 61
    for p_right, wrong in ((0.8, (0.75, 0.85)), (0.1 * (1 - coincide), (0.05 * (1 - coincide),
                                                                       0.15 * (1 - coincide))),
                           (0.1 * (1 + coincide), (0.05 + 0.1 * coincide, 0.05 + 0.15 * coincide))):
        lo, hi = _binomial_interval(n, p_right, _ALPHA)
        sd = math.sqrt(n * p_right * (1 - p_right))
        assert lo < n * p_right < hi and (hi - lo) / sd < 15  # about +-6.5 sd: not wider
        for q in wrong:  # each wrong split's mean is > 8 of its own sd outside the interval
            sd_q = math.sqrt(n * q * (1 - q))
            assert not lo - 8 * sd_q <= n * q <= hi + 8 * sd_q
    # the exact tails are what they claim
    lo, hi = _binomial_interval(200, 0.5, 0.01)
    tail = sum(math.comb(200, k) for k in range(lo)) / 2 ** 200
    assert tail <= 0.01 < tail + math.comb(200, lo) / 2 ** 200


def test_hint_levels_exist():
    from course.checks._core import HINTS

    for name in ("mlm_mask", "span_corrupt", "prefix_lm_batch", "fim_psm"):
        assert len(HINTS[name]) == 2, name


# ---------------------------------------------------------------------------- span_corrupt


def span_one_sentinel(ids, noise_mask, sentinel_ids):
    inputs, targets = span_corrupt_ok(ids, noise_mask, [sentinel_ids[0]] * len(sentinel_ids))
    return inputs, targets


def span_no_final(ids, noise_mask, sentinel_ids):
    inputs, targets = span_corrupt_ok(ids, noise_mask, sentinel_ids)
    return inputs, targets[:-1]


def span_targets_without_sentinels(ids, noise_mask, sentinel_ids):
    inputs, _ = span_corrupt_ok(ids, noise_mask, sentinel_ids)
    return inputs, [t for t, m in zip(ids, noise_mask, strict=True) if m]


def span_per_token(ids, noise_mask, sentinel_ids):
    inputs, targets, k = [], [], 0
    for tok, m in zip(ids, noise_mask, strict=True):
        if m:
            inputs.append(sentinel_ids[k])
            targets += [sentinel_ids[k], tok]
            k += 1
        else:
            inputs.append(tok)
    return inputs, targets + [sentinel_ids[k]]


def span_nested_lists(ids, noise_mask, sentinel_ids):
    inputs, targets = span_corrupt_ok(ids, noise_mask, sentinel_ids)
    return inputs, [targets]


def span_final_is_last_of_list(ids, noise_mask, sentinel_ids):
    inputs, targets = span_corrupt_ok(ids, noise_mask, sentinel_ids)
    return inputs, targets[:-1] + [sentinel_ids[-1]]


def span_final_reused(ids, noise_mask, sentinel_ids):
    inputs, targets, k = [], [], -1
    for t, tok in enumerate(ids):
        if not noise_mask[t]:
            inputs.append(tok)
            continue
        if t == 0 or not noise_mask[t - 1]:
            k += 1
            inputs.append(sentinel_ids[k])
            targets.append(sentinel_ids[k])
        targets.append(tok)
    return inputs, targets + [sentinel_ids[max(k, 0)]]


def span_counting_from_one(ids, noise_mask, sentinel_ids):
    return span_corrupt_ok(ids, noise_mask, sentinel_ids[1:])


def test_span_corrupt_contract_and_mutation():
    e = failure(check.span_corrupt, lambda i, m, s: list(span_corrupt_ok(i, m, s)))
    assert "expected tuple[list[int], list[int]], got a list" in str(e)
    e = failure(check.span_corrupt, lambda i, m, s: tuple(torch.tensor(x) for x in span_corrupt_ok(i, m, s)))
    assert "got a tuple holding a torch.Tensor" in str(e)
    e = failure(check.span_corrupt, lambda i, m, s: tuple(AlwaysEqualList(x) for x in span_corrupt_ok(i, m, s)))
    assert "AlwaysEqualList" in str(e)

    def pops_mask(ids, noise_mask, sentinel_ids):
        out = span_corrupt_ok(ids, noise_mask, sentinel_ids)
        noise_mask.reverse()
        return out

    e = failure(check.span_corrupt, pops_mask)
    assert "changed its argument 2 in place" in str(e)


def test_prefix_lm_batch_contract():
    e = failure(check.prefix_lm_batch, lambda ids, p: list(prefix_lm_batch_ok(ids, p)))
    assert "expected tuple[torch.Tensor, torch.Tensor], got a list" in str(e)
    e = failure(check.prefix_lm_batch, lambda ids, p: (
        prefix_lm_batch_ok(ids, p)[0].expand(ids.size(0), -1, -1), prefix_lm_batch_ok(ids, p)[1]))
    assert "attn_mask has shape (2, 6, 6), expected (6, 6)" in str(e)
    e = failure(check.prefix_lm_batch, lambda ids, p: (prefix_lm_batch_ok(ids, p)[0],
                                                        prefix_lm_batch_ok(ids, p)[1].int()))
    assert "labels have shape" in str(e) and "torch.int32" in str(e)
    e = failure(check.prefix_lm_batch, lambda ids, p: tuple(
        t.as_subclass(AlwaysEqualTensor) for t in prefix_lm_batch_ok(ids, p)))
    assert "AlwaysEqualTensor" in str(e)


def test_fim_psm_contract_and_mutation():
    e = failure(check.fim_psm, lambda *a: tuple(fim_psm_ok(*a)))
    assert "expected list[int], got a tuple" in str(e)
    e = failure(check.fim_psm, lambda *a: torch.tensor(fim_psm_ok(*a)))
    assert "expected list[int], got a torch.Tensor" in str(e)
    e = failure(check.fim_psm, lambda *a: AlwaysEqualList(fim_psm_ok(*a)))
    assert "AlwaysEqualList" in str(e)

    def appends(ids, i, j, pre_id, suf_id, mid_id):
        out = fim_psm_ok(ids, i, j, pre_id, suf_id, mid_id)
        ids.append(mid_id)
        return out

    e = failure(check.fim_psm, appends)
    assert "changed its argument 1 in place" in str(e)


@pytest.mark.parametrize(("wrong", "hint"), [
    (span_final_is_last_of_list, "the closing sentinel is the next unused one"),
    (span_final_reused, "the closing sentinel is the next unused one"),
    (span_counting_from_one, "the first span gets sentinel_ids[0]"),
    (span_one_sentinel, "every span needs its own sentinel"),
    (span_no_final, "end the targets with one more sentinel"),
    (span_targets_without_sentinels, "the targets need the sentinels too"),
    (span_per_token, "replace the whole run by ONE sentinel"),
    (span_nested_lists, "flat list of ints"),
])
def test_span_corrupt_wrong_solutions_get_the_matching_hint(wrong, hint):
    e = failure(check.span_corrupt, wrong)
    assert e.exercise == "span_corrupt"
    assert hint in str(e), str(e)


# ---------------------------------------------------------------------------- prefix_lm_batch


def prefix_causal(ids, prefix_len):
    T = ids.size(1)
    labels = ids.clone()
    labels[:, :prefix_len] = -100
    return torch.ones(T, T, dtype=torch.bool).tril(), labels


def prefix_bidirectional(ids, prefix_len):
    T = ids.size(1)
    labels = ids.clone()
    labels[:, :prefix_len] = -100
    return torch.ones(T, T, dtype=torch.bool), labels


def prefix_transposed(ids, prefix_len):
    mask, labels = prefix_lm_batch_ok(ids, prefix_len)
    return mask.T, labels


def prefix_labels_kept(ids, prefix_len):
    mask, _ = prefix_lm_batch_ok(ids, prefix_len)
    return mask, ids.clone()


def prefix_in_place(ids, prefix_len):
    mask, _ = prefix_lm_batch_ok(ids, prefix_len)
    labels = ids
    labels[:, :prefix_len] = -100
    return mask, labels


def prefix_float_mask(ids, prefix_len):
    mask, labels = prefix_lm_batch_ok(ids, prefix_len)
    return mask.float(), labels


def prefix_labels_swapped(ids, prefix_len):
    mask, _ = prefix_lm_batch_ok(ids, prefix_len)
    labels = ids.clone()
    labels[:, prefix_len:] = -100
    return mask, labels


def prefix_rows_opened(ids, prefix_len):
    T = ids.size(1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    mask[:prefix_len] = True  # rows, not columns: the prefix reads the suffix
    labels = ids.clone()
    labels[:, :prefix_len] = -100
    return mask, labels


def prefix_mask_off_by_one(ids, prefix_len):
    T = ids.size(1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    mask[:, :prefix_len + 1] = True
    labels = ids.clone()
    labels[:, :prefix_len] = -100
    return mask, labels


def prefix_labels_shifted_by_hand(ids, prefix_len):
    mask, _ = prefix_lm_batch_ok(ids, prefix_len)
    labels = ids.clone()
    labels[:, :max(prefix_len - 1, 0)] = -100
    return mask, labels


@pytest.mark.parametrize(("wrong", "hint"), [
    (prefix_rows_opened, "opens whole ROWS"),
    (prefix_mask_off_by_one, "off by one: the prefix is positions 0 .. prefix_len - 1"),
    (prefix_labels_shifted_by_hand, "Do not shift the labels yourself"),
    (prefix_causal, "this is the causal mask"),
    (prefix_bidirectional, "the mask is bidirectional everywhere"),
    (prefix_transposed, "transposed"),
    (prefix_labels_kept, "the prefix must carry no loss"),
    (prefix_in_place, "changed its argument 1 in place"),
    (prefix_float_mask, "a boolean mask"),
    (prefix_labels_swapped, "the other way round"),
])
def test_prefix_lm_batch_wrong_solutions_get_the_matching_hint(wrong, hint):
    e = failure(check.prefix_lm_batch, wrong)
    assert e.exercise == "prefix_lm_batch"
    assert hint in str(e), str(e)


# ---------------------------------------------------------------------------- fim_psm


def fim_swapped(ids, i, j, pre_id, suf_id, mid_id):
    return [pre_id] + ids[:i] + [suf_id] + ids[i:j] + [mid_id] + ids[j:]


def fim_spm(ids, i, j, pre_id, suf_id, mid_id):
    return [pre_id, suf_id] + ids[j:] + [mid_id] + ids[:i] + ids[i:j]


def fim_no_specials(ids, i, j, pre_id, suf_id, mid_id):
    return ids[:i] + ids[j:] + ids[i:j]


def fim_off_by_one(ids, i, j, pre_id, suf_id, mid_id):
    return [pre_id] + ids[:i] + [suf_id] + ids[j + 1:] + [mid_id] + ids[i:j]


def fim_no_mid(ids, i, j, pre_id, suf_id, mid_id):
    return [pre_id] + ids[:i] + [suf_id] + ids[j:] + ids[i:j]


def fim_suf_twice(ids, i, j, pre_id, suf_id, mid_id):
    return [pre_id] + ids[:i] + [suf_id] + ids[j:] + [suf_id] + ids[i:j]


def fim_string_specials(ids, i, j, pre_id, suf_id, mid_id):
    return ["<PRE>"] + ids[:i] + ["<SUF>"] + ids[j:] + ["<MID>"] + ids[i:j]


@pytest.mark.parametrize(("wrong", "hint"), [
    (fim_no_mid, "check mid_id"),
    (fim_suf_twice, "each of the three special tokens appears exactly once"),
    (fim_string_specials, "the special ids are ints, not strings"),
    (fim_swapped, "suffix and middle are swapped"),
    (fim_spm, "that is the SPM order"),
    (fim_no_specials, "add the three special tokens"),
    (fim_off_by_one, "off by one"),
])
def test_fim_psm_wrong_solutions_get_the_matching_hint(wrong, hint):
    e = failure(check.fim_psm, wrong)
    assert e.exercise == "fim_psm"
    assert hint in str(e), str(e)
