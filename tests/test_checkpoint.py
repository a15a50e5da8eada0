"""Checkpoints: exact round trip, atomic replacement, clear errors on bad files."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import course.checkpoint as ck
from course.atomic import atomic_write_text
from course.errors import CheckpointError
from course.model import GPT, GPTConfig


def model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 11, (4, 8))
    for _ in range(3):
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, opt = model_and_optimizer()
    torch.manual_seed(42)
    ck.save_checkpoint(tmp_path / "c.safetensors", model, opt, step=3, extra={"note": [1, 2]})
    expected_draw = torch.rand(3)

    other, other_opt = model_and_optimizer(seed=9)
    info = ck.load_checkpoint(tmp_path / "c.safetensors", other, other_opt)
    assert info == {"step": 3, "extra": {"note": [1, 2]}}
    assert torch.equal(torch.rand(3), expected_draw)  # RNG state restored
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)
    assert other.lm_head.weight is other.transformer.wte.weight or torch.equal(
        other.lm_head.weight, other.transformer.wte.weight)
    s1, s2 = opt.state_dict(), other_opt.state_dict()
    assert s1["param_groups"][0]["lr"] == s2["param_groups"][0]["lr"]
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(s1["state"][k][name]), torch.as_tensor(s2["state"][k][name]))


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    model, opt = model_and_optimizer()
    ck.save_checkpoint(path, model, opt, step=1)
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", crash)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, model, opt, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path, umask, mode):
    """A temporary file is private (0600) and a rename keeps its mode: without a chmod,
    every run file would be unreadable to the rest of a shared group or a web server."""
    model, opt = model_and_optimizer()
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        ck.save_weights(model, tmp_path / "model.safetensors")
        ck.save_checkpoint(tmp_path / "c.safetensors", model, opt, step=1)
    finally:
        os.umask(old)
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == mode, p.name
    # a file that is replaced keeps the mode it had (a notebook, say, that was made 0640)
    os.chmod(tmp_path / "metrics.json", 0o640)
    atomic_write_text(tmp_path / "metrics.json", "{\"a\": 1}")
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o640


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "c.safetensors"
    model, opt = model_and_optimizer()
    ck.save_checkpoint(path, model, opt, step=1)
    data = path.read_bytes()
    path.write_bytes(b"not a checkpoint at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        ck.load_checkpoint(path, model, opt)


def test_missing_and_weights_only_files_are_clear_errors(tmp_path):
    model, opt = model_and_optimizer()
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope.safetensors", model)
    ck.save_weights(model, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="no training state"):
        ck.load_checkpoint(tmp_path / "model.safetensors", model)


def test_weights_of_another_config_are_rejected(tmp_path):
    model, _ = model_and_optimizer()
    ck.save_weights(model, tmp_path / "model.safetensors")
    bigger = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(CheckpointError, match="different model config|do not fit"):
        ck.load_weights(bigger, tmp_path / "model.safetensors")


def test_weights_file_stores_tied_embedding_once(tmp_path):
    from safetensors.torch import load_file

    model, _ = model_and_optimizer()
    ck.save_weights(model, tmp_path / "w.safetensors")
    names = set(load_file(tmp_path / "w.safetensors"))
    assert len(names) == len(ck.unique_state_dict(model)) == len(model.state_dict()) - 1
    fresh = GPT(model.config)
    ck.load_weights(fresh, tmp_path / "w.safetensors")
    x = torch.randint(0, 11, (2, 8))
    assert torch.equal(fresh(x)[0], model(x)[0])
