"""What the first cell of every lesson calls: seed everything, pick the device, quiet logs.

Lessons must behave the same locally, on Binder and on Colab, and their stored outputs
must be reproducible for nbval: so one call seeds Python, NumPy and PyTorch, turns off
the chatty progress bars and warnings of `datasets` / `transformers`, and reports the
device the lesson will use.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

from course.train import resolve_device


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


def setup(seed: int = 0, device: str = "auto", verbose: bool = False) -> torch.device:
    """Seed, quiet the libraries and return the device (cuda > mps > cpu)."""
    quiet_libraries()
    use_light_plots()
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
