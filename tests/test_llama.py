"""The modern block (`arch="llama"`): RMSNorm, RoPE, SwiGLU, no biases, grouped-query
attention; every piece switchable alone; the KV cache, packed documents, and Hugging
Face's `LlamaForCausalLM` (logits, loss, save/load, generate, the Trainer)."""

from __future__ import annotations

import json
import math

import pytest
import tiny_models
import torch
import torch.nn.functional as F

from course.errors import ConfigError
from course.masks import prefix_lm_mask
from course.model import ARCHS, GPT, GPTConfig, RMSNorm, apply_rope, rope_tables, swiglu_hidden

V, BLOCK = 29, 16
VARIANTS = {  # name: config overrides of a llama with 4 heads
    "mha": dict(),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1, tie_embeddings=False),
}


def cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32, arch="llama")
    return GPTConfig(**{**base, **kw})


def make(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg(**kw))


def trained_like(seed: int = 0, **kw) -> GPT:
    """A llama with non-trivial weights: norm gains away from their init, weights scaled."""
    return tiny_models.trained_like(cfg(**kw), seed)


def ids(B: int = 2, T: int = BLOCK, seed: int = 0) -> torch.Tensor:
    return tiny_models.token_ids(V, B, T, seed)


# ---------------------------------------------------------------- config
def test_arch_sets_every_piece_and_explicit_fields_win():
    g, ll = cfg(arch="gpt2"), cfg()
    assert (g.norm, g.pos, g.mlp, g.bias, g.tie_embeddings, g.n_kv_head, g.mlp_hidden) == (
        "layernorm", "learned", "gelu", True, True, 4, 128)
    assert (ll.norm, ll.pos, ll.mlp, ll.bias, ll.tie_embeddings, ll.n_kv_head, ll.mlp_hidden) == (
        "rmsnorm", "rope", "swiglu", False, True, 4, swiglu_hidden(32))
    one_change = cfg(arch="gpt2", norm="rmsnorm")  # an ablation: GPT-2 with one piece swapped
    assert (one_change.norm, one_change.pos, one_change.mlp, one_change.bias) == (
        "rmsnorm", "learned", "gelu", True)
    assert cfg(bias=True).bias is True and cfg(mlp_hidden=40).mlp_hidden == 40
    assert set(ARCHS) == {"gpt2", "llama"}


def test_swiglu_width_keeps_the_gelu_mlp_parameter_count():
    assert swiglu_hidden(384) == 1024 and swiglu_hidden(128) == 352 and swiglu_hidden(32) == 96
    for C in (32, 128, 384, 768):
        h = swiglu_hidden(C)
        assert h % 32 == 0 and 0 <= h - 8 * C / 3 < 32  # 2/3 of 4C, rounded up
        if C >= 128:
            assert abs(3 * C * h - 8 * C * C) / (8 * C * C) < 0.05  # ~ GELU MLP's 8C² weights


def test_config_round_trips_every_new_field():
    c = cfg(n_kv_head=2, tie_embeddings=False, rope_theta=500.0, mlp_hidden=64, dropout=0.1,
            attn_impl="manual", bias=True)
    d = json.loads(json.dumps(c.to_dict()))  # as stored in a run's config.json
    assert GPTConfig.from_dict(d) == c
    assert {d[k] for k in ("arch", "norm", "pos", "mlp")} == {"llama", "rmsnorm", "rope", "swiglu"}
    assert (d["n_kv_head"], d["tie_embeddings"], d["rope_theta"], d["mlp_hidden"]) == (2, False, 500.0, 64)


