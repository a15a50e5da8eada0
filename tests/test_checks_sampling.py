"""The checks of lesson 08: correct code passes, the usual mistakes fail with the right hint."""

from __future__ import annotations

import pytest
import torch
from lookalikes import AlwaysEqualTensor

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.sample import temperature_filter, top_k_filter, top_p_filter

NEG_INF = float("-inf")


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: ...")


# ---------------------------------------------------------------------- temperature


@pytest.mark.parametrize("fn", [lambda x, t: x / t, temperature_filter,
                                lambda x, t: x * (1.0 / t)])
def test_temperature_accepts_correct_code(fn, capsys):
    check.apply_temperature(fn)
    assert capsys.readouterr().out.startswith("✓ apply_temperature: 6 cases passed")


def divide_in_place(x, t):
    x /= t
    return x


@pytest.mark.parametrize("fn, hint", [
    (lambda x, t: x * t, "do not multiply"),
    (lambda x, t: torch.softmax(x / t, dim=-1), "return logits, not probabilities"),
    (lambda x, t: torch.softmax(x, dim=-1) / t, "BEFORE the softmax"),
    (divide_in_place, "do not modify the logits in place"),
])
def test_temperature_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.apply_temperature(fn)
    assert hint in str(info.value)


# ---------------------------------------------------------------------------- top-k


def top_k_reference(logits, k):
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_keeps_k_minus_1(logits, k):
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits <= kth, NEG_INF)


