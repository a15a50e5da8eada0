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


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Weights only (for evaluation, sampling and export), atomically."""
    _atomic_save_tensors(unique_state_dict(model), Path(path), {"format": "pt"})


def load_weights(model: torch.nn.Module, path: Path) -> None:
    path = Path(path)
    load_weights_into(model, _read_tensors(path)[0], path)


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
