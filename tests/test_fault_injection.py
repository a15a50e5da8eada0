"""Fault injection: `course run` and `course export` are SIGKILLed at 20+ moments, and after
each the run directory must hold a consistent state, `course evaluate` must work or say
clearly why not, and continuing must end exactly where the uninterrupted run ends.

The moments: right before or right after one of the renames that put a file in place (the
tokenizer files, config.json, a checkpoint, history.json, the final weights, samples and
metrics, an export), chosen at random among the renames the process will make, and
random instants while it trains. A killed process is continued by the next one, as a user
would: `--resume` when there is a checkpoint, `--overwrite` when the run stopped before its
first one. So each kill starts from the state the previous kill left, and the final
comparison with an uninterrupted run (metrics, weights, history and samples all equal)
covers every state on the way.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from course.cli import main

pytestmark = pytest.mark.slow

MAX_STEPS = 6
CKPT_EVERY = 2
ARGS = ["run", "--corpus", "synthetic", "--tokenizer", "char", "--preset", "tiny",
        "--max-steps", str(MAX_STEPS), "--no-progress", "--device", "cpu", "--seed", "1"]
# Metrics that measure the machine, not the run.
TIMING = {"train_seconds", "prep_seconds", "tokens_per_s", "run_dir", "run_id"}

# The child: `course` with a checkpoint every CKPT_EVERY steps (the tiny preset saves only at
# the end of so short a run; where checkpoints are saved changes no result) and, when asked,
# a SIGKILL of itself right before or after its N-th rename into FAULT_DIR (or into a
# temporary folder whose name starts with FAULT_STAGE, where an export is staged).
CHILD = f"""
import dataclasses, os, signal, sys
import course.pipeline as pipeline
_preset_cfg = pipeline.train_config_from_preset
pipeline.train_config_from_preset = lambda *a, **k: dataclasses.replace(
    _preset_cfg(*a, **k), checkpoint_interval={CKPT_EVERY})
if os.environ.get("FAULT_DIR"):
    where, n, when = os.path.abspath(os.environ["FAULT_DIR"]), int(os.environ["FAULT_N"]), os.environ["FAULT_WHEN"]
    stage = os.environ.get("FAULT_STAGE") or None
    seen = [0]
    def counted(dst):
        parent = os.path.dirname(os.path.abspath(dst))
        return parent == where or (stage is not None and os.path.basename(parent).startswith(stage))
    def wrap(real):
        def rename(src, dst, *a, **k):
            if not counted(dst):
                return real(src, dst, *a, **k)
            seen[0] += 1
            if seen[0] == n and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(src, dst, *a, **k)
            if seen[0] == n and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return rename
    os.replace, os.rename = wrap(os.replace), wrap(os.rename)
