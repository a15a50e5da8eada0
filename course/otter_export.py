"""Solutions → an otter-grader assignment, whose hidden tests are our own checks.

otter-grader (Gradescope, or `otter run` locally) builds a student notebook and an
autograder zip from one *master notebook* (`otter assign MASTER RESULT`). This module writes
that master notebook from one of our solution notebooks, so the instructor's single source
stays `solutions/NN_name.ipynb`:

* every exercise of the lesson, and its points, come from `course.grading.manifest_from_solutions`
  (the same manifest `course grade` uses); each becomes one otter *question*;
* the question's solution is the solution notebook's code cell(s) with `### BEGIN SOLUTION`
  regions, rewritten in otter's in-cell syntax so that the student notebook otter writes
  holds exactly our learner placeholder, `raise NotImplementedError("Exercise: <hint>")`;
* the question's only test is hidden and exception-based: it calls our check,
  `course.checks.<name>(<learner names>)`, so the points come from our checks;
* every other cell is copied as our lesson builder would copy it (markdown solutions
  removed), outside any question, so otter leaves it alone.

`build_otter_assignment(solution, out_dir)` needs no otter; `otter_assign(master, result)` runs
the real `otter assign`, which also grades the solution against the tests and refuses to
write an assignment where it does not get full points.

How otter grades differs from `course grade` (GRADING.md): otter runs the whole submission
in one kernel, then the tests in that same kernel, so learner code runs before the checks
and can patch them, and calling the package's own implementation is not detected. Its
protection is the container it runs in on Gradescope or under `otter grade` (Docker).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from course.authoring import (
    _CODE_MARKER,
    _Where,
    lesson_from_solution,
    notebook_text,
    read_notebook,
    strip_code_solutions,
    strip_markdown_solutions,
)
from course.errors import AuthoringError
from course.grading import manifest_from_solutions

# Otter assign rewrites or drops lines and cells that look like its own syntax. A solution
# cell containing one of these would be silently changed, so it is refused instead.
_OTTER_LINE = re.compile(
    r"#\s*(BEGIN|END)\s*(SOLUTION|PROMPT|IGNORE|QUESTION|TESTS|TEST\s+CONFIG)\b"
    r"|#\s?SOLUTION\b|#\s*(IGNORE|SEED)\s*$|#\s*ASSIGNMENT\s+CONFIG", re.IGNORECASE)
_OTTER_IGNORE_CELL = re.compile(r"(##\s*ignore\s*##\s*|#\s*ignore\s*)", re.IGNORECASE)


def build_otter_assignment(solution_path: str | Path, out_dir: str | Path, *,
                           requirements: Sequence[str] | None = None) -> Path:
    """Write the otter master notebook for solution notebook `solution_path`; return its path.

    The notebook is `out_dir/<lesson>.ipynb`; give it to `otter assign` (or
    `otter_assign`). `requirements` (pip requirement strings) go into the autograder's
    requirements.txt, which only a containerized grader (Gradescope, `otter grade`)
    installs; for those, list the course package, e.g.
    `["course @ git+https://github.com/pretraining-by-hand/course@main"]`.
    Raises AuthoringError when the lesson cannot be expressed faithfully.
    """
    solution_path = Path(solution_path)
    lesson = solution_path.stem
    manifest = manifest_from_solutions(solution_path.parent)["lessons"].get(lesson)
    if manifest is None:
        raise AuthoringError(f"{solution_path}: not a solution notebook of "
                             f"{solution_path.parent}")
    nb = read_notebook(solution_path)
    learner = lesson_from_solution(nb, solution_path)  # validates every marker

    check_cell = {}  # cell index -> exercise
    for exercise in manifest["exercises"]:
        index = _check_cell_index(nb, exercise)
        check_cell[index] = exercise

    cells: list[NotebookNode] = [_raw(_assignment_config(requirements))]
    pending: list[NotebookNode] = []  # solution cells waiting for their check cell
    for index, cell in enumerate(nb.cells):
        where = _Where(str(solution_path), index, cell.get("id"))
        _refuse_otter_syntax(cell, where)
        has_solution = cell.cell_type == "code" and any(
            (m := _CODE_MARKER.match(line)) and m["kind"] == "BEGIN"
            for line in cell.source.split("\n"))
        if has_solution:
            pending.append(_otter_solution_cell(cell, where))
            continue
        if index in check_cell:
            if not pending:
                raise AuthoringError(f"{solution_path}: cell {index}: check.{check_cell[index]['name']}"
                                     " has no `### BEGIN SOLUTION` cell before it")
            cells += _question(check_cell[index], pending)
            pending = []
        copied = _copy_cell(cell, solution_path, index)
        if copied is None:
            continue
        if pending:
            # between a solution and its check: stays in place, inside the question's solution
            # block; otter would drop a markdown cell there unless it is tagged otter_include
            if copied.cell_type == "markdown":
                copied.metadata.setdefault("tags", []).append("otter_include")
            pending.append(copied)
        else:
            cells.append(copied)
    if pending:
        raise AuthoringError(f"{solution_path}: a `### BEGIN SOLUTION` cell is not followed by "
                             "the check cell of its exercise")

    master = nbformat.v4.new_notebook()
    master.nbformat_minor = learner.nbformat_minor
    master.metadata = learner.metadata  # kernelspec and our lesson id, for `course grade` too
    master.cells = cells
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{lesson}.ipynb"
    path.write_text(notebook_text(master), encoding="utf-8")
    return path


def otter_assign(master: str | Path, result_dir: str | Path, *, run_tests: bool = True,
                 timeout: float = 1800) -> dict[str, Path]:
    """Run the real `otter assign` on `master`; return the student notebook and autograder zip.

    With `run_tests`, otter grades the solution with the tests and fails unless it gets
    full points. Raises AuthoringError with otter's output when it fails.
    """
    master, result_dir = Path(master), Path(result_dir)
    if result_dir.exists() and any(result_dir.iterdir()):
        raise AuthoringError(f"{result_dir} exists and is not empty; otter assign would replace "
                             "what is there: give a new directory, or remove it first")
    command = [_otter(), "assign", "--no-pdfs"]
    if not run_tests:
        command.append("--no-run-tests")
    proc = subprocess.run([*command, str(master), str(result_dir)], capture_output=True,
                          text=True, timeout=timeout, cwd=master.parent)
    if proc.returncode != 0:
        raise AuthoringError(f"otter assign failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    zips = sorted((result_dir / "autograder").glob("*-autograder_*.zip"))
    student = result_dir / "student" / master.name
    if len(zips) != 1 or not student.is_file():
        raise AuthoringError(f"otter assign wrote no student notebook or autograder zip in "
                             f"{result_dir}:\n{proc.stdout}\n{proc.stderr}")
    return {"student": student, "autograder": zips[0],
            "solution": result_dir / "autograder" / master.name}


def otter_run(submission: str | Path, autograder: str | Path, output_dir: str | Path, *,
              timeout: float = 1800) -> dict[str, Any]:
    """Grade one submission with `otter run` (no container); return otter's results JSON."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([_otter(), "run", "--no-logo", "-a", str(autograder), "-o",
                           str(output_dir), str(submission)], capture_output=True, text=True,
                          timeout=timeout)
    results = output_dir / "results.json"
    if proc.returncode != 0 or not results.is_file():
        raise AuthoringError(f"otter run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(results.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- helpers


def _otter() -> str:
    """The `otter` command of this interpreter's environment, else the one on PATH."""
    here = Path(sys.executable).with_name("otter")
    found = str(here) if here.is_file() else shutil.which("otter")
    if found is None:
        raise AuthoringError("otter-grader is not installed: pip install otter-grader")
    return found


def _assignment_config(requirements: Sequence[str] | None) -> str:
    config: dict[str, Any] = {
        # otter's own cells (init, check-all, export) are not part of our lessons
        "init_cell": False, "check_all_cell": False, "export_cell": False,
        "solutions_pdf": False, "template_pdf": False,
        "run_tests": True,
        # exception-based tests: a Python function that raises = a failed test
        "tests": {"files": False, "ok_format": False},
        "generate": {"pdf": False},
    }
    if requirements:
        config["requirements"] = list(requirements)
    # JSON is YAML
    return "# ASSIGNMENT CONFIG\n" + json.dumps(config, indent=1)


def _raw(source: str) -> NotebookNode:
    return nbformat.v4.new_raw_cell(source)


def _question(exercise: dict[str, Any], solution_cells: list[NotebookNode]) -> list[NotebookNode]:
    name, args, points = exercise["name"], exercise["args"], exercise["points"]
    question = {"name": name, "points": points, "check_cell": False}
    names = "(" + "".join(f"{a!r}, " for a in args) + ")"
    test = "\n".join([
        '""" # BEGIN TEST CONFIG',
        "hidden: true",
        '""" # END TEST CONFIG',
        f"def test_{name}(env):",
        f'    """Our check course.checks.{name}, on the learner\'s {", ".join(args)}."""',
        "    import course.checks",
        f"    missing = [n for n in {names} if n not in env]",
        "    if missing:",
        f"        raise course.checks.NotAttempted({name!r})",
        f"    course.checks.{name}({', '.join(f'env[{a!r}]' for a in args)})",
    ])
    return [_raw("# BEGIN QUESTION\n" + json.dumps(question)),
            _raw("# BEGIN SOLUTION"), *solution_cells, _raw("# END SOLUTION"),
            _raw("# BEGIN TESTS"), nbformat.v4.new_code_cell(test), _raw("# END TESTS"),
            _raw("# END QUESTION")]


def _otter_solution_cell(cell: NotebookNode, where: _Where) -> NotebookNode:
    """Our marker regions in otter's syntax: the prompt is our placeholder line, kept in a
    string for the solution version, and the solution is dropped from the student version."""
    placeholders = iter(line for line in strip_code_solutions(cell.source, where).split("\n")
                        if line.lstrip().startswith("raise NotImplementedError(\"Exercise: "))
    out = []
    for line in cell.source.split("\n"):
        m = _CODE_MARKER.match(line)
        if m is None:
            out.append(line)
        elif m["kind"] == "BEGIN":
            indent = m["indent"]
            out += [f'{indent}""" # BEGIN PROMPT', next(placeholders), f'{indent}""" # END PROMPT',
                    f"{indent}# BEGIN SOLUTION NO PROMPT"]
        else:
            out.append(f"{m['indent']}# END SOLUTION")
    new = _copy_code(cell)
    new.source = "\n".join(out)
    return new


def _copy_cell(cell: NotebookNode, source: Path, index: int) -> NotebookNode | None:
    if cell.cell_type == "code":
        return _copy_code(cell)
    if cell.cell_type == "markdown":
        text = strip_markdown_solutions(cell.source, _Where(str(source), index, cell.get("id")))
        if not text.strip():
            return None
        new = nbformat.v4.new_markdown_cell(text)
        new.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags", "editable",
                                                                         "deletable", "jupyter")}
        if cell.get("attachments"):
            new["attachments"] = cell["attachments"]
        return new
    return nbformat.from_dict({"cell_type": cell.cell_type, "metadata": dict(cell.metadata),
                               "source": cell.source})


