"""The result documents shipped in course/resources load, and a bad one gets one clear error."""

from __future__ import annotations

import json

import pytest

from course.errors import ConfigError, CorpusError
from course.shipped import RESOURCES, load_document


def test_every_shipped_document_loads_with_its_loader():
    from course.ablation import load_ablation
    from course.curation import load_mixture_grid
    from course.scaling import load_prediction, load_sweep

    assert sorted(p.name for p in RESOURCES.glob("*.json")) == [
        "ablation_cpu.json", "mixture_grid.json", "scaling_prediction.json", "scaling_sweep.json"]
    assert load_sweep()["runs"] and load_prediction()["checks"]
    assert load_ablation()["rows"] and load_mixture_grid()["rows"]


@pytest.mark.parametrize("content, message", [
    (None, r"no sweep file at .*missing\.json; write one with `course scaling sweep --out "),
    ("{not json", r"is not a sweep JSON file .*regenerate it with `course scaling sweep`"),
    ("[1, 2]", r"is not a sweep file of format 1; regenerate"),
    ('{"format": 2, "runs": []}', r"is not a sweep file of format 1"),
    ('{"format": 1}', r"is not a sweep file of format 1"),
    (b"\xff\xfe\x00", r"is not a sweep JSON file"),
])
def test_a_bad_document_names_the_command_that_writes_it(tmp_path, content, message):
    path = tmp_path / "missing.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_document(path, what="sweep", key="runs", command="course scaling sweep", fmt=1)


def test_without_a_format_the_key_is_named_and_the_error_class_is_the_callers(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"format": 7}), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"is not a mixture grid file \(no 'rows'\)"):
        load_document(path, what="mixture grid", key="rows", command="python -m course.curation mixture-grid",
                      error=CorpusError)
    path.write_text(json.dumps({"rows": []}), encoding="utf-8")
    assert load_document(path, what="mixture grid", key="rows", command="x", error=CorpusError) == {"rows": []}