def top_k_keeps_k_plus_1(logits, k):
    kth = torch.sort(logits, dim=-1, descending=True).values[..., k : k + 1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_by_indices(logits, k):
    k = min(k, logits.size(-1))
    idx = torch.topk(logits, k, dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
    return logits.masked_fill(~keep, NEG_INF)


def top_k_no_clamp(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


@pytest.mark.parametrize("fn", [top_k_reference, top_k_filter])
def test_top_k_accepts_correct_code(fn, capsys):
    check.top_k(fn)
    assert capsys.readouterr().out.startswith("✓ top_k: 9 cases passed")


@pytest.mark.parametrize("fn, hint", [
    (top_k_keeps_k_minus_1, "you keep k - 1 tokens"),
    (top_k_keeps_k_plus_1, "you keep k + 1 tokens"),
    (top_k_by_indices, "tokens tied with the k-th largest logit are kept too"),
    (top_k_no_clamp, "clamp k to the size of the last axis"),
    (lambda x, k: top_k_reference(x, k).nan_to_num(neginf=-1e9), "removed tokens must be -inf"),
])
def test_top_k_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.top_k(fn)
    assert hint in str(info.value)


# ---------------------------------------------------------------------------- top-p


def top_p_reference(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def top_p_shifted_mask(logits, p, strict=False):
    """Shift the 'cumsum >= p' mask right by one: remove a token when the tokens BEFORE it
    already reach p. With `cum > p` (strict=True; the formulation of older transformers
    releases) it keeps one token too many when a prefix holds exactly p."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum > p if strict else cum >= p
    remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def top_p_one_too_few(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum > p  # removes the token that crosses p
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def top_p_forgets_the_top_token(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum > p
    remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()  # ... but index 0 is not reset
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def top_p_renormalises(logits, p):
    return torch.log_softmax(top_p_reference(logits, p), dim=-1)


def top_p_strict_greater(logits, p):
    """`(cumsum - probs) > p`: keeps the next token when the top ones hold exactly p."""
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    remove_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) > p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def top_p_ascending_like_hf(logits, p):
    """transformers' own formulation: ascending sort, remove while the cumulative sum <= 1 - p."""
    sorted_logits, order = torch.sort(logits, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum <= (1 - p)
    remove_sorted[..., -1:] = False
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), NEG_INF)


def top_p_float64(logits, p):
    """Correct, with the probabilities in float64; returns the float32 logits."""
    probs = torch.softmax(logits.double(), dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    remove_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= p
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), NEG_INF)


@pytest.mark.parametrize("fn", [top_p_reference, top_p_shifted_mask, top_p_filter,
                                top_p_ascending_like_hf, top_p_float64])
def test_top_p_accepts_correct_code(fn, capsys):
    check.top_p(fn)
    assert capsys.readouterr().out.startswith("✓ top_p: 12 cases passed")


def test_top_p_boundary_case_is_exact_in_float32_and_matches_transformers():
    import math

    from transformers.generation.logits_process import TopPLogitsWarper

    x = torch.tensor([0.0, -math.log(2), -math.log(4), -math.log(4)])
    probs = torch.softmax(x, dim=-1)
    assert probs.dtype == torch.float32 and probs.tolist() == [0.5, 0.25, 0.125, 0.125]
    # every partial sum, in either order, is exact in float32
    assert probs.cumsum(-1).tolist() == [0.5, 0.75, 0.875, 1.0]
    assert probs.flip(-1).cumsum(-1).tolist() == [0.125, 0.25, 0.5, 1.0]
    for p, n_kept in ((0.5, 1), (0.75, 2)):
        hf = TopPLogitsWarper(p)(None, x[None].clone())[0]
        assert int(torch.isfinite(hf).sum()) == n_kept
        assert torch.equal(top_p_filter(x, p), hf)
        assert int(torch.isfinite(top_p_strict_greater(x, p)).sum()) == n_kept + 1


@pytest.mark.parametrize("fn", [top_p_strict_greater,
                                lambda x, p: top_p_shifted_mask(x, p, strict=True)])
def test_top_p_strict_greater_is_rejected_on_the_boundary_with_its_hint(fn):
    with pytest.raises(CheckFailed, match="a prefix holds exactly p") as info:
        check.top_p(fn)
    msg = str(info.value)
    assert "p=0.5" in msg and "expected 1 surviving" in msg and "keeps 2" in msg
    assert "one token too many at the boundary" in msg and "EXACTLY p" in msg


@pytest.mark.parametrize("fn, hint", [
    (top_p_one_too_few, "one token too few, the classic top-p boundary bug"),
    (top_p_forgets_the_top_token, "always keep the most likely token"),
    (top_p_renormalises, "keep the surviving logits exactly as they were"),
])
def test_top_p_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.top_p(fn)
    assert hint in str(info.value)


@pytest.mark.parametrize("name", ["apply_temperature", "top_k", "top_p", "sample_with_cache"])
def test_stubs_are_not_attempted(name):
    with pytest.raises(NotAttempted):
        getattr(check, name)(stub)


def test_wrong_shape_is_explained_before_values():
    with pytest.raises(CheckFailed, match="expected shape"):
        check.top_k(lambda x, k: top_k_reference(x, k).reshape(-1))


@pytest.mark.parametrize("name, good", [("apply_temperature", temperature_filter),
                                        ("top_k", top_k_filter), ("top_p", top_p_filter)])
def test_filters_contract(name, good):
    # a list instead of a tensor
    with pytest.raises(CheckFailed, match="expected torch.Tensor, got a list"):
        getattr(check, name)(lambda x, a: good(x, a).tolist())
    # an always-equal tensor subclass
    with pytest.raises(CheckFailed, match="expected torch.Tensor, got an AlwaysEqualTensor"):
        getattr(check, name)(lambda x, a: good(x, a).as_subclass(AlwaysEqualTensor))
    # float64 instead of the input's float32
    with pytest.raises(CheckFailed, match="expected dtype torch.float32") as info:
        getattr(check, name)(lambda x, a: good(x, a).double())
    assert "keep the logits' dtype" in str(info.value)


@pytest.mark.parametrize("name, in_place", [
    ("apply_temperature", lambda x, t: x.div_(t)),
    ("top_k", lambda x, k: x.masked_fill_(x < torch.topk(x, min(k, x.size(-1))).values[..., -1:],
                                          NEG_INF)),
    ("top_p", lambda x, p: x.masked_fill_(top_p_filter(x, p).isneginf(), NEG_INF)),
])
def test_filters_in_place_edits_are_rejected(name, in_place):
    with pytest.raises(CheckFailed, match="changed its argument 1 in place") as info:
        getattr(check, name)(in_place)
    assert "do not modify the logits in place" in str(info.value)


def test_hint_levels_exist():
    from course.checks._core import HINTS

    for name in ("apply_temperature", "top_k", "top_p", "sample_with_cache"):
        assert len(HINTS[name]) == 2, name


# ---------------------------------------------------------------- KV-cache decoding


def pick(logits, temperature, top_k, top_p, generator):
    """The next token (1, 1) from last-position logits (1, V), as generate chooses it."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = temperature_filter(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


@torch.no_grad()
def cached_loop(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                generator=None):
    cache = model.new_kv_cache(prompt_ids.size(0))
    ids, new = prompt_ids, prompt_ids
    for _ in range(n_new):
        logits, _ = model(new, kv_cache=cache)  # (1, T_new, V)
        new = pick(logits[:, -1, :], temperature, top_k, top_p, generator)  # (1, 1)
        ids = torch.cat([ids, new], dim=1)
    return ids


@torch.no_grad()
def cached_loop_token_by_token(model, prompt_ids, n_new, *, temperature, top_k, top_p,
                               generator):
    """Also fine: feeds the prompt one token at a time, 1-D sampling, one forward too many."""
    cache = model.new_kv_cache(1)
    for t in range(prompt_ids.size(1)):
        logits, _ = model(prompt_ids[:, t : t + 1], kv_cache=cache)
    out = prompt_ids[0].tolist()
    for _ in range(n_new):
        last = logits[0, -1]  # (V,)
        if temperature == 0:
            nxt = int(last.argmax())
        else:
            last = top_p_filter(top_k_filter(last / temperature, top_k or last.numel()), top_p or 1.0)
            nxt = int(torch.multinomial(last.softmax(-1), num_samples=1, generator=generator))
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), kv_cache=cache)
    return torch.tensor([out])


def refeeds_everything(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                       generator=None):
    cache = model.new_kv_cache(1)
    ids = prompt_ids
    for _ in range(n_new):
        logits, _ = model(ids, kv_cache=cache)  # the whole sequence again, into the same cache
        ids = torch.cat([ids, pick(logits[:, -1], temperature, top_k, top_p, generator)], dim=1)
    return ids


def no_cache(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None, generator=None):
    ids = prompt_ids
    for _ in range(n_new):
        logits, _ = model(ids)
        ids = torch.cat([ids, pick(logits[:, -1], temperature, top_k, top_p, generator)], dim=1)
    return ids


def new_token_without_cache(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                            generator=None):
    """Fills the cache with the prompt, then forgets it: the new token lands at position 0."""
    cache = model.new_kv_cache(1)
    logits, _ = model(prompt_ids, kv_cache=cache)
    ids = prompt_ids
    for _ in range(n_new):
        new = pick(logits[:, -1], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, new], dim=1)
        logits, _ = model(new)
    return ids


def new_cache_every_step(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                         generator=None):
    ids, new = prompt_ids, prompt_ids
    for _ in range(n_new):
        logits, _ = model(new, kv_cache=model.new_kv_cache(1))
        new = pick(logits[:, -1], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, new], dim=1)
    return ids


def advances_length_by_hand(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                            generator=None):
    cache = model.new_kv_cache(1)
    ids, new = prompt_ids, prompt_ids
    for _ in range(n_new):
        logits, _ = model(new, kv_cache=cache)
        cache.length += new.size(1)  # the model already did this
        new = pick(logits[:, -1], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, new], dim=1)
    return ids


def feeds_the_previous_token(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                             generator=None):
    cache = model.new_kv_cache(1)
    logits, _ = model(prompt_ids, kv_cache=cache)
    ids = prompt_ids
    for _ in range(n_new):
        new = pick(logits[:, -1], temperature, top_k, top_p, generator)
        logits, _ = model(ids[:, -1:], kv_cache=cache)  # fed before appending: the old token
        ids = torch.cat([ids, new], dim=1)
    return ids


def first_position_logits(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                          generator=None):
    cache = model.new_kv_cache(1)
    ids, new = prompt_ids, prompt_ids
    for _ in range(n_new):
        logits, _ = model(new, kv_cache=cache)
        new = pick(logits[:, 0], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, new], dim=1)
    return ids


def only_new_tokens(model, prompt_ids, n_new, **settings):
    return cached_loop(model, prompt_ids, n_new, **settings)[:, prompt_ids.size(1):]


def global_rng(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
               generator=None):
    return cached_loop(model, prompt_ids, n_new, temperature, top_k, top_p, generator=None)


def always_argmax(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                  generator=None):
    return cached_loop(model, prompt_ids, n_new, 0.0)


def temperature_after_the_filters(model, prompt_ids, n_new, temperature=1.0, top_k=None,
                                  top_p=None, generator=None):
    def late(logits, temperature, top_k, top_p, generator):
        if temperature == 0:
            return logits.argmax(dim=-1, keepdim=True)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)

    cache = model.new_kv_cache(1)
    ids, new = prompt_ids, prompt_ids
    for _ in range(n_new):
        logits, _ = model(new, kv_cache=cache)
        new = late(logits[:, -1], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, new], dim=1)
    return ids


def ignores_top_k_and_top_p(model, prompt_ids, n_new, temperature=1.0, top_k=None, top_p=None,
                            generator=None):
    return cached_loop(model, prompt_ids, n_new, temperature, None, None, generator)


def divides_by_zero_temperature(model, prompt_ids, n_new, temperature=1.0, top_k=None,
                                top_p=None, generator=None):
    cache = model.new_kv_cache(1)
    ids, new = prompt_ids, prompt_ids
    for _ in range(n_new):
        logits, _ = model(new, kv_cache=cache)
        probs = torch.softmax(logits[:, -1] / temperature, dim=-1)  # nan at temperature 0
        new = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat([ids, new], dim=1)
    return ids


@pytest.mark.parametrize("fn", [cached_loop, cached_loop_token_by_token])
def test_sample_with_cache_accepts_correct_loops(fn, capsys):
    check.sample_with_cache(fn)
    assert capsys.readouterr().out.startswith("✓ sample_with_cache: 8 cases passed")


@pytest.mark.parametrize("fn, hint", [
    (refeeds_everything, "tokens into a cache that already held"),
    (no_cache, "did not pass the cache"),
    (new_token_without_cache, "did not pass the cache"),
    (new_cache_every_step, "every step started from an empty cache"),
    (advances_length_by_hand, "do not change cache.length yourself"),
    (feeds_the_previous_token, "the tokens fed into the cache do not follow the sequence"),
    (first_position_logits, "the first new token is already wrong"),
    (only_new_tokens, "return the prompt followed by the new tokens"),
    (global_rng, "pass generator=generator to torch.multinomial"),
    (always_argmax, "the next token is SAMPLED"),
    (temperature_after_the_filters, "divide by the temperature FIRST"),
    (ignores_top_k_and_top_p, "top_k / top_p were not applied"),
    (divides_by_zero_temperature, "temperature=0 means greedy decoding"),
])
def test_sample_with_cache_rejects_typical_mistakes_with_their_hint(fn, hint):
    with pytest.raises(CheckFailed) as info:
        check.sample_with_cache(fn)
    assert hint in str(info.value)


def test_sample_with_cache_contract():
    with pytest.raises(CheckFailed, match="expected torch.Tensor, got a list"):
        check.sample_with_cache(lambda *a, **k: cached_loop(*a, **k).tolist())
    with pytest.raises(CheckFailed, match="expected token ids of dtype torch.int64"):
        check.sample_with_cache(lambda *a, **k: cached_loop(*a, **k).int())
    with pytest.raises(CheckFailed, match="got an AlwaysEqualTensor"):
        check.sample_with_cache(lambda *a, **k: cached_loop(*a, **k).as_subclass(AlwaysEqualTensor))

    def edits_prompt(model, prompt_ids, n_new, **settings):
        out = cached_loop(model, prompt_ids, n_new, **settings)
        prompt_ids.zero_()
        return out

    with pytest.raises(CheckFailed, match="changed prompt_ids in place"):
        check.sample_with_cache(edits_prompt)


def test_sample_with_cache_names_unfinished_filters_instead_of_not_attempted():
    def loop_with_a_stub_filter(model, prompt_ids, n_new, temperature=1.0, top_k=None,
                                top_p=None, generator=None):
        if temperature != 0:
            stub()  # e.g. the learner's apply_temperature, still a placeholder
        return cached_loop(model, prompt_ids, n_new, temperature, top_k, top_p, generator)

    with pytest.raises(CheckFailed, match="finish apply_temperature, top_k_filter and top_p_filter"):
        check.sample_with_cache(loop_with_a_stub_filter)


def test_sample_with_cache_check_leaves_the_global_rng_alone():
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    check.sample_with_cache(cached_loop)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(CheckFailed):
        check.sample_with_cache(global_rng)  # a learner drawing from the global RNG ...
    assert torch.equal(state, torch.random.get_rng_state())  # ... does not move it either
    assert torch.get_num_threads() == threads  # the check runs on one thread, then restores
