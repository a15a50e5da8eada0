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
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from course import __version__, distributed
from course.atomic import atomic_write_text
from course.checkpoint import WEIGHTS_NAME, load_weights, save_weights
from course.errors import CheckpointError, ConfigError
from course.presets import Preset, default_preset_name, get_preset
from course.train import TrainConfig, resolve_device, train

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
SAMPLES_NAME = "samples.txt"
TOKENIZER_KINDS = ("bpe", "char", "hf-bpe")


def train_config_from_preset(preset: Preset, *, device: str = "auto", seed: int = 0) -> TrainConfig:
    return TrainConfig(
        max_steps=preset.max_steps, batch_size=preset.batch_size, grad_accum=preset.grad_accum,
        lr=preset.lr, min_lr_ratio=preset.min_lr_ratio,
        # a shortened run (--max-steps) keeps warmup to at most a tenth of it
        warmup_steps=min(preset.warmup_steps, max(1, preset.max_steps // 10)),
        weight_decay=preset.weight_decay, betas=preset.betas, grad_clip=preset.grad_clip,
        eval_interval=min(preset.eval_interval, preset.max_steps), eval_batches=preset.eval_batches,
        device=device, seed=seed,
    )


def model_config_from_preset(preset: Preset, vocab_size: int):
    from course.model import GPTConfig

    return GPTConfig(
        vocab_size=vocab_size, block_size=preset.block_size, n_layer=preset.n_layer,
        n_head=preset.n_head, n_embd=preset.n_embd, dropout=preset.dropout,
    )


def default_out_dir(corpus: str, tokenizer: str, preset: str) -> Path:
    stem = Path(corpus).name if Path(corpus).exists() else corpus
    return Path("runs") / f"{stem}-{tokenizer}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_pipeline(
    corpus: str = "default",
    tokenizer: str = "bpe",
    preset: str | None = None,
    *,
    max_steps: int | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    callback=None,
    num_samples: int = 3,
    sample_tokens: int = 200,
) -> dict[str, Any]:
    """Run the whole pipeline and return the metrics written to `metrics.json`."""
    from course.data import load_corpus
    from course.evaluate import evaluate_nll, token_byte_lengths
    from course.model import GPT
    from course.packing import pack_documents
    from course.tokenizer import train_tokenizer

    if tokenizer not in TOKENIZER_KINDS:
        raise ConfigError(f"unknown tokenizer {tokenizer!r}: choose one of {', '.join(TOKENIZER_KINDS)}")
    dev = resolve_device(device)  # fail on a bad device before any slow work
    # Resuming: what the command line leaves out is taken from the run being continued.
    saved = _resumable_config(out_dir) if resume else None
    preset_name = preset or (saved or {}).get("preset") or default_preset_name(dev)
    p = get_preset(preset_name)
    if saved is not None and max_steps is None and preset_name == saved.get("preset"):
        max_steps = saved.get("train", {}).get("max_steps")
    if max_steps is not None:
        if max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        p = p.with_overrides(max_steps=max_steps)
    ctx = distributed.init_from_env()  # under torchrun: join the process group
    torch.manual_seed(seed)

    # 1. corpus
    t0 = time.perf_counter()
    corp = load_corpus(corpus, seed=seed, max_chars=p.max_chars)
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
    out = Path(out_dir) if out_dir is not None else default_out_dir(corpus, tokenizer, preset_name)
    out = Path(distributed.broadcast_object(str(out), ctx))  # one run directory for all ranks
    config = {
        "course_version": __version__, "preset": preset_name, "tokenizer": tokenizer,
        "corpus": {"name": corp.name, "source": corp.source, "train_docs": len(corp.train),
                   "val_docs": len(corp.val), "sha256": _fingerprint(corp.train, corp.val)},
        "model": mcfg.to_dict(), "train": asdict(tcfg), "world_size": ctx.world_size,
    }
    if saved is not None:
        _check_same_run(out, saved, config)  # before anything in the run directory is replaced
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tok.save(out)
        atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=1))
    distributed.barrier(ctx)
    result = train(model, train_blocks, val_blocks, tcfg, out_dir=out, resume=resume,
                   callback=callback, progress=progress, extra_state={"config": config})
    if not ctx.is_main:  # rank 0 evaluates, samples and writes the results
        return {"rank": ctx.rank, "steps": result.steps, "train_loss": result.final_train_loss,
                "run_dir": str(out)}
    save_weights(model, out / WEIGHTS_NAME)

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
        "val_tokens": ev.n_tokens, "device": str(dev), "preset": preset_name, "tokenizer": tokenizer,
        "corpus": corp.name, "run_dir": str(out), "world_size": ctx.world_size,
    }
    if getattr(corp, "meta", {}).get("entropy_rate") is not None:
        # the synthetic corpus's floor, in bits per byte (its text is ASCII: byte == char)
        metrics["entropy_floor_bits_per_byte"] = corp.meta["entropy_rate"] / 0.6931471805599453
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=1))
    return metrics


