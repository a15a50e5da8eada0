"""The `course` command.

    course run         corpus → tokenizer → packing → training → evaluation → samples
    course evaluate    perplexity of a finished run on a text file
    course sample      continue a prompt with a finished run
    course export      write a Hugging Face (GPT-2 or Llama) directory from a run
    course lessons     build / check the learner notebooks from solutions/
    course solutions   re-execute solution notebooks in place
    course grade       grade learner notebooks (one, or a whole class into a CSV gradebook)
    course scaling     IsoFLOP sweeps and the test of a compute-optimal prediction (lesson 11)

User errors print one line (`error: ...`) and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from course.errors import CorpusError, CourseError


def _cmd_run(args: argparse.Namespace) -> int:
    from course.pipeline import format_summary, run_pipeline

    metrics = run_pipeline(
        args.corpus, args.tokenizer, args.preset, arch=args.arch, max_steps=args.max_steps, device=args.device,
        out_dir=args.out, seed=args.seed, resume=args.resume, progress=not args.no_progress,
        overwrite=args.overwrite, max_corpus_chars=args.max_chars,
    )
    if "rank" in metrics:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print(format_summary(metrics))
        samples = Path(metrics["run_dir"]) / "samples.txt"
        first = samples.read_text(encoding="utf-8").split("\n\n----------\n\n")[0]
        print("\nsample:\n" + first.strip()[:400])
    return 0


def read_text_file(path: str) -> str:
    p = Path(path).expanduser()
    if p.exists() and not p.is_file():
        raise CorpusError(f"{p} is not a regular file (a folder, device or pipe); pass a UTF-8 text file")
    if not p.is_file():
        raise CorpusError(f"text file {p} does not exist")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{p} is not UTF-8 (bad byte at offset {e.start}); convert it, e.g. "
            f"`iconv -f latin1 -t utf-8 {p} > out.txt`"
        ) from None
    if not text.strip():
        raise CorpusError(f"{p} is empty; give a file with some text in it")
    return text


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from course.evaluate import strided_nll, token_byte_lengths
    from course.pipeline import load_run

    model, tok, _ = load_run(args.run_dir, args.device)
    text = read_text_file(args.text)
    ids = tok.encode(text)
    if len(ids) < 2:
        raise CorpusError(f"{args.text} encodes to {len(ids)} token(s); perplexity needs at least 2")
    res = strided_nll(model, ids, stride=args.stride, byte_lengths=token_byte_lengths(tok, model.config.vocab_size))
    out = {"perplexity": res.perplexity, "nll": res.mean_nll, "bits_per_byte": res.bits_per_byte,
           "tokens": res.n_tokens, "bytes": res.n_bytes, "block_size": model.config.block_size,
           "stride": args.stride or max(1, model.config.block_size // 2)}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"perplexity {out['perplexity']:.4f}  (nll {out['nll']:.4f} nats/token, "
              f"{out['bits_per_byte']:.4f} bits/byte, {out['tokens']} tokens)")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from course.pipeline import load_run, sample_texts

    model, tok, _ = load_run(args.run_dir, args.device)
    texts = sample_texts(model, tok, n=args.num_samples, max_new_tokens=args.max_new_tokens,
                         seed=args.seed, prompt=args.prompt, temperature=args.temperature,
                         top_k=args.top_k or None, top_p=args.top_p)
    print("\n\n----------\n\n".join(texts))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from course.pipeline import export_run

    out = export_run(args.run_dir, args.to, force=args.force)
    kind = json.loads((Path(out) / "config.json").read_text(encoding="utf-8")).get("architectures", ["?"])[0]
    print(f"wrote a Hugging Face {kind} directory to {out} "
          f"(load it with AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0


# course.scaling's CORPORA and DEFAULT_BUDGETS (equal, tested), spelled out here so that
# building the parser does not import torch
SCALING_CORPORA = ("synthetic", "default")
SCALING_BUDGETS = (1e10, 3e10, 1e11, 3e11)


def _cmd_scaling_sweep(args: argparse.Namespace) -> int:
    from course.atomic import atomic_write_text
    from course.scaling import SweepSettings, run_sweep

    settings = [SweepSettings(corpus=c, budgets=tuple(args.budgets), seed=args.seed)
                for c in args.corpus]
    doc = run_sweep(settings, command=_scaling_command(args), progress=not args.no_progress,
                    log=print)
    atomic_write_text(Path(args.out), json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(doc['runs'])} runs to {args.out} in {doc['wall_s']:.0f} s")
    return 0


def _scaling_command(args: argparse.Namespace) -> str:
    budgets = " ".join(f"{b:g}" for b in args.budgets)
    return (f"course scaling sweep --out {args.out} --corpus {' '.join(args.corpus)} "
            f"--budgets {budgets} --seed {args.seed}")


def _cmd_scaling_predict(args: argparse.Namespace) -> int:
    from course.atomic import atomic_write_text
    from course.scaling import load_sweep, predict_and_check

    doc = load_sweep(args.sweep)
    results = [predict_and_check(doc, c, args.factor, train_it=not args.no_train, log=print)
               for c in args.corpus]
    for r in results:
        measured = f"{r['measured_loss']:.4f}" if "measured_loss" in r else "not trained"
        print(f"{r['corpus']}: predicted {r['predicted_loss']:.4f}, measured {measured} "
              f"({r['chosen']['name']}, budget {r['budget']:.3g} FLOPs)")
    if args.out:
        sweep = f" --sweep {args.sweep}" if args.sweep else ""  # default: the shipped sweep
        command = (f"course scaling predict-check{sweep} --corpus {' '.join(args.corpus)} "
                   f"--factor {args.factor:g} --out {args.out}")
        atomic_write_text(Path(args.out), json.dumps({"format": 1, "command": command,
                                                      "checks": results}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from course.presets import ARCH_NAMES, PRESETS

    parser = argparse.ArgumentParser(
        prog="course", description="Causal language-model pretraining, end to end.",
        epilog="Run `course COMMAND --help` for a command's options; the README's quick start "
               "is `course run`.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="train a GPT end to end and write a run directory")
    run.add_argument("--corpus", default="default",
                     help="default (embedded Shakespeare), synthetic, pydoc, tinyshakespeare, or a PATH "
                          "to a text file or folder (default: %(default)s)")
    run.add_argument("--tokenizer", default="bpe", choices=["bpe", "char", "hf-bpe"],
                     help="bpe: our byte-level BPE; char: one id per character; hf-bpe: the "
                          "same BPE trained by Hugging Face tokenizers (default: %(default)s)")
    run.add_argument("--preset", default=None, choices=list(PRESETS),
                     help="model/training size (default: gpu with CUDA, tiny otherwise)")
    run.add_argument("--arch", default=None, choices=list(ARCH_NAMES),
                     help="gpt2: GPT-2's block (LayerNorm, learned positions, GELU); llama: RMSNorm, "
                          "RoPE, SwiGLU, no biases (default: the preset's)")
    run.add_argument("--max-steps", type=int, default=None, help="override the preset's step count")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    run.add_argument("--out", default=None, help="run directory (default: runs/<corpus>-<tokenizer>-<preset>-<time>)")
    run.add_argument("--seed", type=int, default=0,
                     help="seeds the split, the tokenizer, the initial weights and the data order "
                          "(default: %(default)s)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    run.add_argument("--overwrite", action="store_true",
                     help="--out holds another run: delete its files first, then start this one "
                          "(without it, such a directory is refused)")
    run.add_argument("--max-chars", type=int, default=None, metavar="N",
                     help="refuse a corpus of more than N characters (default: 50,000,000), which "
                          "guards memory and time against a wrong path")
    run.add_argument("--json", action="store_true", help="print the metrics as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser("evaluate", help="perplexity of a finished run on a text file")
    ev.add_argument("run_dir", help="a directory written by `course run`")
    ev.add_argument("--text", required=True, help="UTF-8 text file to score")
    ev.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: block_size/2)")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(func=_cmd_evaluate)

    sa = sub.add_parser("sample", help="continue a prompt with a finished run")
    sa.add_argument("run_dir", help="a directory written by `course run`")
    sa.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    sa.add_argument("--max-new-tokens", type=int, default=200,
                    help="tokens to generate (default: %(default)s)")
    # the defaults are the settings `course run` writes samples.txt with
    sa.add_argument("--temperature", type=float, default=0.8, help="default 0.8; 0 = greedy")
    sa.add_argument("--top-k", type=int, default=0, help="keep the K likeliest tokens (default 0: off)")
    sa.add_argument("--top-p", type=float, default=0.95,
                    help="keep the smallest set holding this probability (default 0.95; 1 = off)")
    sa.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    sa.add_argument("--num-samples", type=int, default=1,
                    help="how many continuations to draw (default: %(default)s)")
    sa.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    sa.set_defaults(func=_cmd_sample)

    ex = sub.add_parser("export", help="write a Hugging Face GPT-2 or Llama directory (model + tokenizer)")
    ex.add_argument("run_dir", help="a directory written by `course run`")
    ex.add_argument("--to", required=True, help="output directory: new or empty, never a run directory")
    ex.add_argument("--force", action="store_true",
                    help="export into a non-empty --to, replacing its files (a run directory is "
                         "refused even so)")
    ex.set_defaults(func=_cmd_export)

    sc = sub.add_parser("scaling", help="IsoFLOP sweeps and compute-optimal predictions (lesson 11)")
    scsub = sc.add_subparsers(dest="scaling_command", metavar="ACTION")
    scsub.required = True
    sw = scsub.add_parser("sweep", help="train every (budget, size) of an IsoFLOP sweep; write JSON")
    sw.add_argument("--out", required=True, help="JSON file to write (the package ships "
                    "course/resources/scaling_sweep.json)")
    sw.add_argument("--corpus", nargs="+", default=list(SCALING_CORPORA), choices=list(SCALING_CORPORA),
                    help="synthetic (Markov chain, known floor) and/or default (Shakespeare) "
                         "(default: both)")
    sw.add_argument("--budgets", nargs="+", type=float, default=list(SCALING_BUDGETS),
                    metavar="FLOPS", help="compute budgets in training FLOPs (default: "
                    + " ".join(f"{b:g}" for b in SCALING_BUDGETS) + ")")
    sw.add_argument("--seed", type=int, default=0,
                    help="seeds the corpus, the weights and the data order (default: %(default)s)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    sw.set_defaults(func=_cmd_scaling_sweep)
    pc = scsub.add_parser("predict-check", help="fit a sweep, predict the optimum for a larger "
                          "budget, train it and compare")
    pc.add_argument("--sweep", default=None, help="sweep JSON (default: the shipped one)")
    pc.add_argument("--corpus", nargs="+", default=list(SCALING_CORPORA),
                    choices=list(SCALING_CORPORA),
                    help="which of the sweep's corpora to check (default: both)")
    pc.add_argument("--factor", type=float, default=5.0,
                    help="the new budget is this many times the sweep's largest (default: %(default)s)")
    pc.add_argument("--no-train", action="store_true", help="only print the prediction")
    pc.add_argument("--out", default=None, help="JSON file for the predictions and measurements")
    pc.set_defaults(func=_cmd_scaling_predict)

    from course import authoring, grading

    authoring.add_cli(sub)
    grading.add_cli(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("course")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed; run `pip install -e .`)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `course` alone: say what there is, successfully
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CourseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave cannot be read or written
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; check the path, and that it may be read or "
              "written there", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint (if any) is kept in the run directory", file=sys.stderr)
        return 130
    finally:
        from course.distributed import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
