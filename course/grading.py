"""Grading learner notebooks: the grader, not the learner's cells, owns the result.

A learner's notebook is graded in two steps, each in a process of its own with limits:

1. **Execute** the notebook as the learner left it (nbclient, from memory; the file is
   never written), to report every cell that raised. Each cell has a time limit, the
   whole notebook has one, the kernel has a memory limit, stored output is capped, and
   everything the notebook started is ended when it is done.
2. **Check** each exercise with its hidden check, in a fresh Python process: only the
   learner's imports, function and class definitions and constant assignments are loaded
   (no module-level statements run), the checks are bound before any learner code runs,
   and the course package, the checks, torch and the builtins are verified unchanged
   after the learner's code loaded and after every check. The status comes from what the
   check raised or returned, never from text a notebook printed.

Which exercises a lesson has, their check, the learner names each check receives and
their points come from the instructor's source: `course lessons build` writes them from
`solutions/` into `course/exercises.json` (the "manifest"), and every generated lesson
carries its lesson id in its metadata. Deleting, editing or adding check cells in a
learner's notebook changes nothing about the grade. GRADING.md gives the threat model.

`grade_notebook(path)` grades one notebook; `grade_many(paths, jobs=N)` a whole class, each
submission isolated, with a CSV gradebook.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from course.errors import AuthoringError

MANIFEST = Path(__file__).with_name("exercises.json")

#: Statuses of an exercise. "reference" = it passed by calling the package's own
#: implementation of that very exercise; it earns no points.
STATUSES = ("passed", "failed", "not attempted", "error", "reference")

#: What counts as "the package's own implementation" of an exercise: a learner function
#: that calls one of these (directly or through other code) while being checked is
#: reported as such. `module:attribute`; a class means constructing it.
REFERENCES: dict[str, tuple[str, ...]] = {
    "build_char_vocab": ("course.tokenizer.char:CharTokenizer",),
    "char_encode_decode": ("course.tokenizer.char:CharTokenizer",),
    "get_pair_counts": ("course.tokenizer.bpe:ByteBPETokenizer", "course.tokenizer.bpe:learn_merges"),
    "merge": ("course.tokenizer.bpe:_merge_word", "course.tokenizer.bpe:ByteBPETokenizer"),
    "train_bpe": ("course.tokenizer.bpe:learn_merges", "course.tokenizer.bpe:ByteBPETokenizer",
                  "course.tokenizer.hf:HFByteBPETokenizer"),
    "bpe_encode": ("course.tokenizer.bpe:ByteBPETokenizer", "course.tokenizer.hf:HFByteBPETokenizer"),
    "bpe_decode": ("course.tokenizer.bpe:ByteBPETokenizer", "course.tokenizer.hf:HFByteBPETokenizer"),
    "pack": ("course.packing:pack_documents", "course.packing:pack_with_datasets"),
    "doc_ids_for": ("course.packing:pack_documents", "course.packing:pack_with_datasets"),
    "causal_mask": ("course.masks:causal_mask",),
    "masked_attention": ("torch.nn.functional:scaled_dot_product_attention",),
    "mlp_forward": ("course.model:MLP.forward",),
    "block_forward": ("course.model:Block.forward",),
    "gpt_forward": ("course.model:GPT.forward",),
    "lr_schedule": ("course.train:lr_at",),
    "perplexity_from_logits": ("course.evaluate:perplexity", "course.evaluate:evaluate_nll"),
    "bits_per_byte": ("course.evaluate:bits_per_byte",),
    "apply_temperature": ("course.sample:temperature_filter",),
    "top_k": ("course.sample:top_k_filter",),
    "top_p": ("course.sample:top_p_filter",),
    "sample_with_cache": ("course.sample:generate",),
    "mlm_mask": ("course.objectives.mlm:mlm_mask",),
    "span_corrupt": ("course.objectives.span:span_corrupt",),
    "prefix_lm_batch": ("course.objectives.prefix:prefix_lm_batch",),
    "fim_psm": ("course.objectives.fim:fim_arrange", "course.objectives.fim:fim_transform",
                "course.objectives.fim:apply_fim"),
    "train_flops": ("course.scaling:train_flops", "course.scaling:model_params",
                    "course.model:GPT.flops_per_token", "course.model:GPT.num_params"),
    "fit_power_law": ("course.scaling:fit_power_law",),
    "isoflop_optimum": ("course.scaling:isoflop_optimum", "course.scaling:isoflop_optima"),
    "compute_optimal": ("course.scaling:compute_optimal",),
    "normalize_text": ("course.curation:normalize",),
    "exact_dedup": ("course.curation:exact_dedup",),
    "minhash_signature": ("course.curation:minhash_signature", "course.curation:minhash_signatures"),
    "lsh_candidates": ("course.curation:lsh_candidates",),
    "quality_signals": ("course.curation:quality_signals",),
    "contamination_score": ("course.curation:contamination_score",),
    "rms_norm": ("course.model:RMSNorm.forward", "torch.nn.functional:rms_norm"),
    "apply_rope": ("course.model:apply_rope", "course.model:Rotary.forward",
                   "transformers.models.llama.modeling_llama:apply_rotary_pos_emb"),
    "swiglu": ("course.model:MLP.forward",),
    "gqa_attention": ("torch.nn.functional:scaled_dot_product_attention",
                      "course.model:CausalSelfAttention.forward"),
}

DEFAULT_TIMEOUT = 60          # seconds per cell, and per exercise check
DEFAULT_NOTEBOOK_TIMEOUT = 900  # seconds for the whole notebook
DEFAULT_MEMORY_MB = 4096      # address space of the kernel and of the check process
DEFAULT_OUTPUT_CAP = 1_000_000  # characters of output kept from the whole notebook

_LEARNER_FILE = "<learner cell "  # code objects of learner code carry this file name prefix


@dataclass(frozen=True)
class Limits:
    """What one submission may use. All must be positive."""

    timeout: float = DEFAULT_TIMEOUT
    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    output_cap: int = DEFAULT_OUTPUT_CAP

    def __post_init__(self) -> None:
        for name in ("timeout", "notebook_timeout", "memory_mb", "output_cap"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                flag = "--" + name.replace("_", "-")
                raise AuthoringError(f"{flag} must be a positive number, got {value!r}; "
                                     "a limit of 0 or less would let a looping notebook hang "
                                     "the grader")


# --------------------------------------------------------------------------- manifest


def manifest_from_solutions(solutions_dir: str | Path = "solutions") -> dict[str, Any]:
    """Every lesson's exercises, read from the instructor's solution notebooks.

    An exercise is a code cell that calls `check.<name>(arg, ...)` with plain names as
    arguments; its points come from the cell's metadata `{"course": {"points": N}}`
    (default 1). Cells tagged `raises-exception` are errors the lesson means to show.
    """
    from course.authoring import read_notebook, solution_files

    lessons: dict[str, Any] = {}
    for path in solution_files(solutions_dir):
        nb = read_notebook(path)
        exercises, expected_errors = [], []
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if "raises-exception" in cell.metadata.get("tags", []):
                expected_errors.append(cell.get("id") or str(index))
            for name, args in _check_calls(cell.source, f"{path}: cell {index}"):
                points = cell.metadata.get("course", {}).get("points", 1)
                if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
                    raise AuthoringError(f"{path}: cell {index}: points must be a number >= 0, "
                                         f"got {points!r}")
                if any(e["name"] == name for e in exercises):
                    raise AuthoringError(f"{path}: cell {index}: check.{name} is called twice in "
                                         "this lesson; each exercise is checked once")
                exercises.append({"name": name, "args": args, "points": points,
                                  "cell_id": cell.get("id")})
        lessons[path.stem] = {"exercises": exercises, "expected_errors": expected_errors}
    return {"lessons": lessons}


def manifest_text(solutions_dir: str | Path = "solutions") -> str:
    return json.dumps(manifest_from_solutions(solutions_dir), indent=1, sort_keys=True) + "\n"


def load_manifest(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else MANIFEST
    if not path.is_file():
        raise AuthoringError(f"the exercise manifest {path} is missing; run `course lessons "
                             "build` in the course repository to write it")
    return json.loads(path.read_text(encoding="utf-8"))


def _check_calls(source: str, where: str) -> list[tuple[str, list[str]]]:
    """`check.<name>(a, b)` calls at the top level of a cell: [(name, ["a", "b"])]."""
    try:
        tree = ast.parse(_python_only(source))
    except SyntaxError:
        return []
    calls = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "check"):
            continue
        if call.func.attr == "hint":
            continue
        if call.keywords or not all(isinstance(a, ast.Name) for a in call.args):
            raise AuthoringError(f"{where}: check.{call.func.attr}(...) must take the learner's "
                                 "definitions as plain names (e.g. check.pack(pack)), so the "
                                 "grader can pass the same ones")
        calls.append((call.func.attr, [a.id for a in call.args]))
    return calls


def _python_only(source: str) -> str:
    """The cell without IPython-only lines (`%magic`, `!shell`), which are not Python."""
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                     if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n"))


# ----------------------------------------------------------------- learner definitions


def learner_definitions(nb: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The parts of each code cell the hidden checks may load, and notes on what was skipped.

    Kept: imports, function and class definitions, and assignments of literal constants
    (`BLOCK = 16`). Everything else (module-level calls, loops, prints, patches of other
    modules) is dropped, so nothing a cell *does* at top level can reach the checks.
    """
    kept, notes = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError as e:
            notes.append(f"cell {index}: syntax error on line {e.lineno} ({e.msg}); its "
                         "definitions could not be loaded")
            continue
        body = [node for node in tree.body if _is_definition(node)]
        if body:
            module = ast.Module(body=body, type_ignores=[])
            kept.append({"cell": index, "source": ast.unparse(module)})
    return kept, notes


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if all(isinstance(t, ast.Name) for t in targets):
            try:
                ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return False
            return True
    return False


