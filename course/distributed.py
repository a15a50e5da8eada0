"""Data parallelism with `torch.distributed`, launched by `torchrun`.

    torchrun --standalone --nproc_per_node=8 -m course.cli run --preset gpu

starts one process per GPU (or per CPU worker with `gloo`). Every process builds the same
tokenizer and blocks (everything upstream of training is deterministic), wraps the model
in `DistributedDataParallel` and takes its slice of each *global* batch; DDP averages the
gradients, so N processes follow the same loss curve as one process with the same global
batch. Only rank 0 writes files, prints progress and calls callbacks.

Outside `torchrun` (no `WORLD_SIZE` in the environment) nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from course.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> DistContext:
    """The current process group (world size 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistContext()


def init_from_env() -> DistContext:
    """Join the process group `torchrun` describes in the environment, if any.

    NCCL when every process has a GPU, gloo otherwise (CPU training, or a quick test).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return context()
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run without torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"torchrun started {world} processes but this machine has {torch.cuda.device_count()} "
                "GPU(s); use --nproc_per_node at most the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """Each process uses its own GPU; CPU processes share the CPU."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def local_slice(idx: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous share of a global batch of block indices."""
    if not ctx.enabled:
        return idx
    if len(idx) % ctx.world_size:
        raise ConfigError(
            f"the global batch size {len(idx)} does not split evenly over {ctx.world_size} processes; "
            f"use a batch size that is a multiple of {ctx.world_size}"
        )
    per = len(idx) // ctx.world_size
    return idx[ctx.rank * per : (ctx.rank + 1) * per]


def mean_across(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a scalar over all processes (for logging the global training loss)."""
    if ctx.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world_size
    return t


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's value of `obj` on every rank (e.g. a run directory named by the clock)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
