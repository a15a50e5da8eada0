"""The checks framework and notebook grading.

The framework tests run in-process (fast). Grading tests execute real notebooks built with
nbformat; each notebook is graded once in a module-scoped fixture and the tests read the
shared result.
"""

from __future__ import annotations

import argparse
import json

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course import checks as check
from course.authoring import (
    _exercise_results,
    _Outcome,
    add_cli,
    build_lessons,
    format_grade,
    grade_notebook,
)
from course.checks import CheckFailed, NotAttempted
from course.errors import AuthoringError

# ------------------------------------------------------------------ checks framework


def test_passing_check_prints_one_line_and_returns_none(capsys):
    assert check.square(lambda x: x * x) is None
    assert capsys.readouterr().out == "✓ square: 6 cases passed\n"


def test_wrong_answer_names_the_input_expected_and_got():
    with pytest.raises(CheckFailed) as info:
        check.square(lambda x: x + x)
    e = info.value
    assert isinstance(e, AssertionError) and e.exercise == "square"
    assert str(e) == ("square: on input x=1 — expected 1, got 2. "
                      "Hint: x * 2 doubles x; squaring multiplies x by itself")
    assert e._render_traceback_() == [f"✗ {e}"]


def test_not_implemented_becomes_not_attempted():
    def todo(x):
        raise NotImplementedError("Exercise: implement square()")

    with pytest.raises(NotAttempted, match="square: not attempted yet — replace the raise "
                                           r"NotImplementedError\(...\)") as info:
        check.square(todo)
    assert not isinstance(info.value, AssertionError)
    assert len(info.value._render_traceback_()) == 1


def test_crash_in_learner_code_becomes_check_failed_naming_input_and_exception():
    def crash(x):
        return 1 / x

    with pytest.raises(CheckFailed, match=r"on input x=0 your code raised ZeroDivisionError: "
                                          "division by zero") as info:
        check.square(crash)
    assert info.value.__suppress_context__  # the deep traceback is not chained in


def test_wrong_type_is_reported_before_values():
    with pytest.raises(CheckFailed, match=r"expected int or float, got None \(did the function "
                                          "forget to `return`"):
        check.square(lambda x: None)
    with pytest.raises(CheckFailed, match=r"expected int or float, got list: \[0\]"):
        check.square(lambda x: [x])


def test_exercise_decorator_registers_and_counts_calls(capsys):
    @check.exercise("test_double_for_grading")
    def double(fn):
        for x in (1, 2, 3):
            check.expect_equal("test_double_for_grading", f"x={x}",
                               2 * x, check.call("test_double_for_grading", fn, x))

    try:
        assert check.EXERCISES["test_double_for_grading"] is double
        assert check.test_double_for_grading is double  # looked up through the package
        assert "test_double_for_grading" in dir(check)
        double(lambda x: x * 2)
        assert capsys.readouterr().out == "✓ test_double_for_grading: 3 cases passed\n"
        with pytest.raises(CheckFailed, match="my message"):
            double(lambda x: (_ for _ in ()).throw(CheckFailed("inner", "my message")))
        with pytest.raises(CheckFailed, match=r"on input x=1 — expected 2, got '2' \(a str; expected an int\)"):
            double(lambda x: str(2 * x))
    finally:
        del check.EXERCISES["test_double_for_grading"]


def test_bad_exercise_names_are_refused():
    with pytest.raises(ValueError, match="taken by the check framework"):
        check.exercise("expect_equal")(lambda fn: None)
    with pytest.raises(ValueError, match="public Python identifier"):
        check.exercise("no spaces")(lambda fn: None)


def test_unknown_check_is_an_attribute_error_listing_the_known_ones():
    with pytest.raises(AttributeError, match=r"no check named 'no_such_check'; available: .*square"):
        check.no_such_check  # noqa: B018