# ------------------------------------------------------------------------ orchestration


def grade_notebook(path: str | Path, limits: Limits | None = None, *, lesson: str | None = None,
                   manifest: Mapping[str, Any] | None = None, execute: bool = True,
                   timeout: float | None = None) -> dict[str, Any]:
    """Grade one learner notebook; returns a JSON-able dict (see `format_grade`).

    `lesson` overrides the lesson id stored in the notebook (instructors grading a class
    pass it, so a learner cannot pick another lesson's exercises); `manifest` defaults to
    the package's. With `execute=False` only the hidden checks run (no cell errors).
    `timeout` is a shorthand for `Limits(timeout=...)`.
    """
    limits = limits or Limits(**({"timeout": timeout} if timeout is not None else {}))
    start = time.perf_counter()
    path = Path(path)
    from course.authoring import read_notebook

    nb = read_notebook(path)
    manifest = manifest if manifest is not None else load_manifest()
    lesson_id = lesson or _lesson_id(nb, path)
    lessons = manifest.get("lessons", {})
    if lesson_id not in lessons:
        raise AuthoringError(f"{path}: lesson {lesson_id!r} has no exercises in the manifest "
                             f"(known: {', '.join(sorted(lessons)) or 'none'}); pass --lesson ID")
    spec = lessons[lesson_id]

    run = _execute(path, limits) if execute else {"status": "not executed", "errors": []}
    expected = set(spec.get("expected_errors", []))
    errors = [e for e in run["errors"] if e.get("cell_id") not in expected or not e.get("cell_id")]

    defs, notes = learner_definitions(nb)
    checked = _run_checks(defs, spec["exercises"], limits)
    exercises = []
    for ex in spec["exercises"]:
        got = checked.get(ex["name"], {"status": "error",
                                       "message": checked.get("_fatal", "the check did not run")})
        points = ex["points"] if got["status"] == "passed" else 0
        exercises.append({"name": ex["name"], "status": got["status"], "message": got["message"],
                          "points": points, "max_points": ex["points"]})
    result = {
        "notebook": str(path), "lesson": lesson_id, "exercises": exercises,
        "passed": sum(e["status"] == "passed" for e in exercises), "total": len(exercises),
        "points": sum(e["points"] for e in exercises),
        "max_points": sum(e["max_points"] for e in exercises),
        "errors": errors, "execution": run["status"], "notes": notes + checked.get("_notes", []),
        "limits": asdict(limits), "time_s": round(time.perf_counter() - start, 1),
    }
    return result


