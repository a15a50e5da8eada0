"""Result documents shipped with the package (course/resources/*.json): loaded with one
clear error, naming the command that writes them, when a file is missing or not one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from course.errors import ConfigError

RESOURCES = Path(__file__).resolve().parent / "resources"


def load_document(path: str | Path, *, what: str, key: str, command: str, fmt: int | None = None,
                  error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The JSON object at `path`, which must hold `key` (and `"format": fmt` if given).

    `what` names the document in messages ("sweep"); `command` is the one that writes it,
    without its `--out FILE`. Anything else raises `error` saying how to regenerate it.
    """
    p = Path(path)
    a = "an" if what[:1].lower() in "aeiou" else "a"
    if not p.is_file():
        raise error(f"no {what} file at {p}; write one with `{command} --out {p}`")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{p} is not {a} {what} JSON file ({e}); regenerate it with `{command}`") from None
    if not isinstance(doc, dict) or key not in doc or (fmt is not None and doc.get("format") != fmt):
        kind = f"{a} {what} file" + (f" of format {fmt}" if fmt is not None else f" (no {key!r})")
        raise error(f"{p} is not {kind}; regenerate it with `{command}`")
    return doc
