"""Data parallel training under torchrun: 2 CPU processes (gloo) == 1 process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from course import distributed
from course.errors import ConfigError

RUN_ARGS = ["run", "--corpus", "synthetic", "--tokenizer", "char", "--preset", "tiny",
            "--max-steps", "40", "--no-progress", "--json", "--device", "cpu"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_loss_curve(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "course.cli", *RUN_ARGS, "--out", str(single)])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          "-m", "course.cli", *RUN_ARGS, "--out", str(ddp)])

    one = json.loads((single / "history.json").read_text())
    two = json.loads((ddp / "history.json").read_text())
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 41))
    a = torch.tensor([r["train_loss"] for r in one])
    b = torch.tensor([r["train_loss"] for r in two])
    # same data, same global batch, gradients averaged: equal up to float summation order
    torch.testing.assert_close(b, a, rtol=2e-4, atol=2e-4)
    assert a[-1] < a[0] - 0.1, "the run must actually learn for the comparison to mean anything"
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert abs(metrics["val_loss"] - json.loads((single / "metrics.json").read_text())["val_loss"]) < 1e-3
    # only rank 0 wrote: one checkpoint, one set of samples
    assert (ddp / "checkpoint.safetensors").is_file() and (ddp / "samples.txt").is_file()


def test_a_global_batch_must_split_evenly_over_processes():
    ctx = distributed.DistContext(rank=1, world_size=3)
    with pytest.raises(ConfigError, match="multiple of 3"):
        distributed.local_slice(torch.arange(8), ctx)
    ctx2 = distributed.DistContext(rank=1, world_size=2)
    assert distributed.local_slice(torch.arange(8), ctx2).tolist() == [4, 5, 6, 7]
    assert distributed.local_slice(torch.arange(5), distributed.DistContext()).tolist() == list(range(5))


def test_without_torchrun_nothing_is_initialised(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.init_from_env()
    assert (ctx.world_size, ctx.rank, ctx.is_main, ctx.enabled) == (1, 0, True, False)
    assert distributed.broadcast_object("x", ctx) == "x"
