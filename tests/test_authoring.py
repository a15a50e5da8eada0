"""Solutions → lessons: stripping, determinism, malformed markers, sync checks, execution.

Notebooks are built with nbformat in tmp_path, so every test states exactly the input it
is about. Only the `execute_solutions` tests start a kernel; they share one module-scoped
execution.
"""

from __future__ import annotations

import argparse
import json
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from course.authoring import (
    add_cli,
    build_lessons,
    check_lessons,
    execute_solutions,
    lesson_from_solution,
    lesson_text,
    strip_code_solutions,
    strip_markdown_solutions,
)
from course.errors import AuthoringError, CourseError


def write_nb(path, cells, **metadata):
    """Write a notebook with fixed cell ids (c0, c1, …) so tests can refer to them."""
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
    nb = new_notebook(cells=cells, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="course")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


SOLUTION_CELLS = [
    "def merge(ids, pair, idx):\n"
    "    \"\"\"Replace each occurrence of pair by idx.\"\"\"\n"
    "    out = []\n"
    "    ### BEGIN SOLUTION\n"
    "    i = 0\n"
    "    while i < len(ids):\n"
    "        out.append(ids[i])\n"
    "        i += 1\n"
    "    ### END SOLUTION\n"
    "    return out\n",
    "### BEGIN SOLUTION count every adjacent pair\n"
    "counts = {}\n"
    "### END SOLUTION\n"
    "print(len(counts))",
    "class Model:\n"
    "    def forward(self, x):\n"
    "        if x is None:\n"
    "            ### BEGIN SOLUTION: handle the empty case\n"
    "            return 0\n"
    "            ### END SOLUTION\n"
    "        ### BEGIN SOLUTION\n"
    "        return x + 1\n"
    "        ### END SOLUTION\n",
]


# ----------------------------------------------------------------------- code regions


def test_region_in_function_body_becomes_one_raise_at_marker_indentation():
    lesson = strip_code_solutions(SOLUTION_CELLS[0])
    assert lesson == (
        "def merge(ids, pair, idx):\n"
        "    \"\"\"Replace each occurrence of pair by idx.\"\"\"\n"
        "    out = []\n"
        "    raise NotImplementedError(\"Exercise: implement merge()\")\n"
        "    return out\n"
    )
    compile(lesson, "<lesson>", "exec")


def test_top_level_region_uses_the_text_after_begin_as_hint():
    assert strip_code_solutions(SOLUTION_CELLS[1]) == (
        "raise NotImplementedError(\"Exercise: count every adjacent pair\")\nprint(len(counts))")


def test_several_regions_in_one_cell_each_at_its_own_indentation():
    lesson = strip_code_solutions(SOLUTION_CELLS[2])
    assert lesson.splitlines() == [
        "class Model:",
        "    def forward(self, x):",
        "        if x is None:",
        "            raise NotImplementedError(\"Exercise: handle the empty case\")",
        "        raise NotImplementedError(\"Exercise: implement forward()\")",
    ]
    compile(lesson, "<lesson>", "exec")


def test_hint_with_quotes_stays_a_valid_python_string():
    src = '### BEGIN SOLUTION use "x" and \\n\nx = 1\n### END SOLUTION'
    lesson = strip_code_solutions(src)
    with pytest.raises(NotImplementedError, match=r'Exercise: use "x" and \\n'):
        exec(lesson, {})


def test_cell_without_markers_is_unchanged():
    src = "x = 1  # BEGIN is not a marker\nprint('### BEGIN SOLUTION is only a marker alone')"
    assert strip_code_solutions(src) == src


# ------------------------------------------------------------------- markdown regions


