"""The fast path of training: what CUDA runs (bf16 autocast, torch.compile, fused AdamW,
flash attention, data and batch order on the device).

Most of it is proven here on CPU, where CI runs: the compiled forward is one graph with no
read-backs, compiled and bf16 training match eager float32, token ids are checked once up
front. The tests marked `gpu` run the real thing and skip cleanly without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from course.checkpoint import CHECKPOINT_NAME, load_checkpoint
from course.errors import ConfigError
from course.model import GPT, GPTConfig
from course.train import BatchOrder, TrainConfig, batch_indices, make_optimizer, train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_model(dropout: float = 0.0, **arch) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout,
                         **arch))


# the modern block, grouped-query attention included (2 query heads share 1 key/value head)
LLAMA = dict(arch="llama", n_kv_head=1)


def counting_blocks(n: int = 64, T: int = 16) -> torch.Tensor:
    """Learnable data: each row counts up modulo 17 from a random start."""
    start = torch.randint(0, 17, (n, 1), generator=torch.Generator().manual_seed(0))
    return (start + torch.arange(T)) % 17


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=6, batch_size=8, lr=3e-3, warmup_steps=2, eval_interval=100,
                device="cpu", seed=1)
    return TrainConfig(**{**base, **kw})


def losses(result) -> list[float]:
    return [r["train_loss"] for r in result.history]


# ---------------------------------------------------------------- no read-backs in a step
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("packed", [False, True], ids=["causal", "doc_ids"])
def test_the_training_forward_compiles_to_one_graph(packed, arch):
    """A graph break is a place where the GPU's work stops while Python reads a value back
    (an input check did this at every step once). The forward with labels, plain or with
    packed-document ids, must trace as one graph, for both architectures."""
    model = tiny_model(dropout=0.1, **(LLAMA if arch == "llama" else {})).train()
    x = counting_blocks(4)
    kw = {}
    if packed:
        doc_ids = torch.zeros_like(x)
        doc_ids[:, 9:] = 1
        kw["doc_ids"] = doc_ids
    torch._dynamo.reset()
    try:
        report = torch._dynamo.explain(model)(x, x, **kw)
    finally:
        torch._dynamo.reset()
    assert report.graph_break_count == 0, [r.reason for r in report.break_reasons]
    assert report.graph_count == 1


def test_the_llama_forward_uses_sdpa_with_grouped_heads(monkeypatch):
    """The modern block stays on the fused kernel: one SDPA call per layer, with the
    key/value heads shared by the kernel itself (`enable_gqa`), not copied first."""
    import torch.nn.functional as F

    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((q.shape[1], k.shape[1], kw.get("enable_gqa", False), kw.get("is_causal")))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    x = counting_blocks(2)
    tiny_model(**LLAMA)(x, x)
    assert calls == [(2, 1, True, True)] * 2


@pytest.mark.slow
def test_compiled_llama_training_matches_eager():
    """torch.compile of the modern block (RoPE, RMSNorm, SwiGLU, GQA) gives eager's losses."""
    eager = train(tiny_model(**LLAMA), counting_blocks(), None, cfg(max_steps=6), progress=False)
    compiled = train(tiny_model(**LLAMA), counting_blocks(), None, cfg(max_steps=6, compile=True),
                     progress=False)
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-4)


def test_the_eager_forward_still_rejects_bad_ids_with_a_clear_error():
    model = tiny_model()
    with pytest.raises(ConfigError, match="token id 17, outside the vocabulary"):
        model(torch.tensor([[1, 17]]))
    with pytest.raises(ConfigError, match="labels contain 99"):
        model(torch.tensor([[1, 2]]), torch.tensor([[1, 99]]))


@pytest.mark.parametrize("bad", ["ids", "labels"])
def test_train_checks_every_token_id_once_before_the_first_step(bad, tmp_path):
    """The compiled step does not look at values, so `train` checks the whole dataset
    first: a bad id anywhere (here in the last block) is a clear error, and nothing is
    trained or written."""
    from course.packing import PackedBlocks

    x = counting_blocks()
    y = x.clone()
    (x if bad == "ids" else y)[-1, -1] = 40
    blocks = PackedBlocks(input_ids=x, labels=y, doc_ids=torch.zeros_like(x), block_size=16)
    message = "token id 40, outside the vocabulary" if bad == "ids" else "labels contain 40"
    with pytest.raises(ConfigError, match=message):
        train(tiny_model(), blocks, None, cfg(compile=True), out_dir=tmp_path, progress=False)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


# ---------------------------------------------------------------- batch order
def test_batch_order_gives_the_batch_of_any_step_in_any_order():
    """Walking the steps (as training does), jumping (as resume does) and asking afresh
    (`batch_indices`) give the same batches."""
    n, b, seed = 23, 4, 7  # 5 batches per epoch; 3 blocks left out of each epoch
    order = BatchOrder(n, b, seed)
    walked = [order(s).clone() for s in range(17)]
    for s in [12, 3, 16, 0, 5, 5, 11]:
        assert torch.equal(order(s), walked[s])
        assert torch.equal(batch_indices(s, n, b, seed), walked[s])
    epoch1 = torch.cat(walked[5:10])
    assert len(set(epoch1.tolist())) == 20 and int(epoch1.max()) < n


