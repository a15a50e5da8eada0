"""The `course` command.

    course run         corpus → tokenizer → packing → training → evaluation → samples
    course evaluate    perplexity of a finished run on a text file
    course sample      continue a prompt with a finished run
    course export      write a Hugging Face (GPT-2) directory from a run
    course lessons     build / check the learner notebooks from solutions/
    course solutions   re-execute solution notebooks in place
    course grade       grade learner notebooks (one, or a whole class into a CSV gradebook)

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
        args.corpus, args.tokenizer, args.preset, max_steps=args.max_steps, device=args.device,
        out_dir=args.out, seed=args.seed, resume=args.resume, progress=not args.no_progress,
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

    out = export_run(args.run_dir, args.to)
    print(f"wrote a Hugging Face GPT-2 directory to {out} "
          f"(load it with AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from course.presets import PRESETS

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
    run.add_argument("--max-steps", type=int, default=None, help="override the preset's step count")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    run.add_argument("--out", default=None, help="run directory (default: runs/<corpus>-<tokenizer>-<preset>-<time>)")
    run.add_argument("--seed", type=int, default=0,
                     help="seeds the split, the tokenizer, the initial weights and the data order "
                          "(default: %(default)s)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
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

    ex = sub.add_parser("export", help="write a Hugging Face GPT-2 directory (model + tokenizer)")
    ex.add_argument("run_dir", help="a directory written by `course run`")
    ex.add_argument("--to", required=True, help="output directory")
    ex.set_defaults(func=_cmd_export)

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
