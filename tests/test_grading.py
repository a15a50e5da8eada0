"""The checks framework (in-process, fast) and the grader (real processes, real kernels).

The grader tests build a toy lesson with three real exercises (the demo `square`, lesson
03's `shift` and `pack`), then grade a class of generated submissions once (solved,
untouched, wrong, cheating in every way the grading issue lists, looping, memory-hungry,
flooding, spawning, crashing) and check every row of the gradebook.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course import checks as check
from course.authoring import build_lessons
from course.checks import CheckFailed, NotAttempted
from course.cli import main
from course.errors import AuthoringError
from course.grading import (
    Limits,
    format_grade,
    grade_notebook,
    learner_definitions,
    manifest_from_solutions,
)

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


# ------------------------------------------------------------------ hint levels


def test_hint_levels_come_with_repeated_failures_and_on_demand(capsys):
    from course.checks._core import _FAILURES, _SHOWN, exercise

    @exercise("hinted_demo", hints=("think about what a square is", "multiply x by itself"))
    def hinted_demo(fn):
        check.expect_equal("hinted_demo", "x=3", 9, fn(3))

    _FAILURES.pop("hinted_demo", None)
    _SHOWN.pop("hinted_demo", None)
    with pytest.raises(CheckFailed) as first:
        hinted_demo(lambda x: x + x)
    assert first.value.more is None  # a first failure: what is wrong, on which input
    check.hint("hinted_demo")
    assert capsys.readouterr().out == "hinted_demo: (level 1 of 2) think about what a square is\n"
    with pytest.raises(CheckFailed) as second:
        hinted_demo(lambda x: x + x)
    assert second.value.more == "(level 2 of 2) multiply x by itself"
    assert second.value._render_traceback_()[1] == "  More help: (level 2 of 2) multiply x by itself"
    with pytest.raises(KeyError, match="no exercise named"):
        check.hint("no_such_exercise")


def test_inputs_changed_in_place_are_caught_and_allowed_ones_are_not():
    def appends(xs):
        xs.append(0)
        return xs

    with pytest.raises(CheckFailed, match=r"changed its argument 1 in place: it was \[1\] before"):
        check.call("demo", appends, [1])
    model = torch.nn.Linear(2, 2)

    def steps(m, x):
        with torch.no_grad():
            m.weight.add_(1.0)
        return x.sum()

    check.call("demo", steps, model, torch.ones(2), may_change=(0,))


def test_contracts_are_strict():
    from lookalikes import AlwaysEqualList as AlwaysEqual

    for got in (AlwaysEqual(), ((1, 2),), [[1, True]], torch.tensor([[1]])):
        with pytest.raises(CheckFailed, match="expected list\\[list\\[int\\]\\]"):
            check.expect_contract("demo", "x", list[list[int]], got)
    check.expect_contract("demo", "x", list[list[int]], [[1, 2], []])
    with pytest.raises(CheckFailed, match="expected float, got a torch.Tensor"):
        check.expect_contract("demo", "x", float, torch.tensor(1.0))
    check.expect_contract("demo", "x", float, __import__("numpy").float32(1.0))
    with pytest.raises(CheckFailed):  # an always-equal object equals nothing
        check.expect_equal("demo", "x", [1, 2], AlwaysEqual())


# ---------------------------------------------------------------------- the grader


def write_nb(path, sources, metadata=None):
    cells = [new_markdown_cell(s[3:]) if s.startswith("md:") else new_code_cell(s) for s in sources]
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
    nb = new_notebook(cells=cells)
    nb.metadata.update(metadata or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


SQUARE = "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"
SHIFT = ("def shift(block):\n    ### BEGIN SOLUTION\n    return block[:-1], block[1:]\n"
         "    ### END SOLUTION")
PACK = ("def pack(docs, block_size, eos_id):\n    ### BEGIN SOLUTION\n    stream = []\n"
        "    for doc in docs:\n        stream += [*doc, eos_id]\n"
        "    n = len(stream) // block_size\n"
        "    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]\n"
        "    ### END SOLUTION")
TOY_SOLUTION = [
    "md:# Toy lesson\n<!-- BEGIN SOLUTION -->\nSquare means x * x.\n<!-- END SOLUTION -->",
    "import sys\nif 'google.colab' in sys.modules:\n    %pip install -q course\n"
    "from course import checks as check",
    SQUARE, "check.square(square)",
    SHIFT, "check.shift(shift)",
    PACK, "check.pack(pack)",
]
SOLVED = [c.replace("    ### BEGIN SOLUTION\n", "").replace("\n    ### END SOLUTION", "")
          for c in TOY_SOLUTION]
WRONG_SQUARE = "def square(x):\n    return x + x"
HEAD = SOLVED[:2]


def variant(**cells):
    """The solved toy lesson with some cells replaced (square=, shift=, pack=, or extra
    cells appended with after=[...]), and optionally the check cells removed."""
    out = list(HEAD)
    for name, solved, call in (("square", SOLVED[2], SOLVED[3]), ("shift", SOLVED[4], SOLVED[5]),
                               ("pack", SOLVED[6], SOLVED[7])):
        out.append(cells.get(name, solved))
        if not cells.get("drop_checks"):
            out.append(cells.get(f"{name}_call", call))
    return out + cells.get("after", [])


ALWAYS_EQUAL = "class Same:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
SUBMISSIONS = {
    # name: (cells, {exercise: expected status}, extra expectations)
    "solved": (variant(), {"square": "passed", "shift": "passed", "pack": "passed"}),
    "wrong": (variant(square=WRONG_SQUARE), {"square": "failed", "shift": "passed"}),
    "prints_success": (variant(square=WRONG_SQUARE, square_call="print('✓ square: 6 cases passed')"),
                       {"square": "failed"}),
    "try_except": (variant(square=WRONG_SQUARE, square_call="try:\n    check.square(square)\n"
                                                            "except Exception:\n    pass"),
                   {"square": "failed"}),
    "if_false": (variant(square=WRONG_SQUARE, square_call="if False:\n    check.square(square)"),
                 {"square": "failed"}),
    "string_mention": (variant(square=WRONG_SQUARE, square_call="s = 'check.square(square)'"),
                       {"square": "failed"}),
    "deleted_checks": (variant(square=WRONG_SQUARE, drop_checks=True),
                       {"square": "failed", "shift": "passed", "pack": "passed"}),
    "deleted_checks_solved": (variant(drop_checks=True),
                              {"square": "passed", "shift": "passed", "pack": "passed"}),
    "extra_check_cell": (variant(after=["check.shift(shift)", "check.square(lambda x: x * x)"]),
                         {"square": "passed", "shift": "passed", "pack": "passed"}),
    "rebinds_check": (variant(square=WRONG_SQUARE, square_call="check.square = lambda f: print("
                                                               "'✓ square: passed')\ncheck.square(square)"),
                      {"square": "failed"}),
    "rebinds_check_module": (variant(square=WRONG_SQUARE + "\ncheck = None"), {"square": "failed"}),
    "patches_course_top_level": (variant(
        square="import course.checks._core as core\ncore.expect_equal = lambda *a, **k: None\n"
               "core.CheckFailed = Exception\n" + WRONG_SQUARE), {"square": "failed"}),
    "patches_course_in_default_arg": (variant(
        square="import course.checks._core as core\n"
               "def square(x, _=setattr(core, 'expect_equal', lambda *a, **k: None)):\n"
               "    return x + x"), {"square": "error", "shift": "error"}),
    "patches_course_while_checked": (variant(
        square="def square(x):\n    import course.checks._core as core\n"
               "    core.expect_equal = lambda *a, **k: None\n    return x + x"),
        {"square": "error", "shift": "error"}),
    "always_equal": (variant(square=ALWAYS_EQUAL + "def square(x):\n    return Same()",
                             shift=ALWAYS_EQUAL + "def shift(block):\n    return Same(), Same()"),
                     {"square": "failed", "shift": "failed"}),
    "calls_the_reference": (variant(
        pack="from course.packing import pack_documents\n"
             "def pack(docs, block_size, eos_id):\n"
             "    return pack_documents(docs, block_size, eos_id).input_ids.tolist()"),
        {"pack": "reference", "square": "passed"}),
    "loops_in_exercise": (variant(square="def square(x):\n    while True:\n        pass"),
                          {"square": "error", "shift": "passed", "pack": "passed"}),
    "loops_at_top_level": (variant(after=["while True:\n    pass"]),
                           {"square": "passed", "shift": "passed"}),
    "memory_hungry": (variant(after=["hog = [bytearray(1 << 30) for _ in range(30)]"],
                              square="def square(x):\n    hog = bytearray(8 << 30)\n    return x * x"),
                      {"square": "failed", "shift": "passed"}),
    "floods_output": (variant(after=["while True:\n    print('x' * 10_000)"]),
                      {"square": "passed"}),
    "spawns_a_process": (variant(after=[
        "import subprocess, sys, pathlib\n"
        "p = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "open(PIDFILE, 'w').write(str(p.pid))"]), {"square": "passed"}),
    "kills_its_kernel": (variant(after=["import os\nos._exit(3)", "print('never')"]),
                         {"square": "passed", "pack": "passed"}),
    "syntax_error": (variant(shift="def shift(block)\n    return block"),
                     {"shift": "not attempted", "square": "passed"}),
}
LIMITS = ["--timeout", "20", "--notebook-timeout", "120", "--memory-mb", "3072",
          "--output-cap", "200000"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy course: its solution, generated lesson and manifest."""
    root = tmp_path_factory.mktemp("toy")
    write_nb(root / "solutions" / "01_toy.ipynb", TOY_SOLUTION)
    manifest = root / "exercises.json"
    build_lessons(root / "solutions", root / "lessons", manifest)
    return root, json.loads(manifest.read_text())


