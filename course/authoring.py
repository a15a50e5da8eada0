"""Solutions → lessons, re-executing solutions, and grading learner notebooks.

Instructors write one notebook per lesson, `solutions/NN_name.ipynb`, with the answers
inside marked regions. The learner's `lessons/NN_name.ipynb` is *generated* from it, so
the two can never drift apart:

* in code cells, each region between `### BEGIN SOLUTION` and `### END SOLUTION` becomes
  one `raise NotImplementedError("Exercise: ...")` at the marker's indentation (text after
  `BEGIN SOLUTION` becomes the hint);
* in markdown cells, everything between `<!-- BEGIN SOLUTION -->` and
  `<!-- END SOLUTION -->` is removed (a cell left empty is dropped);
* outputs, execution counts and machine-specific metadata are cleared, cell ids kept.

The same input always gives the same bytes, so `course lessons check` (in CI) can tell
whether someone edited a solution and forgot to rebuild, or edited a lesson by hand.

Every lesson carries its id in its metadata (`{"course": {"lesson": "03_packing"}}`), and
`course lessons build` also writes the exercise manifest (`course/exercises.json`) from the
solutions: which exercises each lesson has, and their points. Grading (`course.grading`)
reads them from there, never from a learner's cells.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course.atomic import atomic_write_bytes
from course.errors import AuthoringError

if TYPE_CHECKING:  # nbformat is imported where it is used: `course run` never needs it
    from nbformat import NotebookNode

CODE_BEGIN = "### BEGIN SOLUTION"
CODE_END = "### END SOLUTION"
MARKDOWN_BEGIN = "<!-- BEGIN SOLUTION -->"
MARKDOWN_END = "<!-- END SOLUTION -->"

#: Cell metadata a lesson keeps: tags (nbval markers such as `nbval-skip`,
#: `nbval-ignore-output`, `raises-exception`), the editing/collapsing flags and a raw
#: cell's format.
KEPT_CELL_METADATA = ("tags", "editable", "deletable", "jupyter", "format")

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

# Anything that looks like a code marker, exact or not: a near miss (`# BEGIN SOLUTION`)
# must be an error, otherwise the solution would silently ship to learners.
_CODE_MARKER = re.compile(r"^(?P<indent>[ \t]*)(?P<hashes>#+)[ \t]*(?P<kind>BEGIN|END)[ \t]+SOLUTION\b(?P<rest>.*)$")
_MARKDOWN_MARKER = re.compile(r"<!--[ \t]*(?P<kind>BEGIN|END)[ \t]+SOLUTION[ \t]*-->")
_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async[ \t]+)?def[ \t]+(?P<name>\w+)")
_HINT_PUNCTUATION = " \t:-–—"

# A check cell calls `check.<name>(` outside a comment.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ------------------------------------------------------------------ solutions → lessons


def lesson_from_solution(nb: NotebookNode, source: str | Path = "<notebook>") -> NotebookNode:
    """The learner's version of solution notebook `nb` (which is left untouched).

    `source` names the notebook in error messages. Raises AuthoringError on malformed
    solution markers, naming the notebook, the cell index (from 0) and the line.
    """
    import nbformat

    cells = []
    for index, cell in enumerate(nb.cells):
        where = _Where(str(source), index, cell.get("id"))
        cell_id = cell.get("id") or _derived_id(source, index)
        metadata = {k: cell.metadata[k] for k in KEPT_CELL_METADATA if cell.metadata.get(k) not in (None, [], {})}
        if cell.cell_type == "code":
            cells.append(nbformat.from_dict({
                "cell_type": "code", "id": cell_id, "metadata": metadata, "execution_count": None,
                "outputs": [], "source": strip_code_solutions(cell.source, where),
            }))
        elif cell.cell_type == "markdown":
            text = strip_markdown_solutions(cell.source, where)
            if not text.strip():
                continue  # the whole cell was a solution; an empty cell is only noise
            new = {"cell_type": "markdown", "id": cell_id, "metadata": metadata, "source": text}
            attachments = {name: data for name, data in cell.get("attachments", {}).items()
                           if f"attachment:{name}" in text}
            if attachments:
                new["attachments"] = attachments
            cells.append(nbformat.from_dict(new))
        else:
            cells.append(nbformat.from_dict({"cell_type": cell.cell_type, "id": cell_id,
                                             "metadata": metadata, "source": cell.source}))
    spec = nb.metadata.get("kernelspec", {})
    lesson = nbformat.v4.new_notebook()
    lesson.nbformat_minor = max(5, nb.get("nbformat_minor", 5))  # 4.5+: cell ids are part of the format
    lesson.cells = cells
    lesson.metadata = nbformat.from_dict({
        # JupyterLab and nbclient pick the kernel by name; "python3" is everyone's.
        "kernelspec": {**KERNELSPEC, "display_name": spec.get("display_name", KERNELSPEC["display_name"])},
        "language_info": {"name": "python"},
        # which lesson this is, for the grader (which reads the exercises from its manifest)
        "course": {"lesson": Path(source).stem},
    })
    return lesson


def strip_code_solutions(source: str, where: _Where | None = None) -> str:
    """Replace each `### BEGIN SOLUTION … ### END SOLUTION` region of a code cell.

    The replacement is one `raise NotImplementedError("Exercise: <hint>")` at the
    BEGIN marker's indentation, so a region inside a function body keeps the function
    valid Python, and a top-level region stops the cell right there.
    """
    where = where or _Where("<cell>", 0, None)
    lines = source.split("\n")
    out: list[str] = []
    begin: tuple[int, re.Match[str]] | None = None
    for lineno, line in enumerate(lines, start=1):
        if _MARKDOWN_MARKER.search(line):
            raise where.error(lineno, "markdown-style solution marker in a code cell; in code "
                                      f"write `{CODE_BEGIN}` … `{CODE_END}` on their own lines")
        m = _CODE_MARKER.match(line)
        if m is None:
            if begin is None:
                out.append(line)
            continue
        exact = CODE_BEGIN if m["kind"] == "BEGIN" else CODE_END
        if m["hashes"] != "###" or not line.strip().startswith(exact):
            raise where.error(lineno, f"malformed solution marker {line.strip()!r}; write it exactly "
                                      f"as `{exact}` (three #, one space) so it is recognised")
        if m["kind"] == "BEGIN":
            if begin is not None:
                raise where.error(lineno, f"nested `{CODE_BEGIN}` (the region opened on line "
                                          f"{begin[0]} is not closed); add `{CODE_END}` before it")
            begin = (lineno, m)
            continue
        if begin is None:
            raise where.error(lineno, f"`{CODE_END}` without a `{CODE_BEGIN}` before it in this "
                                      "cell; add the BEGIN marker or delete this line")
        start, bm = begin
        if not "".join(lines[start:lineno - 1]).strip():
            raise where.error(start, "empty solution region (nothing between BEGIN and END); "
                                     "put the solution code between the markers or delete them")
        out.append(f"{bm['indent']}raise NotImplementedError("
                   f"{_python_string('Exercise: ' + _hint(bm['rest'], lines[:start - 1], bm['indent']))})")
        begin = None
    if begin is not None:
        raise where.error(begin[0], f"unclosed `{CODE_BEGIN}`; add a `{CODE_END}` line after "
                                    "the solution code")
    result = "\n".join(out)
    if result != source and _compiles(source) and not _compiles(result):
        raise where.error(None, "the lesson version of this cell would not be valid Python; make "
                                "each solution region a whole block of statements")
    return result


def strip_markdown_solutions(source: str, where: _Where | None = None) -> str:
    """Remove each `<!-- BEGIN SOLUTION --> … <!-- END SOLUTION -->` region of a markdown cell.

    A region whose markers sit on their own lines takes those whole lines with it, so no
    blank-line debris is left; inline regions are cut exactly.
    """
    where = where or _Where("<cell>", 0, None)
    for lineno, line in enumerate(source.split("\n"), start=1):
        if _CODE_MARKER.match(line):
            raise where.error(lineno, "code-style solution marker in a markdown cell; in markdown "
                                      f"write `{MARKDOWN_BEGIN}` … `{MARKDOWN_END}`")
    spans: list[tuple[int, int]] = []
    begin: re.Match[str] | None = None
    for m in _MARKDOWN_MARKER.finditer(source):
        lineno = source.count("\n", 0, m.start()) + 1
        if m["kind"] == "BEGIN":
            if begin is not None:
                raise where.error(lineno, f"nested `{MARKDOWN_BEGIN}` (the region opened on line "
                                          f"{source.count(chr(10), 0, begin.start()) + 1} is not "
                                          f"closed); add `{MARKDOWN_END}` before it")
            begin = m
            continue
        if begin is None:
            raise where.error(lineno, f"`{MARKDOWN_END}` without a `{MARKDOWN_BEGIN}` before it "
                                      "in this cell; add the BEGIN marker or delete this one")
        if not source[begin.end():m.start()].strip():
            raise where.error(source.count("\n", 0, begin.start()) + 1,
                              "empty solution region (nothing between BEGIN and END); put the "
                              "solution text between the markers or delete them")
        spans.append(_whole_lines(source, begin.start(), m.end()))
        begin = None
    if begin is not None:
        raise where.error(source.count("\n", 0, begin.start()) + 1,
                          f"unclosed `{MARKDOWN_BEGIN}`; add `{MARKDOWN_END}` after the solution text")
    if not spans:
        return source
    pieces, last = [], 0
    for start, end in spans:
        pieces.append(source[last:start])
        last = end
    pieces.append(source[last:])
    return "".join(pieces).rstrip()


def lesson_text(solution: str | Path) -> str:
    """The exact file content of the lesson generated from `solution` (a path)."""
    path = Path(solution)
    return notebook_text(lesson_from_solution(read_notebook(path), path))


def build_lessons(solutions_dir: str | Path = "solutions",
                  lessons_dir: str | Path = "lessons",
                  manifest: str | Path | None = None) -> list[Path]:
    """Regenerate every lesson from its solution; return the files that changed.

    Every lesson is generated before anything is written, so one malformed solution
    leaves `lessons/` untouched. Lessons whose solution is gone are deleted (returned
    too), so renaming a solution does not leave a stale twin behind. With `manifest`, the
    grader's exercise manifest is written there too (`course lessons build` writes the
    package's).
    """
    from course.grading import manifest_text

    solutions = solution_files(solutions_dir)
    texts = {p.name: lesson_text(p) for p in solutions}
    manifest_data = manifest_text(solutions_dir).encode("utf-8") if manifest else None
    out_dir = Path(lessons_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in texts.items():
        target = out_dir / name
        data = text.encode("utf-8")
        if not target.is_file() or target.read_bytes() != data:
            atomic_write_bytes(target, data)
            changed.append(target)
    for lesson in sorted(out_dir.glob("*.ipynb")):
        if lesson.name not in texts:
            lesson.unlink()
            changed.append(lesson)
    if manifest is not None and manifest_data is not None:
        target = Path(manifest)
        if not target.is_file() or target.read_bytes() != manifest_data:
            atomic_write_bytes(target, manifest_data)
            changed.append(target)
    return changed


def check_lessons(solutions_dir: str | Path = "solutions",
                  lessons_dir: str | Path = "lessons",
                  manifest: str | Path | None = None) -> list[str]:
    """Differences between `lessons/` (and `manifest`, if given) and what the solutions
    generate; [] means in sync."""
    from course.grading import manifest_text

    solutions = solution_files(solutions_dir)
    out_dir = Path(lessons_dir)
    problems = []
    names = set()
    for solution in solutions:
        names.add(solution.name)
        lesson = out_dir / solution.name
        expected = lesson_text(solution)
        if not lesson.is_file():
            problems.append(f"missing: {lesson} (generated from {solution})")
            continue
        actual = lesson.read_bytes().decode("utf-8", errors="replace")
        if actual != expected:
            problems.append(f"stale: {lesson} differs from what {solution} generates "
                            f"({_first_difference(expected, actual)})")
    if out_dir.is_dir():
        for lesson in sorted(out_dir.glob("*.ipynb")):
            if lesson.name not in names:
                problems.append(f"extra: {lesson} has no solution {Path(solutions_dir) / lesson.name}")
    if manifest is not None:
        target = Path(manifest)
        if not target.is_file() or target.read_text(encoding="utf-8") != manifest_text(solutions_dir):
            problems.append(f"stale: the exercise manifest {target} differs from what "
                            f"{solutions_dir} declares")
    return problems


# ------------------------------------------------------------------- execute solutions


def execute_solutions(names: Sequence[str] | None = None, solutions_dir: str | Path = "solutions",
                      timeout: int = 600, env: Mapping[str, str] | None = None) -> list[Path]:
    """Re-run solution notebooks in place (all of them by default); return their paths.

    `names` may be `02_bpe`, `02_bpe.ipynb` or just the prefix `02`. The kernel is
    `python3`, its working directory the solutions directory, its environment this
    process's plus `env` (nothing is set behind the author's back, e.g. TQDM_DISABLE
    only if asked). Timing metadata and the kernel's version string are dropped so that
    re-running unchanged, deterministic code rewrites identical bytes. A failing cell
    (not tagged `raises-exception`) raises AuthoringError and leaves that file as it was.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    files = solution_files(solutions_dir)
    chosen = files if not names else _resolve_names(names, files, solutions_dir)
    done = []
    for path in chosen:
        nb = read_notebook(path)
        current = {"index": -1}
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", record_timing=False,
            shutdown_kernel="immediate", resources={"metadata": {"path": str(path.parent.resolve())}},
            # a busy machine can take well over nbclient's default 60 s to start a kernel
            startup_timeout=max(120, timeout),
            on_cell_start=lambda cell, cell_index, _c=current: _c.update(index=cell_index),
        )
        try:
            client.execute(env={**os.environ, **(env or {})})
        except (CellControlSignal, DeadKernelError) as e:
            raise AuthoringError(_execution_failure(path, current["index"], e, timeout)) from None
        except (RuntimeError, AssertionError) as e:
            if current["index"] >= 0:
                raise
            # nbclient's own errors when the kernel never came up (a RuntimeError, or an
            # AssertionError from its cleanup of a kernel manager that was never made)
            raise AuthoringError(
                f"{path}: the python3 kernel did not start ({type(e).__name__}: {e}); check that "
                "ipykernel is installed (`python -m ipykernel --version`), or run again when the "
                f"machine is less busy; {path} was left unchanged") from None
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        info = nb.metadata.get("language_info")
        if isinstance(info, dict):
            info.pop("version", None)
        # Saved widget state carries random model ids (new bytes on every run) and is
        # only useful for static renderers; a live kernel rebuilds the widgets anyway.
        nb.metadata.pop("widgets", None)
        atomic_write_bytes(path, notebook_text(nb).encode("utf-8"))
        done.append(path)
    return done


