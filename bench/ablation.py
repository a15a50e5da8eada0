"""The modern-block ablation: GPT-2's block, one change at a time, and all changes together,
each trained for the same wall time on Tiny Shakespeare (characters).

    python bench/ablation.py                                # cpu preset, 180 s per variant
    python bench/ablation.py --budget 60 --variants gpt2 llama --out /tmp/a.json
    python bench/ablation.py --preset gpu --device cuda     # the GPU rows
    python bench/ablation.py --variants llama --set lr=6e-3  # one point of a preset sweep
    python bench/ablation.py --settings-from course/resources/ablation_cpu.json \\
        --out course/resources/ablation_cpu.json            # the shipped one, as it ran

The method (equal wall time: every variant trains under the same time budget) is in
`course/ablation.py`.
`--out course/resources/ablation_cpu.json` replaces the document lesson 12 shows.

Tiny Shakespeare is found as by bench/run.py (`$COURSE_SHAKESPEARE` or shared/data/); the
first 90% trains, the last 10% validates, one token per character.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from course.ablation import (
    VARIANTS,
    load_ablation,
    markdown_table,
    run_ablation,
    settings_overrides,
)

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu", help="cpu or gpu (default: %(default)s)")
    ap.add_argument("--budget", type=float, default=180.0, help="seconds of training per variant")
    ap.add_argument("--variants", nargs="*", default=None, help=f"subset of {list(VARIANTS)}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="preset fields to change, e.g. --set lr=6e-3 n_embd=160 (a sweep point)")
    ap.add_argument("--settings-from", default=None, metavar="JSON",
                    help="train with the settings recorded in an earlier ablation document (its preset "
                         "as it was then), e.g. to reproduce course/resources/ablation_cpu.json")
    ap.add_argument("--out", default=None, help="JSON file (default: bench/ablation-<preset>.json)")
    args = ap.parse_args(argv)
    overrides = {}
    if args.settings_from:
        earlier = load_ablation(args.settings_from)
        if earlier["preset"] != args.preset:
            ap.error(f"{args.settings_from} is an ablation of preset {earlier['preset']!r}, not {args.preset!r}")
        overrides = settings_overrides(earlier)
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set takes FIELD=VALUE, got {item!r}")
        try:
            overrides[field] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[field] = value  # a bare word, e.g. a name
    sys.path.insert(0, str(HERE))
    from run import find_shakespeare

    path = find_shakespeare()
    if path is None:
        raise SystemExit("tinyshakespeare.txt not found: set $COURSE_SHAKESPEARE (see bench/run.py)")
    doc = run_ablation(path.read_text(encoding="utf-8"), preset=args.preset, budget_s=args.budget,
                       variants=args.variants, device=args.device, seed=args.seed, overrides=overrides,
                       log=lambda s: print(s, file=sys.stderr, flush=True))
    doc["command"] = "python bench/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out) if args.out else HERE / f"ablation-{args.preset}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(markdown_table(doc))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
