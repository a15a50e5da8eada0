"""Export to Hugging Face GPT-2: same logits, same loss, round trips, save/load offline."""

from __future__ import annotations

import pytest
import tiny_models
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from course.errors import ConfigError
from course.export import CONV1D_SUFFIXES, from_hf_gpt2, to_hf_gpt2
from course.model import GPT, GPTConfig

V, BLOCK = 29, 16


def trained_like(seed: int = 0, **kw) -> GPT:
    """A tiny GPT with non-trivial weights (random biases and LayerNorm gains too)."""
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32)
    return tiny_models.trained_like(GPTConfig(**{**base, **kw}), seed)


def random_ids(B: int = 3, T: int = BLOCK, seed: int = 0) -> torch.Tensor:
    return tiny_models.token_ids(V, B, T, seed)


def test_config_is_carried_over():
    hf = to_hf_gpt2(trained_like(dropout=0.1))
    c = hf.config
    assert (c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head) == (V, BLOCK, 32, 2, 4)
    assert c.activation_function == "gelu_new" and c.layer_norm_epsilon == 1e-5
    assert c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == 0.1
    assert c.tie_word_embeddings
    assert hf.lm_head.weight is hf.transformer.wte.weight


@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_logits_and_loss_match_gpt2(impl):
    model = trained_like(attn_impl=impl)
    hf = to_hf_gpt2(model)
    x = random_ids()
    labels = x.clone()
    labels[0, 10:] = -100
    with torch.no_grad():
        ours, our_loss = model(x, labels)
        out = hf(x, labels=labels)
        self_loss = hf(x, labels=x).loss
    assert float(ours.abs().max()) > 1.0  # the comparison is not between near-zero numbers
    torch.testing.assert_close(ours, out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_loss, out.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x, x)[1], self_loss, atol=1e-5, rtol=1e-5)


def test_short_sequences_match_too():
    model = trained_like()
    hf = to_hf_gpt2(model)
    x = random_ids(2, 5, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf(x).logits, atol=1e-5, rtol=1e-5)


def test_conv1d_weights_are_transposed_and_the_rest_copied():
    model = trained_like()
    hf = to_hf_gpt2(model)
    ours, theirs = model.state_dict(), hf.state_dict()
    assert set(ours) == set(theirs)
    for name, w in ours.items():
        expected = w.t() if name.endswith(CONV1D_SUFFIXES) else w
        assert torch.equal(theirs[name], expected), name


def test_round_trip_preserves_every_weight():
    model = trained_like()
    back = from_hf_gpt2(to_hf_gpt2(model))
    assert back.config == model.config
    ours, theirs = model.state_dict(), back.state_dict()
    assert list(ours) == list(theirs)
    for name, a in ours.items():
        assert torch.equal(a, theirs[name]), name
    assert back.lm_head.weight is back.transformer.wte.weight


def test_import_of_a_fresh_gpt2_gives_the_same_logits():
    torch.manual_seed(1)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=BLOCK, n_embd=32, n_layer=2, n_head=4,
                                    bos_token_id=None, eos_token_id=None)).eval()
    model = from_hf_gpt2(hf)
    x = random_ids(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf(x).logits, atol=1e-5, rtol=1e-5)


def test_save_pretrained_then_from_pretrained_offline(tmp_path):
    model = trained_like()
    to_hf_gpt2(model).save_pretrained(tmp_path)
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path, local_files_only=True).eval()
    x = random_ids(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x)[0], atol=1e-5, rtol=1e-5)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_export_needs_biases():
    with pytest.raises(ConfigError, match="bias=False"):
        to_hf_gpt2(trained_like(bias=False))


def test_import_rejects_gpt2_variants_we_cannot_express():
    cfg = dict(vocab_size=V, n_positions=BLOCK, n_embd=32, n_layer=1, n_head=4,
               bos_token_id=None, eos_token_id=None)
    with pytest.raises(ConfigError, match="activation_function='relu'"):
        from_hf_gpt2(GPT2LMHeadModel(GPT2Config(**cfg, activation_function="relu")))
    with pytest.raises(ConfigError, match="n_inner=64"):
        from_hf_gpt2(GPT2LMHeadModel(GPT2Config(**cfg, n_inner=64)))
    with pytest.raises(ConfigError, match="layer_norm_epsilon"):
        from_hf_gpt2(GPT2LMHeadModel(GPT2Config(**cfg, layer_norm_epsilon=1e-6)))
    with pytest.raises(ConfigError, match="GPT2LMHeadModel"):
        from_hf_gpt2(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="course.model.GPT"):
        to_hf_gpt2(torch.nn.Linear(2, 2))


# ------------------------------------------------- export destinations (course export --to)


def test_export_destination_refusals(tmp_path):
    """An export never destroys: not into the run itself or any run directory (even with
    --force), not into a non-empty directory without --force."""
    from course.export import check_export_destination

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is the run directory itself"):
        check_export_destination(run, run, force=True)
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(ConfigError, match="is the run directory itself"):
        check_export_destination(run, tmp_path / "link", force=True)
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"holds a run \(checkpoint.safetensors\).*--force or not"):
        check_export_destination(run, other, force=True)
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"is not empty \(config.json\).*pass --force"):
        check_export_destination(run, used)
    assert check_export_destination(run, used, force=True) == used
    (tmp_path / "empty").mkdir()
    assert check_export_destination(run, tmp_path / "empty") == tmp_path / "empty"
    assert check_export_destination(run, tmp_path / "new" / "hf") == tmp_path / "new" / "hf"
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError):
        check_export_destination(run, tmp_path / "a-file" / "hf")
