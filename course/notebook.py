"""What the first cell of every lesson calls: seed everything, pick the device, quiet logs.

Lessons must behave the same locally, on Binder and on Colab, and their stored outputs
must be reproducible for nbval: so one call seeds Python, NumPy and PyTorch, turns off
the chatty progress bars and warnings of `datasets` / `transformers`, chooses how many
CPU threads PyTorch uses (`use_notebook_threads`), and reports the device the lesson will
use.
"""

from __future__ import annotations

import math
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

from course.errors import ConfigError
from course.train import resolve_device

MAX_NOTEBOOK_THREADS = 4  # the lessons' models are small: more threads than this only add overhead


def quiet_libraries() -> None:
    """Silence Hugging Face progress bars and info logs (they vary run to run)."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def use_light_plots() -> None:
    """Plotly figures as a small JSON bundle, never the 5 MB embedded plotly.js.

    JupyterLab, VS Code and nbviewer render `plotly_mimetype` natively; Colab needs its
    own renderer.
    """
    import plotly.io as pio

    pio.renderers.default = "colab" if in_colab() else "plotly_mimetype"


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, lowered by a cgroup CPU quota.

    A container (Binder, a CI runner, Docker with `--cpus`) often sees every core of its host
    but may only use a few of them; `os.cpu_count()`, which torch's default follows, sees
    the host.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(n, quota) if quota is not None else n)


def _cgroup_cpu_quota(root: str | Path = "/sys/fs/cgroup") -> int | None:
    """CPUs allowed by the cgroup (v2 `cpu.max`, else v1 `cfs_quota_us`), rounded up; None if unlimited."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def use_notebook_threads(threads: int | None = None) -> int:
    """Choose how many CPU threads PyTorch uses in a lesson, set it, and return it.

    Why: PyTorch starts one intra-op thread per core it sees, and at every operation those
    threads wait for each other. On a shared machine (Binder, Colab, a CI runner, a laptop
    with JupyterLab and a browser open, a container that sees its host's cores) some of
    those cores are busy with other work, so each step runs at the pace of the thread that
    waits for a busy core: oversubscription. The lessons' models are small and bound by
    per-operation overhead, so extra threads gain little and can cost a lot: on a shared
    2-core machine, 100 training steps took 1.6 s with one thread and 40.7 s with two.

    Rule: `threads` if given; else `OMP_NUM_THREADS` if set (an explicit choice, which
    PyTorch follows too); else one less than the CPUs this process may use
    (`available_cpus`: affinity and cgroup quota), leaving one to the rest of the machine,
    at least 1 and at most `MAX_NOTEBOOK_THREADS`. The choice depends only on the machine,
    never on its momentary load, so reruns compute the same way.
    """
    if threads is None:
        threads = _omp_num_threads()
    if threads is None:
        threads = max(1, min(MAX_NOTEBOOK_THREADS, available_cpus() - 1))
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def _omp_num_threads() -> int | None:
    """`OMP_NUM_THREADS` as a positive integer (the first level of a nested list), else None."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 1 else None


def setup(seed: int = 0, device: str = "auto", verbose: bool = False,
          threads: int | None = None) -> torch.device:
    """Seed, quiet the libraries, limit CPU threads and return the device (cuda > mps > cpu).

    `threads`: PyTorch's CPU thread count; by default `use_notebook_threads` chooses it.
    """
    quiet_libraries()
    use_light_plots()
    use_notebook_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    if verbose:
        print(environment_report(dev))
    return dev


def environment_report(dev: torch.device | None = None) -> str:
    """Versions and device, for the setup lesson (one line per item, no timings)."""
    import transformers

    import course

    dev = dev or resolve_device("auto")
    lines = [
        f"python        {platform.python_version()}",
        f"torch         {torch.__version__.split('+')[0]}",
        f"transformers  {transformers.__version__}",
        f"course        {course.__version__}",
        f"device        {dev.type}",
    ]
    if dev.type == "cuda":
        lines.append(f"gpu           {torch.cuda.get_device_name(dev)}")
    return "\n".join(lines)


def in_colab() -> bool:
    import sys

    return "google.colab" in sys.modules
