"""The benchmark harness itself: its references agree with the package, and RESULTS.md
merging keeps what it should. No timings are asserted here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # run.py imports naive_bpe as a sibling module
    try:
        spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 20


def test_naive_reference_learns_the_packages_merges(bench):
    from naive_bpe import naive_train

    from course.tokenizer import ByteBPETokenizer

    assert naive_train(TEXT, 300) == ByteBPETokenizer().train(TEXT, 300).merges


def test_naive_reference_is_not_trivially_equal(bench):
    """A wrong tie-break or a merge across pre-tokens would change the merges."""
    from naive_bpe import naive_train

    merges = naive_train(TEXT, 300)
    assert len(merges) == 300 - 256 - 1  # every id but the EOS special is a merge
    assert all(b" " not in a[1:] + b for a, b in merges)  # no merge crosses a pre-token


def test_kv_case_asserts_equal_tokens_and_reports_a_ratio(bench):
    r = bench._kv_cache_case(1, 2, 32, prompt_len=4, new=6, device="cpu")
    assert r["speedup"] > 0 and r["tokens_per_s"] > 0 and "6 new tokens" in r["model"]


ROW = {"machine": "M1", "date": "2026-01-01", "packing_docs": "3 docs", "packing_s": 1.0,
       "packing_datasets_map_s": 2.0, "packing_speedup_vs_datasets_map": 2.0}


def test_results_md_merges_by_machine_and_keeps_notes(bench, tmp_path):
    path = tmp_path / "RESULTS.md"
    bench.write_results_md(ROW, path)
    path.write_text(path.read_text() + "\n## Status\n\nhand-written\n")
    bench.write_results_md({**ROW, "machine": "M2", "packing_s": 0.5}, path)
    bench.write_results_md({**ROW, "packing_s": 0.25}, path)  # replaces M1's row, in place
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| packing")]
    assert len(rows) == 2
    assert "| 0.25 s |" in rows[0] and "| M1 |" in rows[0]
    assert "| 0.5 s |" in rows[1] and "| M2 |" in rows[1]
    assert text.rstrip().endswith("## Status\n\nhand-written")
    before = text
    bench.write_results_md({**ROW, "packing_s": 0.25}, path)
    assert path.read_text() == before  # idempotent


def test_kv_rows_for_both_models_and_the_hf_comparison(bench):
    case = {"model": "m", "tokens_per_s": 10.0, "no_cache_tokens_per_s": 2.0, "speedup": 5.0,
            "hf_generate_tokens_per_s": 8.0, "ours_vs_hf_generate": 1.25}
    r = {**{f"kv_cache_{k}": v for k, v in case.items()},
         **{f"kv_cache_small_{k}": v for k, v in {**case, "speedup": 4.0}.items()}}
    rows = {row[0]: row for row in bench.results_table(r)}
    assert rows["KV cache"][4] == "5.0x faster" and rows["KV cache"][5].startswith(">= 5x")
    assert rows["KV cache, small model"][4] == "4.0x faster" and rows["KV cache, small model"][5] == "-"
    assert rows["generation vs transformers generate()"][3] == "8.0 tok/s"


def test_train_throughput_is_timed_in_steady_state(bench):
    """The clock starts at the first log after the warm-up steps, so compilation and the
    first allocations are not counted; MFU only where a GPU's bf16 peak is known."""
    r = bench.bench_train_throughput(quick=True, device="cpu")
    assert r["train_preset"] == "cpu" and r["train_timed_steps"] == 20
    assert r["train_tokens_per_s"] > 0 and r["train_first_log_s"] > 0 and "mfu" not in r
    row = bench.results_table({**r, "machine": "M", "date": "D"})[-1]
    assert "steady state over 20 steps" in row[1]


def test_the_cpu_recipes_are_what_their_rows_say(bench):
    """The previous preset and the well-known recipe keep their published settings; the
    quality run trains each as given and reports its own numbers."""
    from dataclasses import replace

    recipes = bench._cpu_recipes()
    assert list(recipes) == ["cpu", "cpu-2026-11", "nanogpt-cpu"]
    prev, _ = recipes["cpu-2026-11"]
    assert (prev.arch, prev.n_layer, prev.n_embd, prev.block_size, prev.batch_size, prev.max_steps,
            prev.lr, prev.betas) == ("gpt2", 4, 128, 64, 16, 2200, 4e-3, (0.9, 0.99))
    nano, changes = recipes["nanogpt-cpu"]
    assert changes == {"bias": False}
    assert (nano.n_layer, nano.n_head, nano.n_embd, nano.block_size, nano.batch_size, nano.max_steps,
            nano.lr, nano.min_lr_ratio, nano.warmup_steps, nano.dropout) == (4, 4, 128, 64, 12, 2000, 1e-3,
                                                                             0.1, 100, 0.0)
    small = replace(nano, n_layer=1, n_embd=16, n_head=2, block_size=16, batch_size=4, max_steps=6,
                    warmup_steps=1, eval_interval=3)
    q = bench._quality_run(TEXT, small, changes, "cpu", target=9.0)
    assert (q["preset"], q["arch"], q["steps"]) == ("nanogpt-cpu", "gpt2", 6)
    assert q["step_at_target"] == 3 and q["val_loss"] < 9.0  # the first evaluation is under 9
    plain = bench._quality_run(TEXT, small, {}, "cpu", target=9.0)
    assert q["params"] < plain["params"]  # no biases: fewer parameters
    rows = bench.results_table({"quality": [dict(q, preset="cpu"), plain]})
    assert rows[0][0] == "quality, `cpu` preset" and "nanogpt-cpu: " in rows[0][3]
    assert rows[1][0].startswith("quality, well-known small CPU recipe")


def test_ablation_cli_reruns_a_document_with_the_settings_it_recorded(tmp_path, monkeypatch):
    """`bench/ablation.py --settings-from DOC` trains with DOC's settings (the preset as it
    was), `--set` still wins, and a document of another preset is refused."""
    import types

    from course.ablation import SHIPPED_ABLATION, load_ablation, settings_overrides

    spec = importlib.util.spec_from_file_location("bench_ablation", BENCH / "ablation.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    monkeypatch.setitem(sys.modules, "run", types.SimpleNamespace(find_shakespeare=lambda: text))
    seen = {}

    def fake_run_ablation(text, **kw):
        seen.update(kw)
        return {"rows": [], "budget_s": kw["budget_s"], "preset": kw["preset"], "machine": "M", "date": "D"}

    monkeypatch.setattr(cli, "run_ablation", fake_run_ablation)
    shipped = load_ablation()
    assert cli.main(["--settings-from", str(SHIPPED_ABLATION), "--set", "lr=0.01",
                     "--out", str(tmp_path / "a.json")]) == 0
    assert seen["overrides"] == {**settings_overrides(shipped), "lr": 0.01}
    assert seen["overrides"]["n_head"] == shipped["settings"]["n_head"]
    with pytest.raises(SystemExit):
        cli.main(["--settings-from", str(SHIPPED_ABLATION), "--preset", "gpu", "--out", str(tmp_path / "b.json")])