def _lesson_id(nb: Any, path: Path) -> str:
    stored = nb.metadata.get("course", {}).get("lesson") if isinstance(
        nb.metadata.get("course"), dict) else None
    return stored if isinstance(stored, str) and stored else path.stem


def format_grade(result: Mapping[str, Any]) -> str:
    """A short table and a summary line, for the terminal."""
    rows = [(e["name"], e["status"], f"{_num(e['points'])}/{_num(e['max_points'])}", e["message"])
            for e in result["exercises"]]
    lines = []
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows))
                  for i, h in enumerate(("exercise", "status", "points"))]
        head = ("exercise", "status", "points")
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  message")
        lines += ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + f"  {r[3]}"
                  for r in rows]
    for e in result.get("errors", []):
        lines.append(f"cell {e['cell']} raised {e['ename']}: {e['evalue']}".rstrip(": "))
    if result.get("execution") not in (None, "completed", "not executed"):
        lines.append(f"execution: {result['execution']}")
    lines.append(summary_line(result))
    return "\n".join(lines)


def summary_line(result: Mapping[str, Any]) -> str:
    n_err = len(result.get("errors", []))
    line = (f"{result['passed']}/{result['total']} exercises passed "
            f"({_num(result.get('points', 0))}/{_num(result.get('max_points', 0))} points)")
    if n_err:
        line += "; 1 cell raised an error" if n_err == 1 else f"; {n_err} cells raised errors"
    return line


