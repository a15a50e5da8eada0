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


# ------------------------------------------------- architecture in the weights, run records


def test_weights_record_the_whole_architecture_and_refuse_any_other(tmp_path):
    import json

    model, _ = model_and_optimizer()
    path = tmp_path / "model.safetensors"
    ck.save_weights(model, path, record={"id": "r1", "step": 3})
    meta = ck.read_metadata(path)
    assert json.loads(meta[ck.ARCH_KEY]) == model.config.to_dict()  # every field, generically
    assert json.loads(meta[ck.RUN_KEY]) == {"id": "r1", "step": 3}
    assert ck.check_architecture(model.config.to_dict(), path) == meta
    # a single field differs (same shapes: n_head only changes how the width is split)
    other = {**model.config.to_dict(), "n_head": 1}
    if "n_kv_head" in other:  # grouped-query attention: as many key/value heads as heads
        other["n_kv_head"] = 1
    with pytest.raises(CheckpointError, match=r"n_head: 1 in the config, 2 in the weights"):
        ck.check_architecture(other, path)
    same_shapes = GPT(GPTConfig.from_dict(other))
    with pytest.raises(CheckpointError, match=r"different model config.*\n  n_head: 1 in the model, 2"):
        ck.load_weights(same_shapes, path)


def test_an_absurd_config_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    import json

    from safetensors.torch import save_file

    model, _ = model_and_optimizer()
    path = tmp_path / "model.safetensors"
    absurd = {**model.config.to_dict(), "n_embd": 10_000_000}
    ck.save_weights(model, path)
    with pytest.raises(CheckpointError, match="n_embd: 10000000 in the config, 16 in the weights"):
        ck.check_architecture(absurd, path)
    # a file whose metadata claims the absurd size too: shapes are compared on the meta
    # device, where a 10-million-wide model costs nothing
    save_file(ck.unique_state_dict(model), str(path),
              metadata={"format": "pt", ck.ARCH_KEY: json.dumps(absurd)})
    allocated = []
    real_empty = torch.empty

    def watch(*a, **k):
        t = real_empty(*a, **k)
        if t.device.type != "meta":
            allocated.append(t.numel())
        return t

    monkeypatch.setattr(torch, "empty", watch)
    with pytest.raises(CheckpointError, match="its tensors do not fit the architecture it records"):
        ck.check_architecture(absurd, path)
    assert max(allocated, default=0) < 10_000_000


def test_weights_without_an_architecture_are_not_trusted(tmp_path):
    from safetensors.torch import save_file

    model, _ = model_and_optimizer()
    save_file(ck.unique_state_dict(model), str(tmp_path / "old.safetensors"))
    with pytest.raises(CheckpointError, match="does not record the architecture"):
        ck.check_architecture(model.config.to_dict(), tmp_path / "old.safetensors")


def test_checkpoint_info_reads_the_header_only(tmp_path, monkeypatch):
    model, opt = model_and_optimizer()
    path = tmp_path / "c.safetensors"
    ck.save_checkpoint(path, model, opt, step=7, extra={"run": {"id": "x"}})
    monkeypatch.setattr(ck, "load_file", lambda *a, **k: pytest.fail("tensors were read"))
    assert ck.read_checkpoint_info(path) == {"step": 7, "extra": {"run": {"id": "x"}}}
    ck.save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="no training state"):
        ck.read_checkpoint_info(tmp_path / "w.safetensors")


# ------------------------------------------------------------------------- atomic writes


def test_a_symlink_at_the_destination_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text("precious")
    link = tmp_path / "run" / "metrics.json"
    link.parent.mkdir()
    link.symlink_to(outside)
    atomic_write_text(link, "{}")
    assert outside.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "{}"


def test_stale_temporary_files_of_ours_are_removed_and_nothing_else(tmp_path):
    from course.atomic import is_our_temp_name, remove_stale_temp_files

    model, opt = model_and_optimizer()

    def killed(tmp):  # a write that never reached its rename
        ck.save_file({"x": torch.zeros(3)}, tmp)
        raise SystemExit

    with pytest.raises(SystemExit):
        ck.atomic_replace(tmp_path / "model.safetensors", killed)
    # (atomic_replace deletes its own temp on an exception; a SIGKILL would not: simulate)
    leftovers = [".model.safetensors.course-k3j_9x.tmp", ".checkpoint.safetensors.ab12cd34.tmp"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"\0" * 100)
    (tmp_path / ".tokenizer.course-zz9.tmp").mkdir()
    keep = ["notes.tmp", ".notes.tmp", ".model.safetensors.tmp", "config.json", ".other.abcdefgh.tmp"]
    for name in keep:
        (tmp_path / name).write_text("x")
    assert all(is_our_temp_name(n, ["checkpoint.safetensors"]) for n in leftovers)
    removed = remove_stale_temp_files(tmp_path, ["checkpoint.safetensors"])
    assert sorted(removed) == sorted([*leftovers, ".tokenizer.course-zz9.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
