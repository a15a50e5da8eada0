"""otter-grader end to end: our solution → `otter assign` → `otter run` (no Docker).

Skipped unless otter-grader is installed (and a `python3` Jupyter kernel, from ipykernel).
Lesson 03 executes in about 15 s per notebook; the whole module takes about 2 minutes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("otter")

from course.authoring import lesson_from_solution, read_notebook  # noqa: E402
from course.grading import manifest_from_solutions  # noqa: E402
from course.otter_export import build_otter_assignment, otter_assign, otter_run  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "03_packing.ipynb"


@pytest.fixture(scope="module")
def assignment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("otter")
    master = build_otter_assignment(SOLUTION, work / "master")
    # run_tests: otter itself grades the solution version and fails unless it gets full points
    return {"master": master, **otter_assign(master, work / "dist", run_tests=True),
            "work": work}


def scores(results: dict) -> dict[str, float]:
    return {t["name"]: t["score"] for t in results["tests"] if "score" in t}


def test_questions_and_points_come_from_the_manifest(assignment: dict[str, Path]) -> None:
    exercises = manifest_from_solutions(ROOT / "solutions")["lessons"]["03_packing"]["exercises"]
    results = otter_run(SOLUTION, assignment["autograder"], assignment["work"] / "solution")
    max_scores = {t["name"]: t["max_score"] for t in results["tests"] if "score" in t}
    assert max_scores == {e["name"]: e["points"] for e in exercises}
    assert scores(results) == max_scores  # the solution earns every point


def test_student_notebook_is_our_lesson_and_holds_no_solution(assignment: dict[str, Path]) -> None:
    student = nbformat.read(assignment["student"], as_version=4)
    lesson = lesson_from_solution(read_notebook(SOLUTION), SOLUTION)
    assert [(c.cell_type, c.source) for c in student.cells] == \
           [(c.cell_type, c.source) for c in lesson.cells]
    assert student.metadata["course"] == {"lesson": "03_packing"}  # `course grade` works on it too
    text = assignment["student"].read_text(encoding="utf-8")
    assert "stream.append(eos_id)" not in text and "course.checks.pack(env" not in text


def test_untouched_student_notebook_scores_zero(assignment: dict[str, Path]) -> None:
    results = otter_run(assignment["student"], assignment["autograder"],
                        assignment["work"] / "student")
    assert scores(results) == {"pack": 0, "shift": 0, "doc_ids_for": 0}
    assert all("NotAttempted" in t["output"] for t in results["tests"] if "score" in t)


def test_wrong_pack_fails_that_question_only(assignment: dict[str, Path]) -> None:
    nb = read_notebook(SOLUTION)
    right = "return [stream[i * block_size:(i + 1) * block_size] for i in range(n_blocks)]"
    cell = next(c for c in nb.cells if c.source.startswith("def pack("))
    assert right in cell.source
    cell.source = cell.source.replace(right, right.replace("[stream[", "[tuple(stream[")
                                      .replace("] for i", "]) for i"))
    submission = assignment["work"] / "wrong" / "03_packing.ipynb"
    submission.parent.mkdir()
    nbformat.write(nb, submission)
    results = otter_run(submission, assignment["autograder"], assignment["work"] / "wrong-out")
    assert scores(results) == {"pack": 0, "shift": 1, "doc_ids_for": 1}
    pack = next(t for t in results["tests"] if t["name"] == "pack")
    assert "CheckFailed" in pack["output"] and "tuple" in pack["output"]  # our check's feedback


def test_otter_syntax_in_a_solution_is_refused(tmp_path: Path) -> None:
    from course.errors import AuthoringError

    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nb = read_notebook(SOLUTION)
    cell = next(c for c in nb.cells if c.source.startswith("def shift("))
    cell.source += "\nx = 1  # SOLUTION"
    nbformat.write(nb, solutions / "03_packing.ipynb")
    with pytest.raises(AuthoringError, match="otter-grader syntax"):
        build_otter_assignment(solutions / "03_packing.ipynb", tmp_path / "out")
    shutil.rmtree(solutions)


def test_cli_writes_the_assignment_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    from course.cli import main

    out = tmp_path / "otter"
    assert main(["lessons", "otter", "03", "--out", str(out), "--solutions-dir",
                 str(ROOT / "solutions")]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / '03_packing' / '03_packing.ipynb'}" in printed
    student = nbformat.read(out / "03_packing" / "dist" / "student" / "03_packing.ipynb", as_version=4)
    assert student.metadata["course"] == {"lesson": "03_packing"}
    # a second run would have otter replace the first one's output: refused, nothing lost
    assert main(["lessons", "otter", "03", "--out", str(out), "--solutions-dir",
                 str(ROOT / "solutions")]) == 2
    assert "is not empty" in capsys.readouterr().err
