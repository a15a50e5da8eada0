"""Hugging Face's Trainer on our packed blocks: the same settings, the same model, a close loss.

The data is a first-order Markov chain (`course.synthetic`) read one character at a time:
a tiny model learns it in a hundred steps, reliably, which leaves little room for seed
luck when the two loops are compared.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2LMHeadModel, get_scheduler

from course.errors import ConfigError
from course.evaluate import evaluate_nll
from course.export import from_hf_gpt2
from course.hf_trainer import (
    PAD_TOKEN,
    _record_maker,
    blocks_to_dataset,
    hf_gpt2_config,
    hf_training_arguments,
    lm_collator,
    train_with_hf_trainer,
)
from course.model import GPT, GPTConfig
from course.packing import pack_documents
from course.synthetic import synthetic_corpus
from course.tokenizer import train_tokenizer
from course.train import TrainConfig, lr_at, train
from course.widgets import LiveLossPlot

T = 32


@pytest.fixture(scope="module")
def data():
    corpus = synthetic_corpus(n_docs=60, doc_chars=1000, order=1, seed=0)
    tok = train_tokenizer("char", corpus.train)
    train_blocks = pack_documents(tok.encode_batch(corpus.train), T, tok.eos_id)
    val_blocks = pack_documents(tok.encode_batch(corpus.val), T, tok.eos_id)
    return tok, train_blocks, val_blocks


@pytest.fixture
def one_thread():
    """Two loops on a shared 2-core machine run faster (and repeatably) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=T, n_layer=1, n_head=2, n_embd=32)


# ------------------------------------------------------------------- config mapping


def test_gpt2_config_describes_our_architecture():
    config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.1)
    hf_config = hf_gpt2_config(config)
    assert (hf_config.n_layer, hf_config.n_head, hf_config.n_embd, hf_config.n_positions,
            hf_config.vocab_size) == (2, 2, 16, 16, 50)
    assert hf_config.activation_function == "gelu_new"
    assert hf_config.layer_norm_epsilon == 1e-5
    assert hf_config.resid_pdrop == hf_config.embd_pdrop == hf_config.attn_pdrop == 0.1
    assert hf_config.tie_word_embeddings
    hf = GPT2LMHeadModel(hf_config)
    assert hf.lm_head.weight is hf.transformer.wte.weight
    ours = GPT(config)
    assert sum(p.numel() for p in hf.parameters()) == ours.num_params(non_embedding=False)


def test_gpt2_config_refuses_a_model_without_biases():
    with pytest.raises(ConfigError, match="bias=True"):
        hf_gpt2_config(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8,
                                 bias=False))


def test_training_arguments_follow_the_train_config(tmp_path):
    cfg = TrainConfig(max_steps=77, batch_size=12, grad_accum=3, lr=2e-3, min_lr_ratio=0.2,
                      warmup_steps=7, weight_decay=0.05, betas=(0.8, 0.9), grad_clip=0.5,
                      eval_interval=11, seed=5, device="cpu")
    args = hf_training_arguments(cfg, tmp_path)
    assert (args.max_steps, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            args.per_device_eval_batch_size) == (77, 4, 3, 12)
    assert (args.learning_rate, args.warmup_steps, args.weight_decay) == (2e-3, 7, 0.05)
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (0.8, 0.9, 1e-8)
    assert str(args.lr_scheduler_type.value) == "cosine_with_min_lr"
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.2}
    assert args.max_grad_norm == 0.5
    assert args.optim.value == "adamw_torch" and args.use_cpu and not args.bf16
    assert args.seed == 5 and args.eval_steps == 11 and args.dataloader_drop_last
    assert args.report_to in ([], "none", ["none"])
    assert hf_training_arguments(TrainConfig(grad_clip=None, device="cpu"), tmp_path).max_grad_norm == 0.0
    fused = hf_training_arguments(TrainConfig(fused_adamw=True, device="cpu"), tmp_path)
    assert fused.optim.value == "adamw_torch_fused"  # as make_optimizer: the cpu preset asks for it


