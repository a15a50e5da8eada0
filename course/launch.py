"""Where the course opens: the repository, its Binder and Colab links, the setup cell.

One place names the repository. The first code cell of every notebook, the README's
badges and `binder/` all follow from it, and tests check that they agree; a fork changes
`REPOSITORY` (and `BRANCH`), runs `course lessons retarget`, then `course lessons build`.
"""

from __future__ import annotations

import re
from pathlib import Path

REPOSITORY = "pretraining-by-hand/course"  # GitHub owner/name
BRANCH = "main"

SETUP_CELL_HEAD = """\
# Setup: works locally, on Binder and on Colab (on Colab it installs the course package first).
import sys
if "google.colab" in sys.modules:
    %pip install -q "course @ git+https://github.com/{repository}@{branch}"
"""
_INSTALL_LINE = re.compile(r'%pip install -q "course @ git\+https://github\.com/[^"@]+(@[^"]+)?"')


def install_spec(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    return f"course @ git+https://github.com/{repository}@{branch}"


def setup_cell_head(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The lines every notebook's first code cell starts with."""
    return SETUP_CELL_HEAD.format(repository=repository, branch=branch)


def colab_url(lesson: str, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """Opens `lessons/<lesson>.ipynb` in Colab, straight from GitHub."""
    return f"https://colab.research.google.com/github/{repository}/blob/{branch}/lessons/{lesson}.ipynb"


def binder_url(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """Builds the repository on mybinder.org and opens JupyterLab on `lessons/`."""
    return f"https://mybinder.org/v2/gh/{repository}/{branch}?urlpath=lab/tree/lessons"


def binder_badge() -> str:
    return f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({binder_url()})"


def colab_badge(lesson: str) -> str:
    return f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(lesson)})"


def lesson_table(lessons: list[tuple[str, str]]) -> str:
    """README table: one row per lesson (file stem, title) with its Colab badge."""
    rows = ["| lesson | open |", "|---|---|"]
    rows += [f"| [{title}](lessons/{stem}.ipynb) | {colab_badge(stem)} |" for stem, title in lessons]
    return "\n".join(rows)


def lesson_titles(folder: str | Path) -> list[tuple[str, str]]:
    """(stem, title) of every notebook in `folder`, the title from its first heading."""
    import nbformat

    out = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        title = path.stem
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                m = re.search(r"^#\s+(.+)$", cell.source, re.M)
                if m:
                    title = m.group(1).strip()
                    break
        out.append((path.stem, title))
    return out


def retarget_source(source: str, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """`source` with its Colab install line pointing at `repository@branch`."""
    return _INSTALL_LINE.sub(f'%pip install -q "{install_spec(repository, branch)}"', source)
