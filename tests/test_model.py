"""The GPT: causality, the two attention paths, loss, tying, sizes, KV cache, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course.errors import ConfigError
from course.masks import bidirectional_mask, causal_mask, document_mask, prefix_lm_mask
from course.model import GPT, GPTConfig, KVCache

V, BLOCK = 13, 16


def cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)
    return GPTConfig(**{**base, **kw})


def make(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg(**kw))


def ids(B: int = 2, T: int = BLOCK, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- config
def test_config_round_trips_through_a_dict():
    c = cfg(dropout=0.1, bias=False, attn_impl="manual")
    assert GPTConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["attn_impl"] == "manual"
    assert c.head_dim == 8


@pytest.mark.parametrize("kw, words", [
    (dict(n_embd=30, n_head=4), "divisible by n_head"),
    (dict(n_layer=0), "n_layer must be >= 1"),
    (dict(vocab_size=-5), "vocab_size must be >= 1"),
    (dict(block_size=8.0), "block_size must be an integer"),
    (dict(attn_impl="flash"), "attn_impl must be one of"),
    (dict(dropout=1.0), "dropout must be a probability"),
    (dict(dropout=-0.1), "dropout must be a probability"),
    (dict(bias="yes"), "bias must be True or False"),
])
def test_bad_config_raises_config_error(kw, words):
    with pytest.raises(ConfigError, match=words):
        cfg(**kw)


def test_from_dict_names_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match="unknown GPTConfig keys.*n_heads"):
        GPTConfig.from_dict({**cfg().to_dict(), "n_heads": 2})
    d = cfg().to_dict()
    del d["n_embd"]
    with pytest.raises(ConfigError, match="missing.*n_embd"):
        GPTConfig.from_dict(d)


# ---------------------------------------------------------------- shapes and structure
def test_forward_shapes_and_no_loss_without_labels():
    model = make()
    logits, loss = model(ids(3, 10))
    assert logits.shape == (3, 10, V)
    assert loss is None
    _, loss = model(ids(3, 10), ids(3, 10))
    assert loss.shape == () and torch.isfinite(loss)


def test_initial_loss_is_close_to_uniform():
    model = make()
    _, loss = model(ids(8, BLOCK), ids(8, BLOCK))
    assert abs(loss.item() - math.log(V)) < 0.1  # small init: near-uniform predictions


@torch.no_grad()
def test_gpt2_init_statistics():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=128))
    h = model.transformer.h
    assert abs(float(h[0].attn.c_attn.weight.std()) - 0.02) < 0.002
    assert abs(float(model.transformer.wpe.weight.std()) - 0.02) < 0.002
    scaled = 0.02 / math.sqrt(2 * 4)
    for block in h:
        assert abs(float(block.attn.c_proj.weight.std()) - scaled) < 0.1 * scaled
        assert abs(float(block.mlp.c_proj.weight.std()) - scaled) < 0.1 * scaled
        assert not block.attn.c_attn.bias.any() and not block.mlp.c_fc.bias.any()
        assert torch.equal(block.ln_1.weight, torch.ones(128))


def test_gelu_is_the_tanh_approximation_of_gpt2():
    gelu = make().transformer.h[0].mlp.gelu
    x = torch.linspace(-5, 5, 101)
    gelu_new = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(gelu(x), gelu_new, atol=1e-6, rtol=1e-6)


def test_param_count_matches_the_hand_formula():
    L, C = 2, 16
    per_layer = 12 * C * C + 13 * C  # c_attn 3C²+3C, c_proj C²+C, c_fc 4C²+4C, c_proj 4C²+C, 2 LNs 4C
    total = V * C + BLOCK * C + L * per_layer + 2 * C  # tied lm_head adds nothing; ln_f 2C
    model = make()
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - BLOCK * C  # nanoGPT: position embeddings excluded
    no_bias = make(bias=False)
    assert no_bias.num_params(non_embedding=False) == V * C + BLOCK * C + L * (12 * C * C + 2 * C) + C
    assert not any(n.endswith("bias") for n, _ in no_bias.named_parameters())


def test_flops_per_token_formula():
    model = make()
    N = model.num_params()
    assert model.flops_per_token(8) == 6 * N + 12 * 2 * 16 * 8
    assert model.flops_per_token() == 6 * N + 12 * 2 * 16 * BLOCK
    with pytest.raises(ConfigError):
        model.flops_per_token(0)


def test_tied_weights_share_storage_and_one_gradient():
    model = make()
    wte, head = model.transformer.wte.weight, model.lm_head.weight
    assert head is wte and head.data_ptr() == wte.data_ptr()
    assert sum(p is wte for p in model.parameters()) == 1
    x = ids(2, 8)
    model(x, x)[1].backward()
    tied_grad = wte.grad.clone()

    # The gradient of a tied weight is the sum of the gradients of its two uses.
    untied = make()
    untied.lm_head.weight = torch.nn.Parameter(untied.transformer.wte.weight.detach().clone())
    untied(x, x)[1].backward()
    torch.testing.assert_close(untied.transformer.wte.weight.grad + untied.lm_head.weight.grad,
                               tied_grad, atol=1e-6, rtol=1e-5)


def test_set_attn_impl_does_not_touch_the_callers_config():
    c = cfg()
    model = GPT(c)
    model.set_attn_impl("manual")
    assert model.config.attn_impl == "manual" and c.attn_impl == "sdpa"
    assert all(b.attn.attn_impl == "manual" for b in model.transformer.h)
    with pytest.raises(ConfigError, match="attn_impl"):
        model.set_attn_impl("flash")


def test_manual_path_really_avoids_sdpa(monkeypatch):
    model = make(attn_impl="manual")

    def boom(*a, **k):
        raise AssertionError("manual attention must not call scaled_dot_product_attention")

    monkeypatch.setattr(F, "scaled_dot_product_attention", boom)
    model(ids(1, 5))  # no AssertionError
    model.set_attn_impl("sdpa")
    with pytest.raises(AssertionError):
        model(ids(1, 5))


# ---------------------------------------------------------------- causality
def future_leak(model: GPT, t: int, **kw) -> float:
    """Largest change of the logits at positions <= t when tokens after t are replaced."""
    x = ids(2, BLOCK, seed=1)
    y = x.clone()
    y[:, t + 1 :] = (y[:, t + 1 :] + 1 + torch.arange(BLOCK - t - 1)) % V
    with torch.no_grad():
        a = model(x, **kw)[0][:, : t + 1]
        b = model(y, **kw)[0][:, : t + 1]
    return float((a - b).abs().max())


@pytest.mark.parametrize("impl", ["sdpa", "manual"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_no_information_leaks_from_the_future(impl, train_mode):
    model = make(attn_impl=impl)  # dropout 0, so train mode is deterministic too
    model.train(train_mode)
    for t in (0, 5, BLOCK - 2):
        assert future_leak(model, t) == 0.0


def test_the_leak_test_catches_a_model_that_sees_the_future():
    model = make().eval()
    assert future_leak(model, 5, attn_mask=bidirectional_mask(BLOCK)) > 1e-4


def test_the_leak_test_catches_a_softmax_over_the_wrong_axis(monkeypatch):
    # A classic bug: normalising over the queries (dim -2) instead of the keys. Every
    # entry above the diagonal is still 0, yet each row's weights now depend on the
    # scores of later queries, i.e. on future tokens.
    model = make(attn_impl="manual").eval()
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(10.0)  # sharper attention: a larger effect
    softmax = F.softmax
    monkeypatch.setattr(F, "softmax", lambda x, dim=-1, **kw: softmax(x, dim=-2 if dim == -1 else dim))
    assert future_leak(model, 5) > 1e-4


def test_prefix_lm_mask_only_leaks_inside_the_prefix():
    model = make().eval()
    mask = prefix_lm_mask(BLOCK, 6)
    assert future_leak(model, 5, attn_mask=mask) == 0.0  # prefix is 0..5; 6.. is still hidden
    assert future_leak(model, 2, attn_mask=mask) > 1e-4  # positions 3..5 are visible from 2


# ---------------------------------------------------------------- the two attention paths
def both_paths(model: GPT, x: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    model.set_attn_impl("sdpa")
    a = model(x, **kw)[0]
    model.set_attn_impl("manual")
    b = model(x, **kw)[0]
    return a, b


def random_mask(B: int, T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, T, T, generator=g) < 0.5) | torch.eye(T, dtype=torch.bool)


@pytest.mark.parametrize("kind", ["causal", "doc", "prefix", "random_batched", "short"])
def test_manual_and_sdpa_agree(kind):
    model = make().eval()
    x = ids(3, BLOCK, seed=2)
    kw = {
        "causal": {},
        "doc": {"doc_ids": torch.tensor([[0] * 5 + [1] * 7 + [2] * 4,
                                         [0] * 16,
                                         [0] * 9 + [-1] * 7])},
        "prefix": {"attn_mask": prefix_lm_mask(BLOCK, 7)},
        "random_batched": {"attn_mask": random_mask(3, BLOCK)},
        "short": {},
    }[kind]
    if kind == "short":
        x = x[:, :3]
    a, b = both_paths(model, x, **kw)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_manual_and_sdpa_agree_in_train_mode_without_dropout_and_in_gradients():
    model = make().train()
    x = ids(2, BLOCK)
    grads = []
    for impl in ("sdpa", "manual"):
        model.zero_grad()
        model.set_attn_impl(impl)
        model(x, x)[1].backward()
        grads.append(model.transformer.h[0].attn.c_attn.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_dropout_is_active_in_train_mode_only():
    model = make(dropout=0.2)
    x = ids(1, 8)
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])


def test_an_explicit_causal_mask_equals_the_default():
    model = make().eval()
    x = ids(2, 10)
    torch.testing.assert_close(model(x, attn_mask=causal_mask(10))[0], model(x)[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- packed documents
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_doc_ids_isolate_documents(impl):
    model = make(attn_impl=impl).eval()
    doc = torch.tensor([[0] * 6 + [1] * 10])
    x = ids(1, BLOCK, seed=3)
    y = x.clone()
    y[0, :6] = (y[0, :6] + 3) % V  # rewrite document 0 entirely
    with torch.no_grad():
        a = model(x, doc_ids=doc)[0]
        b = model(y, doc_ids=doc)[0]
        plain = model(y)[0]
    assert float((a[0, 6:] - b[0, 6:]).abs().max()) == 0.0  # document 1 did not notice
    assert float((a[0, 6:] - plain[0, 6:]).abs().max()) > 1e-4  # without the mask it would


def test_doc_ids_with_padding_give_finite_logits():
    model = make().eval()
    doc = torch.tensor([[0, 0, 0, -1, -1]])
    assert torch.isfinite(model(ids(1, 5), doc_ids=doc)[0]).all()


# ---------------------------------------------------------------- loss
def test_loss_is_shifted_cross_entropy_and_skips_ignored_labels():
    model = make()
    x = ids(3, 12, seed=4)
    labels = x.clone()
    labels[0, 7:] = -100
    labels[2, :4] = -100
    logits, loss = model(x, labels)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ref)
    keep = labels[:, 1:] != -100
    by_hand = -F.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(loss, by_hand[keep].mean())


def test_ignored_positions_do_not_influence_the_loss():
    model = make()
    x = ids(2, 10)
    a = x.clone()
    a[:, 5:] = -100
    b = a.clone()
    b[:, 0] = (x[:, 0] + 1) % V  # labels[:, 0] is never a target (nothing predicts it)
    torch.testing.assert_close(model(x, a)[1], model(x, b)[1])


# ---------------------------------------------------------------- attention maps
def test_attention_maps_are_causal_probabilities():
    model = make(dropout=0.3).train()
    x = ids(2, 9)
    maps = model.attention_maps(x)
    assert model.training  # mode restored
    assert len(maps) == 2 and all(m.shape == (2, 2, 9, 9) for m in maps)
    for m in maps:
        assert torch.equal(m.triu(1), torch.zeros_like(m))  # exactly 0 above the diagonal
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 2, 9))
    assert torch.equal(maps[0][..., 0, 0], torch.ones(2, 2))  # the first token sees only itself


def test_attention_maps_respect_the_document_mask():
    model = make()
    doc = torch.tensor([[0, 0, 0, 1, 1, 1]])
    m = model.attention_maps(ids(1, 6), doc_ids=doc)[1]
    assert torch.equal(m[0, :, 3:, :3], torch.zeros(2, 3, 3))


# ---------------------------------------------------------------- KV cache
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
@pytest.mark.parametrize("chunks", [[1] * BLOCK, [5, 1, 1, 4, 5], [BLOCK]])
def test_kv_cache_logits_equal_the_full_forward(impl, chunks):
    model = make(attn_impl=impl).eval()
    x = ids(2, BLOCK, seed=5)
    with torch.no_grad():
        full = model(x)[0]
        cache = model.new_kv_cache(2)
        assert isinstance(cache, KVCache) and cache.length == 0
        parts, start = [], 0
        for n in chunks:
            parts.append(model(x[:, start : start + n], kv_cache=cache)[0])
            start += n
            assert cache.length == start
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_can_be_reset_and_reused():
    model = make().eval()
    x = ids(1, 6)
    with torch.no_grad():
        cache = model.new_kv_cache(1, max_len=6)
        first = model(x, kv_cache=cache)[0]
        cache.reset()
        again = model(x, kv_cache=cache)[0]
    assert torch.equal(first, again)


def test_kv_cache_errors():
    model = make().eval()
    cache = model.new_kv_cache(2, max_len=4)
    with pytest.raises(ConfigError, match="batch size 2"):
        model(ids(1, 2), kv_cache=cache)
    model(ids(2, 3), kv_cache=cache)
    with pytest.raises(ConfigError, match="kv_cache is full"):
        model(ids(2, 2), kv_cache=cache)
    with pytest.raises(ConfigError, match="exceeds the model's block_size"):
        model.new_kv_cache(1, max_len=BLOCK + 1)
    with pytest.raises(ConfigError, match="doc_ids cannot be combined"):
        model(ids(2, 1), doc_ids=torch.zeros(2, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ConfigError, match="block_size"):
        full = model.new_kv_cache(1)
        model(ids(1, BLOCK), kv_cache=full)
        model(ids(1, 1), kv_cache=full)


# ---------------------------------------------------------------- learning
def test_overfits_a_tiny_batch():
    model = make(n_layer=1, n_embd=32)
    x = ids(4, BLOCK, seed=6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _step in range(200):
        _, loss = model(x, x)
        if loss.item() < 0.1:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, words", [
    (lambda m: m(ids(1, BLOCK + 1)), "exceed block_size=16"),
    (lambda m: m(torch.tensor([[1, 2, V]])), f"token id {V}, outside the vocabulary"),
    (lambda m: m(torch.tensor([[1, -1]])), "token id -1"),
    (lambda m: m(torch.zeros(1, 4)), "integer token ids"),
    (lambda m: m(torch.zeros(4, dtype=torch.long)), r"idx\[None\]"),
    (lambda m: m(torch.zeros(1, 0, dtype=torch.long)), "empty dimension"),
    (lambda m: m([[1, 2]]), "must be a tensor"),
    (lambda m: m(ids(2, 5), ids(2, 4)), "same shape as idx"),
    (lambda m: m(ids(2, 5), ids(2, 5).float()), "integer tensor"),
    (lambda m: m(ids(1, 3), torch.tensor([[1, 2, V]])), f"labels contain {V}"),
    (lambda m: m(ids(1, 3), torch.tensor([[1, -5, 2]])), "labels contain -5"),
    (lambda m: m(ids(1, 4), attn_mask=torch.ones(4, 4)), "boolean tensor"),
    (lambda m: m(ids(1, 4), attn_mask=causal_mask(5)), r"shape \(4, 4\) or \(1, 4, 4\)"),
    (lambda m: m(ids(1, 3), attn_mask=torch.zeros(3, 3, dtype=torch.bool)), "no True entry"),
    (lambda m: m(ids(1, 3), attn_mask=causal_mask(3), doc_ids=torch.zeros(1, 3, dtype=torch.long)),
     "not both"),
    (lambda m: m(ids(1, 3), doc_ids=torch.zeros(1, 4, dtype=torch.long)), "shape of idx"),
    (lambda m: m(ids(1, 3), kv_cache="cache"), "must be a KVCache"),
])
def test_bad_input_raises_config_error_with_a_useful_message(call, words):
    with pytest.raises(ConfigError, match=words):
        call(make())


def test_gpt_needs_a_config():
    with pytest.raises(ConfigError, match="GPTConfig"):
        GPT({"vocab_size": 3})  # type: ignore[arg-type]


def test_doc_ids_equal_an_explicit_document_mask():
    model = make().eval()
    doc = torch.tensor([[0, 0, 1, 1, 1, 2]])
    x = ids(1, 6)
    torch.testing.assert_close(model(x, doc_ids=doc)[0], model(x, attn_mask=document_mask(doc))[0])