from course.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child(args: list[str], fault: tuple[Path, int, str, str] | None = None, kill_after: float | None = None):
    """Run `course ARGS` in a child; returns (returncode, stderr). `fault`: (FAULT_DIR,
    FAULT_N, FAULT_WHEN, FAULT_STAGE)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    if fault is not None:
        where, n, when, stage = fault
        env.update(FAULT_DIR=str(where), FAULT_N=str(n), FAULT_WHEN=when, FAULT_STAGE=stage)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    return proc.returncode, err


def renames_left(out: Path, mode: list[str]) -> int:
    """How many renames into `out` the next process makes: the lock owner note, three
    tokenizer files, config.json, a checkpoint and history.json per checkpoint still to
    come, then weights, samples, metrics."""
    from course.checkpoint import read_checkpoint_info

    step = 0
    if mode == ["--resume"]:
        step = read_checkpoint_info(out / "checkpoint.safetensors")["step"]
    return 5 + 2 * len(range(step + CKPT_EVERY, MAX_STEPS + 1, CKPT_EVERY)) + 3


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def check_consistent(out: Path, ref: Path, text: Path, capsys) -> str:
    """The checks after a kill; returns the state found ("none", "started", "checkpointed", "finished")."""
    from course.atomic import is_our_temp_name
    from course.checkpoint import read_checkpoint_info
    from course.pipeline import RUN_FILES
    from course.tokenizer import tokenizer_fingerprint

    if not out.exists():
        return "none"
    for p in out.iterdir():  # nothing but run files, the lock, and temporary files of ours
        assert p.name in RUN_FILES or p.name in (".course-run.lock", ".course-run.owner") \
            or is_our_temp_name(p.name), p.name
    state = "started"
    ckpt = out / "checkpoint.safetensors"
    if ckpt.exists():
        state = "checkpointed"
        info = read_checkpoint_info(ckpt)
        tensors(ckpt)  # complete: every tensor reads
        step, run = info["step"], info["extra"]["run"]
        assert step % CKPT_EVERY == 0 or step == MAX_STEPS
        config = json.loads((out / "config.json").read_text())
        assert config["run"] == run
        assert tokenizer_fingerprint(out) == run["tokenizer_sha256"]
        saved_history = info["extra"]["train"]["history"]
        assert [r["step"] for r in saved_history] == list(range(1, step + 1))
        if (out / "history.json").exists():  # written right after its checkpoint: at most one behind
            history = json.loads((out / "history.json").read_text())
            assert history == saved_history[:len(history)] and len(history) >= step - CKPT_EVERY
        if (out / "model.safetensors").exists():
            assert step == MAX_STEPS
            w = tensors(out / "model.safetensors")
            r = tensors(ref / "model.safetensors")
            assert w.keys() == r.keys() and all(torch.equal(w[k], r[k]) for k in w)
            state = "finished"
        if (out / "metrics.json").exists():
            assert (out / "model.safetensors").exists()
            got = {k: v for k, v in json.loads((out / "metrics.json").read_text()).items() if k not in TIMING}
            want = {k: v for k, v in json.loads((ref / "metrics.json").read_text()).items() if k not in TIMING}
            assert got == want
    else:
        # before the first checkpoint (or a --overwrite cut short, which removes the
        # checkpoint first): never weights of a run with files of another
        assert not ((out / "model.safetensors").exists() and not (out / "config.json").exists())
    capsys.readouterr()
    rc = main(["evaluate", str(out), "--text", str(text), "--device", "cpu"])
    captured = capsys.readouterr()
    if rc == 0:
        assert "perplexity" in captured.out
    else:
        assert rc == 2 and captured.err.startswith("error: ") and "Traceback" not in captured.err
        assert any(m in captured.err for m in (
            "holds an unfinished run", "is not a finished `course run` directory")), captured.err
        assert state != "finished"
    return state


def test_sigkill_at_random_moments_never_mixes_or_loses_a_run(tmp_path, capsys):
    rng = random.Random(20240515)
    text = tmp_path / "t.txt"
    text.write_text("abc ab ba cab " * 20)  # characters of the synthetic corpus only

    ref = tmp_path / "reference"
    t0 = time.perf_counter()
    rc, err = child([*ARGS, "--out", str(ref)])
    ref_seconds = time.perf_counter() - t0
    assert rc == 0, err[-3000:]

    out = tmp_path / "run"
    kills, states = 0, []
    for attempt in range(60):
        if kills >= 16:
            break
        if (out / "model.safetensors").exists() and rng.random() < 0.5:
            mode = ["--overwrite"]  # a finished run replaced by a new one, killed on the way
        elif (out / "checkpoint.safetensors").exists():
            mode = ["--resume"]
        elif out.exists() and any(p.name in ("config.json", "tokenizer.json") for p in out.iterdir()):
            mode = ["--overwrite"]
        else:
            mode = []
        if attempt % 3 == 2:  # a random instant, mostly while it trains
            rc, err = child([*ARGS, "--out", str(out), *mode], kill_after=rng.uniform(0.3, 1.0) * ref_seconds)
        else:
            n = rng.randint(1, renames_left(out, mode))
            rc, err = child([*ARGS, "--out", str(out), *mode], fault=(out, n, rng.choice(["before", "after"]), ""))
        assert rc in (0, -signal.SIGKILL), err[-3000:]
        kills += rc == -signal.SIGKILL
        states.append(check_consistent(out, ref, text, capsys))
        print(f"attempt {attempt}: {mode} rc={rc} state={states[-1]} t={time.perf_counter() - t0:.0f}s",
              file=sys.__stderr__, flush=True)
    assert kills >= 16
    assert {"started", "checkpointed", "finished"} <= set(states), states  # kills landed before and after checkpoints

    # finish without interruption: exactly the uninterrupted run
    mode = ["--resume"] if (out / "checkpoint.safetensors").exists() else ["--overwrite"]
    rc, err = child([*ARGS, "--out", str(out), *mode])
    assert rc == 0, err[-3000:]
    assert check_consistent(out, ref, text, capsys) == "finished"
    for name in ("history.json", "samples.txt"):
        assert (out / name).read_text() == (ref / name).read_text(), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    # exporting: killed while the tokenizer files are renamed into the staging folder, and
    # before and after the rename that puts the export in place; the run stays intact and
    # the destination is absent or complete
    dest = tmp_path / "hf"
    export_kills = 0
    for n, when in ((2, "before"), (3, "after"), (4, "before"), (4, "after")):
        args = ["export", str(out), "--to", str(dest)] + (["--force"] if dest.exists() else [])
        rc, err = child(args, fault=(tmp_path, n, when, ".hf.course-"))
        assert rc == -signal.SIGKILL, err[-3000:]
        export_kills += 1
        assert check_consistent(out, ref, text, capsys) == "finished"
        if dest.exists():
            assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= \
                {p.name for p in dest.iterdir()}
    assert kills + export_kills >= 20
    args = ["export", str(out), "--to", str(dest)] + (["--force"] if dest.exists() else [])
    assert main(args) == 0
    capsys.readouterr()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # stale stages removed
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(dest, local_files_only=True)
    assert hf.config.max_position_embeddings == 64  # the tiny preset's context
