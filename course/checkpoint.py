"""Checkpoints that are written atomically and resume exactly.

A checkpoint is ONE safetensors file holding every tensor training needs (model weights,
AdamW moments, RNG states) plus a JSON string of everything else (step, optimizer
hyper-parameters, metric history, configs) in the file's metadata. One file means one
atomic `os.replace`: a crash while saving leaves the previous checkpoint intact, never a
half-written one. safetensors (not pickle) means loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from course.atomic import atomic_replace
from course.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.safetensors"
WEIGHTS_NAME = "model.safetensors"
_META_KEY = "course"
# Metadata of a weights file: the model's whole config (`GPTConfig.to_dict()`), so that a
# loader compares it with the config it was given instead of trusting it; and the run
# record (which run, which step) that ties the file to its run's checkpoint.
ARCH_KEY = "course_arch"
RUN_KEY = "course_run"


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_replace(path, lambda tmp: save_file(cpu, tmp, metadata=meta))


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with tied tensors stored once (safetensors forbids aliases).

    For a GPT with tied embeddings `lm_head.weight` is the same tensor as
    `transformer.wte.weight`; only the first name is kept and loading re-ties it.
    """
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        key = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor
    return out


def load_weights_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights saved by `unique_state_dict`, accepting only tied names as missing."""
    own = model.state_dict()
    tied = set(own) - set(unique_state_dict(model))
    missing = [k for k in own if k not in tensors and k not in tied]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: the weights do not fit this model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}). Was it written by a run with another config? "
            "Load it with the config.json saved beside it."
        )
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise CheckpointError(
                f"{source}: tensor {k} has shape {tuple(v.shape)} but the model expects "
                f"{tuple(own[k].shape)}; the file belongs to a different model config."
            )
    model.load_state_dict({**{k: own[k] for k in tied}, **tensors}, strict=True)


def save_weights(model: torch.nn.Module, path: Path, *, record: dict[str, Any] | None = None) -> None:
    """Weights only (for evaluation, sampling and export), atomically.

    The model's architecture (`model.config.to_dict()`, every field) goes into the file's
    metadata, and `record` too (a JSON-able dict: the run and step these weights are
    from); `check_architecture` and `read_metadata` read them back.
    """
    meta = {"format": "pt"}
    config = getattr(model, "config", None)
    if callable(getattr(config, "to_dict", None)):
        meta[ARCH_KEY] = json.dumps(config.to_dict(), sort_keys=True)
    if record is not None:
        meta[RUN_KEY] = json.dumps(record, sort_keys=True)
    _atomic_save_tensors(unique_state_dict(model), Path(path), meta)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a weights file into `model`, refusing one saved from another architecture."""
    path = Path(path)
    tensors, meta = _read_tensors(path)
    config = getattr(model, "config", None)
    if ARCH_KEY in meta and callable(getattr(config, "to_dict", None)):
        _compare_arch(config.to_dict(), meta, path, "the model")
    load_weights_into(model, tensors, path)


def read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """A safetensors file's metadata and tensor shapes, without reading any tensor."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist. Point to a run directory written by `course run` "
            "(it holds model.safetensors, config.json and tokenizer.json)."
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is corrupted or not a safetensors file ({e}). Delete it and train "
            "again, or resume from an earlier copy."
        ) from None
    return meta, shapes


def read_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's string metadata (cheap: the header only)."""
    return read_header(path)[0]


def read_json_metadata(meta: dict[str, str], key: str, path: Path) -> Any:
    """`meta[key]` parsed as JSON (None when absent); a `CheckpointError` when unreadable."""
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its {key!r} metadata is corrupted; train again.") from None


def _compare_arch(expected: dict[str, Any], meta: dict[str, str], path: Path, source: str) -> None:
    stored = read_json_metadata(meta, ARCH_KEY, path)
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: its architecture metadata is corrupted; train again.")
    expected = json.loads(json.dumps(expected))  # as stored: tuples become lists
    diffs = [f"{k}: {expected.get(k, '(absent)')!r} in {source}, {stored.get(k, '(absent)')!r} in the weights"
             for k in sorted(expected.keys() | stored.keys()) if expected.get(k) != stored.get(k)]
    if diffs:
        raise CheckpointError(
            f"{path} holds weights of a different model config than {source} describes:\n  "
            + "\n  ".join(diffs) + "\nUse the config the weights were saved with (the run's own "
            "config.json, unedited), or train again.")


