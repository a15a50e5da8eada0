"""Presets: what `course run --preset NAME` trains is exactly the preset's settings."""

from __future__ import annotations

import pytest
import torch

from course.errors import ConfigError
from course.pipeline import model_config_from_preset, train_config_from_preset
from course.presets import PRESETS, default_preset_name, get_preset


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*tiny, cpu, gpu"):
        get_preset("huge")


def test_overrides_replace_fields_ignore_none_and_reject_typos():
    cpu = get_preset("cpu")
    short = cpu.with_overrides(max_steps=10, lr=None)
    assert short.max_steps == 10 and short.lr == cpu.lr and cpu.max_steps != 10  # a copy
    with pytest.raises(ConfigError, match="max_step"):
        cpu.with_overrides(max_step=10)


@pytest.mark.parametrize("name", list(PRESETS))
def test_train_config_carries_every_optimisation_setting(name):
    p = get_preset(name)
    cfg = train_config_from_preset(p, device="cpu", seed=3)
    assert (cfg.max_steps, cfg.batch_size, cfg.grad_accum) == (p.max_steps, p.batch_size, p.grad_accum)
    assert (cfg.lr, cfg.min_lr_ratio, cfg.weight_decay, cfg.grad_clip) == (
        p.lr, p.min_lr_ratio, p.weight_decay, p.grad_clip)
    assert cfg.betas == tuple(p.betas) and len(cfg.betas) == 2
    assert cfg.warmup_steps == p.warmup_steps  # full-length runs keep the preset's warmup
    assert cfg.eval_interval == p.eval_interval and cfg.eval_batches == p.eval_batches
    assert cfg.seed == 3 and cfg.device == "cpu" and cfg.fused_adamw == p.fused_adamw


def test_a_shortened_run_keeps_warmup_to_a_tenth():
    cfg = train_config_from_preset(get_preset("cpu").with_overrides(max_steps=50))
    assert cfg.warmup_steps == 5 and cfg.eval_interval == 50


@pytest.mark.parametrize("name", list(PRESETS))
def test_model_config_has_the_preset_shape(name):
    p = get_preset(name)
    c = model_config_from_preset(p, vocab_size=65)
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.dropout) == (
        p.n_layer, p.n_head, p.n_embd, p.block_size, p.dropout)
    assert c.vocab_size == 65 and p.n_embd % p.n_head == 0


def test_gpu_preset_is_about_ten_million_parameters():
    from course.model import GPT

    n = GPT(model_config_from_preset(get_preset("gpu"), vocab_size=65)).num_params()
    assert 9e6 < n < 12e6


def test_default_preset_follows_the_device():
    assert default_preset_name() == ("gpu" if torch.cuda.is_available() else "tiny")


def test_the_default_preset_follows_the_device_the_run_trains_on():
    """`course run --device cpu` on a GPU machine must not pick the hours-long gpu preset."""
    assert default_preset_name("cpu") == "tiny"
    assert default_preset_name(torch.device("cpu")) == "tiny"
    assert default_preset_name(torch.device("cuda")) == "gpu"
    assert default_preset_name("cuda:1") == "gpu"


# ---------------------------------------------------------------- architecture
def test_presets_carry_a_valid_architecture_and_the_names_match_the_model():
    from course.model import ARCHS
    from course.presets import ARCH_NAMES

    assert ARCH_NAMES == tuple(ARCHS)
    for p in PRESETS.values():
        c = model_config_from_preset(p, vocab_size=65)
        assert c.arch == p.arch in ARCH_NAMES
        assert c.n_kv_head == (p.n_kv_head or p.n_head)


def test_an_arch_override_builds_the_modern_block():
    p = get_preset("gpu").with_overrides(arch="llama", n_kv_head=2)
    c = model_config_from_preset(p, vocab_size=65)
    assert (c.arch, c.norm, c.pos, c.mlp, c.bias, c.n_kv_head) == ("llama", "rmsnorm", "rope", "swiglu", False, 2)
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size) == (p.n_layer, p.n_head, p.n_embd, p.block_size)
    assert get_preset("gpu").arch == "gpt2"  # with_overrides made a copy
    for name in ("tiny", "cpu"):  # the block that won at their sizes (bench/RESULTS.md)
        assert get_preset(name).arch == "llama"
        back = model_config_from_preset(get_preset(name).with_overrides(arch="gpt2"), vocab_size=65)
        assert (back.norm, back.pos, back.mlp, back.bias) == ("layernorm", "learned", "gelu", True)


def test_the_cpu_preset_is_the_block_that_won_the_ablation():
    """`cpu` trains whichever block the shipped equal-wall-time ablation found better."""
    from course.ablation import load_ablation

    rows = {r["variant"]: r["val_loss"] for r in load_ablation()["rows"]}
    winner = "llama" if rows["llama"] < rows["gpt2"] else "gpt2"
    assert get_preset("cpu").arch == winner == "llama"
    assert get_preset("cpu").n_kv_head is None  # a key/value head per query head: GQA cost loss here
    assert rows["llama+gqa"] > rows["llama"]
    with pytest.raises(ConfigError, match=r"unknown architecture 'mamba'.*gpt2, llama"):
        get_preset("cpu").with_overrides(arch="mamba")
    with pytest.raises(ConfigError, match="n_kv_head"):
        model_config_from_preset(get_preset("cpu").with_overrides(n_kv_head=3), vocab_size=65)


def test_the_llama_gpu_preset_keeps_about_ten_million_parameters():
    from course.model import GPT

    n = GPT(model_config_from_preset(get_preset("gpu").with_overrides(arch="llama"), vocab_size=65)).num_params()
    assert 9e6 < n < 12e6