def all_good(result: Mapping[str, Any]) -> bool:
    return result["passed"] == result["total"] and not result.get("errors")


def _num(x: float) -> str:
    return f"{x:g}"


# ----------------------------------------------------------------- a class of submissions


def submissions(paths: Iterable[str | Path]) -> list[Path]:
    """Notebook files from files and folders (folders searched recursively, checkpoints and
    hidden folders skipped), in a stable order."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.ipynb")
                            if not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            found.append(p)
        else:
            raise AuthoringError(f"{p} does not exist; give notebook files or folders of them")
    if not found:
        raise AuthoringError("no notebooks found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(found))


def grade_many(paths: Sequence[Path], limits: Limits, *, jobs: int = 1, lesson: str | None = None,
               manifest: Mapping[str, Any] | None = None,
               on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Grade each submission on its own (its own processes and limits), `jobs` at a time.

    A submission that cannot even be read or matched to a lesson gets a row with its error;
    it never stops the others.
    """
    if jobs < 1:
        raise AuthoringError(f"--jobs must be at least 1, got {jobs}")
    manifest = manifest if manifest is not None else load_manifest()

    def one(path: Path) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            result = grade_notebook(path, limits, lesson=lesson, manifest=manifest)
        except AuthoringError as e:
            result = {"notebook": str(path), "lesson": lesson, "exercises": [], "passed": 0,
                      "total": 0, "points": 0, "max_points": 0, "errors": [],
                      "execution": f"not graded: {e}", "notes": [],
                      "time_s": round(time.perf_counter() - start, 1)}
        if on_done:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, paths))


def write_gradebook(results: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """One row per submission: per-exercise status and points, total, errors, time."""
    names: list[str] = []
    for r in results:
        for e in r["exercises"]:
            if e["name"] not in names:
                names.append(e["name"])
    header = ["submission", "lesson"]
    for n in names:
        header += [f"{n} status", f"{n} points"]
    header += ["points", "max_points", "passed", "total", "errors", "execution", "time_s"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in results:
        by_name = {e["name"]: e for e in r["exercises"]}
        row = [r["notebook"], r.get("lesson") or ""]
        for n in names:
            e = by_name.get(n)
            row += [e["status"], _num(e["points"])] if e else ["", ""]
        errors = "; ".join(f"cell {e['cell']}: {e['ename']}" for e in r.get("errors", []))
        row += [_num(r["points"]), _num(r["max_points"]), r["passed"], r["total"], errors,
                r.get("execution", ""), r.get("time_s", "")]
        writer.writerow(row)
    from course.atomic import atomic_write_bytes

    atomic_write_bytes(Path(path), buf.getvalue().encode("utf-8"))


# ------------------------------------------------------------------ worker processes


def _worker(kind: str, job: Mapping[str, Any], limits: Limits, wall: float) -> dict[str, Any]:
    """Run `python -I -c <bootstrap> kind` with `job` on stdin; its result comes back on a
    private pipe (not stdout, which learner code may write to). Memory-limited, in its own
    session, killed with everything it started when `wall` seconds have passed."""
    read_fd, write_fd = os.pipe()
    root = str(Path(__file__).resolve().parents[1])
    # The child limits its own memory first thing (no preexec_fn: it is unsafe when, as in
    # grade_many, the parent has threads); the kernel it starts inherits the limit.
    bootstrap = (f"import sys; sys.path.insert(0, {root!r}); "
                 f"from course.grading import _worker_main; "
                 f"_worker_main({kind!r}, {write_fd}, {limits.memory_mb * 1024 * 1024})")
    workdir = tempfile.mkdtemp(prefix="course-grade-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "PYTHONSTARTUP"))}
    # MALLOC_ARENA_MAX: glibc reserves 64 MB of address space per thread arena, which
    # counts against the memory limit without being used.
    env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1", MALLOC_ARENA_MAX="2")
    # stderr to a file, not a pipe: a chatty child must never block on a full pipe
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", bootstrap], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=errors, pass_fds=(write_fd,),
            cwd=workdir, env=env, start_new_session=True)
    finally:
        os.close(write_fd)
    chunks: list[bytes] = []
    with contextlib.suppress(BrokenPipeError):
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job).encode("utf-8"))
        proc.stdin.close()
    deadline = time.monotonic() + wall
    timed_out = False
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(read_fd, selectors.EVENT_READ)
    stderr_tail = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(timeout=min(left, 1.0)):
                if proc.poll() is not None:
                    # the child is gone; drain anything still buffered in the pipe
                    data = _read_available(read_fd)
                    if data:
                        chunks.append(data)
                    break
                continue
            data = os.read(read_fd, 1 << 16)
            if not data:
                break
            chunks.append(data)
            if sum(map(len, chunks)) > 16 << 20:  # a result is small; this is not one
                break
    finally:
        sel.close()
        os.close(read_fd)
        _end(proc)
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 4000))
        stderr_tail = errors.read()
        errors.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    if timed_out:
        return {"_fatal": f"stopped after {wall:g} s (the time limit); an infinite loop or a "
                          "very slow cell?"}
    try:
        return json.loads(b"".join(chunks).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        why = _death_reason(proc.returncode, stderr_tail.decode("utf-8", "replace"), limits)
        return {"_fatal": why}


def _read_available(fd: int) -> bytes:
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    out = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 1 << 16):
            out += chunk
    return out


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker: TERM (it then ends what it started), then KILL its whole group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _death_reason(code: int | None, stderr: str, limits: Limits) -> str:
    if "MemoryError" in stderr or code in (-signal.SIGKILL, -signal.SIGSEGV):
        return (f"the process died (exit {code}); it may have gone over the memory limit of "
                f"{limits.memory_mb} MB")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return f"the process died (exit {code}){': ' + last if last else ''}"


