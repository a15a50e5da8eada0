"""The course's notebooks: in sync, well formed, small, and graded as promised.

nbval (configured in pyproject.toml) executes every solution notebook and compares its
outputs; this file checks what nbval cannot: that lessons are exactly what the solutions
generate, that every exercise has a check that exists, and that files stay small.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from course import checks
from course.authoring import CODE_BEGIN, check_lessons
from course.grading import MANIFEST, grade_notebook, manifest_from_solutions

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
LESSONS = ROOT / "lessons"
EXPECTED = ["00_setup", "01_text_to_tokens", "02_bpe", "03_packing", "04_causal_attention",
            "05_gpt", "06_training", "07_perplexity", "08_sampling", "09_objectives",
            "10_data", "11_scaling", "12_modern"]
CHECK_CALL = re.compile(r"^\s*check\.(\w+)\(", re.M)

solution_paths = sorted(SOLUTIONS.glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_every_lesson_of_the_course_exists_in_order():
    names = [p.stem for p in solution_paths]
    assert names == sorted(names)
    missing = [n for n in EXPECTED if n not in names]
    assert not missing, f"solutions missing: {missing}"
    assert [p.stem for p in sorted(LESSONS.glob("*.ipynb"))] == names


def test_lessons_are_exactly_what_the_solutions_generate():
    problems = check_lessons(SOLUTIONS, LESSONS, MANIFEST)
    assert problems == [], "run `course lessons build`:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", solution_paths, ids=lambda p: p.stem)
def test_each_exercise_has_a_registered_check_and_the_setup_cell_comes_first(path):
    cells = code_cells(path)
    first = cells[0]
    assert '"google.colab" in sys.modules' in first and "setup(" in first
    called = [m.group(1) for src in cells for m in CHECK_CALL.finditer(src)]
    n_regions = sum(src.count(CODE_BEGIN) for src in cells)
    if path.stem != "00_setup":
        assert n_regions >= 2, "every lesson has exercises"
    assert len(called) >= 1
    registered = checks.load_all()
    assert [n for n in called if n not in registered] == []
    # every exercise cell is followed by a check before the next exercise
    pending = False
    for src in cells:
        if CODE_BEGIN in src:
            assert not pending, f"{path.name}: an exercise has no check before the next one"
            pending = True
        if CHECK_CALL.search(src):
            pending = False
    assert not pending, f"{path.name}: the last exercise has no check"


@pytest.mark.parametrize("path", solution_paths, ids=lambda p: p.stem)
def test_notebooks_stay_small_and_carry_no_embedded_javascript(path):
    assert path.stat().st_size < 400_000, f"{path.name} is {path.stat().st_size} bytes"
    text = path.read_text(encoding="utf-8")
    assert "plotly.js v" not in text and "require.config" not in text
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    lesson = nbformat.read(LESSONS / path.name, as_version=4)
    assert all(not c.get("outputs") for c in lesson.cells if c.cell_type == "code")
    assert CODE_BEGIN not in LESSONS.joinpath(path.name).read_text(encoding="utf-8")


def test_every_lesson_records_its_id_for_the_grader():
    for path in sorted(LESSONS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["course"] == {"lesson": path.stem}


def test_every_exercise_of_the_manifest_has_a_check_and_a_definition():
    manifest = manifest_from_solutions(SOLUTIONS)
    registered = checks.load_all()
    for lesson, spec in manifest["lessons"].items():
        sources = "\n".join(code_cells(SOLUTIONS / f"{lesson}.ipynb"))
        assert spec["exercises"], f"{lesson} has no exercise"
        for ex in spec["exercises"]:
            assert ex["name"] in registered, f"{lesson}: check.{ex['name']} does not exist"
            for arg in ex["args"]:
                assert re.search(rf"^(def|class) {arg}\b", sources, re.M), (lesson, arg)


@pytest.mark.slow
@pytest.mark.parametrize("path", solution_paths, ids=lambda p: p.stem)
def test_hidden_checks_give_the_solution_full_marks_and_the_fresh_lesson_none(path):
    """The grader's own checks (definitions only, fresh process), on both versions."""
    solution = grade_notebook(path, execute=False)
    assert solution["total"] >= 1
    assert [e["status"] for e in solution["exercises"]] == ["passed"] * solution["total"], \
        solution["exercises"]
    lesson = grade_notebook(LESSONS / path.name, execute=False)
    assert lesson["total"] == solution["total"] and lesson["points"] == 0
    assert {e["status"] for e in lesson["exercises"]} == {"not attempted"}


def test_lesson_06_passes_every_training_setting_of_its_preset():
    """Lesson 06 spells its TrainConfig out field by field (the settings are the lesson).
    A preset field that TrainConfig also has must appear there, unless every preset keeps
    TrainConfig's default for it: otherwise the lesson would silently train with other
    settings than `course run` and the benchmarks."""
    from dataclasses import fields

    from course.presets import PRESETS, Preset
    from course.train import TrainConfig

    nb = nbformat.read(ROOT / "solutions" / "06_training.ipynb", as_version=4)
    call = next(c.source for c in nb.cells if c.cell_type == "code" and "train_cfg = TrainConfig(" in c.source)
    passed = set(re.findall(r"(\w+)=preset\.\1\b", call))
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    shared = {f.name for f in fields(Preset)} & set(defaults)
    needed = {name for name in shared
              if any(getattr(p, name) != defaults[name] for p in PRESETS.values())}
    assert needed and needed <= passed, f"lesson 06 does not pass {sorted(needed - passed)}"


def test_every_exercise_has_hint_levels_and_every_pause_has_an_answer():
    from course.checks._core import HINTS

    manifest = manifest_from_solutions(SOLUTIONS)
    checks.load_all()
    thin = [ex["name"] for spec in manifest["lessons"].values() for ex in spec["exercises"]
            if len(HINTS.get(ex["name"], ())) < 2]
    assert not thin, f"exercises with fewer than 2 hint levels: {thin}"
    unanswered = []
    for path in solution_paths:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown" and "Pause and think" in cell.source:
                after = cell.source.split("Pause and think", 1)[1]
                if "<details>" not in after or "</details>" not in after:
                    unanswered.append(f"{path.stem}: {cell.get('id')}")
    assert not unanswered, f"Pause-and-think questions without a collapsed answer: {unanswered}"
