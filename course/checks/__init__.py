"""In-notebook checks: lessons do `from course import checks as check`, then `check.merge(merge)`.

The framework lives in `course.checks._core`. Per-lesson checks live in other modules of
this package and register themselves with `@exercise("name")`; they are imported on the
first lookup of a name that is not defined here, so adding a lesson's checks never means
editing this file, and `import course.checks` stays cheap. `dir(check)` lists every check
(tab completion in Jupyter shows them).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from course.checks._core import (
    EXERCISES,
    CheckFailed,
    NotAttempted,
    call,
    describe_args,
    exercise,
    expect_close,
    expect_contract,
    expect_equal,
    expect_type,
    hint,
    show,
    square,
)

__all__ = [
    "EXERCISES",
    "CheckFailed",
    "NotAttempted",
    "call",
    "describe_args",
    "exercise",
    "expect_close",
    "expect_contract",
    "expect_equal",
    "expect_type",
    "hint",
    "load_all",
    "show",
    "square",
]

@functools.cache
def load_all() -> dict[str, Any]:
    """Import every check module of this package (once), so all exercises are registered."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return EXERCISES


def __getattr__(name: str) -> Any:
    # PEP 562: called only for names not found above, i.e. the per-lesson checks.
    if name.startswith("_"):
        raise AttributeError(name)
    exercises = load_all()
    if name in exercises:
        return exercises[name]
    raise AttributeError(
        f"course.checks has no check named {name!r}; available: {', '.join(sorted(exercises))}. "
        "Is the package up to date (e.g. `pip install -e .` after pulling)?"
    )


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(load_all()))
