"""Decoding: filters against transformers' warpers; generate with and without the KV cache."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from course.errors import ConfigError
from course.model import GPT, GPTConfig
from course.sample import generate, temperature_filter, top_k_filter, top_p_filter

V, BLOCK = 13, 16


def tiny(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)
    return GPT(GPTConfig(**{**base, **kw})).eval()


def peaky(seed: int = 0) -> GPT:
    """A tiny model with larger weights, so its distributions are not near-uniform."""
    model = tiny(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    return model


def logit_cases() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(4, 50, generator=g),
        3 * torch.randn(4, 50, generator=g),
        torch.randn(2, 7, generator=g).round(),  # many ties
        torch.zeros(2, 9),  # all tied: uniform
        torch.cat([torch.tensor([[40.0]]), torch.randn(1, 20, generator=g)], dim=1),  # peaked
        torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])),
        torch.tensor([[1.0, float("-inf"), 0.5, float("-inf"), 2.0]]),  # already filtered
        torch.randn(3, 1, generator=g),  # V = 1
    ]
    return cases


def same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Identical filtered logits: same -inf pattern and same finite values."""
    assert torch.equal(torch.isneginf(ours), torch.isneginf(theirs))
    keep = ~torch.isneginf(theirs)
    torch.testing.assert_close(ours[keep], theirs[keep], atol=0, rtol=0)


# ---------------------------------------------------------------- filters vs transformers
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature_matches_transformers(t):
    for logits in logit_cases():
        same(temperature_filter(logits, t), TemperatureLogitsWarper(t)(None, logits.clone()))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9, 50, 1000])
def test_top_k_matches_transformers_including_ties_and_k_at_least_V(k):
    for logits in logit_cases():
        same(top_k_filter(logits, k), TopKLogitsWarper(k)(None, logits.clone()))


@pytest.mark.parametrize("p", [0.01, 0.2, 0.5, 0.7, 0.8, 0.9, 0.95, 0.999, 1.0])
def test_top_p_matches_transformers_including_boundaries(p):
    for logits in logit_cases():
        same(top_p_filter(logits, p), TopPLogitsWarper(p)(None, logits.clone()))


def test_top_p_matches_transformers_on_many_random_rows():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 30, generator=g) * torch.rand(200, 1, generator=g) * 5
    for p in torch.rand(20, generator=g).tolist():
        same(top_p_filter(logits, p), TopPLogitsWarper(p)(None, logits.clone()))


def test_filters_chain_like_transformers():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 40, generator=g)
    ours = top_p_filter(top_k_filter(temperature_filter(logits, 0.7), 10), 0.8)
    theirs = logits.clone()
    for w in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.8)):
        theirs = w(None, theirs)
    same(ours, theirs)


def test_top_p_semantics_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = lambda p: (~torch.isneginf(top_p_filter(logits, p))).nonzero().flatten().tolist()
    assert kept(0.4) == [0]
    assert kept(0.6) == [0, 1]
    assert kept(0.9) == [0, 1, 2]
    assert kept(0.97) == [0, 1, 2, 3]
    assert kept(1.0) == [0, 1, 2, 3]
    assert kept(1e-9) == [0]  # never empty


def test_top_k_keeps_k_and_filters_work_on_any_leading_shape():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 20, generator=g)
    out = top_k_filter(logits, 4)
    assert out.shape == logits.shape
    assert ((~torch.isneginf(out)).sum(-1) == 4).all()
    for f, arg in ((top_k_filter, 4), (top_p_filter, 0.6)):
        row_by_row = torch.stack([f(logits[i], arg) for i in range(2)])
        assert torch.equal(f(logits, arg), row_by_row)
    assert top_k_filter(logits[0, 0], 3).shape == (20,)  # a single (V,) row


@pytest.mark.parametrize("call, words", [
    (lambda x: temperature_filter(x, 0), "temperature must be a number > 0"),
    (lambda x: temperature_filter(x, -1.0), "temperature must be a number > 0"),
    (lambda x: top_k_filter(x, 0), "top_k must be an integer >= 1"),
    (lambda x: top_k_filter(x, 2.0), "top_k must be an integer >= 1"),
    (lambda x: top_p_filter(x, 0.0), r"top_p must be a probability in \(0, 1\]"),
    (lambda x: top_p_filter(x, 1.5), r"top_p must be a probability in \(0, 1\]"),
    (lambda x: top_k_filter(x.long(), 2), "floating-point tensor"),
])
def test_bad_filter_arguments(call, words):
    with pytest.raises(ConfigError, match=words):
        call(torch.randn(2, 5))


# ---------------------------------------------------------------- generate
def reference_greedy(model: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """The obvious loop: full forward on the last block_size tokens, take the argmax."""
    seq = prompt.clone()
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(seq[:, -model.config.block_size :])
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq


@pytest.mark.parametrize("T0, n", [(1, 10), (5, 30), (BLOCK, 5), (BLOCK + 4, 6)])
def test_greedy_with_cache_equals_without_cache_and_the_reference(T0, n):
    model = peaky()
    prompt = torch.randint(0, V, (2, T0), generator=torch.Generator().manual_seed(T0))
    with_cache = generate(model, prompt, n, greedy=True, use_cache=True)
    without = generate(model, prompt, n, greedy=True, use_cache=False)
    assert with_cache.shape == (2, T0 + n)
    assert torch.equal(with_cache[:, :T0], prompt)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache, reference_greedy(model, prompt, n))