def _worker_main(kind: str, result_fd: int, memory_bytes: int) -> None:
    """Entry point of a worker process (see `_worker`)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # Keep the result channel out of the learner's reach: move it to a random high fd.
    import random

    private = os.dup2(result_fd, random.randrange(200, 900))
    os.close(result_fd)
    _become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: (_end_descendants(), os._exit(143)))
    job = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)  # noqa: SIM115 - learner code must not read the job
    try:
        result = _execute_here(job) if kind == "execute" else _check_here(job)
    except MemoryError:
        result = {"_fatal": f"ran out of memory (limit {job['limits']['memory_mb']} MB)"}
    finally:
        _end_descendants()
    data = json.dumps(result).encode("utf-8")
    view = memoryview(data)
    while view:
        n = os.write(private, view)
        view = view[n:]
    os.close(private)
    os._exit(0)  # no atexit hooks of learner code


def _become_subreaper() -> None:
    """Adopt every orphaned descendant (Linux), so none outlives grading."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _end_descendants() -> None:
    """Kill every process below this one (children, their children, adopted orphans)."""
    if not os.path.isdir("/proc"):
        return
    me = os.getpid()
    for _ in range(5):
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode("utf-8", "replace")
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        below, frontier = set(), {me}
        while frontier:
            frontier = {p for p, pp in parents.items() if pp in frontier and p not in below}
            below |= frontier
        if not below:
            return
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)


# ------------------------------------------------------------------- step 1: execute


def _execute(path: Path, limits: Limits) -> dict[str, Any]:
    job = {"path": str(path.resolve()), "limits": asdict(limits)}
    result = _worker("execute", job, limits, wall=limits.notebook_timeout + 60)
    if "_fatal" in result:
        return {"status": f"stopped: {result['_fatal']}", "errors": []}
    return result


