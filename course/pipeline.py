"""The main job, glued: corpus → tokenizer → packing → training → evaluation → samples.

Every step is a call into its own module; this file only decides the order, the sizes
(from a preset) and what lands in the run directory:

    RUN_DIR/
      tokenizer.json (+ tokenizer_config.json ...)   the trained tokenizer, HF-loadable
      config.json        model, training, corpus and tokenizer settings
      model.safetensors  final weights
      checkpoint.safetensors, history.json   training state (resume) and loss history
      metrics.json       summary numbers (val_perplexity, bits per byte, tokens/s, ...)
      samples.txt        a few sampled continuations
      .course-run.lock   held (an OS file lock) by the `course run` writing the directory

A directory holds one run, always. A run locks its directory for its whole life; a new run
is refused where another run's files are (unless `overwrite`, which removes them first);
the checkpoint records the whole configuration, the run's id and its tokenizer's and
corpus split's fingerprints, and `--resume` and `load_run` check every other file against
it, so no file of one run is ever used with another's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from course import __version__, distributed
from course.atomic import atomic_write_text, fsync_dir, remove_stale_temp_files, temp_dir_beside
from course.checkpoint import CHECKPOINT_NAME, WEIGHTS_NAME, load_weights, save_weights
from course.errors import CheckpointError, ConfigError
from course.presets import Preset, default_preset_name, get_preset
from course.train import HISTORY_NAME, TrainConfig, resolve_device, train

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
SAMPLES_NAME = "samples.txt"
TOKENIZER_KINDS = ("bpe", "char", "hf-bpe")
LOCK_NAME = ".course-run.lock"
OWNER_NAME = ".course-run.owner"  # who holds the lock, for the message a second process gets
# Every file a run writes, the checkpoint first: what makes a directory "hold a run", and
# what --overwrite removes (in this order, so that a removal cut short leaves no checkpoint
# that other files could be mistaken to belong to). Nothing else is ever removed.
RUN_FILES = (CHECKPOINT_NAME, WEIGHTS_NAME, METRICS_NAME, SAMPLES_NAME, HISTORY_NAME, CONFIG_NAME,
             "course_tokenizer.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train_config_from_preset(preset: Preset, *, device: str = "auto", seed: int = 0) -> TrainConfig:
    return TrainConfig(
        max_steps=preset.max_steps, batch_size=preset.batch_size, grad_accum=preset.grad_accum,
        lr=preset.lr, min_lr_ratio=preset.min_lr_ratio,
        # a shortened run (--max-steps) keeps warmup to at most a tenth of it
        warmup_steps=min(preset.warmup_steps, max(1, preset.max_steps // 10)),
        weight_decay=preset.weight_decay, betas=preset.betas, grad_clip=preset.grad_clip,
        eval_interval=min(preset.eval_interval, preset.max_steps), eval_batches=preset.eval_batches,
        fused_adamw=preset.fused_adamw, device=device, seed=seed,
    )


def model_config_from_preset(preset: Preset, vocab_size: int):
    from course.model import GPTConfig

    return GPTConfig(
        vocab_size=vocab_size, block_size=preset.block_size, n_layer=preset.n_layer,
        n_head=preset.n_head, n_embd=preset.n_embd, dropout=preset.dropout,
        arch=preset.arch, n_kv_head=preset.n_kv_head,
    )


def default_out_dir(corpus: str, tokenizer: str, preset: str) -> Path:
    stem = Path(corpus).name if Path(corpus).exists() else corpus
    return Path("runs") / f"{stem}-{tokenizer}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_pipeline(
    corpus: str = "default",
    tokenizer: str = "bpe",
    preset: str | None = None,
    *,
    arch: str | None = None,
    max_steps: int | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    callback=None,
    num_samples: int = 3,
    sample_tokens: int = 200,
    overwrite: bool = False,
    max_corpus_chars: int | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline and return the metrics written to `metrics.json`.

    `out_dir` must not hold another run unless `overwrite` (its run files are then removed
    before anything is written) or `resume` (continue it). `max_corpus_chars` refuses a
    corpus with more characters (None: `course.data.DEFAULT_MAX_SOURCE_CHARS`).

    `arch` ("gpt2" or "llama") replaces the preset's architecture; None keeps it (or, when
    resuming, the run's own).
    """
    from course.data import DEFAULT_MAX_SOURCE_CHARS, load_corpus
    from course.evaluate import evaluate_nll, token_byte_lengths
    from course.model import GPT
    from course.packing import pack_documents
    from course.tokenizer import train_tokenizer

    if tokenizer not in TOKENIZER_KINDS:
        raise ConfigError(f"unknown tokenizer {tokenizer!r}: choose one of {', '.join(TOKENIZER_KINDS)}")
    dev = resolve_device(device)  # fail on a bad device before any slow work
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    # Resuming: what the command line leaves out is taken from the run being continued
    # (as its checkpoint records it: config.json is not trusted for this).
    saved = _resumable_config(out_dir) if resume else None
    preset_name = preset or (saved or {}).get("preset") or default_preset_name(dev)
    p = get_preset(preset_name)
    if saved is not None and max_steps is None and preset_name == saved.get("preset"):
        max_steps = saved.get("train", {}).get("max_steps")
    if max_steps is not None:
        if max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        p = p.with_overrides(max_steps=max_steps)
    if saved is not None and arch is None and preset_name == saved.get("preset"):
        # the run's own architecture, even if the preset's default has changed since
        saved_model = saved.get("model", {})
        arch = saved_model.get("arch", "gpt2")  # runs from before `arch` existed are GPT-2
        p = p.with_overrides(n_kv_head=saved_model.get("n_kv_head"))
    if arch is not None:
        p = p.with_overrides(arch=arch)
    ctx = distributed.init_from_env()  # under torchrun: join the process group
    torch.manual_seed(seed)
    out = Path(out_dir) if out_dir is not None else default_out_dir(corpus, tokenizer, preset_name)
    out = Path(distributed.broadcast_object(str(out), ctx))  # one run directory for all ranks
    if ctx.is_main:
        _check_run_dir_free(out, resume=resume, overwrite=overwrite)  # before any slow work

    # 1. corpus
    t0 = time.perf_counter()
    corp = load_corpus(corpus, seed=seed, max_chars=p.max_chars,
                       max_source_chars=DEFAULT_MAX_SOURCE_CHARS if max_corpus_chars is None else max_corpus_chars)
    # 2. tokenizer. A character vocabulary is the character *set*: take it from every
    # document so validation text never hits an unknown character (no statistics leak).
    tok_texts = corp.train + corp.val if tokenizer == "char" else corp.train
    tok = train_tokenizer(tokenizer, tok_texts, vocab_size=None if tokenizer == "char" else p.bpe_vocab_size)
    # 3. packing
    train_ids = tok.encode_batch(corp.train)
    val_ids = tok.encode_batch(corp.val)
    train_blocks = pack_documents(train_ids, p.block_size, tok.eos_id, tail="drop")
    val_blocks = pack_documents(val_ids, p.block_size, tok.eos_id, tail="pad", pad_id=tok.eos_id)
    prep_seconds = time.perf_counter() - t0

    # 4. model + training
    mcfg = model_config_from_preset(p, tok.vocab_size)
    model = GPT(mcfg)
    tcfg = train_config_from_preset(p, device=str(dev), seed=seed)
    config = {
        "course_version": __version__, "preset": preset_name, "tokenizer": tokenizer,
        "corpus": {"name": corp.name, "source": corp.source, "train_docs": len(corp.train),
                   "val_docs": len(corp.val), "sha256": _fingerprint(corp.train, corp.val)},
        "model": mcfg.to_dict(), "train": asdict(tcfg), "world_size": ctx.world_size,
    }
    tokenizer_sha256 = tok.fingerprint()
    if saved is not None:  # before anything in the run directory is replaced
        _check_same_run(out, saved, config)
        _check_same_tokenizer(out, _resumable_record(out)["tokenizer_sha256"], tokenizer_sha256)
    with contextlib.ExitStack() as held:
        run: dict[str, Any] = {}
        if ctx.is_main:
            held.enter_context(hold_run_dir(out))  # until the last file is written
            run = _claim_run_dir(out, resume=resume, overwrite=overwrite, tokenizer_sha256=tokenizer_sha256)
            tok.save(out)
            atomic_write_text(out / CONFIG_NAME, json.dumps({**config, "run": run}, indent=1))
        distributed.barrier(ctx)
        result = train(model, train_blocks, val_blocks, tcfg, out_dir=out, resume=resume,
                       callback=callback, progress=progress, extra_state={"config": config, "run": run})
        if not ctx.is_main:  # rank 0 evaluates, samples and writes the results
            return {"rank": ctx.rank, "steps": result.steps, "train_loss": result.final_train_loss,
                    "run_dir": str(out)}
        save_weights(model, out / WEIGHTS_NAME, record={**run, "step": result.steps})

        # 5. evaluation on the whole validation split
        ev = evaluate_nll(model, val_blocks.input_ids, val_blocks.labels, batch_size=tcfg.batch_size,
                          device=dev, byte_lengths=token_byte_lengths(tok))
        # 6. samples
        samples = sample_texts(model, tok, n=num_samples, max_new_tokens=sample_tokens, seed=seed)
        atomic_write_text(out / SAMPLES_NAME, "\n\n----------\n\n".join(samples) + "\n")

        metrics = {
            "params": model.num_params(), "params_with_embeddings": model.num_params(non_embedding=False),
            "vocab_size": tok.vocab_size, "steps": result.steps, "tokens_seen": result.tokens,
            "train_seconds": round(result.train_seconds, 3), "prep_seconds": round(prep_seconds, 3),
            "tokens_per_s": round(result.tokens_per_s, 1), "train_loss": result.final_train_loss,
            "val_loss": ev.mean_nll, "val_perplexity": ev.perplexity, "val_bits_per_byte": ev.bits_per_byte,
            "val_tokens": ev.n_tokens, "device": str(dev), "preset": preset_name, "arch": model.config.arch,
            "tokenizer": tokenizer,
            "corpus": corp.name, "run_dir": str(out), "world_size": ctx.world_size, "run_id": run["id"],
        }
        if getattr(corp, "meta", {}).get("entropy_rate") is not None:
            # the synthetic corpus's floor, in bits per byte (its text is ASCII: byte == char)
            metrics["entropy_floor_bits_per_byte"] = corp.meta["entropy_rate"] / 0.6931471805599453
        atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=1))
        return metrics