def test_manifest_comes_from_the_solution(toy):
    _, manifest = toy
    lesson = manifest["lessons"]["01_toy"]
    assert [(e["name"], e["args"], e["points"]) for e in lesson["exercises"]] == [
        ("square", ["square"], 1), ("shift", ["shift"], 1), ("pack", ["pack"], 1)]


def test_manifest_refuses_a_check_without_plain_names(tmp_path):
    write_nb(tmp_path / "s" / "01_x.ipynb", ["check.square(lambda x: x * x)"])
    with pytest.raises(AuthoringError, match="plain names"):
        manifest_from_solutions(tmp_path / "s")


def test_only_definitions_reach_the_checks():
    nb = new_notebook(cells=[new_code_cell(
        "import math\nN = 3\nx = compute()\nprint('✓ square: passed')\n"
        "def f():\n    return N\nclass C:\n    pass\ncheck.square = None\n%time f()")])
    defs, notes = learner_definitions(nb)
    assert notes == []
    assert [line for line in defs[0]["source"].split("\n") if line] == [
        "import math", "N = 3", "def f():", "    return N", "class C:", "    pass"]


def test_limits_must_be_positive(capsys):
    for flag in ("--timeout", "--notebook-timeout", "--memory-mb", "--output-cap"):
        for bad in ("0", "-1"):
            assert main(["grade", "x.ipynb", flag, bad]) == 2
            assert "must be a positive number" in capsys.readouterr().err


