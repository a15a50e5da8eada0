"""One real-browser test: the mask explorer of lesson 04 in JupyterLab, driven through the DOM.

Headless tests check the figures; this one checks that a learner really gets a plotly
figure inside an ipywidgets `Output` and that moving a control redraws it. It builds the
learner's version of `solutions/04_causal_attention.ipynb` into `tmp_path` (exercises
stripped, outputs cleared: what `course lessons build` writes), starts JupyterLab on a free
local port, opens the lesson, runs its setup cell and the cell tagged `mask-explorer` (which
must not depend on any exercise), picks a query row and switches the mask kind, reads the
figure back from the DOM after each move and saves a screenshot (copied to
`$COURSE_ARTIFACTS` when that is set).

Needs Debian's Chromium at /usr/bin/chromium and the `playwright` package (no browser
download); skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from course.authoring import lesson_from_solution, notebook_text, read_notebook

CHROMIUM = Path("/usr/bin/chromium")
SOLUTION = Path(__file__).resolve().parents[1] / "solutions" / "04_causal_attention.ipynb"
TAG = "mask-explorer"
# The line the lesson's explorer shows, one position per word (the widget splits on spaces).
WORDS = 15
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# Reads the plotly figure drawn inside the widget's Output: its title, visible cells, the query
# row's outline (a shape) and the colour of the target star (a second trace), plus the note.
READ_FIGURE = """() => {
    const gd = document.querySelector('.jp-OutputArea .js-plotly-plot');
    if (!gd || !gd.data || !gd.layout) return null;
    const z = gd.data[0].z;
    const star = gd.data.length > 1 ? gd.data[1].marker.color : null;
    const note = document.querySelector('.jp-OutputArea .widget-html-content');
    return {title: gd.layout.title.text, rows: z.length,
            visible: z.flat().reduce((a, b) => a + b, 0),
            shapes: (gd.layout.shapes || []).length, star: star,
            note: note ? note.textContent : ''};
}"""

# Runs the given cells of the open notebook in order, as "select the cell, run it" would, after
# checking that the last one carries the tag. Resolves once every cell has finished.
RUN_CELLS = """async ([indices, tag]) => {
    const app = window.jupyterapp;
    const notebook = app.shell.currentWidget.content;
    const model = notebook.widgets[indices[indices.length - 1]].model;
    const tags = (model.getMetadata ? model.getMetadata('tags') : model.metadata.get('tags')) || [];
    if (!tags.includes(tag)) return `cell ${indices[indices.length - 1]} is not tagged ${tag}: ${tags}`;
    for (const i of indices) {
        notebook.activeCellIndex = i;
        notebook.deselectAll();
        await app.commands.execute('notebook:run-cell');
    }
    return 'ok';
}"""

# Error outputs of the given cells, as "index: ename: evalue" strings (none expected).
CELL_ERRORS = """(indices) => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    const errors = [];
    for (const i of indices) {
        for (const out of notebook.widgets[i].model.outputs.toJSON()) {
            if (out.output_type === 'error') errors.push(`${i}: ${out.ename}: ${out.evalue}`);
        }
    }
    return errors;
}"""

SCROLL_TO = """(i) => {
    window.jupyterapp.shell.currentWidget.content.widgets[i].node.scrollIntoView({block: 'start'});
}"""

KERNEL_IDLE = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const s = w && w.sessionContext && w.sessionContext.session;
    return !!(s && s.kernel && s.kernel.status === 'idle');
}"""


def _figure_where(condition: str) -> str:
    """JS predicate: a figure is drawn and `condition` holds for it (named `f`)."""
    return f"() => {{ const f = ({READ_FIGURE})(); return f !== null && ({condition}); }}"


