"""The modern-block ablation: GPT-2's block, one change at a time (RMSNorm, RoPE, SwiGLU,
no biases, grouped-query attention, untied embeddings) and all changes together, each
trained for the same wall time on one text, one token per character.

Equal wall time, not equal steps: a change that makes a step slower must earn its keep
in fewer steps. Each variant trains under a time budget (`TrainConfig.max_seconds`):
the preset's warmup and cosine run on the fraction of the budget spent, and training
stops when it is spent, so every variant gets the same seconds of the machine however
fast it runs that minute (a step count calibrated beforehand missed by up to 20 % on a
shared machine). It is then scored on the whole validation split (the last 10 % of the
text). Timings only mean something on an otherwise idle machine; what is left is the
machine's own drift during each run, which the steps column shows.

`python bench/ablation.py` runs it on Tiny Shakespeare; the result for the `cpu` preset
on 2 cores is shipped as `course/resources/ablation_cpu.json` (`load_ablation()`), which
lesson 12 shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from course.errors import ConfigError
from course.shipped import RESOURCES, load_document

SHIPPED_ABLATION = RESOURCES / "ablation_cpu.json"

# name: GPTConfig fields changed from GPT-2's block (n_kv_head "half" = n_head // 2)
VARIANTS: dict[str, dict[str, Any]] = {
    "gpt2": {},
    "+rmsnorm": {"norm": "rmsnorm"},
    "+rope": {"pos": "rope"},
    "+swiglu": {"mlp": "swiglu"},
    "-bias": {"bias": False},
    "+gqa": {"n_kv_head": "half"},
    "+untied": {"tie_embeddings": False},
    "llama": {"arch": "llama"},
    "llama+gqa": {"arch": "llama", "n_kv_head": "half"},
}


def variant_config(base: Any, changes: dict[str, Any]) -> Any:
    """The sizes of `base` (a `GPTConfig`) with GPT-2's block plus `changes` (an "arch"
    change starts from that arch's defaults instead)."""
    from course.model import GPTConfig

    changes = dict(changes)
    if changes.get("n_kv_head") == "half":
        changes["n_kv_head"] = max(1, base.n_head // 2)
    # A new config from the sizes, not `replace(base, ...)`: the derived fields (mlp_hidden
    # for a SwiGLU) must follow the change.
    sizes = dict(vocab_size=base.vocab_size, block_size=base.block_size, n_layer=base.n_layer,
                 n_head=base.n_head, n_embd=base.n_embd, dropout=base.dropout, attn_impl=base.attn_impl)
    return GPTConfig(**sizes, **changes)


def kv_cache_bytes_per_token(config: Any, bytes_per_value: int = 4) -> int:
    """Keys and values cached per generated token: 2 · n_layer · n_kv_head · head_dim values."""
    return 2 * config.n_layer * config.n_kv_head * config.head_dim * bytes_per_value


def char_split(text: str, block_size: int) -> tuple[Any, Any, Any]:
    """(CharTokenizer, train blocks, validation blocks) of `text`: the classic Tiny
    Shakespeare split, first 90 % training and last 10 % validation, each packed as one
    long document into consecutive `block_size` windows (the tail dropped). The quality
    rows of bench/run.py use the same split, so their losses compare with these."""
    from course.packing import pack_documents
    from course.tokenizer import CharTokenizer

    n = int(0.9 * len(text))
    tok = CharTokenizer().train([text])
    tr = pack_documents([tok.encode(text[:n])], block_size, tok.eos_id, tail="drop")
    va = pack_documents([tok.encode(text[n:])], block_size, tok.eos_id, tail="drop")
    return tok, tr, va


def run_ablation(
    text: str,
    *,
    preset: str = "cpu",
    budget_s: float = 180.0,
    variants: list[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Train every variant for `budget_s` seconds of training; return the JSON document.

    `overrides` replaces preset fields (e.g. smaller sizes for a test).
    """
    from course.evaluate import evaluate_nll
    from course.model import GPT
    from course.pipeline import model_config_from_preset, train_config_from_preset
    from course.presets import get_preset
    from course.train import describe_machine, train

    names = list(variants or VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    p = get_preset(preset).with_overrides(**(overrides or {}), arch="gpt2", n_kv_head=None)
    # One schedule for every variant; TrainConfig checks the budget (a positive, finite
    # number of seconds). No evaluation inside the budget: one at the end, on all of it.
    cfg = replace(train_config_from_preset(p, device=device, seed=seed), max_seconds=budget_s,
                  eval_interval=10**9)
    tok, tr, va = char_split(text, p.block_size)
    base = model_config_from_preset(p, tok.vocab_size)
    rows = []
    for name in names:
        config = variant_config(base, VARIANTS[name])
        torch.manual_seed(seed)
        model = GPT(config)
        res = train(model, tr, None, cfg, progress=False)
        ev = evaluate_nll(model, va.input_ids, va.labels, batch_size=cfg.batch_size, device=device)
        row = {
            "variant": name, "changes": VARIANTS[name], "params": model.num_params(),
            "steps": res.steps, "s_per_step": round(res.train_seconds / res.steps, 5),
            "train_s": round(res.train_seconds, 2), "tokens": res.tokens,
            "tokens_per_s": round(res.tokens_per_s, 1), "train_loss": round(res.final_train_loss, 4),
            "val_loss": round(ev.mean_nll, 4), "kv_cache_bytes_per_token": kv_cache_bytes_per_token(config),
            "config": config.to_dict(),
        }
        rows.append(row)
        if log:
            log(f"{name:10s} {row['steps']:6d} steps  {row['train_s']:7.1f} s  val {row['val_loss']:.4f}")
    return {
        "format": 1, "date": dt.date.today().isoformat(), "machine": describe_machine(device),
        "preset": p.name, "overrides": overrides or {}, "budget_s": budget_s, "seed": seed,
        "settings": {k: v for k, v in asdict(p).items() if k != "description"},
        "corpus": f"{len(text)} characters, {len(tr)} train / {len(va)} val blocks of {p.block_size}",
        "rows": rows,
    }


def markdown_table(doc: dict[str, Any]) -> str:
    """The rows as a Markdown table, best validation loss first, with the change from GPT-2's."""
    ref = next((r["val_loss"] for r in doc["rows"] if r["variant"] == "gpt2"), None)
    lines = [f"Equal wall time: {doc['budget_s']:g} s of training per variant, preset `{doc['preset']}`, "
             f"{doc['machine']}, {doc['date']}.", "",
             "| variant | val loss | vs gpt2 | steps | train s | params | KV cache B/token |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(doc["rows"], key=lambda r: r["val_loss"]):
        delta = f"{r['val_loss'] - ref:+.4f}" if ref is not None else ""
        lines.append(f"| {r['variant']} | {r['val_loss']:.4f} | {delta} | {r['steps']} | {r['train_s']} | "
                     f"{r['params']:,} | {r['kv_cache_bytes_per_token']:,} |")
    return "\n".join(lines)


def settings_overrides(doc: dict[str, Any]) -> dict[str, Any]:
    """The preset fields that make today's preset train exactly as `doc` did: its recorded
    settings (less the name and the block, which the variants set), for
    `run_ablation(..., overrides=...)` or `bench/ablation.py --settings-from DOC`, so that a
    shipped ablation stays reproducible after the preset is tuned further. A document from
    before `fused_adamw` existed ran AdamW's default kernel."""
    from course.presets import Preset

    fields = set(Preset.__dataclass_fields__) - {"name", "description", "arch", "n_kv_head"}
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["settings"].items() if k in fields}
    out.setdefault("fused_adamw", False)
    return out


def load_ablation(path: str | Path | None = None) -> dict[str, Any]:
    """An ablation document (default: the `cpu` preset's, shipped with the package)."""
    return load_document(SHIPPED_ABLATION if path is None else path, what="ablation", key="rows",
                         command="python bench/ablation.py", fmt=1)
