"""The `course` command end to end: run, evaluate, sample, resume, and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from course.cli import main

RUN_ARGS = ["run", "--corpus", "synthetic", "--tokenizer", "char", "--preset", "tiny",
            "--max-steps", "40", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main([*RUN_ARGS, "--out", str(out)]) == 0
    return out


def test_run_writes_a_complete_run_directory(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"tokenizer.json", "config.json", "model.safetensors", "metrics.json", "samples.txt",
            "checkpoint.safetensors", "history.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["steps"] == 40 and m["tokens_seen"] == 40 * 32 * 64
    assert math.isfinite(m["val_perplexity"]) and m["val_perplexity"] == pytest.approx(math.exp(m["val_loss"]))
    # 40 steps on a Markov source: well below where training began, better than a uniform
    # guess over the vocabulary, and never better than the source's own entropy floor.
    first = json.loads((run_dir / "history.json").read_text())[0]
    assert first["step"] == 1 and m["val_loss"] < first["train_loss"] - 0.2
    assert m["val_loss"] < math.log(m["vocab_size"])
    assert m["val_bits_per_byte"] > m["entropy_floor_bits_per_byte"] * 0.98
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["model"]["block_size"] == 64
    assert m["arch"] == cfg["model"]["arch"] == "llama"  # tiny's block
    from course.pipeline import format_summary

    summary = format_summary(m).splitlines()
    assert summary[0].split() == ["model", "llama", "block,", "tiny", "preset"]
    assert any(line.split()[:2] == ["val", "perplexity"] for line in summary)
    assert (run_dir / "samples.txt").read_text().strip()


def test_evaluate_reports_perplexity_as_json(run_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog " * 8)
    assert main(["evaluate", str(run_dir), "--text", str(text), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] == len(text.read_text()) - 1  # char tokenizer: one token per char
    assert out["perplexity"] == pytest.approx(math.exp(out["nll"]))
    assert out["bytes"] == out["tokens"]


def test_sample_is_seeded(run_dir, capsys):
    args = ["sample", str(run_dir), "--prompt", "the ", "--max-new-tokens", "30", "--seed", "3",
            "--device", "cpu"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("the ") and len(first.strip()) > 10


def test_resume_via_the_cli_continues_to_the_new_step_count(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main([*RUN_ARGS, "--out", str(copy), "--resume", "--json"]) == 0
    m = json.loads(capsys.readouterr().out.split("\nsample")[0])
    assert m["steps"] == 40  # already finished: resuming changes nothing
    assert m["val_loss"] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["val_loss"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--corpus", "/no/such/corpus.txt"], "does not exist"),
        (["run", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "--max-steps", "0"], "--max-steps must be >= 1"),
        (["evaluate", "/no/such/run", "--text", "x.txt"], "does not exist"),
    ],
)
def test_bad_input_gives_one_line_and_exit_status_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_non_utf8_corpus_is_rejected(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n\nencore du caf\xe9\n".encode("latin-1"))
    assert main(["run", "--corpus", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_block_size_larger_than_the_corpus_is_rejected(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("a tiny corpus.\n\nwith two paragraphs.\n")
    assert main(["run", "--corpus", str(small), "--tokenizer", "char", "--preset", "tiny",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "block_size" in err
    assert not (tmp_path / "r").exists()


def test_corrupted_weights_are_reported(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "model.safetensors").write_bytes(b"\x00" * 64)
    text = tmp_path / "t.txt"
    text.write_text("hello there")
    assert main(["evaluate", str(copy), "--text", str(text)]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_console_script_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "course.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cmd in ("run", "evaluate", "sample", "export", "lessons", "solutions", "grade"):
        assert cmd in out


def test_resume_takes_the_runs_preset_and_step_count_when_not_given(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    args = ["run", "--corpus", "synthetic", "--tokenizer", "char", "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(copy), "--resume", "--json"]) == 0
    m = json.loads(capsys.readouterr().out.split("\nsample")[0])
    assert m["preset"] == "tiny" and m["steps"] == 40


@pytest.mark.parametrize(("extra", "expected"), [
    (["--seed", "1"], ["train.seed: 0 in the run, 1 now", "corpus.sha256"]),
    (["--max-steps", "80"], ["train.max_steps: 40 in the run, 80 now"]),
    (["--preset", "cpu"], ["preset: 'tiny' in the run, 'cpu' now", "model.n_layer"]),
])
def test_resume_with_other_settings_is_refused_and_the_run_left_untouched(run_dir, tmp_path, capsys, extra, expected):
    """Continuing a checkpoint on other data, another model or another schedule would mix
    two runs; the error names each difference, and no file of the run is rewritten."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    args = [a for a in RUN_ARGS if a not in ("--max-steps", "40", "--preset", "tiny")]
    assert main([*args, *extra, "--out", str(copy), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "start a new run without --resume" in err
    for text in expected:
        assert text in err
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_resume_needs_the_run_directory(tmp_path, capsys):
    assert main([*RUN_ARGS, "--resume"]) == 2
    assert "--resume needs --out RUN_DIR" in capsys.readouterr().err
    assert main([*RUN_ARGS, "--out", str(tmp_path), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_sample_defaults_are_the_settings_of_samples_txt(run_dir, capsys):
    assert main(["sample", str(run_dir), "--device", "cpu"]) == 0
    first = (run_dir / "samples.txt").read_text().split("\n\n----------\n\n")[0]
    assert capsys.readouterr().out.strip() == first.strip()
    assert main(["sample", str(run_dir), "--device", "cpu", "--top-k", "0", "--top-p", "1"]) == 0  # both off


def test_a_path_that_cannot_be_written_is_one_line_not_a_traceback(run_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["export", str(run_dir), "--to", str(blocker / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Not a directory") and str(blocker / "hf") in err
    assert "check the path" in err and "Traceback" not in err


def test_course_alone_prints_help_and_succeeds(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: course") and "run" in out and "grade" in out


def test_version_flag(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"course {version('course')}"


def test_every_argument_of_every_command_has_help_text():
    import argparse

    from course.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) \
                    and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "course")
    assert not missing, f"arguments without help text: {missing}"


# ------------------------------------------------------------------ course scaling


def test_scaling_cli_defaults_are_the_modules():
    from course import cli, scaling

    assert cli.SCALING_CORPORA == scaling.CORPORA
    assert cli.SCALING_BUDGETS == scaling.DEFAULT_BUDGETS


def test_scaling_sweep_writes_a_complete_seeded_sweep(tmp_path, capsys):
    from course import scaling

    out = tmp_path / "sweep.json"
    argv = ["scaling", "sweep", "--out", str(out), "--corpus", "synthetic", "--budgets", "1e9",
            "--no-progress"]
    assert main(argv) == 0
    doc = scaling.load_sweep(out)
    assert doc["command"] == f"course scaling sweep --out {out} --corpus synthetic --budgets 1e+09 --seed 0"
    runs = scaling.runs_of(doc, "synthetic")
    settings = scaling.settings_from_doc(doc, "synthetic")
    plans = scaling.planned_runs(settings, doc["corpora"]["synthetic"]["vocab_size"])
    assert [r["name"] for r in runs] == [p.size.name for p in plans] and len(runs) >= 3
    assert doc["corpora"]["synthetic"]["entropy_rate"] == pytest.approx(
        scaling.synthetic_entropy_rate(settings))
    # the same point trained again gives the same loss, to the last digit
    again = scaling.run_point(scaling.prepare_data(settings), plans[0], settings)
    assert again["val_loss"] == runs[0]["val_loss"]
    assert f"wrote {len(runs)} runs to {out}" in capsys.readouterr().out


def test_scaling_predict_check_without_training_prints_the_prediction(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["scaling", "predict-check", "--no-train", "--corpus", "synthetic",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predicted" in printed and "not trained" in printed
    check = json.loads(out.read_text())["checks"][0]
    assert check["budget"] == 5 * check["largest_sweep_budget"]
    assert check["predicted_loss_known_floor"] > check["entropy_rate"]
    assert check["n_opt_isoflop"] > 0 and "measured_loss" not in check


@pytest.mark.parametrize("argv, message", [
    (["scaling", "sweep", "--out", "x.json", "--budgets", "-5"], "budgets must be positive"),
    (["scaling", "predict-check", "--sweep", "no/such/sweep.json"], "no sweep file"),
])
def test_scaling_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(("corpus", "extra", "message"), [
    ("EMPTY", [], "contains no text (it is empty, or only whitespace)"),
    ("/dev/zero", [], "/dev/zero is neither a regular file nor a folder"),
    ("synthetic", ["--max-chars", "1000"], "characters, more than the limit of 1,000 characters; "
                                           "pass a larger --max-chars"),
])
def test_input_limits_give_one_line_and_write_nothing(corpus, extra, message, tmp_path, capsys):
    if corpus == "EMPTY":
        corpus = str(tmp_path / "empty.txt")
        (tmp_path / "empty.txt").write_bytes(b"")
    elif not os.path.exists(corpus) and corpus.startswith("/"):
        pytest.skip(f"needs {corpus}")
    assert main(["run", "--corpus", corpus, *extra, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_export_never_overwrites_a_run_and_needs_force_for_a_used_directory(run_dir, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert main(["export", str(run_dir), "--to", str(run_dir), "--force"]) == 2
    assert "is the run directory itself" in capsys.readouterr().err
    other_run = tmp_path / "other"
    other_run.mkdir()
    (other_run / "checkpoint.safetensors").write_bytes(b"another run's")
    assert main(["export", str(run_dir), "--to", str(other_run), "--force"]) == 2
    assert "holds a run" in capsys.readouterr().err
    assert (other_run / "checkpoint.safetensors").read_bytes() == b"another run's"
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.json").write_text("somebody's")
    assert main(["export", str(run_dir), "--to", str(used)]) == 2
    err = capsys.readouterr().err
    assert "is not empty (config.json)" in err and "--force" in err
    assert (used / "config.json").read_text() == "somebody's"
    assert main(["export", str(run_dir), "--to", str(used), "--force"]) == 0
    assert json.loads((used / "config.json").read_text())["model_type"] == "llama"  # tiny's block
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".used.")]  # no staging left
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