@pytest.mark.parametrize("changes, match", [
    (dict(batch_size=10, grad_accum=3), "divisible by grad_accum"),
    (dict(doc_mask=True), "doc_mask"),
    (dict(dtype="bfloat16"), "CUDA"),
])
def test_training_arguments_refuse_what_the_trainer_cannot_do(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        hf_training_arguments(TrainConfig(device="cpu", **changes), tmp_path)


def test_hf_schedule_is_ours_one_step_late_during_warmup_and_equal_after():
    """`cosine_with_min_lr` warms up from 0 (ours from lr/warmup); the cosines agree."""
    lr, warmup, max_steps, ratio = 1e-3, 10, 60, 0.1
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = get_scheduler("cosine_with_min_lr", opt, num_warmup_steps=warmup,
                          num_training_steps=max_steps, scheduler_specific_kwargs={"min_lr_rate": ratio})
    hf = []
    for _ in range(max_steps):
        hf.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr_at(s, lr=lr, warmup_steps=warmup, max_steps=max_steps, min_lr_ratio=ratio)
            for s in range(max_steps)]
    assert hf[0] == 0.0
    assert hf[1:warmup] == pytest.approx(ours[: warmup - 1], rel=1e-12)
    assert hf[warmup:] == pytest.approx(ours[warmup:], rel=1e-12)


def test_records_carry_the_learning_rate_the_step_used():
    """Transformers 4.45 logs the learning rate after the scheduler has stepped (the next
    step's rate); the records take the rate from the optimizer at the optimizer step."""
    from types import SimpleNamespace

    cfg = TrainConfig(max_steps=10, batch_size=4, eval_interval=5, device="cpu")
    records = []
    callback = _record_maker(cfg, T, records.append)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    state = SimpleNamespace(global_step=0)
    for step, (used, next_lr) in enumerate([(0.0, 1e-3), (1e-3, 2e-3)], start=1):
        opt.param_groups[0]["lr"] = used
        callback.on_optimizer_step(None, state, None, optimizer=opt)
        opt.param_groups[0]["lr"] = next_lr  # the scheduler steps before the log
        state.global_step = step
        callback.on_log(None, state, None, logs={"loss": 2.0, "learning_rate": next_lr, "grad_norm": 1.0})
    assert [(r["step"], r["lr"]) for r in records] == [(1, 0.0), (2, 1e-3)]


# ----------------------------------------------------------------- dataset, collator


def test_collator_labels_are_the_input_ids_and_eos_keeps_its_loss(data):
    tok, train_blocks, _ = data
    ds = blocks_to_dataset(train_blocks)
    assert ds.column_names == ["input_ids"]
    rows = [ds[i] for i in range(len(ds)) if tok.eos_id in ds[i]["input_ids"]][:4]
    assert rows, "the test data should contain document ends"
    batch = lm_collator(tok)(rows)
    assert batch["input_ids"].shape == (len(rows), T)
    assert torch.equal(batch["labels"], batch["input_ids"])  # no -100 anywhere, EOS included
    assert torch.equal(batch["input_ids"], torch.tensor([r["input_ids"] for r in rows]))


def test_collator_adds_its_own_pad_token_without_touching_the_tokenizer(data):
    tok, _, _ = data
    hf = tok.to_hf()
    assert hf.pad_token is None
    collator = lm_collator(hf)
    assert collator.tokenizer.pad_token == PAD_TOKEN
    assert collator.tokenizer.pad_token_id >= tok.vocab_size  # never a real token
    assert hf.pad_token is None


def test_pad_token_equal_to_eos_is_refused(data):
    tok, _, _ = data
    hf = tok.to_hf()
    hf.pad_token = hf.eos_token  # the usual recipe, which masks every EOS label
    with pytest.raises(ConfigError, match="never learn to end a document"):
        lm_collator(hf)


def test_padded_blocks_are_refused(data):
    tok, _, _ = data
    padded = pack_documents([tok.encode("abc abc")] * 3, T, tok.eos_id, tail="pad")
    with pytest.raises(ConfigError, match="tail='drop'"):
        blocks_to_dataset(padded)
    with pytest.raises(ConfigError, match="tail='drop'"):
        blocks_to_dataset(padded.to_dataset())


def test_a_dataset_from_pack_with_datasets_is_accepted(data):
    import datasets

    from course.packing import pack_with_datasets

    tok, train_blocks, _ = data
    docs = datasets.Dataset.from_dict({"input_ids": [tok.encode("ab ba " * 20)] * 5})
    ds = blocks_to_dataset(pack_with_datasets(docs, T, tok.eos_id))
    assert ds.column_names == ["input_ids"] and len(ds) == (5 * 121) // T


