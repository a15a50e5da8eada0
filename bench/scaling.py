"""Lesson 11's long runs, timed: the IsoFLOP sweep and the test of its prediction.

    python bench/scaling.py --out-dir /tmp/scaling          # both, one after the other: about 17 min
    python bench/scaling.py --out-dir /tmp/scaling --only predict --sweep course/resources/scaling_sweep.json

Each training run uses one thread, so on 2 cores the two halves can run side by side
(`--only sweep` and `--only predict` in two processes): 718 s and 299 s on 2026-12-02.

Runs `course scaling sweep` (every point of the shipped sweep, same settings) and
`course scaling predict-check` (fit, predict the best model for 5 × the largest budget,
train it), then prints the rows for bench/RESULTS.md: wall times, and the predicted and
measured losses side by side. The shipped files (course/resources/scaling_sweep.json and
scaling_prediction.json) are what these commands wrote; comparing a fresh sweep with them
shows how far another machine's float round-off moves the losses.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from course.cli import main as course
from course.train import describe_machine


def run(argv: list[str]) -> float:
    t = time.perf_counter()
    if course(argv) != 0:
        raise SystemExit(f"`course {' '.join(argv)}` failed")
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True, help="where the sweep and check JSON go")
    parser.add_argument("--only", choices=["sweep", "predict"], default=None,
                        help="run one of the two (default: both)")
    parser.add_argument("--sweep", default=None,
                        help="with --only predict: the sweep to fit (default: the fresh one)")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweep = Path(args.sweep) if args.sweep else out / "scaling_sweep.json"
    rows = []
    if args.only in (None, "sweep"):
        wall = run(["scaling", "sweep", "--out", str(sweep), "--no-progress"])
        doc = json.loads(sweep.read_text())
        shipped = json.loads((Path(__file__).parents[1] / "course" / "resources"
                              / "scaling_sweep.json").read_text())
        pairs = {(r["corpus"], r["budget"], r["name"]): r["val_loss"] for r in shipped["runs"]}
        diffs = [abs(r["val_loss"] - pairs[(r["corpus"], r["budget"], r["name"])])
                 for r in doc["runs"] if (r["corpus"], r["budget"], r["name"]) in pairs]
        rows.append(f"| IsoFLOP sweep (`course scaling sweep`) | {len(doc['runs'])} runs | "
                    f"{wall:.0f} s | largest |loss − shipped| {max(diffs):.1e} nats |")
    if args.only in (None, "predict"):
        check = out / "scaling_prediction.json"
        wall = run(["scaling", "predict-check", "--sweep", str(sweep), "--out", str(check)])
        for r in json.loads(check.read_text())["checks"]:
            rows.append(f"| prediction at {r['budget']:.2g} FLOPs, {r['corpus']} "
                        f"({r['chosen']['name']}) | predicted {r['predicted_loss']:.3f} | "
                        f"measured {r['measured_loss']:.3f} | {r['measured']['wall_s']:.0f} s |")
        rows.append(f"| `course scaling predict-check` total | | {wall:.0f} s | |")
    print(f"\nmachine: {describe_machine()}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