# ----------------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> None:
    """Register `lessons build|check|retarget` and `solutions execute` on `subparsers`."""
    def dirs(p: argparse.ArgumentParser, lessons: bool = True) -> None:
        p.add_argument("--solutions-dir", default="solutions",
                       help="instructor notebooks (default: ./solutions)")
        if lessons:
            p.add_argument("--lessons-dir", default="lessons",
                           help="generated learner notebooks (default: ./lessons)")
            p.add_argument("--manifest", default=None,
                           help="the grader's exercise manifest to write or check (default: the "
                                "course package's exercises.json when --solutions-dir is this "
                                "repository's solutions/, else none)")

    lessons = subparsers.add_parser("lessons", help="build / check the learner notebooks from solutions/")
    lsub = lessons.add_subparsers(dest="lessons_command", metavar="ACTION")
    lsub.required = True
    build = lsub.add_parser("build", help="regenerate lessons/ from solutions/")
    dirs(build)
    build.set_defaults(func=_cmd_lessons_build)
    check = lsub.add_parser("check", help="exit 1 if lessons/ is not what solutions/ generates")
    dirs(check)
    check.set_defaults(func=_cmd_lessons_check)
    retarget = lsub.add_parser(
        "retarget", help="point every solution's Colab install line at a repository (for forks)")
    retarget.add_argument("--repository", default=None,
                          help="GitHub owner/name (default: course.launch.REPOSITORY)")
    retarget.add_argument("--branch", default=None, help="branch (default: course.launch.BRANCH)")
    dirs(retarget, lessons=False)
    retarget.set_defaults(func=_cmd_lessons_retarget)

    otter = lsub.add_parser(
        "otter", help="write otter-grader assignments (Gradescope) whose hidden tests are our checks")
    otter.add_argument("names", nargs="+", metavar="NAMES", help="lessons, e.g. 03_packing or 03")
    otter.add_argument("--out", required=True,
                       help="a new directory; each lesson gets OUT/<lesson>/ (master notebook) "
                            "and OUT/<lesson>/dist/ (otter's student notebook and autograder zip)")
    otter.add_argument("--requirement", action="append", default=[], metavar="REQ",
                       help="a pip requirement the autograder installs on Gradescope, e.g. the "
                            "course package from your repository (repeatable)")
    otter.add_argument("--no-assign", action="store_true",
                       help="only write the master notebooks (no `otter assign`)")
    dirs(otter, lessons=False)
    otter.set_defaults(func=_cmd_lessons_otter)

    solutions = subparsers.add_parser("solutions", help="re-execute solution notebooks in place")
    ssub = solutions.add_subparsers(dest="solutions_command", metavar="ACTION")
    ssub.required = True
    execute = ssub.add_parser("execute", help="run solution notebooks and store their outputs")
    execute.add_argument("names", nargs="*", metavar="NAMES",
                         help="e.g. 02_bpe, 02_bpe.ipynb or 02 (default: all)")
    execute.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    dirs(execute, lessons=False)
    execute.set_defaults(func=_cmd_solutions_execute)



