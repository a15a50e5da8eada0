"""The checks of lesson 07: correct code passes, the usual mistakes fail with the right hint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lookalikes import AlwaysEqualFloat as AlwaysEqual

from course import checks as check
from course import evaluate
from course.checks import CheckFailed, NotAttempted
from course.checks.perplexity import reference_bigram_nll, reference_perplexity

# ------------------------------------------------------------------------ perplexity


def ppl_by_hand(logits, labels):
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    target = labels[:, 1:]
    counted = target != -100
    nll = -logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return math.exp(nll[counted].mean().item())


def ppl_with_cross_entropy(logits, labels):
    V = logits.size(-1)
    return torch.exp(F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                      ignore_index=-100)).item()


def ppl_returns_0dim_tensor(logits, labels):
    V = logits.size(-1)
    return torch.exp(F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                      ignore_index=-100))  # forgot .item(): the docstring says float


def ppl_numpy_float32(logits, labels):
    return np.float32(ppl_by_hand(logits, labels))


def ppl_no_shift(logits, labels):
    V = logits.size(-1)
    return math.exp(F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)).item())


def ppl_all_positions(logits, labels):
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    counted = target != -100
    nll = -logp.gather(-1, target.clamp(min=0)[..., None])[..., 0] * counted
    return math.exp(nll.mean().item())  # zeros of the ignored positions dilute the mean


def ppl_row_means(logits, labels):
    rows = [F.cross_entropy(logits[b, :-1], labels[b, 1:]) for b in range(len(logits))]
    return math.exp(torch.stack(rows).mean().item())


def ppl_returns_nll(logits, labels):
    return math.log(ppl_by_hand(logits, labels))


@pytest.mark.parametrize("fn", [ppl_by_hand, ppl_with_cross_entropy, ppl_numpy_float32])
def test_perplexity_accepts_correct_code(fn, capsys):
    check.perplexity_from_logits(fn)
    assert capsys.readouterr().out.startswith("✓ perplexity_from_logits: 6 cases passed")


@pytest.mark.parametrize("fn, hint", [
    (ppl_no_shift, "predicts the NEXT token"),
    (ppl_all_positions, "divided by every position, ignored ones included"),
    (ppl_row_means, "averaged each row first"),
    (ppl_returns_nll, "perplexity is exp(mean NLL)"),
])
def test_perplexity_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.perplexity_from_logits(fn)
    assert hint in str(info.value)


def test_perplexity_reference_agrees_with_the_package_and_the_model_convention():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 9, 5), torch.randint(0, 5, (3, 9))
    labels[2, 5:] = -100
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1))
    assert reference_perplexity(logits, labels) == pytest.approx(evaluate.perplexity(nll.item()))


def test_perplexity_rejects_tensors_and_other_types_as_the_docstring_says_float():
    with pytest.raises(CheckFailed, match="expected float") as info:
        check.perplexity_from_logits(ppl_returns_0dim_tensor)
    assert "call .item()" in str(info.value)
    with pytest.raises(CheckFailed, match="expected float") as info:
        check.perplexity_from_logits(lambda logits, labels: logits[:, :-1].logsumexp(-1))
    assert "reduce to a single number" in str(info.value)
    with pytest.raises(CheckFailed, match="expected float, got a list"):
        check.perplexity_from_logits(lambda logits, labels: [ppl_by_hand(logits, labels)])
    with pytest.raises(CheckFailed, match="expected float, got an AlwaysEqual"):
        check.perplexity_from_logits(lambda logits, labels: AlwaysEqual(1.0))


@pytest.mark.parametrize("edit, argument", [
    (lambda logits, labels: labels.masked_fill_(labels == -100, 0), "argument 2"),
    (lambda logits, labels: logits.sub_(logits.amax(-1, keepdim=True)), "argument 1"),
])
def test_perplexity_in_place_edits_are_rejected(edit, argument):
    def edits(logits, labels):
        edit(logits, labels)
        return ppl_by_hand(logits, labels)

    with pytest.raises(CheckFailed, match=f"changed its {argument} in place"):
        check.perplexity_from_logits(edits)


def test_perplexity_stub_is_not_attempted():
    def stub(logits, labels):
        raise NotImplementedError("Exercise: perplexity")

    with pytest.raises(NotAttempted):
        check.perplexity_from_logits(stub)


# --------------------------------------------------------------------- bits per byte


def test_bits_per_byte_accepts_correct_code_and_matches_the_package(capsys):
    check.bits_per_byte(lambda total, n: total / (math.log(2) * n))
    check.bits_per_byte(evaluate.bits_per_byte)
    check.bits_per_byte(lambda total, n: np.float32(total) / np.float32(math.log(2) * n))
    check.bits_per_byte(lambda total, n: (torch.tensor(total, dtype=torch.float32)
                                          / (math.log(2) * n)).item())
    check.bits_per_byte(lambda total, n: total / math.log(2) / n)  # another order
    assert capsys.readouterr().out.count("✓ bits_per_byte: 6 cases passed") == 5


def test_bits_per_byte_rejects_tensors_as_the_docstring_says_float():
    with pytest.raises(CheckFailed, match="expected float") as info:
        check.bits_per_byte(lambda total, n: torch.tensor(total) / (math.log(2) * n))
    assert "call .item()" in str(info.value)
    with pytest.raises(CheckFailed, match="expected float, got a tuple"):
        check.bits_per_byte(lambda total, n: (total / (math.log(2) * n),))
    with pytest.raises(CheckFailed, match="expected float, got an AlwaysEqual"):
        check.bits_per_byte(lambda total, n: AlwaysEqual(0.0))


def test_hint_levels_exist():
    from course.checks._core import HINTS

    for name in ("perplexity_from_logits", "bits_per_byte", "bigram_nll"):
        assert len(HINTS[name]) == 2, name
    assert "total_nll_nats / (" not in " ".join(HINTS["bits_per_byte"])


@pytest.mark.parametrize("fn, hint", [
    (lambda total, n: total * math.log(2) / n, "the conversion goes the other way"),
    (lambda total, n: total / n, "that is nats per byte"),
    (lambda total, n: total / (math.log(10) * n), "not by ln 10"),
    (lambda total, n: total / (math.log(2) * n * 8), "per BYTE, not per bit"),
])
def test_bits_per_byte_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.bits_per_byte(fn)
    assert hint in str(info.value)


def test_bits_per_byte_stub_is_not_attempted_and_none_is_explained():
    def stub(total, n):
        raise NotImplementedError

    with pytest.raises(NotAttempted):
        check.bits_per_byte(stub)
    with pytest.raises(CheckFailed, match="forget to `return`"):
        check.bits_per_byte(lambda total, n: None)


# ------------------------------------------------------------------- bigram model


def bigram_by_counts(train_ids, val_ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1),
                      accumulate=True)
    probs = (counts + 1) / (counts + 1).sum(dim=1, keepdim=True)
    return -probs.log()[val_ids[:-1], val_ids[1:]].mean().item()


def bigram_python_dicts(train_ids, val_ids, vocab_size):
    from collections import Counter

    pairs = Counter(zip(train_ids.tolist()[:-1], train_ids.tolist()[1:], strict=True))
    starts = Counter(train_ids.tolist()[:-1])
    val = val_ids.tolist()
    nll = [-math.log((pairs[(a, b)] + 1) / (starts[a] + vocab_size))
           for a, b in zip(val[:-1], val[1:], strict=True)]
    return sum(nll) / len(nll)


def bigram_no_smoothing(train_ids, val_ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1),
                      accumulate=True)
    probs = counts / counts.sum(dim=1, keepdim=True)
    return -probs.log()[val_ids[:-1], val_ids[1:]].mean().item()


def bigram_plus_one_denominator(train_ids, val_ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1),
                      accumulate=True)
    probs = (counts + 1) / (counts.sum(dim=1, keepdim=True) + 1)
    return -probs.log()[val_ids[:-1], val_ids[1:]].mean().item()


def bigram_transposed(train_ids, val_ids, vocab_size):
    counts = torch.ones(vocab_size, vocab_size)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1),
                      accumulate=True)
    probs = counts / counts.sum(dim=0, keepdim=True)
    return -probs.log()[val_ids[:-1], val_ids[1:]].mean().item()


def bigram_divides_by_len(train_ids, val_ids, vocab_size):
    return bigram_by_counts(train_ids, val_ids, vocab_size) * (len(val_ids) - 1) / len(val_ids)


def bigram_float32(train_ids, val_ids, vocab_size):
    return np.float32(bigram_by_counts(train_ids, val_ids, vocab_size))


def bigram_edits_val(train_ids, val_ids, vocab_size):
    out = bigram_by_counts(train_ids, val_ids, vocab_size)
    val_ids.zero_()
    return out


def test_bigram_contract_and_mutation():
    with pytest.raises(CheckFailed, match="expected float") as info:
        check.bigram_nll(lambda t, v, n: torch.tensor(bigram_by_counts(t, v, n)))
    assert "call .item()" in str(info.value)
    with pytest.raises(CheckFailed, match="changed its argument 2 in place"):
        check.bigram_nll(bigram_edits_val)


@pytest.mark.parametrize("fn", [bigram_by_counts, bigram_python_dicts, bigram_float32])
def test_bigram_accepts_correct_code(fn, capsys):
    check.bigram_nll(fn)
    assert capsys.readouterr().out.startswith("✓ bigram_nll: 5 cases passed")


@pytest.mark.parametrize("fn, hint", [
    (bigram_no_smoothing, "add one to every count"),
    (bigram_plus_one_denominator, "not by 1"),
    (bigram_transposed, "transposed"),
    (bigram_divides_by_len, "len(val_ids) - 1 predictions"),
])
def test_bigram_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.bigram_nll(fn)
    assert hint in str(info.value)


def test_bigram_reference_is_a_proper_distribution_and_matches_a_hand_computation():
    # train [0, 1, 0, 1, 1]: pairs (0,1) x2, (1,0) x1, (1,1) x1. Add-one, V = 2:
    # P(1|0) = 3/4, P(1|1) = 2/4, P(0|1) = 2/4. val [0, 1, 1, 0] scores those three.
    expected = -(math.log(3 / 4) + math.log(2 / 4) + math.log(2 / 4)) / 3
    got = reference_bigram_nll(torch.tensor([0, 1, 0, 1, 1]), torch.tensor([0, 1, 1, 0]), 2)
    assert got == pytest.approx(expected)


def test_bigram_stub_is_not_attempted():
    def stub(train_ids, val_ids, vocab_size):
        raise NotImplementedError

    with pytest.raises(NotAttempted):
        check.bigram_nll(stub)