def test_expect_equal_points_at_the_first_difference():
    with pytest.raises(CheckFailed, match=r"missing key \(2, 3\) \(expected value 1\)"):
        check.expect_equal("pair_counts", "ids=[1, 2, 3]", {(1, 2): 1, (2, 3): 1}, {(1, 2): 1})
    with pytest.raises(CheckFailed, match=r"at key \(1, 2\): expected 2, got 1"):
        check.expect_equal("pair_counts", "ids=[1, 2, 1, 2]", {(1, 2): 2}, {(1, 2): 1})
    with pytest.raises(CheckFailed) as info:
        check.expect_equal("merge", "ids=[1, 2, 3, 1, 2], pair=(1, 2), new id=99",
                           [99, 3, 99], [99, 3, 1, 2], hint="replace every occurrence")
    assert str(info.value) == (
        "merge: on input ids=[1, 2, 3, 1, 2], pair=(1, 2), new id=99 — expected [99, 3, 99], "
        "got [99, 3, 1, 2]; first difference at index 2: expected 99, got 1. "
        "Hint: replace every occurrence")
    check.expect_equal("merge", "x", [1, 2], [1, 2])
    check.expect_equal("t", "x", torch.tensor([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(CheckFailed, match="1 of 2 values differ; first at index 1: expected 2, got 3"):
        check.expect_equal("t", "x", torch.tensor([1, 2]), torch.tensor([1, 3]))


def test_expect_close_explains_shape_then_dtype_then_values():
    expected = torch.zeros(2, 3)
    with pytest.raises(CheckFailed, match=r"expected shape \(2, 3\), got shape \(3, 2\) \(transposed\?\)"):
        check.expect_close("attn", "x", expected, torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(CheckFailed, match=r"expected a torch.Tensor of shape \(2, 3\), got \[1, 2\]"):
        check.expect_close("attn", "x", expected, [1, 2])
    with pytest.raises(CheckFailed, match="expected dtype torch.float32, got torch.float64"):
        check.expect_close("attn", "x", expected, torch.zeros(2, 3, dtype=torch.float64))
    got = expected.clone()
    got[1, 2] = 0.5
    got[0, 0] = 1e-7  # within tolerance
    with pytest.raises(CheckFailed, match=r"1 of 6 values differ; largest difference 0.5 at index "
                                          r"\(1, 2\): expected 0.0, got 0.5"):
        check.expect_close("attn", "x", expected, got)
    got[1, 2] = float("nan")
    with pytest.raises(CheckFailed, match=r"a NaN at index \(1, 2\)"):
        check.expect_close("attn", "x", expected, got)
    check.expect_close("attn", "x", expected, expected + 1e-7)
    check.expect_close("loss", "x", 2.0, 2.0 + 1e-9)
    with pytest.raises(CheckFailed, match="expected 2.0, got 2.5"):
        check.expect_close("loss", "x", 2.0, 2.5)


def test_expect_type():
    check.expect_type("vocab", "x", dict, {})
    with pytest.raises(CheckFailed, match=r"vocab: on input text='ab' — expected dict, got list: \[\]"):
        check.expect_type("vocab", "text='ab'", dict, [])


# ------------------------------------------------------------- exercise attribution


def test_outcomes_are_attributed_to_exercises():
    nb = new_notebook(cells=[
        new_code_cell("from course import checks as check"),
        new_markdown_cell("check.not_a_cell_that_runs(x)"),
        new_code_cell("raise NotImplementedError('Exercise')"),
        new_code_cell("check.a(x)  # the exercise cell failed, so x is undefined"),
        new_code_cell("check.b(f)\ncheck.c(f)\n# check.commented_out(f)"),
        new_code_cell("check.d(f)"),
    ])
    ok = _Outcome("ok", "", "")
    outcomes = {
        0: ok,
        2: _Outcome("error", "NotImplementedError", "Exercise"),
        3: _Outcome("error", "NameError", "name 'x' is not defined"),
        4: _Outcome("error", "CheckFailed", "c: expected 1, got 2", stdout="✓ b: 3 cases passed\n"),
        5: _Outcome("error", "NameError", "name 'check' is not defined"),
    }
    results = _exercise_results(nb, outcomes, timeout=5)
    assert [(r["name"], r["status"]) for r in results] == [
        ("a", "not attempted"), ("b", "passed"), ("c", "failed"), ("d", "error")]
    assert "cell 2 still raises NotImplementedError" in results[0]["message"]
    assert results[1]["message"] == "b: 3 cases passed"
    assert results[2]["message"] == "c: expected 1, got 2"
    assert "setup cell" in results[3]["message"]


# ---------------------------------------------------------------------- grading


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser(prog="course")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def write_nb(path, sources):
    cells = [new_markdown_cell(s[3:]) if s.startswith("md:") else new_code_cell(s) for s in sources]
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), path)
    return path


TOY_SOLUTION = [
    "md:# Squares\n<!-- BEGIN SOLUTION -->\nSquare means x * x.\n<!-- END SOLUTION -->",
    "from course import checks as check",
    "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
    "check.square(square)",
    "### BEGIN SOLUTION as a lambda\nsq = lambda x: x ** 2\n### END SOLUTION",
    "check.square(sq)",
    "def power(x, n):\n    ### BEGIN SOLUTION\n    return x ** n\n    ### END SOLUTION",
    "check.square(lambda x: power(x, 2))",
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy course, its generated lesson, and both graded once."""
    root = tmp_path_factory.mktemp("toy")
    write_nb(root / "solutions" / "01_squares.ipynb", TOY_SOLUTION)
    build_lessons(root / "solutions", root / "lessons")
    lesson = root / "lessons" / "01_squares.ipynb"
    before = lesson.read_bytes()
    return {
        "solution": grade_notebook(root / "solutions" / "01_squares.ipynb", timeout=30),
        "lesson": grade_notebook(lesson, timeout=30),
        "lesson_unchanged": lesson.read_bytes() == before,
    }


def test_solution_grades_full_marks(toy):
    result = toy["solution"]
    assert result == {
        "exercises": [{"name": "square", "status": "passed", "message": "square: 6 cases passed"}] * 3,
        "passed": 3, "total": 3,
    }


def test_generated_lesson_grades_zero_all_not_attempted(toy):
    result = toy["lesson"]
    assert (result["passed"], result["total"]) == (0, 3)
    assert [e["status"] for e in result["exercises"]] == ["not attempted"] * 3
    assert "replace the raise NotImplementedError" in result["exercises"][0]["message"]
    assert "still raises NotImplementedError" in result["exercises"][1]["message"]
    assert toy["lesson_unchanged"]


WRONG = [
    "from course import checks as check",
    "def square(x):\n    return x + x",
    "check.square(square)",
    "def looping(x):\n    while True:\n        pass",
    "check.square(looping)",
    "while True:\n    pass",
    "check.square(lambda x: x * x)",
    "check.square(lambda x: {}[x])",
]


@pytest.fixture(scope="module")
def wrong(tmp_path_factory):
    """A learner notebook with a wrong answer and two infinite loops, graded via the CLI."""
    path = write_nb(tmp_path_factory.mktemp("wrong") / "learner.ipynb", WRONG)
    before = path.read_bytes()
    return path, before


def test_wrong_answer_and_infinite_loops_are_reported_via_cli(wrong, capsys):
    path, before = wrong
    code, out = run_cli(["grade", str(path), "--json", "--timeout", "3"], capsys)
    assert code == 1
    result = json.loads(out)
    assert set(result) == {"exercises", "passed", "total"}
    assert all(set(e) == {"name", "status", "message"} for e in result["exercises"])
    statuses = [(e["status"], e["message"]) for e in result["exercises"]]
    assert statuses[0] == ("failed", "square: on input x=1 — expected 1, got 2. "
                                     "Hint: x * 2 doubles x; squaring multiplies x by itself")
    assert statuses[1][0] == "error" and "timed out after 3 s" in statuses[1][1]
    # the loop in a top-level cell was interrupted and grading went on: the check passed
    assert statuses[2] == ("passed", "square: 6 cases passed")
    assert statuses[3][0] == "failed" and "your code raised KeyError: 0" in statuses[3][1]
    assert (result["passed"], result["total"]) == (1, 4)
    assert path.read_bytes() == before


def test_human_table(toy):
    table = format_grade(toy["lesson"])
    lines = table.splitlines()
    assert lines[0].split() == ["exercise", "status", "message"]
    assert lines[1].startswith("square    not attempted  square: not attempted yet")
    assert lines[-1] == "0/3 passed"
    assert format_grade({"exercises": [], "passed": 0, "total": 0}).startswith("no exercises found")


@pytest.mark.slow
def test_loop_that_swallows_the_interrupt_stops_grading_cleanly(tmp_path):
    path = write_nb(tmp_path / "stubborn.ipynb", [
        "from course import checks as check",
        "import time\ndef stubborn(x):\n    while True:\n        try:\n            time.sleep(0.1)\n"
        "        except KeyboardInterrupt:\n            pass",
        "check.square(stubborn)",
        "check.square(lambda x: x * x)",
    ])
    result = grade_notebook(path, timeout=2)
    assert [e["status"] for e in result["exercises"]] == ["error", "error"]
    assert "timed out after 2 s" in result["exercises"][0]["message"]
    assert "did not recover" in result["exercises"][1]["message"]


def test_grading_a_missing_notebook_is_a_course_error(tmp_path):
    with pytest.raises(AuthoringError, match="does not exist"):
        grade_notebook(tmp_path / "nope.ipynb")