@pytest.mark.parametrize(("source", "expected"), [
    ("# Title\n\n<!-- BEGIN SOLUTION -->\nThe answer is 42.\n<!-- END SOLUTION -->\n\nMore.",
     "# Title\n\nMore."),
    ("Answer: <!-- BEGIN SOLUTION -->42<!-- END SOLUTION -->.\nNext line", "Answer: .\nNext line"),
    ("A\n<!-- BEGIN SOLUTION -->\nx\n<!-- END SOLUTION -->\nB\n<!-- BEGIN SOLUTION -->\ny\n"
     "<!-- END SOLUTION -->\nC", "A\nB\nC"),
    ("No markers here.", "No markers here."),
])
def test_markdown_regions_are_removed(source, expected):
    assert strip_markdown_solutions(source) == expected


# ----------------------------------------------------------------- whole notebooks


@pytest.fixture
def solution_nb():
    cells = [
        new_markdown_cell("# Merge\n\n<!-- BEGIN SOLUTION -->\nSecret.\n<!-- END SOLUTION -->"),
        new_markdown_cell("<!-- BEGIN SOLUTION -->\nOnly a solution.\n<!-- END SOLUTION -->"),
        new_code_cell(SOLUTION_CELLS[0], execution_count=3, outputs=[
            new_output("stream", name="stdout", text="hello\n")],
            metadata={"tags": ["nbval-ignore-output"], "collapsed": True, "scrolled": True,
                      "execution": {"iopub.execute_input": "2024-01-01T00:00:00Z"}}),
        new_code_cell("1 / 0", execution_count=4, metadata={"tags": ["raises-exception"]},
                      outputs=[new_output("error", ename="ZeroDivisionError", evalue="x", traceback=[])]),
        new_raw_cell("raw text", metadata={"format": "text/plain"}),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"id-{i}"
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
        "colab": {"provenance": []},
    })


def test_lesson_clears_outputs_and_keeps_only_what_matters(solution_nb):
    lesson = lesson_from_solution(solution_nb, "solutions/03_merge.ipynb")
    # the solution-only markdown cell is dropped; every other id is the solution's
    assert [c.id for c in lesson.cells] == ["id-0", "id-2", "id-3", "id-4"]
    assert lesson.cells[0].source == "# Merge"
    code = [c for c in lesson.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].metadata == {"tags": ["nbval-ignore-output"]}
    assert code[1].metadata == {"tags": ["raises-exception"]}
    assert lesson.cells[3].metadata == {"format": "text/plain"} and lesson.cells[3].source == "raw text"
    assert "raise NotImplementedError" in code[0].source and "while i" not in code[0].source
    assert lesson.metadata == {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "course": {"lesson": "03_merge"},  # the grader's lesson id, from the file name
    }
    nbformat.validate(lesson)
    # the solution object itself is untouched
    assert solution_nb.cells[2].outputs and "while i" in solution_nb.cells[2].source


def test_old_notebook_without_ids_gets_stable_derived_ids(tmp_path, solution_nb):
    path = tmp_path / "solutions" / "01_old.ipynb"
    path.parent.mkdir()
    raw = json.loads(nbformat.writes(solution_nb))
    raw["nbformat_minor"] = 4
    for cell in raw["cells"]:
        del cell["id"]
    path.write_text(json.dumps(raw))
    first, second = lesson_text(path), lesson_text(path)
    assert first == second
    ids = [c["id"] for c in json.loads(first)["cells"]]
    assert len(set(ids)) == len(ids) and json.loads(first)["nbformat_minor"] == 5


def test_build_is_byte_deterministic_and_idempotent(tmp_path, solution_nb):
    sol, les = tmp_path / "solutions", tmp_path / "lessons"
    sol.mkdir()
    nbformat.write(solution_nb, sol / "03_merge.ipynb")
    assert build_lessons(sol, les) == [les / "03_merge.ipynb"]
    data = (les / "03_merge.ipynb").read_bytes()
    assert data.endswith(b"}\n") and data.startswith(b'{\n "cells": [\n  {\n')
    assert build_lessons(sol, les) == []  # nothing changed, nothing written
    (les / "03_merge.ipynb").unlink()
    build_lessons(sol, les)
    assert (les / "03_merge.ipynb").read_bytes() == data
    # a copy of the solution elsewhere generates the very same bytes
    other = tmp_path / "elsewhere"
    shutil.copytree(sol, other / "solutions")
    build_lessons(other / "solutions", other / "lessons")
    assert (other / "lessons" / "03_merge.ipynb").read_bytes() == data


