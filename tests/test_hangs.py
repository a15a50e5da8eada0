"""Headless execution never stalls at widget cells (issue 13).

The stall: nbclient (and nbconvert, papermill, `course solutions execute`) emulates a front
end's Output widget. While a cell's output is *captured* into an Output (`with out:`),
nbclient writes every captured output back to the kernel on the shell socket, from the
coroutine that reads IOPub, while another coroutine waits on that same shell socket for
the cell's execute_reply. jupyter_client sends through a blocking shadow of the asyncio
socket; if the reply has just arrived, that send consumes the socket's edge-triggered
wake-up, and nbclient waits with the kernel idle until the cell's timeout (forever without
one), then carries on as if nothing happened. A loaded machine makes the client lag behind
the kernel, so the reply lands during those writes: seen in lessons 04, 06, 08 and 09, the
ones with widgets. The widgets now draw by setting the Output's `outputs` state
(`course.widgets._base.show_in`), so nbclient never writes back.

How a stall is seen: every execute_reply carries the time the kernel sent it; a reply
picked up long after that was waited for with the kernel idle. Each execution runs in a
child process (this file run as a script) with a hard limit, so even a stall that never
ends is a clear failure, and the child and its kernel are killed.

* `test_widget_cells_never_stall_a_lagging_client` (slow, about a minute): every widget of
  the course, under a client made to lag deterministically (it sleeps before handling each
  captured output, as a descheduled client would). With capture it stalls every time.
* `test_solutions_never_stall_under_cpu_load` (slow, opt-in, long): every solution notebook
  `COURSE_SOAK_RUNS` times, read-only and in memory, while one busy-loop process per CPU
  loads the machine. `COURSE_SOAK_ONLY=04,08` picks notebooks; `COURSE_SOAK_LIMIT` is the
  limit in seconds for one execution of one notebook (default 1800).

    COURSE_SOAK_RUNS=3 pytest -p no:nbval -o addopts= -m slow tests/test_hangs.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
STALL_S = 30.0  # an execute_reply read this long after the kernel sent it was a stall
RESULT = "HANGS-RESULT "  # the child's last stdout line: this prefix, then JSON


# ----------------------------------------------------------------- the child process
def _execute(path: str, cell_timeout: int, lag: float) -> dict:
    """Execute the notebook at `path` in memory (never written); report replies and write-backs."""
    from datetime import datetime, timezone

    import nbformat
    from nbclient import NotebookClient
    from nbclient.output_widget import OutputWidget

    write_backs = []  # comm messages nbclient's Output emulation sent to the kernel
    original_send, original_output = OutputWidget.send, OutputWidget.output

    def send(self, *args, **kwargs):
        write_backs.append(self.comm_id)
        return original_send(self, *args, **kwargs)

    def output(self, *args, **kwargs):  # a lagging client: late to handle captured output
        time.sleep(lag)
        return original_output(self, *args, **kwargs)

    OutputWidget.send = send
    if lag:
        OutputWidget.output = output

    nb = nbformat.read(path, as_version=4)
    replies = []

    def started(cell, cell_index, **_):
        print(f"cell {cell_index} started", flush=True)

    def executed(cell, cell_index, execute_reply, **_):
        sent = execute_reply["header"]["date"]
        late = (datetime.now(timezone.utc) - sent).total_seconds()
        replies.append({"cell": cell_index, "late_s": round(late, 2)})

    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", record_timing=False,
                            shutdown_kernel="immediate", startup_timeout=300,
                            resources={"metadata": {"path": str(Path(path).parent)}},
                            on_cell_start=started, on_cell_executed=executed)
    t = time.monotonic()
    client.execute()
    figures = sum(1 for state in client.widget_state.values()
                  if state.get("_model_name") == "OutputModel"
                  and any("application/vnd.plotly.v1+json" in o.get("data", {})
                          for o in state.get("outputs", [])))
    return {"seconds": round(time.monotonic() - t, 1), "replies": replies,
            "write_backs": len(write_backs), "output_figures": figures}


def _child_main(argv: list[str]) -> int:
    path, cell_timeout, lag = argv[0], int(argv[1]), float(argv[2])
    print(RESULT + json.dumps(_execute(path, cell_timeout, lag)), flush=True)
    return 0


# ------------------------------------------------------------------ the test process
def run_watched(path: Path, *, cell_timeout: int, limit: float, lag: float = 0.0,
                env: dict[str, str] | None = None) -> dict:
    """Execute `path` in a child process with a hard `limit`; return its report or the failure.

    The report gains `problem`: None, or why this execution is a failure (a stall, an error,
    or no result within `limit`, in which case the child and its kernel are killed).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), str(path), str(cell_timeout), str(lag)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    t = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: it and its kernel
        out, _ = proc.communicate()
        started = [line for line in out.splitlines() if line.startswith("cell ")]
        return {"problem": f"no result after {limit:.0f} s (a hang); last: "
                           f"{started[-1] if started else 'kernel start'}", "tail": out[-2000:]}
    lines = [line for line in out.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        return {"problem": f"exit {proc.returncode} after {time.monotonic() - t:.0f} s",
                "tail": out[-3000:]}
    report = json.loads(lines[-1][len(RESULT):])
    stalls = [r for r in report["replies"] if r["late_s"] > STALL_S]
    report["problem"] = (f"stalled: execute_reply picked up late {stalls} (kernel idle meanwhile)"
                         if stalls else None)
    return report


WIDGET_CELLS = [
    "from course.notebook import setup\nsetup(seed=0)",
    "import torch\nfrom course.model import GPT, GPTConfig\nfrom course.tokenizer import CharTokenizer\n"
    "text = 'the cat sat on the mat. the dog ate my homework.'\n"
    "tok = CharTokenizer().train(text)\n"
    "model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))",
    "from course.widgets import mask_explorer\nw = mask_explorer(text)\nw",
    "w.set(kind='bidirectional')\nw.controls['kind'].value = 'causal'",
    "from course.widgets import packing_viewer\n"
    "packing_viewer([tok.encode(t) for t in text.split('.')], block_size=8, tokenizer=tok)",
    "from course.widgets import attention_viewer\nattention_viewer(model, tok, 'the cat')",
    "from course.widgets import sampling_explorer\ns = sampling_explorer(model, tok, 'the c')\ns",
    "s.set(temperature=0.5, top_k=3)\nprint(s.generate()[:0])",
    "from course.train import TrainConfig, train\nfrom course.widgets import live_loss_plot\n"
    "ids = torch.tensor([tok.encode(text[:32])] * 8)\n"
    "plot = live_loss_plot(every=1, min_interval=0.0)\n"
    "cfg = TrainConfig(max_steps=8, batch_size=4, eval_interval=4, log_interval=1, warmup_steps=1)\n"
    "_ = train(model, ids, ids, cfg, callback=plot, progress=False)",
    "1 + 1",
]


@pytest.mark.slow
def test_widget_cells_never_stall_a_lagging_client(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "widgets.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in WIDGET_CELLS]), path)
    report = run_watched(path, cell_timeout=90, limit=600, lag=1.0)
    assert report["problem"] is None, report
    # The widgets send their figures as state and nbclient never writes back to the kernel.
    assert report["write_backs"] == 0, report
    assert report["output_figures"] >= 5, report  # mask, packing, attention, sampling, loss plot
    assert len(report["replies"]) == len(WIDGET_CELLS)


@pytest.mark.slow
@pytest.mark.timeout(0)  # bounded by its own limit on every execution, not by the suite's 900 s
def test_solutions_never_stall_under_cpu_load():
    runs = int(os.environ.get("COURSE_SOAK_RUNS", "0"))
    if runs < 1:
        pytest.skip("long soak test: set COURSE_SOAK_RUNS=N (runs per notebook) to run it")
    only = [p.strip() for p in os.environ.get("COURSE_SOAK_ONLY", "").split(",") if p.strip()]
    limit = float(os.environ.get("COURSE_SOAK_LIMIT", "1800"))
    paths = [p for p in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
             if not only or any(p.name.startswith(o) for o in only)]
    assert paths, f"no solution notebook matches COURSE_SOAK_ONLY={only}"
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)]  # one busy loop per CPU
    failures, timings = [], {}
    try:
        for run in range(runs):
            for path in paths:
                report = run_watched(path, cell_timeout=int(limit), limit=limit)
                timings.setdefault(path.stem, []).append(report.get("seconds"))
                if report["problem"]:
                    failures.append(f"{path.name} run {run}: {report['problem']}\n"
                                    f"{report.get('tail', '')}")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print("seconds per execution:", timings)
    assert not failures, "\n\n".join(failures)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