def _cmd_lessons_build(args: argparse.Namespace) -> int:
    changed = build_lessons(args.solutions_dir, args.lessons_dir, _manifest_for(args))
    for path in changed:
        print(f"{'wrote' if path.exists() else 'removed'} {path}")
    if not changed:
        print(f"{args.lessons_dir} is up to date")
    return 0


def _manifest_for(args: argparse.Namespace) -> Path | None:
    """The manifest to write or check: --manifest, else the package's own when the solutions
    are the ones it was built from (this repository's solutions/), else none: building
    another set of solutions must never replace the exercises the grader knows."""
    from course.grading import MANIFEST

    if args.manifest:
        return Path(args.manifest)
    own = MANIFEST.parents[1] / "solutions"
    return MANIFEST if Path(args.solutions_dir).resolve() == own.resolve() else None


def _cmd_lessons_otter(args: argparse.Namespace) -> int:
    from course.otter_export import build_otter_assignment, otter_assign

    chosen = _resolve_names(args.names, solution_files(args.solutions_dir), args.solutions_dir)
    for path in chosen:
        where = Path(args.out) / path.stem
        master = build_otter_assignment(path, where, requirements=args.requirement or None)
        print(f"wrote {master}")
        if not args.no_assign:
            made = otter_assign(master, where / "dist")
            print(f"otter assign: student notebook {made['student']}, autograder {made['autograder']}")
    return 0