@pytest.fixture(scope="module")
def gradebook(toy, tmp_path_factory):
    """Every submission of the class graded once, two at a time, through the CLI."""
    root, _ = toy
    manifest = root / "exercises.json"
    subs = tmp_path_factory.mktemp("class")
    pidfile = subs / "spawned.pid"
    for name, (cells, _expected) in SUBMISSIONS.items():
        cells = [c.replace("PIDFILE", repr(str(pidfile))) for c in cells]
        write_nb(subs / name / "01_toy.ipynb", cells)
    (subs / "untouched").mkdir()
    (subs / "untouched" / "01_toy.ipynb").write_bytes((root / "lessons" / "01_toy.ipynb").read_bytes())
    (subs / "not_a_notebook").mkdir()
    (subs / "not_a_notebook" / "01_toy.ipynb").write_text("{ this is not json")
    sizes = {p: p.read_bytes() for p in subs.rglob("*.ipynb")}
    out = subs / "grades.csv"
    start = time.perf_counter()
    code = main(["grade", str(subs), "--csv", str(out), "--jobs", "2", "--lesson", "01_toy",
                 "--manifest", str(manifest), *LIMITS])
    with out.open(newline="") as f:
        rows = {r["submission"].split("/")[-2]: r for r in csv.DictReader(f)}
    return {"code": code, "rows": rows, "pidfile": pidfile, "seconds": time.perf_counter() - start,
            "unchanged": all(p.read_bytes() == b for p, b in sizes.items())}