def _execute_here(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run the notebook in a kernel (inherits this process's memory limit)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    limits = Limits(**job["limits"])
    path = Path(job["path"])
    nb = nbformat.read(path, as_version=4)
    cap = {"left": limits.output_cap, "truncated": False}

    class CappedClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):  # type: ignore[no-untyped-def]
            size = len(json.dumps(msg.get("content", {}), default=str))
            if cap["left"] <= 0:
                cap["truncated"] = True
                return None
            cap["left"] -= size
            return super().output(outs, msg, display_id, cell_index)

    replies: dict[int, dict[str, Any]] = {}
    client = CappedClient(
        nb, timeout=int(max(1, limits.timeout)), kernel_name="python3", allow_errors=True,
        record_timing=False, interrupt_on_timeout=True, shutdown_kernel="immediate",
        error_on_timeout={"ename": "CellTimeout", "evalue": f"timed out after {limits.timeout:g} s",
                          "traceback": []},
        startup_timeout=120, resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=lambda cell, cell_index, execute_reply: replies.__setitem__(
            cell_index, (execute_reply or {}).get("content", {})),
    )
    errors: list[dict[str, Any]] = []
    status = "completed"
    deadline = time.monotonic() + limits.notebook_timeout
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            left = deadline - time.monotonic()
            if left <= 1:
                status = f"stopped at cell {index}: the notebook's time limit " \
                         f"({limits.notebook_timeout:g} s) was reached"
                break
            client.timeout = int(max(1, min(limits.timeout, left)))
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                errors.append({"cell": index, "cell_id": cell.get("id"), "ename": "DeadKernelError",
                               "evalue": "the kernel died (over the memory limit of "
                                         f"{limits.memory_mb} MB? exit()?)"})
                status = f"stopped at cell {index}: the kernel died"
                break
            reply = replies.pop(index, None)
            if reply and reply.get("status") == "error":
                errors.append({"cell": index, "cell_id": cell.get("id"),
                               "ename": reply.get("ename", ""),
                               "evalue": _clean(reply.get("evalue", ""))[:300]})
                if reply.get("ename") == "CellTimeout" and not _responds(client):
                    status = f"stopped at cell {index}: it timed out and ignored the interrupt"
                    break
    if cap["truncated"] and status == "completed":
        status = f"completed; output beyond {limits.output_cap:,} characters was dropped"
    return {"status": status, "errors": errors}


def _responds(client: Any) -> bool:
    """After a timed-out cell: does the kernel still answer?"""
    import nbformat

    cells = client.nb.cells
    cells.append(nbformat.v4.new_code_cell("pass"))
    saved = client.timeout
    client.timeout = 10
    try:
        client.execute_cell(cells[-1], len(cells) - 1, store_history=False)
        return True
    except Exception:
        return False
    finally:
        client.timeout = saved
        del cells[-1]


def _clean(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


# ---------------------------------------------------------------- step 2: hidden checks


def _run_checks(defs: list[dict[str, Any]], exercises: list[dict[str, Any]],
                limits: Limits) -> dict[str, Any]:
    job = {"definitions": defs, "exercises": exercises, "limits": asdict(limits),
           "references": {e["name"]: list(REFERENCES.get(e["name"], ())) for e in exercises}}
    # every exercise may take `timeout`, loading the definitions too; plus start-up
    wall = limits.timeout * (len(exercises) + 1) + 60
    return _worker("check", job, limits, wall=wall)


class _Timeout(BaseException):
    """Raised by the alarm inside learner code; a BaseException so `except Exception` in
    the learner's code does not swallow it."""


@contextlib.contextmanager
def _alarm(seconds: float):  # type: ignore[no-untyped-def]
    def ring(*_: Any) -> None:
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class _Sink(io.TextIOBase):
    """Where the learner's prints go during checking: counted, never stored."""

    def write(self, s: str) -> int:
        return len(s)


def _check_here(job: Mapping[str, Any]) -> dict[str, Any]:
    import builtins

    import course.checks as checks_pkg
    from course.checks import CheckFailed, NotAttempted

    limits = Limits(**job["limits"])
    checks = dict(checks_pkg.load_all())  # bound before any learner code exists
    _preload()
    flagged: dict[str, str] = {}
    current: dict[str, str | None] = {"exercise": None}
    references = {name: set(targets) for name, targets in job["references"].items()}
    for target in sorted(set().union(*references.values())):
        _watch(target, lambda t=target: _note_reference(flagged, current, references, t))
    pristine = _fingerprint()

    results: dict[str, Any] = {"_notes": []}
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    real_stdout, real_stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _Sink()
    try:
        for d in job["definitions"]:
            try:
                code = compile(d["source"], f"{_LEARNER_FILE}{d['cell']}>", "exec")
                with _alarm(limits.timeout):
                    exec(code, ns)
            except _Timeout:
                results["_notes"].append(f"cell {d['cell']}: its definitions took over "
                                         f"{limits.timeout:g} s to load")
            except BaseException as e:  # noqa: BLE001 - learner code; SystemExit included
                results["_notes"].append(f"cell {d['cell']}: loading its definitions raised "
                                         f"{type(e).__name__}: {str(e)[:200]}")
        tampered = _changes(pristine)
        for ex in job["exercises"]:
            name = ex["name"]
            if tampered:
                results[name] = {"status": "error", "message": "not checked: the notebook's "
                                 f"code changed {tampered}, which the checks rely on"}
                continue
            missing = [a for a in ex["args"] if a not in ns]
            if missing:
                results[name] = {"status": "not attempted", "message":
                                 f"{', '.join(missing)} is not defined in the notebook"}
                continue
            args = [ns[a] for a in ex["args"]]
            current["exercise"] = name
            try:
                with _alarm(limits.timeout):
                    checks[name](*args)
                outcome = {"status": "passed", "message": "passed"}
            except CheckFailed as e:
                outcome = {"status": "failed", "message": str(e)}
            except NotAttempted as e:
                outcome = {"status": "not attempted", "message": str(e)}
            except _Timeout:
                outcome = {"status": "error", "message": f"timed out after {limits.timeout:g} s "
                                                         "while checking (an infinite loop?)"}
            except MemoryError:
                outcome = {"status": "error", "message": "ran out of memory while checking "
                                                         f"(limit {limits.memory_mb} MB)"}
            except BaseException as e:  # noqa: BLE001 - e.g. SystemExit from learner code
                outcome = {"status": "error", "message": f"{type(e).__name__}: {str(e)[:300]}"}
            finally:
                current["exercise"] = None
            tampered = _changes(pristine)
            if tampered:
                outcome = {"status": "error", "message": "not graded: while being checked, the "
                           f"code changed {tampered}, which the checks rely on"}
            elif name in flagged and outcome["status"] == "passed":
                outcome = {"status": "reference", "message": f"calls {flagged[name]}, the "
                           "package's own implementation of this exercise; write it yourself "
                           "(no points)"}
            results[name] = outcome
    finally:
        sys.stdout, sys.stderr = real_stdout, real_stderr
    return results


def _preload() -> None:
    """Import what the checks use, so its pristine state is known before learner code runs."""
    import importlib

    for name in ("torch", "torch.nn.functional", "torch.testing", "numpy", "math", "course.masks",
                 "course.model",
                 "course.packing", "course.sample", "course.evaluate", "course.train",
                 "course.tokenizer", "course.objectives"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


#: Outside `course` and the builtins, only what the checks compare with is watched:
#: libraries legitimately rebind other attributes on import (importing torch._dynamo wraps
#: torch.manual_seed, for one), and a false alarm would cost a learner their points.
_WATCHED_ATTRIBUTES = {
    "torch": ("allclose", "equal", "isclose", "is_tensor", "isnan", "isinf", "isfinite", "all",
              "any", "where", "tensor", "as_tensor", "nonzero", "unravel_index", "argmax", "abs"),
    "torch.testing": ("assert_close",),
    "numpy": ("allclose", "array_equal", "isclose", "asarray", "array"),
    "math": ("isclose", "isnan", "isinf", "isfinite", "exp", "log", "inf"),
    "torch.Tensor": ("__eq__", "__ne__", "__bool__", "__len__", "__iter__", "__getitem__",
                     "__float__", "__int__", "eq", "equal", "allclose", "tolist", "item", "all",
                     "any", "shape", "dtype", "dim", "numel", "detach", "cpu", "clone", "sum"),
}


def _fingerprint() -> dict[str, dict[str, int]]:
    """Identity of every global of the builtins and of every `course` module, and of what
    the checks compare with (`_WATCHED_ATTRIBUTES`)."""
    import builtins

    import torch

    prints: dict[str, dict[str, int]] = {"builtins": {k: id(v) for k, v in vars(builtins).items()}}
    for name in sorted(sys.modules):
        module = sys.modules[name]
        if module is not None and (name == "course" or name.startswith("course.")):
            prints[name] = {k: id(v) for k, v in vars(module).items()}
    owners = {"torch.Tensor": torch.Tensor, **{m: sys.modules.get(m) for m in _WATCHED_ATTRIBUTES
                                               if m != "torch.Tensor"}}
    for owner_name, attrs in _WATCHED_ATTRIBUTES.items():
        owner = owners[owner_name]
        if owner is not None:
            prints[owner_name] = {a: id(getattr(owner, a, None)) for a in attrs}
    return prints


def _changes(pristine: Mapping[str, Mapping[str, int]]) -> str:
    """'' if nothing watched changed, else the first change in words."""
    now = _fingerprint()
    for module, before in pristine.items():
        after = now.get(module, {})
        for key, ident in before.items():
            if after.get(key) != ident:
                return f"{module}.{key}"
    return ""


def _note_reference(flagged: dict[str, str], current: Mapping[str, str | None],
                    references: Mapping[str, set[str]], target: str) -> None:
    """Called when a watched function runs: if it is a reference of the exercise being
    checked and learner code is on the stack, flag the exercise."""
    exercise = current["exercise"]
    if exercise is None or exercise in flagged or target not in references.get(exercise, ()):
        return
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(_LEARNER_FILE):
            flagged[exercise] = target.replace(":", ".")
            return
        frame = frame.f_back


def _watch(target: str, note: Callable[[], None]) -> None:
    """Wrap `module:attr` (or `module:Class.method`; a class: its __init__) so each call
    runs `note()` first. Every loaded course module that re-exports it gets the wrapper."""
    import functools
    import importlib

    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return
    owner: Any = module
    parts = attr.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            return
    original = getattr(owner, parts[-1], None)
    if original is None:
        return
    if isinstance(original, type):
        owner, parts, original = original, ["__init__"], original.__init__

    @functools.wraps(original)
    def watched(*args: Any, **kwargs: Any) -> Any:
        note()
        return original(*args, **kwargs)

    setattr(owner, parts[-1], watched)
    if owner is module:
        for name, mod in list(sys.modules.items()):
            if (name == "course" or name.startswith("course.")) and mod is not None:
                for key, value in list(vars(mod).items()):
                    if value is original:
                        setattr(mod, key, watched)


# ----------------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> None:
    """Register `course grade`."""
    grade = subparsers.add_parser(
        "grade", help="grade learner notebooks (one, or a whole class with --csv)",
        description="Grade learner notebooks. The grader executes each notebook to report "
                    "errors, then runs every exercise's hidden check on the learner's "
                    "definitions in a fresh process. Exit status 0 when every exercise "
                    "passed and no cell raised, 1 otherwise, 2 on a usage error.")
    grade.add_argument("paths", nargs="+", metavar="PATH",
                       help="learner notebooks, or folders of them (searched recursively)")
    grade.add_argument("--json", action="store_true",
                       help="print the result as JSON (one object per notebook)")
    grade.add_argument("--csv", metavar="FILE", default=None,
                       help="write a gradebook: one row per submission")
    grade.add_argument("--jobs", type=int, default=1,
                       help="submissions graded at once (default: 1)")
    grade.add_argument("--lesson", default=None,
                       help="grade every notebook as this lesson (e.g. 03_packing); default: "
                            "the lesson id stored in each notebook, else its file name")
    grade.add_argument("--manifest", default=None, metavar="FILE",
                       help="the exercise manifest written by `course lessons build` (default: "
                            "the course package's exercises.json)")
    grade.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds per cell and per exercise check (default: {DEFAULT_TIMEOUT})")
    grade.add_argument("--notebook-timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT,
                       help="seconds for a whole notebook (default: "
                            f"{DEFAULT_NOTEBOOK_TIMEOUT})")
    grade.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                       help=f"memory limit of the kernel and of the checks (default: {DEFAULT_MEMORY_MB})")
    grade.add_argument("--output-cap", type=int, default=DEFAULT_OUTPUT_CAP,
                       help="characters of notebook output kept (default: "
                            f"{DEFAULT_OUTPUT_CAP:,})")
    grade.set_defaults(func=_cmd_grade)


def _cmd_grade(args: argparse.Namespace) -> int:
    limits = Limits(timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                    memory_mb=args.memory_mb, output_cap=args.output_cap)
    paths = submissions(args.paths)
    many = len(paths) > 1 or args.csv

    def progress(result: dict[str, Any]) -> None:
        if many and not args.json:
            print(f"{result['notebook']}: {summary_line(result)}", file=sys.stderr, flush=True)

    results = grade_many(paths, limits, jobs=args.jobs, lesson=args.lesson,
                         manifest=load_manifest(args.manifest), on_done=progress)
    if args.csv:
        write_gradebook(results, args.csv)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=1, ensure_ascii=False))
    elif len(results) == 1:
        print(format_grade(results[0]))
    else:
        print(f"{len(results)} submissions graded" + (f"; gradebook: {args.csv}" if args.csv else ""))
    return 0 if all(all_good(r) for r in results) else 1