def _copy_code(cell: NotebookNode) -> NotebookNode:
    new = nbformat.v4.new_code_cell(cell.source)
    new.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags", "editable",
                                                                     "deletable", "jupyter")}
    return new


def _check_cell_index(nb: NotebookNode, exercise: dict[str, Any]) -> int:
    for index, cell in enumerate(nb.cells):
        if exercise.get("cell_id") and cell.get("id") == exercise["cell_id"]:
            return index
    pattern = re.compile(rf"^check\.{re.escape(exercise['name'])}\(", re.MULTILINE)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and pattern.search(cell.source):
            return index
    raise AuthoringError(f"the check cell of exercise {exercise['name']} was not found")


def _refuse_otter_syntax(cell: NotebookNode, where: _Where) -> None:
    lines = cell.source.split("\n")
    if cell.cell_type in ("code", "markdown") and lines and _OTTER_IGNORE_CELL.match(lines[0]):
        raise where.error(1, "otter assign drops a cell whose first line starts with "
                             "`# ignore`; reword that line")
    if cell.cell_type == "markdown":
        return
    for lineno, line in enumerate(lines, start=1):
        if _CODE_MARKER.match(line):
            continue  # ours, rewritten
        if _OTTER_LINE.search(line):
            raise where.error(lineno, f"{line.strip()!r} is otter-grader syntax, which otter "
                                      "assign would rewrite; reword it")