def _cmd_lessons_check(args: argparse.Namespace) -> int:
    problems = check_lessons(args.solutions_dir, args.lessons_dir, _manifest_for(args))
    if not problems:
        print(f"{args.lessons_dir} is in sync with {args.solutions_dir}")
        return 0
    print("\n".join(problems))
    print(f"\n{len(problems)} lesson(s) out of sync with {args.solutions_dir}; run "
          "`course lessons build` and commit the result (never edit lessons by hand)")
    return 1


def retarget_solutions(solutions_dir: str | Path = "solutions", repository: str | None = None,
                       branch: str | None = None) -> list[Path]:
    """Rewrite the Colab branch of every solution's first code cell; return changed files."""
    from course import launch

    repository, branch = repository or launch.REPOSITORY, branch or launch.BRANCH
    changed = []
    for path in solution_files(solutions_dir):
        nb = read_notebook(path)
        first = next((c for c in nb.cells if c.cell_type == "code"), None)
        if first is None:
            continue
        new = launch.retarget_source(first.source, repository, branch)
        if new != first.source:
            first.source = new
            atomic_write_bytes(path, notebook_text(nb).encode("utf-8"))
            changed.append(path)
    return changed


def _cmd_lessons_retarget(args: argparse.Namespace) -> int:
    changed = retarget_solutions(args.solutions_dir, args.repository, args.branch)
    for path in changed:
        print(f"retargeted {path}")
    print(f"{len(changed)} solution(s) changed; now run `course lessons build`")
    return 0