# ------------------------------------------------------------------ the two loops


def test_trainer_reaches_the_loss_of_our_loop(data, tmp_path, one_thread):
    tok, train_blocks, val_blocks = data
    config = tiny_config(tok.vocab_size)
    cfg = TrainConfig(max_steps=100, batch_size=16, lr=1e-2, warmup_steps=10, eval_interval=50,
                      eval_batches=4, device="cpu", seed=0)
    torch.manual_seed(0)
    ours = train(GPT(config), train_blocks, val_blocks, cfg, progress=False)
    plot = LiveLossPlot()
    theirs = train_with_hf_trainer(train_blocks, val_blocks, config, cfg, tmp_path, tokenizer=tok,
                                   callback=plot)

    uniform = math.log(tok.vocab_size)
    assert ours.final_val_loss < 0.6 * uniform
    assert theirs.final_val_loss < 0.6 * uniform
    assert abs(theirs.final_val_loss - ours.final_val_loss) < 0.05 * ours.final_val_loss

    # The history speaks our format: one record per step, val_loss at the evaluations.
    assert [r["step"] for r in theirs.history] == list(range(1, 101))
    assert [r["step"] for r in theirs.history if "val_loss" in r] == [50, 100]
    assert {"train_loss", "lr", "grad_norm", "tokens"} <= set(theirs.history[-1])
    assert theirs.history[-1]["tokens"] == ours.history[-1]["tokens"] == 100 * 16 * T
    assert theirs.history[0]["lr"] == 0.0  # Hugging Face's warmup starts at 0
    assert [r["lr"] for r in theirs.history[10:]] == pytest.approx(
        [r["lr"] for r in ours.history[10:]], rel=1e-9)
    assert plot.records == theirs.history

    # The Trainer's eval_loss is the true mean NLL (the loss_type fix): evaluate its model
    # with our evaluator on the same blocks.
    n = cfg.eval_batches * cfg.batch_size
    again = evaluate_nll(from_hf_gpt2(theirs.model), val_blocks.input_ids[:n], val_blocks.labels[:n])
    assert again.mean_nll == pytest.approx(theirs.final_val_loss, rel=1e-5)


def test_same_initial_weights_give_the_same_losses(data, tmp_path, one_thread):
    """With the same start, the same schedule (no warmup) and the same batches, the Trainer
    reproduces our loop step for step: every mapped setting (AdamW's betas and decay groups,
    clipping, the cosine, the loss) agrees.

    The batches agree because both draw the first epoch's order as torch.randperm from a
    generator seeded with the seed (0); if a transformers release changes its sampler,
    this test fails on the losses, not on the settings."""
    tok, train_blocks, val_blocks = data
    config = tiny_config(tok.vocab_size)
    cfg = TrainConfig(max_steps=30, batch_size=16, lr=1e-2, warmup_steps=0, eval_interval=30,
                      eval_batches=2, grad_clip=0.5, device="cpu", seed=0)
    assert cfg.max_steps * cfg.batch_size <= len(train_blocks)  # within the first epoch
    torch.manual_seed(1)
    start = GPT(config)
    theirs = train_with_hf_trainer(train_blocks, val_blocks, config, cfg, tmp_path, tokenizer=tok,
                                   init_from=start)
    ours = train(start, train_blocks, val_blocks, cfg, progress=False)
    assert [r["train_loss"] for r in theirs.history] == pytest.approx(
        [r["train_loss"] for r in ours.history], abs=1e-4)
    assert theirs.final_val_loss == pytest.approx(ours.final_val_loss, abs=1e-4)


def test_init_from_must_match_the_config(data, tmp_path):
    tok, train_blocks, val_blocks = data
    other = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=2, n_head=2, n_embd=32))
    with pytest.raises(ConfigError, match="same architecture"):
        train_with_hf_trainer(train_blocks, val_blocks, tiny_config(tok.vocab_size),
                              TrainConfig(max_steps=1, batch_size=4, device="cpu"), tmp_path,
                              tokenizer=tok, init_from=other)