def test_a_config_dict_from_before_the_options_is_todays_gpt2():
    old = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32, dropout=0.0,
               bias=True, attn_impl="sdpa")
    c = GPTConfig.from_dict(old)
    assert c == GPTConfig(**old) == cfg(arch="gpt2")
    torch.manual_seed(0)
    model = GPT(c)
    assert "transformer.wpe.weight" in model.state_dict()
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("kw, words", [
    (dict(n_kv_head=3), r"n_kv_head \(3\) must divide n_head \(4\).*\[1, 2, 4\]"),
    (dict(n_kv_head=0), "n_kv_head must be an integer >= 1"),
    (dict(n_kv_head=2.0), "n_kv_head must be an integer"),
    (dict(n_embd=36, n_head=12), r"head_dim .* must be even, got 36 / 12 = 3"),
    (dict(arch="mistral"), r"arch must be one of \('gpt2', 'llama'\)"),
    (dict(norm="batchnorm"), "norm must be one of"),
    (dict(pos="alibi"), "pos must be one of"),
    (dict(mlp="relu"), "mlp must be one of"),
    (dict(tie_embeddings="no"), "tie_embeddings must be True or False"),
    (dict(rope_theta=0.5), "rope_theta must be a number > 1"),
    (dict(rope_theta=float("inf")), "rope_theta"),
    (dict(mlp_hidden=0), "mlp_hidden must be an integer >= 1"),
])
def test_bad_architecture_settings_raise_config_error(kw, words):
    with pytest.raises(ConfigError, match=words):
        cfg(**kw)


def test_odd_head_dim_is_fine_with_learned_positions():
    assert cfg(arch="gpt2", n_embd=36, n_head=12).head_dim == 3


# ---------------------------------------------------------------- structure
def test_llama_structure_and_parameter_count():
    L, C, H, G = 2, 32, 4, 2
    model = make(n_kv_head=G)
    D, h = C // H, swiglu_hidden(C)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("bias") for n in names) and not any("wpe" in n for n in names)
    assert isinstance(model.transformer.h[0].ln_1, RMSNorm) and isinstance(model.transformer.ln_f, RMSNorm)
    assert model.transformer.h[0].attn.c_attn.weight.shape == (C + 2 * G * D, C)
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (2 * h, C)
    per_layer = C * (C + 2 * G * D) + C * C + 3 * C * h + 2 * C  # qkv, o, gate+up+down, 2 RMSNorms
    assert model.num_params(non_embedding=False) == V * C + L * per_layer + C  # tied; final norm C
    assert model.num_params() == model.num_params(non_embedding=False)  # no position table
    assert model.lm_head.weight is model.transformer.wte.weight
    untied = make(n_kv_head=G, tie_embeddings=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.num_params(non_embedding=False) == V * C + L * per_layer + C + V * C
    assert untied.num_params() == L * per_layer + C + V * C  # the lookup table is not counted


def test_each_switch_changes_only_its_piece():
    base = GPT(cfg(arch="gpt2"))
    sd = {k: v.shape for k, v in base.state_dict().items()}
    rms = {k: v.shape for k, v in GPT(cfg(arch="gpt2", norm="rmsnorm")).state_dict().items()}
    assert set(sd) - set(rms) == {f"transformer.h.{i}.ln_{j}.bias" for i in (0, 1) for j in (1, 2)} | {
        "transformer.ln_f.bias"} and set(rms) <= set(sd)
    rope = {k: v.shape for k, v in GPT(cfg(arch="gpt2", pos="rope")).state_dict().items()}
    assert set(sd) - set(rope) == {"transformer.wpe.weight"}
    swi = GPT(cfg(arch="gpt2", mlp="swiglu"))
    assert swi.transformer.h[0].mlp.c_fc.weight.shape == (2 * swiglu_hidden(32), 32)
    assert isinstance(swi.transformer.h[0].ln_1, torch.nn.LayerNorm)
    gqa = GPT(cfg(arch="gpt2", n_kv_head=1))
    assert gqa.transformer.h[0].attn.c_attn.weight.shape == (32 + 2 * 8, 32)
    assert gqa.transformer.h[0].attn.c_attn.bias is not None


@torch.no_grad()
def test_init_is_gpt2s_small_normal_with_scaled_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=128, arch="llama"))
    scaled = 0.02 / math.sqrt(2 * 4)
    for block in model.transformer.h:
        assert abs(float(block.attn.c_attn.weight.std()) - 0.02) < 0.002
        assert abs(float(block.mlp.c_proj.weight.std()) - scaled) < 0.1 * scaled
        assert torch.equal(block.ln_1.weight, torch.ones(128))


# ---------------------------------------------------------------- the pieces
def test_rms_norm_is_the_formula_and_huggingfaces():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    x = torch.randn(3, 5, 32) * 4 + 1
    norm = RMSNorm(32)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(32))
    by_hand = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), by_hand, atol=1e-5, rtol=1e-5)
    hf = LlamaRMSNorm(32, eps=1e-5)
    hf.weight.data.copy_(norm.weight)
    torch.testing.assert_close(norm(x), hf(x), atol=1e-6, rtol=1e-6)
    # unlike LayerNorm, the mean is not removed: a constant input keeps its sign
    torch.testing.assert_close(norm(torch.full((1, 32), 3.0))[0], norm.weight.detach(), atol=1e-5, rtol=1e-5)


