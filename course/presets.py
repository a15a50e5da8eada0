"""Named run sizes: `tiny`, `cpu` and `gpu`.

A preset fixes everything that decides how long a run takes and how good it gets: the
model shape, the context, the batch, the schedule and the tokenizer's vocabulary. The
benchmarks in `bench/` measure exactly these presets, so a learner who types
`course run --preset cpu` gets the numbers recorded in `bench/RESULTS.md`.

* `tiny`: a smoke-sized run, about a minute on 2 CPU cores, tokenizer training included.
* `cpu`: the best model 3 minutes of a 2-core CPU can train (no dropout: at this budget
  the model underfits, so regularisation only costs quality).
* `gpu`: Tiny-Shakespeare-char scale, about 10M parameters and a context of 256.

Each preset also carries its architecture (`arch`, "gpt2" or "llama", and `n_kv_head`
for grouped-query attention), which `course run --arch` overrides. `cpu` and `tiny` are
llamas: in the equal-wall-time ablation (`python bench/ablation.py`, shipped as
course/resources/ablation_cpu.json) the modern block beat GPT-2's by 0.09 nats/char in
180 s on 2 cores, and at `tiny`'s size by 0.11 nats/token in the same time (bench/RESULTS.md).
`gpu` stays GPT-2 until a measurement on a GPU says otherwise (none has been made yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from course.errors import ConfigError

# The keys of course.model.ARCHS (tested equal), here without importing torch: the CLI's
# parser is built from this module.
ARCH_NAMES = ("gpt2", "llama")


@dataclass(frozen=True)
class Preset:
    """Model shape plus training schedule for one named size."""

    name: str
    # model
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    dropout: float
    # vocabulary size for the BPE tokenizers (a character tokenizer ignores it: its
    # vocabulary is the corpus's character set)
    bpe_vocab_size: int
    # training
    batch_size: int
    max_steps: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's moment decay rates
    grad_clip: float = 1.0
    grad_accum: int = 1
    eval_interval: int = 100
    eval_batches: int = 8
    # data: cap on corpus characters (None = all); keeps `tiny` quick on any corpus
    max_chars: int | None = None
    # architecture (course.model.ARCHS) and key/value heads (None = n_head, no grouping)
    arch: str = "gpt2"
    n_kv_head: int | None = None
    # AdamW's fused kernel (TrainConfig.fused_adamw; None: on CUDA only)
    fused_adamw: bool | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.arch not in ARCH_NAMES:
            raise ConfigError(f"unknown architecture {self.arch!r} for preset {self.name!r}: choose one of "
                              f"{', '.join(ARCH_NAMES)} (e.g. `course run --arch llama`)")

    def with_overrides(self, **changes: object) -> Preset:
        """A copy with some fields replaced (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown preset field(s) {sorted(unknown)}")
        return replace(self, **changes)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        n_layer=2, n_head=4, n_embd=128, block_size=64, dropout=0.0,
        bpe_vocab_size=512,
        batch_size=32, max_steps=250, lr=3e-3, warmup_steps=25,
        eval_interval=100, eval_batches=8,
        max_chars=600_000, arch="llama",
        # The modern block, measured on the default corpus (BPE 512, 3 seeds, bench/RESULTS.md):
        # a step costs about 20 to 30 % more than GPT-2's at this size, so `tiny` makes 250
        # steps where its GPT-2 version made 300, in the same time, and reaches 3.48
        # nats/token where that reached 3.59 (given 400 steps, GPT-2 reaches 3.46 but takes
        # as long as 300 llama steps, which reach 3.35).
        description="smoke-sized: about a minute on 2 CPU cores",
    ),
    "cpu": Preset(
        name="cpu",
        # Found by sweeping on Tiny Shakespeare (char), validation loss after a fixed number
        # of steps: many small steps beat few large ones (context 64 / batch 16 beats
        # context 128 / batch 32 by ~0.2 nats at the same token budget, and batch 12 with
        # proportionally more steps); at 2000 steps lr 4e-3 with AdamW's beta2 = 0.99 (1.708)
        # beats lr 3e-3, 5e-3, beta2 = 0.95 (1.724), no weight decay or a cosine to 0.
        # Then the modern block (RMSNorm, RoPE, SwiGLU, no biases): at equal wall time it
        # reached 1.6645 where GPT-2's reached 1.7537 (course/resources/ablation_cpu.json),
        # with the same schedule; grouped-query attention (2 key/value heads) cost 0.025.
        # Then, for the llama at 1750 steps (bench/RESULTS.md): lr 3e-3 beats 4e-3 by 0.006
        # (one seed), and 8 heads of 16 beat 4 of 32 by 0.011 (mean of two seeds) for 3 %
        # more time per step; batch 12 with as many more steps as fit the same time, or
        # untied embeddings, do not pay. AdamW's fused kernel makes a step 4 to 9 % faster.
        # 1750 steps fit 180 s of training on the slowest 2-core machine measured (2026-12-02
        # afternoon: 0.103 s per step for this block with 4 heads, unfused); an AVX-512 AMD
        # EPYC ran them in 134 s (1.638 nats/char).
        n_layer=4, n_head=8, n_embd=128, block_size=64, dropout=0.0,
        bpe_vocab_size=1024,
        batch_size=16, max_steps=1750, lr=3e-3, warmup_steps=100, min_lr_ratio=0.05,
        betas=(0.9, 0.99),
        eval_interval=250, eval_batches=16, arch="llama", fused_adamw=True,
        description="the best model about 3 minutes of a 2-core CPU can train",
    ),
    "gpu": Preset(
        name="gpu",
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2,
        bpe_vocab_size=2048,
        batch_size=64, max_steps=5000, lr=1e-3, warmup_steps=100,
        min_lr_ratio=0.1, eval_interval=250, eval_batches=20,
        description="Tiny-Shakespeare-char scale: ~10M parameters, context 256",
    ),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with an error that lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}: choose one of {', '.join(PRESETS)} "
            "(e.g. `course run --preset tiny`)"
        ) from None


def default_preset_name(device: object = None) -> str:
    """`gpu` when training on CUDA, `tiny` otherwise. `device` (a torch.device or a name)
    is where the run will train; None means wherever CUDA is present."""
    import torch

    if device is None:
        return "gpu" if torch.cuda.is_available() else "tiny"
    return "gpu" if torch.device(device).type == "cuda" else "tiny"