def check_architecture(config: dict[str, Any], path: Path, source: str = "the config") -> dict[str, str]:
    """Before any model is built: refuse the weights file at `path` unless its stored
    architecture equals `config` (a `GPTConfig.to_dict()`, all fields compared) and the
    model `config` describes has exactly the file's tensor names and shapes.

    The shapes are checked on PyTorch's "meta" device, which allocates nothing, so an
    absurd config (an edited `n_embd` of 10 million) is refused instead of exhausting
    memory. Returns the file's metadata.
    """
    path = Path(path)
    meta, shapes = read_header(path)
    if ARCH_KEY not in meta:
        raise CheckpointError(
            f"{path} does not record the architecture it was trained with (written by an older "
            "version of course, or not by course); train again to get a checked weights file.")
    _compare_arch(config, meta, path, source)
    from course.model import GPT, GPTConfig

    with torch.device("meta"):
        model = GPT(GPTConfig.from_dict(config))
    seen: set[int] = set()
    expected: dict[str, tuple[int, ...]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:  # a tied tensor is stored once, under its first name
            seen.add(id(t))
            expected[name] = tuple(t.shape)
    if expected != shapes:
        wrong = sorted(k for k in expected.keys() | shapes.keys() if expected.get(k) != shapes.get(k))
        raise CheckpointError(
            f"{path}: its tensors do not fit the architecture it records ({', '.join(wrong[:3])} differ); "
            "the file is corrupted or was not written by course; train again.")
    return meta


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist. Point to a run directory written by `course run` "
            "(it holds model.safetensors, config.json and tokenizer.json)."
        )
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is corrupted or not a safetensors file ({e}). Delete it and train "
            "again, or resume from an earlier copy."
        ) from None
    return tensors, meta


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in state["state"].items():
        for k, v in pstate.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        _, idx, k = name.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for idx, kv in rest["scalars"].items():
        state.setdefault(int(idx), {}).update(kv)
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"].to(torch.uint8))
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k].to(torch.uint8) for k in cuda])


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save everything needed to continue training at `step`, atomically.

    `extra` is any JSON-able dict (metric history, configs); it comes back from
    `load_checkpoint` unchanged.
    """
    model_t = {f"model.{k}": v for k, v in unique_state_dict(model).items()}
    optim_t, optim_rest = _flatten_optimizer(optimizer.state_dict())
    meta = {"step": step, "optimizer": optim_rest, "extra": extra or {}}
    _atomic_save_tensors(
        {**model_t, **optim_t, **rng_state()}, Path(path), {_META_KEY: json.dumps(meta), "format": "pt"}
    )


def read_checkpoint_info(path: Path) -> dict[str, Any]:
    """`{"step": ..., "extra": ...}` of a checkpoint, from its header alone (no tensor is
    read: a run's configuration and fingerprints can be checked without loading weights)."""
    path = Path(path)
    meta = read_metadata(path)
    if _META_KEY not in meta:
        raise CheckpointError(
            f"{path} holds tensors but no training state; it is not a checkpoint written by "
            "`course` (a weights-only file is model.safetensors)."
        )
    info = read_json_metadata(meta, _META_KEY, path)
    if not isinstance(info, dict) or not isinstance(info.get("step"), int):
        raise CheckpointError(f"{path}: training state is corrupted; train again.")
    extra = info.get("extra", {})
    return {"step": info["step"], "extra": extra if isinstance(extra, dict) else {}}


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Restore model, optimizer and RNG state; return `{"step": ..., "extra": ...}`."""
    path = Path(path)
    tensors, meta = _read_tensors(path)
    if _META_KEY not in meta:
        raise CheckpointError(
            f"{path} holds tensors but no training state; it is not a checkpoint written by "
            "`course` (a weights-only file is model.safetensors)."
        )
    try:
        info = json.loads(meta[_META_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: training state is corrupted; train again.") from None
    device = next(model.parameters()).device
    weights = {k[len("model."):]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    load_weights_into(model, weights, path)
    if optimizer is not None:
        # Optimizer.load_state_dict moves each state tensor to its parameter's device
        # (and keeps AdamW's `step` where that optimizer variant wants it).
        optim_t = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer.load_state_dict(_unflatten_optimizer(optim_t, info["optimizer"]))
    set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng.")})
    return {"step": int(info["step"]), "extra": info.get("extra", {})}