def test_rms_norm_fallback_without_the_fused_op(monkeypatch):
    x = torch.randn(2, 4, 32)
    norm = RMSNorm(32)
    fused = norm(x)
    monkeypatch.delattr(F, "rms_norm")
    torch.testing.assert_close(norm(x), fused, atol=1e-6, rtol=1e-6)


def test_rms_norm_computes_in_float32_and_returns_the_input_dtype():
    x = (torch.randn(2, 8, 32) * 100).to(torch.bfloat16)
    y = RMSNorm(32)(x)
    assert y.dtype == torch.float32  # weight (float32) times a bf16 normalised input
    ref = RMSNorm(32)(x.float()).to(torch.bfloat16).float()
    torch.testing.assert_close(y, ref)


def test_rope_matches_huggingfaces_rotary_embedding():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    D, T, theta = 16, 12, 500.0
    hf_cfg = LlamaConfig(hidden_size=4 * D, num_attention_heads=4, max_position_embeddings=T,
                         rope_theta=theta)
    rotary = LlamaRotaryEmbedding(config=hf_cfg)
    q, k = torch.randn(2, 4, T, D), torch.randn(2, 4, T, D)
    pos = torch.arange(T)[None]
    cos, sin = rotary(q, pos)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, cos, sin)
    ours_cos, ours_sin = rope_tables(D, T, theta)
    torch.testing.assert_close(ours_cos, cos[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(apply_rope(q, ours_cos, ours_sin), hf_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(apply_rope(k, ours_cos, ours_sin), hf_k, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_the_distance():
    D = 16
    cos, sin = rope_tables(D, 64)
    q, k = torch.randn(D), torch.randn(D)

    def score(m: int, n: int) -> float:
        qm = apply_rope(q[None], cos[m : m + 1], sin[m : m + 1])[0]
        kn = apply_rope(k[None], cos[n : n + 1], sin[n : n + 1])[0]
        return float(qm @ kn)

    for dist in (0, 3, 17):
        scores = [score(m + dist, m) for m in (0, 5, 20, 40)]
        assert max(scores) - min(scores) < 1e-4, scores
    assert abs(score(10, 7) - score(10, 0)) > 1e-3  # but it does depend on the distance
    x = torch.randn(3, D)
    torch.testing.assert_close(apply_rope(x, cos[:3], sin[:3]).norm(dim=-1), x.norm(dim=-1))  # a rotation


def test_swiglu_mlp_is_down_of_silu_gate_times_up():
    from course.model import MLP

    c = cfg(bias=True)
    mlp = MLP(c).eval()
    with torch.no_grad():
        mlp.c_fc.bias.normal_()
    x = torch.randn(2, 5, 32)
    h = c.mlp_hidden
    w, b = mlp.c_fc.weight, mlp.c_fc.bias
    gate = x @ w[:h].T + b[:h]
    up = x @ w[h:].T + b[h:]
    ref = (F.silu(gate) * up) @ mlp.c_proj.weight.T + mlp.c_proj.bias
    torch.testing.assert_close(mlp(x), ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- attention: causality, paths, GQA
def future_leak(model: GPT, t: int) -> float:
    x = ids(2, BLOCK, seed=1)
    y = x.clone()
    y[:, t + 1 :] = (y[:, t + 1 :] + 1 + torch.arange(BLOCK - t - 1)) % V
    with torch.no_grad():
        return float((model(x)[0][:, : t + 1] - model(y)[0][:, : t + 1]).abs().max())


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_no_information_leaks_from_the_future(variant, impl):
    model = make(attn_impl=impl, **VARIANTS[variant]).eval()
    for t in (0, 6, BLOCK - 2):
        assert future_leak(model, t) == 0.0


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("kind", ["causal", "doc", "prefix", "short"])
def test_manual_and_sdpa_agree(variant, kind):
    model = trained_like(**VARIANTS[variant])
    x = ids(3, BLOCK, seed=2)
    kw = {"causal": {}, "short": {},
          "doc": {"doc_ids": torch.tensor([[0] * 5 + [1] * 7 + [2] * 4, [0] * 16, [0] * 9 + [-1] * 7])},
          "prefix": {"attn_mask": prefix_lm_mask(BLOCK, 7)}}[kind]
    if kind == "short":
        x = x[:, :3]
    with torch.no_grad():
        a = model(x, **kw)[0]
        model.set_attn_impl("manual")
        b = model(x, **kw)[0]
    assert float(a.abs().max()) > 1.0
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_gqa_equals_mha_with_repeated_key_value_heads():
    """A GQA model is an MHA model whose key/value projections repeat each head H/G times."""
    H, G, D = 4, 2, 8
    gqa = trained_like(n_kv_head=G)
    mha = make(1)
    state = {}
    for name, w in gqa.state_dict().items():
        if name.endswith("attn.c_attn.weight"):
            q, k, v = w.split([32, G * D, G * D])
            rep = lambda t: t.view(G, D, -1).repeat_interleave(H // G, dim=0).reshape(H * D, -1)  # noqa: E731
            w = torch.cat([q, rep(k), rep(v)])
        state[name] = w
    mha.load_state_dict(state)
    x = ids(2, BLOCK, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(gqa.eval()(x)[0], mha.eval()(x)[0], atol=1e-5, rtol=1e-5)


def test_sdpa_without_enable_gqa_repeats_the_heads_itself(monkeypatch):
    import course.model as model_module

    model = trained_like(n_kv_head=2)
    x = ids(2, BLOCK)
    with torch.no_grad():
        native = model(x)[0]
        monkeypatch.setattr(model_module, "_SDPA_GQA", False)  # PyTorch < 2.5
        calls = []
        sdpa = F.scaled_dot_product_attention

        def spy(q, k, v, **kw):
            calls.append((q.shape[1], k.shape[1], "enable_gqa" in kw))
            return sdpa(q, k, v, **kw)

        monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
        fallback = model(x)[0]
    assert calls and all(c == (4, 4, False) for c in calls)
    torch.testing.assert_close(native, fallback, atol=1e-5, rtol=1e-5)


def test_attention_maps_with_gqa_are_causal_probabilities():
    model = make(n_kv_head=1)
    maps = model.attention_maps(ids(2, 9))
    assert len(maps) == 2 and all(m.shape == (2, 4, 9, 9) for m in maps)
    for m in maps:
        assert torch.equal(m.triu(1), torch.zeros_like(m))
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 4, 9))


# ---------------------------------------------------------------- KV cache
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
@pytest.mark.parametrize("chunks", [[1] * BLOCK, [5, 1, 1, 4, 5], [BLOCK]])
def test_kv_cache_logits_equal_the_full_forward(variant, impl, chunks):
    model = trained_like(attn_impl=impl, **VARIANTS[variant])
    x = ids(2, BLOCK, seed=5)
    with torch.no_grad():
        full = model(x)[0]
        cache = model.new_kv_cache(2)
        parts, start = [], 0
        for n in chunks:
            parts.append(model(x[:, start : start + n], kv_cache=cache)[0])
            start += n
            assert cache.length == start
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_the_cache_test_catches_rope_positions_that_ignore_the_cache(monkeypatch):
    """If every chunk were rotated as if it started at position 0, decoding would differ."""
    from course.model import Rotary

    model = trained_like()
    x = ids(1, BLOCK, seed=6)
    forward = Rotary.forward
    monkeypatch.setattr(Rotary, "forward", lambda self, t, start: forward(self, t, 0))
    with torch.no_grad():
        full = model(x)[0]
        cache = model.new_kv_cache(1)
        model(x[:, :8], kv_cache=cache)
        step = model(x[:, 8:9], kv_cache=cache)[0]
    assert float((step[0, 0] - full[0, 8]).abs().max()) > 1e-3


def test_gqa_cache_holds_only_the_key_value_heads():
    mha, gqa, mqa = (make(**VARIANTS[v]).new_kv_cache(3) for v in ("mha", "gqa", "mqa"))
    assert mha.k[0].shape == (3, 4, BLOCK, 8)
    assert gqa.k[0].shape == (3, 2, BLOCK, 8) and mqa.v[1].shape == (3, 1, BLOCK, 8)
    size = lambda c: sum(t.numel() * t.element_size() for t in c.k + c.v)  # noqa: E731
    assert size(mha) == 2 * size(gqa) == 4 * size(mqa)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generation_with_and_without_the_cache_gives_the_same_tokens(variant):
    from course.sample import generate

    model = trained_like(**VARIANTS[variant])
    prompt = ids(2, 4, seed=7)
    a = generate(model, prompt, 20, greedy=True)  # runs past block_size: the sliding window
    b = generate(model, prompt, 20, greedy=True, use_cache=False)
    assert torch.equal(a, b) and a.shape == (2, 24)


# ---------------------------------------------------------------- packed documents
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_a_packed_document_computes_what_it_would_alone_with_rope_only(impl):
    """RoPE scores depend on distances only: behind a document mask, a document packed at
    offset 6 gets the logits it gets alone at offset 0. Learned absolute positions do not."""
    x = ids(1, BLOCK, seed=8)
    doc = torch.tensor([[0] * 6 + [1] * 10])
    for arch, same in (("llama", True), ("gpt2", False)):
        model = trained_like(arch=arch, attn_impl=impl)
        with torch.no_grad():
            packed = model(x, doc_ids=doc)[0][0, 6:]
            alone = model(x[:, 6:])[0][0]
        diff = float((packed - alone).abs().max())
        assert (diff < 1e-4) if same else (diff > 1e-3), (arch, diff)


# ---------------------------------------------------------------- training
def test_overfits_a_tiny_batch_with_every_variant():
    for kw in VARIANTS.values():
        model = make(n_layer=1, **kw)
        x = ids(4, BLOCK, seed=6)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _step in range(200):
            _, loss = model(x, x)
            if loss.item() < 0.1:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < 0.1, kw


def test_initial_loss_is_close_to_uniform():
    model = make()
    _, loss = model(ids(8, BLOCK), ids(8, BLOCK))
    assert abs(loss.item() - math.log(V)) < 0.1


def test_rope_tables_follow_the_model_to_another_dtype_and_are_not_saved():
    model = make()
    assert not any("cos" in k or "sin" in k for k in model.state_dict())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(ids(1, 8))
    assert torch.isfinite(logits).all()


# ---------------------------------------------------------------- Hugging Face: LlamaForCausalLM
HF_VARIANTS = {
    **VARIANTS,
    "bias_theta": dict(n_kv_head=2, bias=True, rope_theta=500.0),
}


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_logits_and_loss_match_llama(variant, impl):
    from transformers import LlamaForCausalLM

    from course.export import to_hf

    model = trained_like(attn_impl=impl, **HF_VARIANTS[variant])
    hf = to_hf(model)
    assert isinstance(hf, LlamaForCausalLM)
    x = ids(3, BLOCK, seed=2)
    labels = x.clone()
    labels[0, 10:] = -100
    with torch.no_grad():
        ours, our_loss = model(x, labels)
        out = hf(x, labels=labels)
    assert float(ours.abs().max()) > 1.0
    torch.testing.assert_close(ours, out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_loss, out.loss, atol=1e-5, rtol=1e-5)


def test_config_and_weights_are_carried_over():
    from course.export import to_hf

    model = trained_like(n_kv_head=2, tie_embeddings=False, rope_theta=500.0)
    hf = to_hf(model)
    c = hf.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
            c.num_key_value_heads, c.intermediate_size, c.max_position_embeddings) == (
        V, 32, 2, 4, 2, swiglu_hidden(32), BLOCK)
    assert c.hidden_act == "silu" and c.rms_norm_eps == 1e-5 and not c.tie_word_embeddings
    assert not c.attention_bias and not c.mlp_bias
    ours, theirs = model.state_dict(), hf.state_dict()
    w = ours["transformer.h.1.attn.c_attn.weight"]
    assert torch.equal(theirs["model.layers.1.self_attn.q_proj.weight"], w[:32])
    assert torch.equal(theirs["model.layers.1.self_attn.k_proj.weight"], w[32:48])
    assert torch.equal(theirs["model.layers.1.self_attn.v_proj.weight"], w[48:])
    h = swiglu_hidden(32)
    assert torch.equal(theirs["model.layers.0.mlp.gate_proj.weight"], ours["transformer.h.0.mlp.c_fc.weight"][:h])
    assert torch.equal(theirs["model.layers.0.mlp.up_proj.weight"], ours["transformer.h.0.mlp.c_fc.weight"][h:])
    assert torch.equal(theirs["lm_head.weight"], ours["lm_head.weight"])
    assert hf.lm_head.weight is not hf.model.embed_tokens.weight
    tied = to_hf(trained_like())
    assert tied.lm_head.weight is tied.model.embed_tokens.weight


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_round_trip_preserves_every_weight(variant):
    from course.export import from_hf, to_hf

    model = trained_like(**HF_VARIANTS[variant])
    back = from_hf(to_hf(model))
    assert back.config == model.config
    for name, a in model.state_dict().items():
        assert torch.equal(a, back.state_dict()[name]), name
    assert (back.lm_head.weight is back.transformer.wte.weight) == model.config.tie_embeddings


def test_import_of_a_fresh_llama_gives_the_same_logits():
    from transformers import LlamaConfig, LlamaForCausalLM

    from course.export import from_hf

    torch.manual_seed(1)
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=BLOCK, rms_norm_eps=1e-5, rope_theta=2000.0,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)).eval()
    model = from_hf(hf)
    assert (model.config.arch, model.config.n_kv_head, model.config.mlp_hidden, model.config.rope_theta) == (
        "llama", 2, 80, 2000.0)
    x = ids(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf(x).logits, atol=1e-5, rtol=1e-5)


def test_import_rejects_llama_variants_we_cannot_express():
    from transformers import LlamaConfig, LlamaForCausalLM

    from course.export import from_hf_llama

    base = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=4, max_position_embeddings=BLOCK, rms_norm_eps=1e-5,
                bos_token_id=None, eos_token_id=None, pad_token_id=None)
    for extra, words in ((dict(hidden_act="gelu"), "hidden_act='gelu'"),
                         (dict(rms_norm_eps=1e-6), "rms_norm_eps"),
                         (dict(attention_bias=True), "biases in attention but not in the MLP"),
                         (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "RoPE scaling")):
        with pytest.raises(ConfigError, match=words):
            from_hf_llama(LlamaForCausalLM(LlamaConfig(**{**base, **extra})))
    with pytest.raises(ConfigError, match="LlamaForCausalLM"):
        from_hf_llama(torch.nn.Linear(2, 2))


def test_only_the_two_blocks_are_exportable_and_errors_say_why():
    from course.export import hf_family, to_hf, to_hf_gpt2

    assert hf_family(cfg(arch="gpt2")) == "gpt2" and hf_family(cfg(n_kv_head=1, bias=True)) == "llama"
    with pytest.raises(ConfigError, match="mixes GPT-2's and Llama's blocks.*norm='rmsnorm'"):
        to_hf(trained_like(arch="gpt2", norm="rmsnorm"))
    with pytest.raises(ConfigError, match=r"n_kv_head=2 .*GPT-2 has one key/value head"):
        hf_family(cfg(arch="gpt2", n_kv_head=2))
    with pytest.raises(ConfigError, match="export it with to_hf, as a Llama"):
        to_hf_gpt2(trained_like(bias=True))


def test_save_then_auto_load_offline_gives_a_llama_with_our_logits(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from course.export import save_hf, to_hf

    model = trained_like(n_kv_head=2, rope_theta=500.0)
    save_hf(to_hf(model), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForCausalLM"]
    assert saved["rope_theta"] == 500.0  # the key transformers 4.x reads (5.x writes rope_parameters)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    assert isinstance(loaded, LlamaForCausalLM)
    x = ids(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x)[0], atol=1e-5, rtol=1e-5)
    # rope_theta really matters: a llama with the default base computes something else
    other = trained_like(n_kv_head=2)
    with torch.no_grad():
        assert float((other(x)[0] - model(x)[0]).abs().max()) > 1e-3


def test_huggingface_greedy_generate_equals_ours():
    from course.export import to_hf
    from course.sample import generate

    model = trained_like(n_kv_head=2)
    hf = to_hf(model)
    prompt = ids(1, 3, seed=9)
    ours = generate(model, prompt, 10, greedy=True)[0].tolist()
    theirs = hf.generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=0)[0].tolist()
    assert ours == theirs and len(ours) == 13


# ---------------------------------------------------------------- Hugging Face: the Trainer
@pytest.fixture(scope="module")
def markov():
    from course.packing import pack_documents
    from course.synthetic import synthetic_corpus
    from course.tokenizer import train_tokenizer

    corpus = synthetic_corpus(n_docs=60, doc_chars=1000, order=1, seed=0)
    tok = train_tokenizer("char", corpus.train)
    tr = pack_documents(tok.encode_batch(corpus.train), 32, tok.eos_id)
    va = pack_documents(tok.encode_batch(corpus.val), 32, tok.eos_id)
    return tok, tr, va


def test_trainer_trains_a_llama_step_for_step_like_our_loop(markov, tmp_path):
    """From the same weights, schedule and batches the Trainer's LlamaForCausalLM follows
    our loop (RMSNorm gains are not decayed by either); the result imports back."""
    from transformers import LlamaForCausalLM

    from course.export import from_hf
    from course.hf_trainer import hf_model_for, train_with_hf_trainer
    from course.train import TrainConfig, train

    tok, tr, va = markov
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32,
                       arch="llama", n_kv_head=1)
    assert isinstance(hf_model_for(config), LlamaForCausalLM)
    cfg = TrainConfig(max_steps=20, batch_size=16, lr=1e-2, warmup_steps=0, eval_interval=20,
                      eval_batches=2, grad_clip=0.5, device="cpu", seed=0)
    torch.manual_seed(1)
    start = GPT(config)
    theirs = train_with_hf_trainer(tr, va, config, cfg, tmp_path, tokenizer=tok, init_from=start)
    ours = train(start, tr, va, cfg, progress=False)
    assert isinstance(theirs.model, LlamaForCausalLM)
    assert [r["train_loss"] for r in theirs.history] == pytest.approx(
        [r["train_loss"] for r in ours.history], abs=1e-4)
    assert theirs.final_val_loss == pytest.approx(ours.final_val_loss, abs=1e-4)
    assert ours.history[-1]["train_loss"] < 0.8 * ours.history[0]["train_loss"]
    back = from_hf(theirs.model)
    x = va.input_ids[:2]
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], start.eval()(x)[0], atol=1e-4, rtol=1e-4)