def test_build_removes_lessons_without_solution_and_reports_changes(tmp_path):
    sol, les = tmp_path / "solutions", tmp_path / "lessons"
    write_nb(sol / "01_a.ipynb", [new_code_cell("x = 1")])
    write_nb(sol / "02_b.ipynb", [new_code_cell("y = 2")])
    assert build_lessons(sol, les) == [les / "01_a.ipynb", les / "02_b.ipynb"]
    (sol / "02_b.ipynb").rename(sol / "02_c.ipynb")
    assert build_lessons(sol, les) == [les / "02_c.ipynb", les / "02_b.ipynb"]
    assert sorted(p.name for p in les.iterdir()) == ["01_a.ipynb", "02_c.ipynb"]


def test_missing_solutions_dir_is_a_course_error(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        build_lessons(tmp_path / "nope", tmp_path / "lessons")


# ---------------------------------------------------------------- malformed markers


MALFORMED = [
    ("code", "x = 1\n### BEGIN SOLUTION\ny = 2", 2, "unclosed"),
    ("code", "x = 1\n### END SOLUTION", 2, "without a `### BEGIN SOLUTION`"),
    ("code", "### BEGIN SOLUTION\na = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION", 3, "nested"),
    ("code", "def f():\n    ### BEGIN SOLUTION\n\n    ### END SOLUTION", 2, "empty solution region"),
    ("code", "# BEGIN SOLUTION\nx = 1\n# END SOLUTION", 1, "malformed solution marker"),
    ("code", "x = 1\n<!-- BEGIN SOLUTION -->", 2, "markdown-style"),
    ("code", "x = (1 +\n### BEGIN SOLUTION\n2)\n### END SOLUTION", None, "not be valid Python"),
    ("markdown", "Text\n### BEGIN SOLUTION\nanswer\n### END SOLUTION", 2, "code-style"),
    ("markdown", "a\n<!-- BEGIN SOLUTION -->\nb", 2, "unclosed"),
    ("markdown", "a <!-- END SOLUTION -->", 1, "without a `<!-- BEGIN SOLUTION -->`"),
    ("markdown", "<!-- BEGIN SOLUTION -->\n<!-- BEGIN SOLUTION -->\nx\n<!-- END SOLUTION -->", 2, "nested"),
    ("markdown", "<!-- BEGIN SOLUTION -->  \n<!-- END SOLUTION -->", 1, "empty solution region"),
]


@pytest.mark.parametrize(("cell_type", "source", "line", "what"), MALFORMED)
def test_malformed_markers_name_notebook_cell_and_line(tmp_path, cell_type, source, line, what):
    sol, les = tmp_path / "solutions", tmp_path / "lessons"
    make = new_code_cell if cell_type == "code" else new_markdown_cell
    write_nb(sol / "01_fine.ipynb", [new_code_cell("ok = 1")])
    write_nb(sol / "02_bad.ipynb", [new_markdown_cell("intro"), make(source)])
    with pytest.raises(AuthoringError) as info:
        build_lessons(sol, les)
    message = str(info.value)
    assert "02_bad.ipynb" in message and "cell 1 " in message and "id 'c1'" in message
    assert what in message
    if line is not None:
        assert f"line {line}:" in message
    assert isinstance(info.value, CourseError)
    assert not les.exists() or not list(les.iterdir())  # nothing half-written


# ------------------------------------------------------------------ check + CLI


@pytest.fixture
def course_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_nb(tmp_path / "solutions" / "01_a.ipynb",
             [new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION")])
    write_nb(tmp_path / "solutions" / "02_b.ipynb", [new_markdown_cell("# B"), new_code_cell("y = 2")])
    return tmp_path


def test_check_reports_stale_missing_and_extra_lessons(course_dirs):
    sol, les = course_dirs / "solutions", course_dirs / "lessons"
    assert check_lessons(sol, les) == [f"missing: {les / '01_a.ipynb'} (generated from {sol / '01_a.ipynb'})",
                                       f"missing: {les / '02_b.ipynb'} (generated from {sol / '02_b.ipynb'})"]
    build_lessons(sol, les)
    assert check_lessons(sol, les) == []

    lesson = nbformat.read(les / "02_b.ipynb", as_version=4)
    lesson.cells[1].source = "y = 3  # edited by hand"
    nbformat.write(lesson, les / "02_b.ipynb")
    write_nb(les / "99_orphan.ipynb", [new_code_cell("z = 0")])
    (les / "01_a.ipynb").unlink()
    problems = check_lessons(sol, les)
    assert len(problems) == 3
    assert problems[0].startswith("missing: ") and "01_a.ipynb" in problems[0]
    assert problems[1].startswith("stale: ") and "02_b.ipynb" in problems[1]
    assert "first difference in cell 1" in problems[1]
    assert problems[2].startswith("extra: ") and "99_orphan.ipynb" in problems[2]


def test_cli_lessons_check_and_build_exit_codes(course_dirs, capsys):
    assert run_cli(["lessons", "check"]) == 1
    out = capsys.readouterr().out
    assert "missing: lessons/01_a.ipynb" in out and "course lessons build" in out
    assert run_cli(["lessons", "build"]) == 0
    assert "wrote lessons/01_a.ipynb" in capsys.readouterr().out
    assert run_cli(["lessons", "check"]) == 0
    assert run_cli(["lessons", "build"]) == 0
    assert "up to date" in capsys.readouterr().out
    # the directories can be moved
    (course_dirs / "solutions").rename(course_dirs / "src")
    assert run_cli(["lessons", "check", "--solutions-dir", "src", "--lessons-dir", "out"]) == 1
    assert run_cli(["lessons", "build", "--solutions-dir", "src", "--lessons-dir", "out"]) == 0
    assert (course_dirs / "out" / "02_b.ipynb").is_file()



def test_building_other_solutions_never_touches_the_package_manifest(course_dirs, capsys):
    from course.grading import MANIFEST

    before = MANIFEST.read_bytes()
    assert run_cli(["lessons", "build"]) == 0
    assert MANIFEST.read_bytes() == before
    assert run_cli(["lessons", "build", "--manifest", "mine.json"]) == 0
    assert "wrote mine.json" in capsys.readouterr().out
    assert list(json.loads((course_dirs / "mine.json").read_text())["lessons"]) == ["01_a", "02_b"]
    assert run_cli(["lessons", "check", "--manifest", "mine.json"]) == 0


def test_unknown_solution_name_lists_the_available_ones(course_dirs):
    write_nb(course_dirs / "solutions" / "02_c.ipynb", [new_code_cell("w = 1")])
    with pytest.raises(AuthoringError, match=r"'07' matches no solution.*available: 01_a, 02_b, 02_c"):
        execute_solutions(["07"])
    with pytest.raises(AuthoringError, match="'02' is ambiguous"):
        execute_solutions(["02"])


# ------------------------------------------------------------------------ execute


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """One execution of a tiny solution notebook (plus a second, to compare bytes)."""
    root = tmp_path_factory.mktemp("execute")
    sol = root / "solutions"
    write_nb(sol / "01_tiny.ipynb", [
        new_markdown_cell("# Tiny"),
        new_code_cell("from course import checks as check\nimport os\n"
                      "print(os.getcwd(), os.environ.get('COURSE_TEST_ENV'))"),
        new_code_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
                      metadata={"execution": {"stale": "timing"}}),
        new_code_cell("check.square(square)"),
        new_code_cell("check.square(lambda x: x + x)", metadata={"tags": ["raises-exception"]}),
        new_code_cell("def todo(x):\n    raise NotImplementedError('Exercise: todo')\n"
                      "check.square(todo)", metadata={"tags": ["raises-exception"]}),
        new_code_cell("square(12)"),
    ])
    write_nb(sol / "02_other.ipynb", [new_code_cell("raise SystemExit('not executed')")])
    paths = execute_solutions(["01"], solutions_dir=sol, timeout=60, env={"COURSE_TEST_ENV": "yes"})
    first = (sol / "01_tiny.ipynb").read_bytes()
    execute_solutions(["01_tiny.ipynb"], solutions_dir=sol, timeout=60, env={"COURSE_TEST_ENV": "yes"})
    return sol, paths, first


def test_execute_runs_in_place_with_outputs(executed):
    sol, paths, _ = executed
    assert paths == [sol / "01_tiny.ipynb"]
    nb = nbformat.read(sol / "01_tiny.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4, 5, 6]
    # cwd = the solutions dir; extra environment variables reach the kernel
    assert code[0].outputs[0].text.strip() == f"{sol.resolve()} yes"
    assert code[2].outputs == [new_output("stream", name="stdout", text="✓ square: 6 cases passed\n")]
    assert code[5].outputs[0].data["text/plain"] == "144"
    assert all("execution" not in c.metadata for c in nb.cells)
    assert "version" not in nb.metadata["language_info"]
    # the other notebook was not asked for, so it was not run
    assert nbformat.read(sol / "02_other.ipynb", as_version=4).cells[0].outputs == []


def test_executing_twice_gives_identical_bytes(executed):
    sol, _, first = executed
    assert (sol / "01_tiny.ipynb").read_bytes() == first


def test_failing_check_shows_one_friendly_block_not_a_traceback(executed):
    sol, _, _ = executed
    nb = nbformat.read(sol / "01_tiny.ipynb", as_version=4)
    failed = nb.cells[4].outputs
    assert len(failed) == 1 and failed[0].output_type == "error"
    assert failed[0].ename == "CheckFailed"
    text = "\n".join(failed[0].traceback)
    assert text == ("✗ square: on input x=1 — expected 1, got 2. "
                    "Hint: x * 2 doubles x; squaring multiplies x by itself")
    assert "Traceback" not in text and "File " not in text
    todo = nb.cells[5].outputs[0]
    assert todo.ename == "NotAttempted" and len(todo.traceback) == 1
    assert todo.traceback[0].startswith("○ square: not attempted yet")
    assert len(todo.traceback[0]) < 250


def test_failing_solution_cell_is_reported_and_file_left_unchanged(tmp_path):
    sol = tmp_path / "solutions"
    path = write_nb(sol / "05_broken.ipynb", [new_code_cell("x = 1"), new_code_cell("x = undefined_name")])
    before = path.read_bytes()
    with pytest.raises(AuthoringError) as info:
        execute_solutions(["05_broken"], solutions_dir=sol, timeout=60)
    message = str(info.value)
    assert "05_broken.ipynb: cell 1" in message and "NameError" in message
    assert "raises-exception" in message
    assert path.read_bytes() == before


def test_kernel_that_never_starts_is_reported_and_file_left_unchanged(tmp_path, monkeypatch):
    import nbclient

    def no_kernel(self, **kwargs):  # what nbclient raises when the kernel does not answer
        raise RuntimeError("Kernel didn't respond in 120 seconds")

    monkeypatch.setattr(nbclient.NotebookClient, "execute", no_kernel)
    path = write_nb(tmp_path / "solutions" / "01_x.ipynb", [new_code_cell("x = 1")])
    before = path.read_bytes()
    with pytest.raises(AuthoringError, match=r"01_x.ipynb: the python3 kernel did not start .*ipykernel"):
        execute_solutions(None, solutions_dir=tmp_path / "solutions")
    assert path.read_bytes() == before