# Settings a resumed run may change: where and how fast it computes, not what.
_RESUME_MAY_CHANGE = {"device", "dtype", "compile", "fused_adamw", "log_interval", "checkpoint_interval"}


def _fingerprint(train_docs: list[str], val_docs: list[str]) -> str:
    """A short hash of the exact split, so that a resumed run provably sees the same data."""
    import hashlib

    h = hashlib.sha256()
    for part, docs in ((b"train", train_docs), (b"val", val_docs)):
        h.update(part)
        for doc in docs:
            data = doc.encode("utf-8")
            h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:16]


def _checkpoint_record(out: Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(config, run record, step) that the checkpoint in `out` was trained with.

    The run record is `{"id": ..., "tokenizer_sha256": ...}`: which run, and the
    fingerprint of the tokenizer files its weights go with.
    """
    from course.checkpoint import read_checkpoint_info

    info = read_checkpoint_info(out / CHECKPOINT_NAME)
    config, run = info["extra"].get("config"), info["extra"].get("run")
    if not isinstance(config, dict) or not isinstance(run, dict) or not {"id", "tokenizer_sha256"} <= run.keys():
        raise CheckpointError(
            f"{out / CHECKPOINT_NAME} does not record the run's configuration and tokenizer (it was "
            "written by an older version of course), so the other files of the run cannot be "
            f"checked against it; train again (`course run --out {out} --overwrite`).")
    return config, run, info["step"]


def _resumable_config(out_dir: str | Path | None) -> dict[str, Any]:
    """The config of the run that `--resume` would continue, as its checkpoint records it;
    a clear error if there is none."""
    if out_dir is None:
        raise ConfigError("--resume needs --out RUN_DIR: the directory of the run to continue")
    out = Path(out_dir)
    if not (out / CHECKPOINT_NAME).is_file():
        if _run_files(out):
            raise ConfigError(
                f"cannot resume {out}: it has no {CHECKPOINT_NAME} (the run stopped before its first "
                f"checkpoint, so there is nothing to continue); start it again with --overwrite instead "
                "of --resume.")
        raise ConfigError(
            f"cannot resume: {out} has no {CHECKPOINT_NAME}. Start without --resume, "
            "or point --out at the directory of the run to continue.")
    return _checkpoint_record(out)[0]


def _resumable_record(out: Path) -> dict[str, Any]:
    return _checkpoint_record(out)[1]


def _check_same_tokenizer(out: Path, saved: str, now: str) -> None:
    if saved != now:
        raise ConfigError(
            f"cannot resume {out}: the tokenizer trained now differs from the one its checkpoint was "
            f"trained with (fingerprint {saved[:12]} in the run, {now[:12]} now: the corpus files or the "
            "tokenizer code changed), and continuing would pair the weights with other token ids. "
            "Restore the run's corpus and version, or start a new run without --resume.")


def _setting_diffs(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two run configs in what a run computes (data, tokenizer,
    model, schedule); where and how fast it computes (`_RESUME_MAY_CHANGE`) may differ."""
    now = json.loads(json.dumps(now))  # as stored: tuples become lists
    diffs: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(a.keys() & b.keys()):  # a key an older run lacks is not compared
                if not (where == "train" and k in _RESUME_MAY_CHANGE):
                    walk(a[k], b[k], f"{where}.{k}")
        elif a != b:
            diffs.append(f"{where}: {a!r} in the run, {b!r} now")

    for key in ("preset", "tokenizer", "corpus", "model", "train"):
        if key in saved or key in now:
            walk(saved.get(key), now.get(key), key)
    return diffs


def _check_same_run(out: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume with other data, tokenizer, model or schedule: the checkpoint's
    weights would be continued on a different problem (or paired with a different
    tokenizer), which no error further down would catch."""
    diffs = _setting_diffs(saved, now)
    if diffs:
        raise ConfigError(
            f"cannot resume {out}: it was started with other settings, and continuing would mix "
            "two runs:\n  " + "\n  ".join(diffs) + "\nPass the run's own settings (see its "
            f"{CONFIG_NAME}), or start a new run without --resume.")


# ------------------------------------------------------------------ one run per directory


def _run_files(out: Path) -> list[str]:
    """The run files present in `out` (a symlink counts, even a broken one)."""
    return [name for name in RUN_FILES if os.path.lexists(out / name)]


def _holder(out: Path) -> str:
    try:
        owner = json.loads((out / OWNER_NAME).read_text(encoding="utf-8"))
        return (f"`{owner['command']}` (pid {owner['pid']} on {owner['host']}, started "
                f"{owner['started']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _in_use(out: Path) -> str | None:
    """Who holds the lock of `out`, or None if nobody does (never creates anything)."""
    from filelock import FileLock, Timeout

    if not (out / LOCK_NAME).is_file():
        return None
    lock = FileLock(str(out / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return _holder(out)
    except OSError:  # a read-only directory: nobody can be writing a run there
        return None
    lock.release()
    return None


@contextlib.contextmanager
def hold_run_dir(out: Path):
    """Hold the exclusive lock of run directory `out` (created if need be) for the block.

    An OS file lock (`filelock`: flock on POSIX, LockFileEx on Windows): the system
    releases it when the process ends, even by SIGKILL, so a killed run never leaves a
    stale lock. A second process is refused with who holds it.
    """
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{out} is in use by {_holder(out)}: one run directory holds one run. Wait for it to "
            "finish (or stop it), or choose another --out.") from None
    try:
        import socket

        atomic_write_text(out / OWNER_NAME, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]])}))
        yield
    finally:
        with contextlib.suppress(OSError):
            (out / OWNER_NAME).unlink()
        lock.release()


def _check_run_dir_free(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Read-only checks of `--out` before the slow work (repeated under the lock)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose a directory for the run")
    holder = _in_use(out)
    if holder is not None:
        raise ConfigError(
            f"{out} is in use by {holder}: one run directory holds one run. Wait for it to finish "
            "(or stop it), or choose another --out.")
    if not resume and not overwrite:
        _check_no_run(out)


def _check_no_run(out: Path) -> None:
    present = _run_files(out)
    if present:
        what = (f"a run (last checkpoint at step {_checkpoint_step(out)})" if CHECKPOINT_NAME in present
                else "the files of another run")
        raise ConfigError(
            f"{out} already holds {what}: {', '.join(present)}. Continue it with --resume, "
            "replace it with --overwrite (its files are deleted first), or choose another --out.")


def _checkpoint_step(out: Path) -> str:
    try:
        return str(_checkpoint_record(out)[2])
    except CheckpointError:
        return "unknown: the checkpoint is unreadable"


def _claim_run_dir(out: Path, *, resume: bool, overwrite: bool, tokenizer_sha256: str) -> dict[str, Any]:
    """With the lock held: clean up, check again, and return the run record (id and
    tokenizer fingerprint) of the run about to write `out`."""
    remove_stale_temp_files(out, RUN_FILES)
    if resume:
        # the checkpoint that was compared may have been replaced while we prepared
        run = _resumable_record(out)
        if run["tokenizer_sha256"] != tokenizer_sha256:
            _check_same_tokenizer(out, run["tokenizer_sha256"], tokenizer_sha256)
        return run
    if overwrite:
        for name in _run_files(out):  # the checkpoint first (see RUN_FILES)
            (out / name).unlink()
        fsync_dir(out)
    else:
        _check_no_run(out)  # a run may have finished here while we prepared
    return {"id": uuid.uuid4().hex, "tokenizer_sha256": tokenizer_sha256}


def sample_texts(model, tok, *, n: int = 3, max_new_tokens: int = 200, seed: int = 0,
                 prompt: str | None = None, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = 0.95) -> list[str]:
    """`n` continuations of `prompt` (default: the start of a document, i.e. after EOS)."""
    from course.sample import generate

    ids = tok.encode(prompt) if prompt else [tok.eos_id]
    if not ids:
        raise ConfigError("the prompt encodes to no tokens; give a non-empty --prompt")
    dev = next(model.parameters()).device
    out = []
    for i in range(n):
        seq = generate(model, torch.tensor([ids], device=dev), max_new_tokens,
                       temperature=temperature, top_k=top_k, top_p=top_p, seed=seed + i, eos_id=None)
        new = seq[0, len(ids):].tolist()
        out.append((prompt or "") + tok.decode(new))
    return out


def load_run(run_dir: str | Path, device: str = "auto"):
    """Model (eval mode, on `device`), tokenizer and config of a finished run.

    Every file is checked before it is used: `config.json` against the checkpoint (same
    run, same settings), the tokenizer files against the fingerprint the run recorded, and
    the weights against both (same run and step; the architecture their metadata records
    equals the config's, and the tensor shapes fit it, checked before anything is
    allocated). A file from another run, or an edited one, is a `CheckpointError` saying
    which.
    """
    from course.checkpoint import RUN_KEY, check_architecture, read_json_metadata
    from course.model import GPT, GPTConfig
    from course.tokenizer import load_tokenizer, tokenizer_fingerprint

    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"run directory {run} does not exist; pass a directory written by `course run`")
    holder = _in_use(run)
    if holder is not None:
        raise CheckpointError(f"{run} is being written by {holder}; wait until it has finished")
    has_checkpoint = (run / CHECKPOINT_NAME).is_file()
    if has_checkpoint:
        saved, saved_run, step = _checkpoint_record(run)
    cfg_path, weights = run / CONFIG_NAME, run / WEIGHTS_NAME
    if not weights.is_file() or not cfg_path.is_file():
        if has_checkpoint:
            raise CheckpointError(
                f"{run} holds an unfinished run: its last checkpoint is at step {step} of "
                f"{saved.get('train', {}).get('max_steps', '?')} and it has no "
                f"{WEIGHTS_NAME if not weights.is_file() else CONFIG_NAME} yet; finish it with "
                f"`course run --out {run} --resume`")
        missing = CONFIG_NAME if not cfg_path.is_file() else WEIGHTS_NAME
        raise CheckpointError(
            f"{run} has no {missing}: it is not a finished `course run` directory (a run stopped before its "
            f"first checkpoint leaves none); start it again with `course run --out {run} --overwrite`")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        record = config["run"]
        if not isinstance(record, dict) or not {"id", "tokenizer_sha256"} <= record.keys():
            raise KeyError("run")
        if not isinstance(config["model"], dict):
            raise TypeError("model")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{cfg_path} is corrupted or from an older version of course ({e!r} is "
                              "missing or unreadable); re-run `course run`") from None
    if has_checkpoint:
        if saved_run["id"] != record["id"]:
            raise CheckpointError(
                f"{cfg_path} belongs to another run than {run / CHECKPOINT_NAME}: the directory mixes two "
                f"runs. Train again (`course run --out {run} --overwrite`).")
        diffs = _setting_diffs(saved, config)
        if diffs:
            raise CheckpointError(
                f"{cfg_path} differs from what the run was trained with (as its checkpoint records):\n  "
                + "\n  ".join(d.replace(" now", f" in {CONFIG_NAME}") for d in diffs)
                + f"\nRestore the run's own {CONFIG_NAME} (was it edited?), or train again.")
    # the architecture first: nothing is allocated for an absurd config
    meta = check_architecture(config["model"], weights, source=str(cfg_path))
    w_run = read_json_metadata(meta, RUN_KEY, weights)
    if not isinstance(w_run, dict) or w_run.get("id") != record["id"]:
        raise CheckpointError(
            f"{weights} belongs to another run than {cfg_path}: the directory mixes two runs. "
            f"Train again (`course run --out {run} --overwrite`).")
    if has_checkpoint and w_run.get("step") != step:
        raise CheckpointError(
            f"{weights} is from step {w_run.get('step')} but the run's checkpoint is at step {step}; "
            f"finish the run with `course run --out {run} --resume`")
    tok = load_tokenizer(run)
    if tokenizer_fingerprint(run) != record["tokenizer_sha256"]:
        raise CheckpointError(
            f"the tokenizer in {run} is not the one this run was trained with (its files differ from the "
            "fingerprint the run recorded; copied from another run?). Restore the run's own tokenizer "
            f"files, or train again (`course run --out {run} --overwrite`).")
    model = GPT(GPTConfig.from_dict(config["model"]))
    load_weights(model, weights)
    model.to(resolve_device(device)).eval()
    return model, tok, config


def export_run(run_dir: str | Path, to: str | Path, *, force: bool = False) -> Path:
    """Write a Hugging Face directory (model + tokenizer) for a finished run.

    The model is a `GPT2LMHeadModel` or a `LlamaForCausalLM`, after the run's architecture
    (`course.export.to_hf`). `AutoTokenizer.from_pretrained(to)` and
    `AutoModelForCausalLM.from_pretrained(to)` load it offline, and its logits equal ours
    (tested). `to` must not be the run itself or hold a checkpoint; an existing non-empty
    directory only with `force`. The files are written to a temporary folder beside `to`
    first, which becomes `to` in one rename when `to` is new (else its files are renamed
    into `to` one by one): an interrupted export leaves no half-written file.
    """
    from course.export import check_export_destination, save_hf, to_hf

    dest = check_export_destination(run_dir, to, force=force)
    model, tok, _ = load_run(run_dir, "cpu")
    hf = to_hf(model)
    # Our one special token starts and ends documents. `generate()` reads its stopping and
    # padding ids from the generation config, which was copied when the model was built.
    for cfg in (hf.config, hf.generation_config):
        cfg.bos_token_id = cfg.eos_token_id = tok.eos_id
    hf.generation_config.pad_token_id = tok.eos_id
    # The learned position table has block_size rows: generating past it would index out of
    # range, so `generate()` and the text-generation pipeline stop at the context length
    # (a llama was trained on no longer contexts either).
    hf.generation_config.max_length = model.config.block_size
    remove_stale_temp_files(dest.parent, only_for=dest.name)  # left by a killed export to `to`
    stage = temp_dir_beside(dest)
    try:
        save_hf(hf, stage)
        tok.save(stage)  # a standard tokenizer directory, loadable by transformers 4 and 5
        if not dest.exists():
            os.chmod(stage, 0o777 & ~_umask())  # as a plain mkdir would make it (mkdtemp's is 0700)
            os.rename(stage, dest)
        else:
            for f in sorted(stage.iterdir()):
                os.replace(f, dest / f.name)
        fsync_dir(dest.parent)
    finally:
        if stage.exists():
            import shutil

            shutil.rmtree(stage, ignore_errors=True)
    return dest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def format_summary(metrics: dict[str, Any]) -> str:
    """A short two-column table of the numbers a learner looks at first."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    rows = [("model", f"{metrics['arch']} block, {metrics['preset']} preset")] if "arch" in metrics else []
    rows += [
        ("parameters", metrics["params"]), ("tokens seen", metrics["tokens_seen"]),
        ("train time (s)", metrics["train_seconds"]), ("tokens/s", metrics["tokens_per_s"]),
        ("train loss", metrics["train_loss"]), ("val loss", metrics["val_loss"]),
        ("val perplexity", metrics["val_perplexity"]), ("val bits/byte", metrics["val_bits_per_byte"]),
    ]
    if "entropy_floor_bits_per_byte" in metrics:
        rows.append(("entropy floor bits/byte", metrics["entropy_floor_bits_per_byte"]))
    rows += [("device", metrics["device"]), ("run dir", metrics["run_dir"])]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {fmt(v)}" for k, v in rows)