def _skip_reason() -> str | None:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        return ("no Chromium at /usr/bin/chromium; install Debian's: "
                "apt-get update && apt-get install -y chromium")
    if importlib.util.find_spec("playwright") is None:
        return "the playwright module is missing; pip install playwright (no browser download needed)"
    if importlib.util.find_spec("jupyterlab") is None:
        return "jupyterlab is missing; pip install -e '.[dev]'"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lesson(path: Path) -> tuple[int, int]:
    """Write the learner's lesson 04 to `path`; return (setup cell index, explorer cell index)."""
    lesson = lesson_from_solution(read_notebook(SOLUTION), SOLUTION)
    path.write_text(notebook_text(lesson), encoding="utf-8")
    code = [i for i, cell in enumerate(lesson.cells) if cell.cell_type == "code"]
    tagged = [i for i in code if TAG in lesson.cells[i].metadata.get("tags", [])]
    assert len(tagged) == 1, f"lesson 04 must have exactly one cell tagged {TAG!r}, found {tagged}"
    assert "NotImplementedError" not in lesson.cells[tagged[0]].source, \
        "the mask-explorer cell must not contain an exercise"
    return code[0], tagged[0]


def _start_lab(root: Path, port: int, log: Path) -> subprocess.Popen:
    settings = root / ".settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "official Jupyter news?" toast over the figure
    # Render every cell, so the explorer near the end of a long lesson is laid out when it runs.
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    env = {**os.environ,
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),  # nothing shared with other servers
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=",
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={root}"]
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root)


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (the server's kernels), read from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _stop(proc: subprocess.Popen, root: Path) -> None:
    """Stop the server we started, by its process id; its kernels too if it does not exit."""
    if proc.poll() is not None:
        return
    kernels = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down, then exits
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    for pid in kernels:  # only one that outlived its server, recognised by our runtime dir
        try:
            if str(root) in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@pytest.mark.slow
def test_mask_explorer_in_jupyterlab(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    name = SOLUTION.name
    setup_cell, explorer_cell = _lesson(tmp_path / name)
    port, log = _free_port(), tmp_path / "jupyterlab.log"
    shot = tmp_path / "mask_explorer.png"
    proc = _start_lab(tmp_path, port, log)
    try:
        _wait_ready(proc, port, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1200})
                page.set_default_timeout(90_000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?reset")
                page.wait_for_selector(".jp-Notebook")
                page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands")
                # Run only once the kernel is idle: earlier, JupyterLab asks for a kernel in a dialog.
                page.wait_for_function(KERNEL_IDLE, polling=250)
                ran = page.evaluate(RUN_CELLS, [[setup_cell, explorer_cell], TAG])
                assert ran == "ok", ran
                page.wait_for_function(_figure_where("true"))
                assert page.evaluate(CELL_ERRORS, [setup_cell, explorer_cell]) == []
                before = page.evaluate(READ_FIGURE)
                assert before["title"].startswith("causal mask"), before
                assert before["rows"] == WORDS and before["visible"] == WORDS * (WORDS + 1) // 2, before
                assert before["shapes"] == 0, before

                # Move the controls as a learner would: a query row, then the mask kind.
                selects = page.locator(".widget-dropdown select")
                selects.nth(1).select_option(index=4)  # "(none)" then rows 0..: query row 3
                page.wait_for_function(_figure_where("f.shapes === 1"))  # the query row's outline
                query = page.evaluate(READ_FIGURE)
                assert query["visible"] == before["visible"] and query["title"] == before["title"], query
                assert "which it cannot see" in query["note"], query  # causal: the target is hidden

                selects.nth(0).select_option(label="bidirectional")
                page.wait_for_function(_figure_where("f.title.startsWith('bidirectional')"))
                leak = page.evaluate(READ_FIGURE)
                assert leak["visible"] == WORDS * WORDS and leak["rows"] == WORDS, leak
                assert leak["shapes"] == 1 and "the target leaks" in leak["note"], leak
                assert leak["star"] != query["star"], (query, leak)  # the star turned red

                page.evaluate(SCROLL_TO, explorer_cell)
                page.wait_for_timeout(800)  # let plotly finish laying out before the picture
                page.screenshot(path=str(shot))
            finally:
                browser.close()
    finally:
        _stop(proc, tmp_path)
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("COURSE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
    print(f"screenshot: {shot}")
