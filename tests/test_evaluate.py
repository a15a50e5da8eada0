"""Perplexity, bits per byte and strided evaluation against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course.errors import ConfigError
from course.evaluate import bits_per_byte, evaluate_nll, perplexity, strided_nll
from course.model import GPT, GPTConfig


class Uniform(torch.nn.Module):
    """Predicts every token with probability 1/V: perplexity must be exactly V."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, labels=None, **kw):
        return torch.zeros(*idx.shape, self.vocab) + 0 * self.dummy, None


def small_gpt(block: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, block_size=block, n_layer=1, n_head=2, n_embd=16)).eval()


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    ids = torch.randint(0, 50, (6, 10))
    res = evaluate_nll(Uniform(50), ids)
    assert res.n_tokens == 6 * 9  # the first position of each block is never predicted
    assert res.perplexity == pytest.approx(50.0)


def test_evaluate_nll_equals_shifted_cross_entropy_and_skips_ignored_labels():
    model = small_gpt()
    x = torch.randint(0, 13, (5, 8))
    y = x.clone()
    y[0, 5:] = -100
    y[3, :] = -100
    res = evaluate_nll(model, x, y, batch_size=2)
    with torch.no_grad():
        logits, _ = model(x)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 13), y[:, 1:].reshape(-1), ignore_index=-100,
                          reduction="sum")
    assert res.n_tokens == int((y[:, 1:] != -100).sum())
    assert res.nll_sum == pytest.approx(float(ref), rel=1e-5)
    with torch.no_grad():
        _, loss = model(x, y)
    assert res.mean_nll == pytest.approx(float(loss), rel=1e-5)


def test_bits_per_byte_counts_bytes_of_the_predicted_tokens():
    model = Uniform(4)
    x = torch.tensor([[0, 1, 2, 3]])
    lengths = torch.tensor([1, 2, 3, 0])  # token 3 is a special token: 0 bytes
    res = evaluate_nll(model, x, byte_lengths=lengths)
    assert res.n_bytes == 2 + 3 + 0
    assert res.bits_per_byte == pytest.approx(3 * math.log(4) / (math.log(2) * 5))
    assert bits_per_byte(math.log(2) * 8, 8) == pytest.approx(1.0)
    assert perplexity(1e6) == float("inf")


@pytest.mark.parametrize("stride", [1, 3, 5, 8])
def test_strided_nll_scores_every_token_once_with_the_documented_context(stride):
    B = 8
    model = small_gpt(B)
    ids = torch.randint(0, 13, (29,))
    res = strided_nll(model, ids, block_size=B, stride=stride)
    assert res.n_tokens == len(ids) - 1
    if stride == 1:  # every position p gets a full context: ids[max(0, p-B+1) : p]
        ref = 0.0
        for p in range(1, len(ids)):
            s = max(0, p - B + 1)
            with torch.no_grad():
                logits, _ = model(ids[s : p + 1][None])
            ref += float(F.cross_entropy(logits[0, -2], ids[p]))
        assert res.nll_sum == pytest.approx(ref, rel=1e-5)


def test_strided_nll_of_a_short_text_equals_one_forward_pass():
    model = small_gpt(8)
    ids = torch.randint(0, 13, (7,))
    res = strided_nll(model, ids, block_size=8, stride=4)
    direct = evaluate_nll(model, ids[None])
    assert res.n_tokens == direct.n_tokens == 6
    assert res.nll_sum == pytest.approx(direct.nll_sum, rel=1e-6)


def test_stride_out_of_range_is_rejected():
    model = small_gpt(8)
    ids = torch.randint(0, 13, (20,))
    for bad in (0, 9):
        with pytest.raises(ConfigError, match="stride must be between 1 and block_size=8"):
            strided_nll(model, ids, stride=bad)
