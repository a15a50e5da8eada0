"""One run per directory: the lock, refusing to mix runs, resume and loading checked against
the checkpoint, the architecture checked before allocation, atomic tokenizer writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from course.cli import main
from course.errors import CheckpointError, ConfigError

RUN_ARGS = ["run", "--corpus", "synthetic", "--tokenizer", "char", "--preset", "tiny",
            "--max-steps", "6", "--no-progress", "--device", "cpu"]
RUN_FILES_WRITTEN = {"checkpoint.safetensors", "model.safetensors", "config.json", "metrics.json",
                     "samples.txt", "history.json", "tokenizer.json", "tokenizer_config.json",
                     "course_tokenizer.json"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    assert main([*RUN_ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture
def copy(run_dir, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(run_dir, dest)
    return dest


@pytest.fixture
def text(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abc ab ba cab")  # characters of the synthetic corpus only (char tokenizer)
    return f


def snapshot(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------- the lock


def test_a_second_process_is_refused_while_a_run_holds_the_directory(copy, text, capsys):
    from course.pipeline import hold_run_dir

    before = snapshot(copy)
    with hold_run_dir(copy):
        proc = subprocess.run([sys.executable, "-m", "course.cli", *RUN_ARGS, "--out", str(copy), "--resume"],
                              capture_output=True, text=True, env=env(), timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert f"{copy} is in use by" in lines[0] and f"pid {os.getpid()}" in lines[0]
        assert "choose another --out" in lines[0]
        # readers are told too, instead of reading half-written files
        assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
        assert "is being written by" in one_error_line(capsys)
    # nothing was written by the refused process; the lock's owner note is gone again
    assert snapshot(copy) == {k: v for k, v in before.items()}
    assert not (copy / ".course-run.owner").exists()


def test_the_lock_dies_with_its_process(tmp_path):
    """A SIGKILLed run leaves no stale lock: the OS drops it with the process."""
    import signal

    from course.pipeline import hold_run_dir

    out = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; from course.pipeline import hold_run_dir\n"
            f"with hold_run_dir(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=r"is in use by `-c` \(pid \d+ on .*, started .*\)"):
            with hold_run_dir(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    with hold_run_dir(out):  # free again
        assert (out / ".course-run.owner").is_file()


def test_two_runs_started_together_one_wins_and_the_other_is_refused(tmp_path):
    """Started a moment apart into one --out (different seeds and lengths): one run
    finishes, the other gets one line, and the directory holds the winner only."""
    from course.pipeline import load_run

    out = tmp_path / "both"
    cmds = [[sys.executable, "-m", "course.cli", *RUN_ARGS, "--out", str(out), "--seed", "1"],
            [sys.executable, "-m", "course.cli", *RUN_ARGS[:-5], "--max-steps", "4", "--no-progress",
             "--device", "cpu", "--out", str(out), "--seed", "2"]]
    procs = []
    for cmd in cmds:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()))
        time.sleep(1.0)
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert len(loser.strip().splitlines()) == 1
    assert "is in use by" in loser or "already holds" in loser, loser
    _, _, config = load_run(out, "cpu")  # every file checked against the checkpoint
    winner_seed = config["train"]["seed"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run_id"] == config["run"]["id"]
    assert metrics["steps"] == (6 if winner_seed == 1 else 4)


# ----------------------------------------------------------- a new run into a used directory


def test_a_new_run_into_a_run_directory_is_refused_and_nothing_changes(copy, capsys):
    before = snapshot(copy)
    assert main([*RUN_ARGS, "--out", str(copy), "--seed", "5"]) == 2
    err = one_error_line(capsys)
    assert f"{copy} already holds a run (last checkpoint at step 6)" in err
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(copy) == before


def test_files_without_a_checkpoint_are_another_run_too(copy, capsys):
    (copy / "checkpoint.safetensors").unlink()
    (copy / "model.safetensors").unlink()
    assert main([*RUN_ARGS, "--out", str(copy)]) == 2
    assert "already holds the files of another run" in one_error_line(capsys)
    assert main([*RUN_ARGS, "--out", str(copy), "--resume"]) == 2
    err = one_error_line(capsys)
    assert "stopped before its first checkpoint" in err and "--overwrite" in err


def test_overwrite_removes_the_old_run_before_anything_new_is_written(copy, monkeypatch, capsys):
    """--overwrite deletes every file of the old run (and only those) first: stopped right
    after, the directory holds no file of the old run."""
    import course.pipeline as pipeline

    (copy / "notes.txt").write_text("mine")  # not a run file: kept
    old_id = json.loads((copy / "config.json").read_text())["run"]["id"]

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train", stop)
    assert main([*RUN_ARGS, "--out", str(copy), "--overwrite", "--seed", "3"]) == 130
    capsys.readouterr()
    names = {p.name for p in copy.iterdir()}
    assert names == {"notes.txt", ".course-run.lock", "config.json", "tokenizer.json",
                     "tokenizer_config.json", "course_tokenizer.json"}
    config = json.loads((copy / "config.json").read_text())
    assert config["run"]["id"] != old_id and config["train"]["seed"] == 3
    assert (copy / "notes.txt").read_text() == "mine"
    # the half-started run is recognised as such
    assert main(["evaluate", str(copy), "--text", str(copy / "notes.txt")]) == 2
    assert "not a finished `course run` directory" in one_error_line(capsys)


def test_resume_and_overwrite_together_are_refused(copy, capsys):
    assert main([*RUN_ARGS, "--out", str(copy), "--resume", "--overwrite"]) == 2
    assert "pass one of them" in one_error_line(capsys)


# ----------------------------------------------------- resume compares against the checkpoint


def test_resume_reads_the_checkpoint_not_config_json(copy, capsys):
    """The issue's case: run A finished; a run B with other settings rewrote config.json
    and was killed. `--resume` with B's settings must be refused (config.json says B),
    and with A's it continues A (whatever config.json says), and repairs config.json."""
    config = json.loads((copy / "config.json").read_text())
    b = json.loads(json.dumps(config))
    b["corpus"] = {"name": "pydoc", "sha256": "0" * 16}
    b["tokenizer"] = "bpe"
    (copy / "config.json").write_text(json.dumps(b))
    pydoc_args = [a if a != "synthetic" else "pydoc" for a in RUN_ARGS]
    assert main([*pydoc_args, "--out", str(copy), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "corpus.name: 'synthetic' in the run, 'pydoc' now" in err
    # stale temporary files of killed writes are removed by the next run (ours only)
    for stale in (".model.safetensors.course-x1y2z3.tmp", ".checkpoint.safetensors.a1b2c3d4.tmp"):
        (copy / stale).write_bytes(b"\0" * 1000)
    (copy / ".tokenizer.course-abc.tmp").mkdir()
    (copy / ".unrelated.tmp").write_text("not ours")
    assert main([*RUN_ARGS, "--out", str(copy), "--resume", "--json"]) == 0
    capsys.readouterr()
    assert json.loads((copy / "config.json").read_text())["corpus"] == config["corpus"]
    names = {p.name for p in copy.iterdir()}
    assert names == RUN_FILES_WRITTEN | {".course-run.lock", ".unrelated.tmp"}


def test_resume_refuses_a_tokenizer_that_comes_out_different(copy, monkeypatch, capsys):
    from course.tokenizer import Tokenizer

    before = snapshot(copy)
    monkeypatch.setattr(Tokenizer, "fingerprint", lambda self: "f" * 64)
    assert main([*RUN_ARGS, "--out", str(copy), "--resume"]) == 2
    err = one_error_line(capsys)
    assert "the tokenizer trained now differs from the one its checkpoint was trained with" in err
    assert snapshot(copy) == before


# --------------------------------------------------- every file is checked when a run is loaded


def test_a_tokenizer_from_another_run_is_refused(copy, text, capsys):
    from course.tokenizer import train_tokenizer

    other = train_tokenizer("char", ["abc ab ba cab, another run's text"])
    other.save(copy)
    for cmd in (["evaluate", str(copy), "--text", str(text)], ["sample", str(copy)],
                ["export", str(copy), "--to", str(copy.parent / "hf")]):
        assert main([*cmd, "--device", "cpu"] if cmd[0] != "export" else cmd) == 2
        assert "is not the one this run was trained with" in one_error_line(capsys)
    assert not (copy.parent / "hf").exists()


def test_an_edited_config_is_refused_naming_the_field(copy, text, capsys):
    """config.json edited from n_head 4 to 2 used to load and give other numbers."""
    config = json.loads((copy / "config.json").read_text())
    config["model"]["n_head"] = 2
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    assert "model.n_head: 4 in the run, 2 in config.json" in one_error_line(capsys)


def test_an_absurd_size_is_refused_before_anything_is_allocated(copy, text, capsys):
    """n_embd 1e7 used to reach the constructor (a RuntimeError traceback); now it is
    refused by comparing configs, and a weights file that claims it too is refused by
    the shape check on the meta device."""
    from course.checkpoint import check_architecture

    config = json.loads((copy / "config.json").read_text())
    config["model"]["n_embd"] = 10_000_000
    (copy / "config.json").write_text(json.dumps(config))
    t0 = time.perf_counter()
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    assert "model.n_embd: 128 in the run, 10000000 in config.json" in one_error_line(capsys)
    assert time.perf_counter() - t0 < 30
    with pytest.raises(CheckpointError, match="n_embd: 10000000 in .*, 128 in the weights"):
        check_architecture(config["model"], copy / "model.safetensors")


def test_weights_of_another_run_or_step_are_refused(copy, text, capsys):
    import torch

    from course.checkpoint import check_architecture, save_weights
    from course.pipeline import load_run

    model, _, config = load_run(copy, "cpu")
    save_weights(model, copy / "model.safetensors", record={**config["run"], "id": "another", "step": 6})
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    assert "model.safetensors belongs to another run than" in one_error_line(capsys)
    save_weights(model, copy / "model.safetensors", record={**config["run"], "step": 3})
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    assert "is from step 3 but the run's checkpoint is at step 6" in one_error_line(capsys)
    # weights saved without the architecture metadata (an older course) are not trusted
    from safetensors.torch import save_file

    from course.checkpoint import unique_state_dict
    save_file({k: v.contiguous() for k, v in unique_state_dict(model).items()}, str(copy / "model.safetensors"))
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    assert "does not record the architecture" in one_error_line(capsys)
    # and one whose metadata claims the absurd size as well: its tensors do not fit it
    absurd = {**config["model"], "n_embd": 10_000_000}
    save_file({k: v.contiguous() for k, v in unique_state_dict(model).items()}, str(copy / "model.safetensors"),
              metadata={"format": "pt", "course_arch": json.dumps(absurd)})
    with pytest.raises(CheckpointError, match="its tensors do not fit the architecture it records"):
        check_architecture(absurd, copy / "model.safetensors")
    assert torch.is_tensor(model.transformer.wte.weight)


def test_a_config_json_of_another_run_is_refused(copy, text, capsys):
    config = json.loads((copy / "config.json").read_text())
    config["run"]["id"] = "0123"
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    assert "config.json belongs to another run than" in one_error_line(capsys)


def test_an_unfinished_run_says_how_to_finish_it(copy, text, capsys):
    (copy / "model.safetensors").unlink()
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu"]) == 2
    err = one_error_line(capsys)
    assert "holds an unfinished run: its last checkpoint is at step 6 of 6" in err and "--resume" in err


def test_the_run_loads_without_its_checkpoint(copy, text, capsys):
    """Deleting the (large) checkpoint of a finished run keeps it usable: the weights,
    config.json and tokenizer still check against each other."""
    (copy / "checkpoint.safetensors").unlink()
    assert main(["evaluate", str(copy), "--text", str(text), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == len(text.read_text()) - 1


# ------------------------------------------------------------------- atomic, local writes


def test_tokenizer_files_replace_a_symlink_instead_of_writing_through_it(tmp_path):
    from course.tokenizer import load_tokenizer, tokenizer_fingerprint, train_tokenizer

    outside = tmp_path / "precious.json"
    outside.write_text("keep me")
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").symlink_to(outside)
    tok = train_tokenizer("char", ["hello world", "more text"])
    tok.save(d)
    assert outside.read_text() == "keep me"
    assert not (d / "tokenizer.json").is_symlink()
    assert sorted(p.name for p in d.iterdir()) == ["course_tokenizer.json", "tokenizer.json", "tokenizer_config.json"]
    assert load_tokenizer(d).encode("hello") == tok.encode("hello")
    assert tokenizer_fingerprint(d) == tok.fingerprint()


def test_a_failed_tokenizer_save_leaves_the_old_files_and_no_temp(tmp_path, monkeypatch):
    from course.errors import TokenizerError
    from course.tokenizer import train_tokenizer

    d = tmp_path / "tok"
    old = train_tokenizer("char", ["old text"])
    old.save(d)
    before = snapshot(d)
    new = train_tokenizer("char", ["completely different words"])

    def disk_full(directory):
        (directory / "tokenizer.json").write_text("{half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(new), "save_files", lambda self, directory: disk_full(directory))
    with pytest.raises(TokenizerError, match="No space left"):
        new.save(d)
    assert snapshot(d) == before
    assert sorted(p.name for p in d.iterdir()) == sorted(before)


def test_run_files_are_written_through_atomic_replace(copy, monkeypatch, capsys):
    """Every file a run writes goes through one temp-and-rename path (so a SIGKILL never
    leaves a half file; tests/test_fault_injection.py kills runs for real)."""
    written: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        written.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert main([*RUN_ARGS, "--out", str(copy), "--overwrite"]) == 0
    capsys.readouterr()
    assert RUN_FILES_WRITTEN <= set(written)