def test_trainer_refuses_a_llama_with_dropout():
    from course.hf_trainer import hf_gpt2_config, hf_model_for

    with pytest.raises(ConfigError, match="dropout=0.1.*attention weights only"):
        hf_model_for(cfg(dropout=0.1))
    with pytest.raises(ConfigError, match="Llama's block"):
        hf_gpt2_config(cfg(bias=True))


# ---------------------------------------------------------------- course.ablation (correctness only)
@pytest.fixture(scope="module")
def ablation():
    from course import ablation

    return ablation


def test_every_ablation_variant_changes_only_what_it_names(ablation):
    base = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    ref = base.to_dict()
    for name, changes in ablation.VARIANTS.items():
        c = ablation.variant_config(base, changes).to_dict()
        diff = {k for k in ref if c[k] != ref[k]}
        expected = {"gpt2": set(), "+rmsnorm": {"norm"}, "+rope": {"pos"}, "-bias": {"bias"},
                    "+swiglu": {"mlp", "mlp_hidden"}, "+gqa": {"n_kv_head"}, "+untied": {"tie_embeddings"},
                    "llama": {"arch", "norm", "pos", "mlp", "mlp_hidden", "bias"},
                    "llama+gqa": {"arch", "norm", "pos", "mlp", "mlp_hidden", "bias", "n_kv_head"}}[name]
        assert diff == expected, name
        assert (c["n_layer"], c["n_head"], c["n_embd"], c["block_size"]) == (4, 4, 128, 64)
    gqa = ablation.variant_config(base, ablation.VARIANTS["+gqa"])
    assert ablation.kv_cache_bytes_per_token(base) == 2 * 4 * 4 * 32 * 4 == 2 * ablation.kv_cache_bytes_per_token(gqa)