def test_the_cache_is_really_used_until_block_size():
    model = peaky()
    lengths: list[int] = []
    model.register_forward_pre_hook(lambda m, args: lengths.append(args[0].size(1)))
    generate(model, [1, 2, 3], BLOCK + 2, greedy=True)
    # prompt once, then one token per step up to block_size, then full sliding windows
    assert lengths == [3] + [1] * (BLOCK - 3) + [BLOCK] * 4  # 1 + 13 + 4 = 18 steps
    lengths.clear()
    generate(model, [1, 2, 3], 4, greedy=True, use_cache=False)
    assert lengths == [3, 4, 5, 6]


def test_temperature_zero_is_greedy_and_top_k_one_is_greedy():
    model = peaky()
    prompt = torch.tensor([[1, 5, 7]])
    greedy = generate(model, prompt, 25, greedy=True)
    assert torch.equal(generate(model, prompt, 25, temperature=0), greedy)
    assert torch.equal(generate(model, prompt, 25, top_k=1, seed=4), greedy)
    assert torch.equal(generate(model, prompt, 25, top_p=1e-6, seed=4), greedy)


def test_seeds_give_reproducible_and_different_samples():
    model = tiny()  # near-uniform: samples vary a lot
    a = generate(model, [0], 40, seed=1)
    b = generate(model, [0], 40, seed=1)
    c = generate(model, [0], 40, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(generate(model, [0], 40, seed=1, use_cache=False), a)


def test_generate_never_touches_the_global_rng():
    model = tiny()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    generate(model, [0, 1], 10, seed=5, top_k=5, top_p=0.9)
    generate(model, [0, 1], 10)  # seed=None: a fresh generator, still not the global one
    assert torch.equal(torch.get_rng_state(), state)


def test_sampling_follows_the_filtered_distribution():
    # One step from a fixed context many times: empirical frequencies ≈ softmax probabilities.
    model = peaky()
    prompt = torch.tensor([[3, 1, 4]]).repeat(4000, 1)
    draws = generate(model, prompt, 1, seed=0, temperature=1.5, top_k=4)[:, -1]
    with torch.no_grad():
        logits = model(prompt[:1])[0][0, -1]
    probs = torch.softmax(top_k_filter(temperature_filter(logits, 1.5), 4), -1)
    freq = torch.bincount(draws, minlength=V).float() / len(draws)
    assert set(draws.unique().tolist()) <= set(probs.nonzero().flatten().tolist())
    assert (freq - probs).abs().max() < 4 * math.sqrt(0.25 / len(draws))


def test_stops_at_eos_for_one_sequence():
    model = peaky()
    full = generate(model, [2, 3], 12, greedy=True)
    eos = int(full[0, 4])  # the third generated token
    first = int((full[0, 2:] == eos).nonzero()[0])  # it may already appear earlier
    out = generate(model, [2, 3], 12, greedy=True, eos_id=eos)
    assert out.shape == (1, 2 + first + 1)
    assert int(out[0, -1]) == eos
    assert torch.equal(out, full[:, : out.size(1)])


def test_eos_in_a_batch_pads_finished_rows_and_stops_when_all_are_done():
    model = peaky()
    prompt = torch.tensor([[2, 3], [7, 7], [11, 0]])
    T0, n = prompt.size(1), 10
    full = generate(model, prompt, n, greedy=True)  # no EOS: every row runs to the end
    seen_padding = seen_early_stop = False
    for eos in range(V):  # every token as EOS: rows finish at different steps, or never
        expected = full.clone()
        ends = []
        for b in range(len(prompt)):
            hits = (full[b, T0:] == eos).nonzero().flatten().tolist()
            if hits:
                ends.append(T0 + hits[0] + 1)
                expected[b, T0 + hits[0] :] = eos  # finished rows are padded with EOS
            else:
                ends.append(T0 + n)
        expected = expected[:, : max(ends)]  # stop once every row is finished
        out = generate(model, prompt, n, greedy=True, eos_id=eos)
        assert torch.equal(out, expected), f"eos_id={eos}"
        seen_padding |= min(ends) < max(ends)
        seen_early_stop |= max(ends) < T0 + n
    assert seen_padding and seen_early_stop  # both situations were really exercised


def test_model_mode_is_restored_and_dropout_is_off_while_generating():
    model = tiny(dropout=0.5).train()
    a = generate(model, [1, 2], 8, greedy=True)
    assert model.training
    b = generate(model.eval(), [1, 2], 8, greedy=True)
    assert not model.training
    assert torch.equal(a, b)


def test_prompt_forms_and_zero_new_tokens():
    model = tiny()
    assert generate(model, [4, 5, 6], 3, greedy=True).shape == (1, 6)
    assert generate(model, torch.tensor([4, 5, 6]), 3, greedy=True).shape == (1, 6)
    assert torch.equal(generate(model, [4, 5], 0), torch.tensor([[4, 5]]))


@pytest.mark.parametrize("kwargs, words", [
    (dict(prompt=[]), "prompt is empty"),
    (dict(prompt=torch.zeros(2, 0, dtype=torch.long)), "prompt is empty"),
    (dict(prompt=[1, V]), f"token id {V}, outside the model's vocabulary"),
    (dict(prompt=[-1, 2]), "token id -1"),
    (dict(prompt=torch.tensor([[0.5, 1.0]])), "integer token ids"),
    (dict(prompt=["a", "b"]), "list of integer token ids"),
    (dict(prompt="hello"), "prompt must be a"),
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
    (dict(temperature=-0.5), "temperature must be a number >= 0"),
    (dict(top_k=0), "top_k must be an integer >= 1"),
    (dict(top_p=0.0), "top_p must be a probability"),
    (dict(eos_id=V), "eos_id must be a token id"),
])
def test_bad_generate_arguments_raise_config_error(kwargs, words):
    args = {"prompt": [1, 2], "max_new_tokens": 3, **kwargs}
    with pytest.raises(ConfigError, match=words):
        generate(tiny(), args.pop("prompt"), args.pop("max_new_tokens"), **args)