# ---------------------------------------------------------------- the CUDA recipe, on CPU
def test_bf16_autocast_training_tracks_float32_and_keeps_float32_weights(tmp_path):
    """Autocast runs the matrix products in bfloat16, not the weights or AdamW's moments:
    those stay float32 (so do the checkpoint's), and the losses follow float32's."""
    ref = train(tiny_model(), counting_blocks(), None, cfg(dtype="float32"), progress=False)
    model = tiny_model()
    res = train(model, counting_blocks(), None, cfg(dtype="bfloat16"), out_dir=tmp_path, progress=False)
    assert losses(res) == pytest.approx(losses(ref), abs=0.03)
    assert losses(res) != losses(ref)  # bf16 really was used
    assert all(p.dtype == torch.float32 for p in model.parameters())
    fresh = tiny_model()
    optimizer = make_optimizer(fresh, cfg(), torch.device("cpu"))
    load_checkpoint(tmp_path / CHECKPOINT_NAME, fresh, optimizer)
    moments = [t for state in optimizer.state.values() for t in state.values() if t.dim() > 0]
    assert moments and all(t.dtype == torch.float32 for t in moments)


@pytest.mark.slow
def test_compiled_training_matches_eager_and_resumes_exactly(tmp_path):
    """torch.compile (inductor, as on CUDA) gives eager's losses, and an interrupted
    compiled run with dropout resumes to the losses of an uninterrupted one (inductor
    draws dropout's masks its own way, so those are compared compiled to compiled).
    About 40 s on 2 cores, most of it compiling."""
    eager = train(tiny_model(), counting_blocks(), None, cfg(max_steps=8), progress=False)
    c = cfg(max_steps=8, compile=True)
    compiled = train(tiny_model(), counting_blocks(), None, c, progress=False)
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-4)
    whole = train(tiny_model(0.1), counting_blocks(), None, c, progress=False)
    train(tiny_model(0.1), counting_blocks(), None, c, out_dir=tmp_path, stop_after=5, progress=False)
    resumed = train(tiny_model(0.1), counting_blocks(), None, c, out_dir=tmp_path, resume=True, progress=False)
    assert losses(resumed) == pytest.approx(losses(whole), rel=1e-4)


# ---------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@needs_cuda
def test_cuda_training_uses_the_fast_recipe_and_learns():
    """Defaults on CUDA: bf16 autocast, compile and fused AdamW; the losses follow the CPU
    float32 run's (bf16 and different kernels: loosely) and fall."""
    from course.train import autocast_dtype, make_optimizer, resolve_device

    device = resolve_device("cuda")
    c = cfg(device="cuda", max_steps=30, log_interval=1)
    assert autocast_dtype(c, device) == torch.bfloat16
    assert make_optimizer(tiny_model(), c, device).defaults["fused"] is True
    ref = train(tiny_model(), counting_blocks(), None, cfg(max_steps=30), progress=False)
    res = train(tiny_model(), counting_blocks(), None, c, progress=False)
    assert losses(res) == pytest.approx(losses(ref), abs=0.1)
    assert losses(res)[-1] < 0.5 * losses(res)[0]


@pytest.mark.gpu
@needs_cuda
def test_cuda_llama_training_learns_with_the_fast_recipe():
    """The modern block on CUDA (bf16 autocast, compile, fused AdamW) follows the CPU
    float32 run's losses (loosely) and learns."""
    c = cfg(device="cuda", max_steps=30, log_interval=1)
    ref = train(tiny_model(**LLAMA), counting_blocks(), None, cfg(max_steps=30), progress=False)
    res = train(tiny_model(**LLAMA), counting_blocks(), None, c, progress=False)
    assert losses(res) == pytest.approx(losses(ref), abs=0.1)
    assert losses(res)[-1] < 0.5 * losses(res)[0]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_the_llama_forward_runs_on_the_flash_attention_kernel(n_kv_head):
    """RoPE'd q and k, grouped key/value heads: still the flash kernel, same logits as the
    manual attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=2, n_head=4, n_embd=256,
                          arch="llama", n_kv_head=n_kv_head)).cuda().eval()
    x = torch.randint(0, 65, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash, _ = model(x)
        model.set_attn_impl("manual")
        manual, _ = model(x)
    assert torch.allclose(flash.float(), manual.float(), atol=5e-2, rtol=0)


@pytest.mark.gpu
@needs_cuda
def test_the_causal_forward_runs_on_the_flash_attention_kernel():
    """With no explicit mask the model calls SDPA with is_causal=True, which the flash
    kernel accepts: forcing that kernel (an error if it cannot be used) gives the same
    logits as the manual attention of the lessons."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=2, n_head=4, n_embd=256)).cuda().eval()
    x = torch.randint(0, 65, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash, _ = model(x)
        model.set_attn_impl("manual")
        manual, _ = model(x)
    assert torch.allclose(flash.float(), manual.float(), atol=5e-2, rtol=0)