def test_ablation_trains_each_variant_for_the_budget_and_writes_a_table(ablation):
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n") * 60
    tiny = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_batches=2)
    doc = ablation.run_ablation(text, preset="cpu", budget_s=0.5, variants=["gpt2", "llama+gqa"],
                                overrides=tiny)
    doc = json.loads(json.dumps(doc))  # JSON-ready
    assert doc["settings"]["n_embd"] == 16 and doc["settings"]["arch"] == "gpt2"  # what ran
    assert [r["variant"] for r in doc["rows"]] == ["gpt2", "llama+gqa"]
    for r in doc["rows"]:
        assert r["steps"] >= 1 and math.isfinite(r["val_loss"]) and r["s_per_step"] > 0
        assert 0.5 <= r["train_s"] < 5  # trained until the budget was spent, then stopped
        assert r["val_loss"] < math.log(len(set(text)) + 1)  # it learned something
    gpt2, llama = doc["rows"]
    assert llama["config"]["pos"] == "rope" and llama["config"]["n_kv_head"] == 1
    assert gpt2["kv_cache_bytes_per_token"] == 2 * llama["kv_cache_bytes_per_token"]
    table = ablation.markdown_table(doc)
    assert "| gpt2 |" in table and "| llama+gqa |" in table and "+0.0000" in table
    with pytest.raises(ConfigError, match="unknown variant"):
        ablation.run_ablation(text, variants=["gpt3"])
    for bad in (0.0, float("inf")):  # refused before any data is prepared
        with pytest.raises(ConfigError, match="max_seconds must be a positive number"):
            ablation.run_ablation(text, budget_s=bad)