def test_gradebook_has_one_row_per_submission_and_the_exit_status_says_not_all_passed(gradebook):
    assert gradebook["code"] == 1
    assert set(gradebook["rows"]) == set(SUBMISSIONS) | {"untouched", "not_a_notebook"}
    assert gradebook["unchanged"], "grading must never write a learner's notebook"


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_every_submission_gets_the_status_it_earned(gradebook, name):
    row = gradebook["rows"][name]
    for exercise, status in SUBMISSIONS[name][1].items():
        assert row[f"{exercise} status"] == status, (name, exercise, row)
        assert row[f"{exercise} points"] == ("1" if status == "passed" else "0")
    assert row["max_points"] == "3" and row["total"] == "3"


def test_solved_and_untouched_rows(gradebook):
    solved, untouched = gradebook["rows"]["solved"], gradebook["rows"]["untouched"]
    assert (solved["points"], solved["errors"], solved["execution"]) == ("3", "", "completed")
    assert untouched["points"] == "0"
    assert {untouched[f"{n} status"] for n in ("square", "shift", "pack")} == {"not attempted"}
    assert "cell 3: NotAttempted" in untouched["errors"]


def test_errors_anywhere_are_reported(gradebook):
    rows = gradebook["rows"]
    assert "CellTimeout" in rows["loops_at_top_level"]["errors"]
    assert "MemoryError" in rows["memory_hungry"]["errors"]
    assert "the kernel died" in rows["kills_its_kernel"]["execution"]
    assert "output beyond 200,000 characters was dropped" in rows["floods_output"]["execution"]
    assert rows["not_a_notebook"]["execution"].startswith("not graded:")


def test_nothing_a_notebook_started_outlives_grading(gradebook):
    pid = int(gradebook["pidfile"].read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"process {pid} started by a graded notebook is still running")


def test_grade_json_single_notebook_keeps_the_documented_fields(toy, tmp_path, capsys):
    root, _ = toy
    nb = write_nb(tmp_path / "01_toy.ipynb", variant(square=WRONG_SQUARE))
    code = main(["grade", str(nb), "--json", "--manifest", str(root / "exercises.json"), *LIMITS])
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {"exercises", "passed", "total"} <= set(result)
    assert all({"name", "status", "message"} <= set(e) for e in result["exercises"])
    assert (result["passed"], result["total"]) == (2, 3)
    first = result["exercises"][0]
    assert first["status"] == "failed"
    assert first["message"].startswith("square: on input x=1 — expected 1, got 2")
    table = format_grade(result)
    # the check cell itself raised in the learner's run: reported, and the status says so
    assert table.splitlines()[-1] == "2/3 exercises passed (2/3 points); 1 cell raised an error"


def test_the_lesson_id_comes_from_the_notebook_metadata(toy, tmp_path):
    root, manifest = toy
    nb = write_nb(tmp_path / "renamed.ipynb", variant(), {"course": {"lesson": "01_toy"}})
    result = grade_notebook(nb, Limits(timeout=10), manifest=manifest, execute=False)
    assert (result["lesson"], result["passed"]) == ("01_toy", 3)
    with pytest.raises(AuthoringError, match="has no exercises in the manifest"):
        grade_notebook(write_nb(tmp_path / "other.ipynb", variant()), manifest=manifest,
                       execute=False)


def test_grading_a_missing_notebook_is_a_course_error(tmp_path):
    with pytest.raises(AuthoringError, match="does not exist"):
        grade_notebook(tmp_path / "nope.ipynb")