# Settings a resumed run may change: where and how fast it computes, not what.
_RESUME_MAY_CHANGE = {"device", "dtype", "compile", "log_interval", "checkpoint_interval"}


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


def _resumable_config(out_dir: str | Path | None) -> dict[str, Any]:
    """The config of the run that `--resume` would continue; a clear error if there is none."""
    from course.checkpoint import CHECKPOINT_NAME

    if out_dir is None:
        raise ConfigError("--resume needs --out RUN_DIR: the directory of the run to continue")
    out = Path(out_dir)
    missing = [name for name in (CHECKPOINT_NAME, CONFIG_NAME) if not (out / name).is_file()]
    if missing:
        raise ConfigError(
            f"cannot resume: {out} has no {' and no '.join(missing)}. Start without --resume, "
            "or point --out at the directory of the run to continue.")
    try:
        return json.loads((out / CONFIG_NAME).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{out / CONFIG_NAME} is corrupted ({e}); start a new run") from None


def _check_same_run(out: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume with other data, tokenizer, model or schedule: the checkpoint's
    weights would be continued on a different problem (or paired with a different
    tokenizer), which no error further down would catch."""
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
        if key in saved and key in now:
            walk(saved[key], now[key], key)
    if diffs:
        raise ConfigError(
            f"cannot resume {out}: it was started with other settings, and continuing would mix "
            "two runs:\n  " + "\n  ".join(diffs) + "\nPass the run's own settings (see its "
            f"{CONFIG_NAME}), or start a new run without --resume.")


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
    """Model (eval mode, on `device`), tokenizer and config of a finished run."""
    from course.model import GPT, GPTConfig
    from course.tokenizer import load_tokenizer

    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"run directory {run} does not exist; pass a directory written by `course run`")
    cfg_path = run / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{run} has no {CONFIG_NAME}: it is not a finished `course run` directory")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        mcfg = GPTConfig.from_dict(config["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg_path} is corrupted ({e}); re-run `course run`") from None
    tok = load_tokenizer(run)
    model = GPT(mcfg)
    load_weights(model, run / WEIGHTS_NAME)
    model.to(resolve_device(device)).eval()
    return model, tok, config


def export_run(run_dir: str | Path, to: str | Path) -> Path:
    """Write a Hugging Face directory (GPT-2 model + tokenizer) for a finished run.

    `AutoTokenizer.from_pretrained(to)` and `AutoModelForCausalLM.from_pretrained(to)` load
    it offline, and its logits equal ours (tested).
    """
    from course.export import to_hf_gpt2

    model, tok, _ = load_run(run_dir, "cpu")
    dest = Path(to)
    dest.mkdir(parents=True, exist_ok=True)
    hf = to_hf_gpt2(model)
    # Our one special token starts and ends documents. `generate()` reads its stopping and
    # padding ids from the generation config, which was copied when the model was built.
    for cfg in (hf.config, hf.generation_config):
        cfg.bos_token_id = cfg.eos_token_id = tok.eos_id
    hf.generation_config.pad_token_id = tok.eos_id
    # The learned position table has block_size rows: generating past it would index out of
    # range, so `generate()` and the text-generation pipeline stop at the context length.
    hf.generation_config.max_length = model.config.block_size
    hf.save_pretrained(dest)
    tok.save(dest)  # a standard tokenizer directory, loadable by transformers 4 and 5
    return dest


def format_summary(metrics: dict[str, Any]) -> str:
    """A short two-column table of the numbers a learner looks at first."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    rows = [
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
