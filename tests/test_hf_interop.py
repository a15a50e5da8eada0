"""`course export` → a directory the Hugging Face Auto classes load offline, with our numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from course.cli import main

RUN_ARGS = ["run", "--corpus", "synthetic", "--tokenizer", "bpe", "--preset", "tiny",
            "--max-steps", "30", "--no-progress", "--device", "cpu"]


def train_and_export(tmp_path_factory, name: str, *extra: str):
    """A tiny run (RUN_ARGS plus `extra`) and its `course export`: (run dir, export dir)."""
    run = tmp_path_factory.mktemp(f"{name}_run")
    assert main([*RUN_ARGS, *extra, "--out", str(run)]) == 0
    dest = tmp_path_factory.mktemp(f"{name}_hf")
    assert main(["export", str(run), "--to", str(dest)]) == 0
    return run, dest


def load_auto(dest):
    """The export loaded offline by the Auto classes: (tokenizer, model in eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dest, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(dest, local_files_only=True).eval()
    return tok, model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return train_and_export(tmp_path_factory, "gpt2", "--arch", "gpt2")


@pytest.fixture(scope="module")
def hf(exported):
    return load_auto(exported[1])


def text_in_one_context(tok, block_size: int) -> str:
    from course.data import load_corpus

    doc = load_corpus("synthetic", seed=0).val[0]
    words = doc.split(" ")
    text = ""
    for w in words:  # the longest prefix that fits in one context
        cand = (text + " " + w) if text else w
        if len(tok(cand)["input_ids"]) > block_size:
            break
        text = cand
    return text


@pytest.mark.slow
def test_course_evaluate_reports_the_perplexity_transformers_computes(exported, hf, tmp_path, capsys):
    run, _ = exported
    tok, model = hf
    block = json.loads((run / "config.json").read_text())["model"]["block_size"]
    text = text_in_one_context(tok, block)
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert block // 2 < ids.shape[1] <= block
    with torch.no_grad():
        theirs = math.exp(model(ids, labels=ids).loss.item())
    f = tmp_path / "one_context.txt"
    f.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--text", str(f), "--json", "--device", "cpu"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["tokens"] == ids.shape[1] - 1
    assert abs(ours["perplexity"] - theirs) / theirs < 1e-3
    assert ours["perplexity"] < math.exp(math.log(tok.vocab_size)) * 0.8, "the run must have learned something"


@pytest.mark.slow
def test_exported_logits_and_tokens_match_ours(exported, hf):
    from course.pipeline import load_run

    run, _ = exported
    tok, model = hf
    ours_model, ours_tok, _ = load_run(run, "cpu")
    text = "the cat sat on the mat; 12 ünïcödé → ok"
    assert tok(text)["input_ids"] == ours_tok.encode(text)
    ids = torch.tensor([ours_tok.encode(text)])
    with torch.no_grad():
        theirs = model(ids).logits
        ours, _ = ours_model(ids)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_readme_snippet_runs_verbatim_on_an_export(arch, request):
    """README's Hugging Face lines, exactly as written, on a fresh export of either block
    (the default pipeline used to generate past the 64-token context and crash in GPT-2's
    position table)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Hugging Face", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    export_line, python_line = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert export_line.strip() == "course export RUN_DIR --to hf_dir"
    run, _ = request.getfixturevalue("exported" if arch == "gpt2" else "exported_llama")
    workdir = Path(str(run) + "-readme")
    workdir.mkdir()
    assert main(["export", str(run), "--to", str(workdir / "hf_dir")]) == 0
    m = re.fullmatch(r'python -c "(.*)"', python_line.strip())
    assert m, python_line
    proc = subprocess.run([sys.executable, "-c", m[1]], cwd=workdir, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ,
                                                       "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generated_text" in proc.stdout
    config = json.loads((workdir / "hf_dir" / "generation_config.json").read_text())
    assert config["max_length"] == 64  # the tiny preset's context


@pytest.mark.slow
def test_text_generation_pipeline_runs_on_the_export(exported, hf):
    from transformers import pipeline

    from course.pipeline import load_run
    from course.sample import generate

    run, dest = exported
    gen = pipeline("text-generation", model=str(dest), tokenizer=str(dest), device="cpu")
    out = gen("abc ab", max_new_tokens=12, do_sample=False)[0]["generated_text"]
    assert out.startswith("abc ab") and len(out) > len("abc ab")
    # greedy decoding through transformers equals ours
    model, tok, _ = load_run(run, "cpu")
    prompt = torch.tensor([tok.encode("abc ab")])
    ours = generate(model, prompt, 12, greedy=True)[0].tolist()
    hf_tok, hf_model = hf
    theirs = hf_model.generate(prompt, max_new_tokens=12, do_sample=False,
                               pad_token_id=hf_tok.eos_token_id)[0].tolist()
    assert ours == theirs


def test_exported_generation_stops_at_the_end_of_text_token(exported, hf):
    """generate() stops at EOS by default: the generation config names our EOS (and pads
    with it), and the tokenizer config names a class every transformers version has."""
    _, dest = exported
    hf_tok, hf_model = hf
    gen = json.loads((dest / "generation_config.json").read_text())
    eos = hf_tok.eos_token_id
    assert gen["eos_token_id"] == gen["bos_token_id"] == gen["pad_token_id"] == eos
    assert json.loads((dest / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    # make EOS the greedy choice at once: generation must stop after it, not run on
    from transformers import LogitsProcessor, LogitsProcessorList

    class PreferEos(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            scores[:, eos] = scores.max() + 10.0
            return scores

    out = hf_model.generate(torch.tensor([[5, 6]]), max_new_tokens=6, do_sample=False,
                            logits_processor=LogitsProcessorList([PreferEos()]))[0].tolist()
    assert out == [5, 6, eos]


# ---------------------------------------------------------------- a llama run (arch="llama")
@pytest.fixture(scope="module")
def exported_llama(tmp_path_factory):
    return train_and_export(tmp_path_factory, "llama", "--arch", "llama")


@pytest.fixture(scope="module")
def hf_llama(exported_llama):
    return load_auto(exported_llama[1])


@pytest.mark.slow
def test_a_llama_run_exports_as_llama_for_causal_lm_with_our_logits(exported_llama, hf_llama, capsys):
    from transformers import LlamaForCausalLM

    from course.pipeline import load_run

    run, dest = exported_llama
    tok, model = hf_llama
    assert isinstance(model, LlamaForCausalLM)
    saved = json.loads((run / "config.json").read_text())["model"]
    assert (saved["arch"], saved["pos"], saved["norm"], saved["mlp"]) == ("llama", "rope", "rmsnorm", "swiglu")
    hf_config = json.loads((dest / "config.json").read_text())
    assert hf_config["architectures"] == ["LlamaForCausalLM"] and hf_config["rope_theta"] == 10000.0
    ours_model, ours_tok, _ = load_run(run, "cpu")
    text = "the cat sat on the mat; 12 ünïcödé → ok"
    assert tok(text)["input_ids"] == ours_tok.encode(text)
    ids = torch.tensor([ours_tok.encode(text)])
    with torch.no_grad():
        torch.testing.assert_close(ours_model(ids)[0], model(ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_course_evaluate_of_a_llama_run_reports_the_perplexity_transformers_computes(
        exported_llama, hf_llama, tmp_path, capsys):
    run, _ = exported_llama
    tok, model = hf_llama
    block = json.loads((run / "config.json").read_text())["model"]["block_size"]
    text = text_in_one_context(tok, block)
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        theirs = math.exp(model(ids, labels=ids).loss.item())
    f = tmp_path / "one_context.txt"
    f.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--text", str(f), "--json", "--device", "cpu"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["tokens"] == ids.shape[1] - 1
    assert abs(ours["perplexity"] - theirs) / theirs < 1e-3
    assert ours["perplexity"] < tok.vocab_size * 0.8, "the run must have learned something"


@pytest.mark.slow
def test_greedy_generate_of_the_exported_llama_equals_ours(exported_llama, hf_llama):
    from course.pipeline import load_run
    from course.sample import generate

    run, _ = exported_llama
    hf_tok, hf_model = hf_llama
    model, tok, _ = load_run(run, "cpu")
    prompt = torch.tensor([tok.encode("abc ab")])
    ours = generate(model, prompt, 20, greedy=True)[0].tolist()
    theirs = hf_model.generate(prompt, max_new_tokens=20, do_sample=False,
                               pad_token_id=hf_tok.eos_token_id, eos_token_id=None)[0].tolist()
    assert ours == theirs and len(ours) == prompt.shape[1] + 20