def _cmd_solutions_execute(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    done = execute_solutions(args.names or None, args.solutions_dir, timeout=args.timeout)
    for path in done:
        print(f"executed {path}")
    print(f"{len(done)} notebook(s) in {time.perf_counter() - start:.1f} s; "
          "run `course lessons build` if you changed a solution")
    return 0


# ----------------------------------------------------------------------------- helpers


def read_notebook(path: str | Path) -> NotebookNode:
    """Read a notebook as nbformat 4, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise AuthoringError(f"notebook {path} does not exist")
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:  # JSON or schema errors: the message is what matters
        raise AuthoringError(f"{path} is not a readable notebook ({type(e).__name__}: {e}); "
                             "open it in JupyterLab to repair it") from None


def notebook_text(nb: NotebookNode) -> str:
    """The canonical file content: nbformat JSON, indent 1, sorted keys, final newline."""
    import nbformat

    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def solution_files(solutions_dir: str | Path = "solutions") -> list[Path]:
    """The solution notebooks, in lesson order (their `NN_` prefix sorts them)."""
    root = Path(solutions_dir)
    if not root.is_dir():
        raise AuthoringError(f"solutions directory {root} does not exist; run from the course "
                             "repository's root or pass --solutions-dir")
    return sorted(root.glob("*.ipynb"))


@dataclass(frozen=True)
class _Where:
    """Where a marker problem is, for error messages."""

    notebook: str
    cell: int
    cell_id: str | None

    def error(self, line: int | None, what: str) -> AuthoringError:
        ident = f", id {self.cell_id!r}" if self.cell_id else ""
        at = f", line {line}" if line is not None else ""
        return AuthoringError(f"{self.notebook}: cell {self.cell} (counting from 0{ident}){at}: {what}")


def _execution_failure(path: Path, index: int, e: BaseException, timeout: int) -> str:
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    if isinstance(e, CellTimeoutError):
        what = f"timed out after {timeout} s (raise it with --timeout)"
    elif isinstance(e, CellExecutionError):
        tail = "\n".join(_ANSI.sub("", str(e.traceback)).strip().splitlines()[-15:])
        what = f"raised {e.ename}: {_ANSI.sub('', e.evalue)}\n{tail}"
    else:
        what = f"stopped the kernel ({type(e).__name__}: {e})"
    return (f"{path}: cell {index} (counting from 0) {what}\n{path} was left unchanged; fix the "
            "cell, or tag it `raises-exception` if the error is intended")


def _resolve_names(names: Sequence[str], files: list[Path], solutions_dir: str | Path) -> list[Path]:
    """Map `02_bpe`, `02_bpe.ipynb` or `02` to solution files, keeping the given order."""
    by_stem = {p.stem: p for p in files}
    chosen: list[Path] = []
    for raw in names:
        name = Path(raw).name
        stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
        if stem in by_stem:
            matches = [by_stem[stem]]
        else:
            matches = [p for p in files if p.stem.split("_", 1)[0] == stem]
        if len(matches) != 1:
            available = ", ".join(by_stem) or "(none)"
            why = "is ambiguous" if matches else "matches no solution notebook"
            raise AuthoringError(f"{raw!r} {why} in {solutions_dir}; available: {available}")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _hint(rest: str, lines_before: list[str], indent: str) -> str:
    """The exercise hint: the text after BEGIN SOLUTION, else "implement f()" for the
    enclosing function, else a generic instruction."""
    hint = rest.strip().lstrip(_HINT_PUNCTUATION).strip()
    if hint.lower().startswith("exercise:"):
        hint = hint[len("exercise:"):].strip()
    if hint:
        return hint
    for line in reversed(lines_before):
        m = _DEF.match(line)
        if m and len(m["indent"].expandtabs()) < len(indent.expandtabs()):
            return f"implement {m['name']}()"
    return "write the code for this step"


def _python_string(text: str) -> str:
    # JSON string syntax is valid Python and always uses double quotes.
    return json.dumps(text, ensure_ascii=False)


def _compiles(source: str) -> bool:
    try:
        compile(source, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        return False  # also IPython magics (`%pip`, `!ls`): not plain Python, not our business
    return True


def _whole_lines(source: str, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) to whole lines when the markers stand alone on their lines."""
    line_start = source.rfind("\n", 0, start) + 1
    line_end = source.find("\n", end)
    line_end = len(source) if line_end == -1 else line_end
    if source[line_start:start].strip() or source[end:line_end].strip():
        return start, end
    end = min(line_end + 1, len(source))
    # A paragraph of its own between blank lines: take one blank line with it.
    blank_before = line_start == 0 or source[max(0, line_start - 2):line_start] == "\n\n"
    if blank_before and source[end:end + 1] == "\n":
        end += 1
    return line_start, end


def _derived_id(source: str | Path, index: int) -> str:
    """A stable id for a cell of an old (nbformat < 4.5) notebook that has none."""
    import hashlib

    return hashlib.sha1(f"{Path(source).name}:{index}".encode()).hexdigest()[:8]


def _first_difference(expected: str, actual: str) -> str:
    try:
        e, a = json.loads(expected), json.loads(actual)
    except json.JSONDecodeError:
        return "the lesson is not valid JSON"
    ec, ac = e.get("cells", []), a.get("cells", [])
    if len(ec) != len(ac):
        return f"{len(ac)} cells, expected {len(ec)}"
    for i, (x, y) in enumerate(zip(ec, ac, strict=True)):
        if x != y:
            return f"first difference in cell {i}"
    if e.get("metadata") != a.get("metadata"):
        return "notebook metadata differs"
    return "formatting differs"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the authoring commands alone (`python -m course.authoring lessons build`)."""
    parser = argparse.ArgumentParser(prog="python -m course.authoring")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AuthoringError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