def test_the_shipped_ablation_has_every_variant_and_reproduces_from_its_settings(ablation):
    from dataclasses import asdict

    from course.presets import get_preset

    doc = ablation.load_ablation()
    assert doc["preset"] == "cpu" and doc["budget_s"] == 180
    # what it ran with: the cpu preset as it was then (GPT-2's block as the base), which
    # today's preset plus settings_overrides(doc) gives back, setting for setting
    s = doc["settings"]
    assert s["arch"] == "gpt2" and {k: s[k] for k in doc["overrides"]} == doc["overrides"]
    then = asdict(get_preset("cpu").with_overrides(**ablation.settings_overrides(doc)))
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in then.items() if k in s and k not in
            ("arch", "n_kv_head")} == {k: v for k, v in s.items() if k not in ("arch", "n_kv_head")}
    assert then["fused_adamw"] is False  # recorded before the field existed: the default kernel
    p = get_preset("cpu")
    assert (s["n_layer"], s["n_embd"], s["block_size"]) == (p.n_layer, p.n_embd, p.block_size)
    assert sorted(r["variant"] for r in doc["rows"]) == sorted(ablation.VARIANTS)
    for r in doc["rows"]:
        c = r["config"]
        assert (c["n_layer"], c["n_head"], c["n_embd"], c["block_size"]) == (
            s["n_layer"], s["n_head"], s["n_embd"], s["block_size"])
        assert 1.0 < r["val_loss"] < 3.0 and r["steps"] > 100
        # equal wall time: every variant trained until the budget was spent, one step more at most
        assert doc["budget_s"] <= r["train_s"] < doc["budget_s"] + 1, r["variant"]
        assert r["kv_cache_bytes_per_token"] == ablation.kv_cache_bytes_per_token(GPTConfig(**{
            k: c[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_kv_head")}))
    assert "| llama |" in ablation.markdown_table(doc)


def test_load_ablation_says_how_to_make_the_file(ablation, tmp_path):
    with pytest.raises(ConfigError, match="python bench/ablation.py --out"):
        ablation.load_ablation(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not an ablation JSON file"):
        ablation.load_ablation(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": 1, "runs": []}))
    with pytest.raises(ConfigError, match="format 1"):
        ablation.load_ablation(tmp_path / "other.json")


# ---------------------------------------------------------------- course run --arch
@pytest.mark.slow
def test_course_run_arch_llama_trains_the_modern_block_and_resume_keeps_it(tmp_path):
    from course.cli import main
    from course.pipeline import load_run

    run = tmp_path / "run"
    args = ["run", "--corpus", "synthetic", "--tokenizer", "char", "--preset", "tiny", "--no-progress",
            "--device", "cpu", "--out", str(run)]
    assert main([*args, "--arch", "llama", "--max-steps", "4"]) == 0
    model, _, config = load_run(run, "cpu")
    assert config["model"]["arch"] == "llama" and "wpe" not in model.transformer
    # resuming without --arch continues the run's own architecture, not the preset's (gpt2)
    assert main([*args, "--resume", "--max-steps", "4"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4
    assert main([*args, "--resume", "--max-steps", "4", "--arch", "gpt2"]) == 2  # a different model
