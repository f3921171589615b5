"""`leader teach` options: one dataclass, saved resolved in the run folder (config.json while training, run.json after)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from leader.errors import LeaderError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
POOLINGS = ("last", "mean")
# options that may differ when a run is resumed: they do not change what is computed (the
# dataset itself is checked by its sha256, whatever path names it)
RESUMABLE = (
    "resume",
    "max_minutes",
    "progress",
    "eval_batch_size",
    "threads",
    "data",
    "out",
    "external_data",
    "cache_features",
    "refit_head",
    "checkpointing",
    "compile",
)


@dataclass
class TeachConfig:
    """Options of `leader teach` (defaults fit a 2,000-patient cohort in ~20 minutes on 2 CPU cores)."""

    data: Path
    """Prepared dataset folder (made by `leader data ...`)."""
    out: Path
    """Output run folder; must not exist unless --resume."""
    base_model: str = "smollm2-135m"
    """A Hugging Face model folder, a .gguf file, or smollm2-135m (the embedded SmolLM2-135M-Instruct)."""
    quantize: str | None = None
    """None, 4bit (NF4 QLoRA) or 8bit, through bitsandbytes."""
    precision: str = "auto"
    """auto (bf16 where the CPU/GPU supports it, else fp32), fp32, bf16 or fp16 (GPU only)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input. Off by default, as every teacher of RESULTS.md and the demo was
    trained (about one epoch, little for dropout to regularise); its masks cost 43% of a training
    step's speed on 2 cores (658 against 374 tokens/s, BENCHMARKS.md)."""
    target_modules: tuple[str, ...] = PROJECTIONS
    """Module names that get LoRA adapters (default: every attention and MLP projection)."""
    pooling: str = "last"
    """The medication head reads the last non-pad token (last, as LEADER) or the mean of all non-pad tokens (mean)."""
    max_tokens: int = 192
    """Token budget per prompt: the oldest history goes first, then the note is shortened."""
    max_history: int = 3
    """Earlier visits shown in a prompt at most."""
    notes: bool = True
    """Include the admission note sections when present."""
    prior: Path | None = None
    """A logistic baseline run (`leader baseline --method logistic` on the same --data and split) whose logits are added to the head's: the head starts at zero, so the untrained teacher is that baseline and training learns what the baseline gets wrong."""
    split: str = "random"
    """random (by patient 8:1:1), temporal, site (held-out hospitals) or external."""
    seed: int = 0
    """Seed of the split, the batch order, dropout and initialisation."""
    target: str = "all"
    """all (one sample per visit) or last (each patient's last visit)."""
    external_data: Path | None = None
    """With --split external: the prepared dataset to test on."""
    epochs: float = 1.0
    """Passes over the training split (ignored when --max-steps is given)."""
    max_steps: int | None = None
    """Optimizer steps to run; overrides --epochs."""
    batch_size: int = 8
    """Samples per micro-batch and process."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate of the LoRA weights (AdamW)."""
    head_lr: float = 2e-3
    """Peak learning rate of the medication head (its weights face standardised inputs and start from a probe, or from zero)."""
    weight_decay: float = 0.0
    """AdamW weight decay of the LoRA weights and the head."""
    warmup: float = 0.05
    """Share of the steps spent warming the learning rate up linearly (then linear decay to 0)."""
    calibration_samples: int = 512
    """Training samples run once before training: their pooled states set the statistics that standardise the head's input, and a linear probe on them gives the head its starting weights (0: no calibration, the head starts at zero)."""
    eval_samples: int = 200
    """Validation samples scored at each evaluation during training (0: all); a fixed random subset, because on a CPU a full validation pass costs as much as many training steps. The final threshold and metrics always use the whole split."""
    eval_every: int = 0
    """Evaluate on validation every this many steps (0: three times per run)."""
    patience: int = 3
    """Stop after this many evaluations without a better validation PR-AUC."""
    max_minutes: float | None = None
    """Time budget of the training loop (steps and validations; loading and the final scoring come on top): after a few timed steps the schedule is shrunk to fit it, and after each validation it is fitted again at the speed measured so far, so the learning rate reaches 0 near the end of the budget."""
    eval_batch_size: int = 16
    """Samples per batch when evaluating."""
    threads: int = 0
    """CPU threads for torch (0: torch's default, every core; fewer helps on a busy machine)."""
    checkpointing: bool = False
    """Keep only each layer's input and recompute the layer in the backward pass: SmolLM2-135M at 8 x 256 tokens peaks at 1.9 GB instead of 3.3 GB, for about a third more compute. Always on when one prompt can be over 1,024 tokens."""
    compile: bool = True
    """Compile each transformer block with torch.compile (fused kernels around the products; about 30 s the first time, then torch's on-disk cache): SmolLM2-135M trains 1.29x faster on 2 CPU cores (BENCHMARKS.md). Needs a C++ compiler on a CPU (off, with a note, without one); not with --quantize or activation checkpointing."""
    cache_features: bool = True
    """When training ends, also write the feature cache of every split (what `leader distill` reads, as `leader teach features` would) and score validation and test from it instead of a second pass (not with --split external or several processes)."""
    refit_head: bool = True
    """When training ends, refit the medication head on the cached states of the training split (L-BFGS, L2 chosen on validation) and keep it if its validation PR-AUC beats the trained head's (needs --cache-features)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""
    progress: bool = True
    """Show progress bars on stderr."""

    def __post_init__(self):
        self.data = Path(self.data)
        self.out = Path(self.out)
        self.target_modules = tuple(self.target_modules)
        if self.external_data is not None:
            self.external_data = Path(self.external_data)
        if self.prior is not None:
            self.prior = Path(self.prior)
        checks = [
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.quantize in (None, "4bit", "8bit"), "--quantize must be 4bit or 8bit"),
            (self.lora_r > 0 and self.lora_alpha > 0, "--lora-r and --lora-alpha must be positive"),
            (0.0 <= self.lora_dropout < 1.0, "--lora-dropout must be in [0, 1)"),
            (self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}"),
            (bool(self.target_modules), "--target-modules needs at least one module name"),
            (self.max_tokens >= 16, "--max-tokens must be at least 16"),
            (self.max_history >= 0, "--max-history must be 0 or more"),
            (self.epochs > 0, "--epochs must be positive"),
            (self.max_steps is None or self.max_steps > 0, "--max-steps must be positive"),
            (self.batch_size > 0 and self.eval_batch_size > 0, "--batch-size must be positive"),
            (self.threads >= 0, "--threads must be 0 (all cores) or positive"),
            (self.grad_accum > 0, "--grad-accum must be positive"),
            (self.lr > 0 and self.head_lr > 0, "--lr and --head-lr must be positive"),
            (0.0 <= self.warmup < 1.0, "--warmup is a share of the steps in [0, 1)"),
            (self.eval_every >= 0, "--eval-every must be 0 (auto) or positive"),
            (self.eval_samples >= 0, "--eval-samples must be 0 (all) or positive"),
            (self.calibration_samples >= 0, "--calibration-samples must be 0 (none) or positive"),
            (self.patience > 0, "--patience must be positive"),
            (self.max_minutes is None or self.max_minutes > 0, "--max-minutes must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise LeaderError(message)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, record: dict) -> TeachConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    def differences(self, other: TeachConfig) -> list[str]:
        """Option names whose values differ and matter for resuming."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if k not in RESUMABLE and mine[k] != theirs.get(k)]


@dataclass
class FeaturesConfig:
    """Options of `leader teach features`: cache a teacher's features of every sample of a dataset."""

    teacher: Path
    """Teacher run folder (made by `leader teach`)."""
    data: Path
    """Prepared dataset whose samples get features (every split)."""
    batch_size: int = 16
    """Samples per forward pass."""
    progress: bool = True
    """Show a progress bar on stderr."""
    threads: int = 0
    """CPU threads for torch (0: every core)."""
    compile: bool = True
    """Run the teacher's transformer blocks compiled with torch.compile (as `leader teach --compile`); needs a C++ compiler on a CPU."""

    def __post_init__(self):
        self.teacher, self.data = Path(self.teacher), Path(self.data)
        if self.batch_size <= 0 or self.threads < 0:
            raise LeaderError("--batch-size must be positive and --threads 0 or more")


@dataclass
class RefitConfig:
    """Options of `leader teach refit`: refit a trained teacher's head on its cached states."""

    teacher: Path
    """Teacher run folder (made by `leader teach`)."""
    data: Path | None = None
    """Prepared dataset the teacher was trained on (default: the one its run.json names)."""
    batch_size: int = 16
    """Samples per forward pass, when the feature cache has to be computed first."""
    progress: bool = True
    """Show a progress bar on stderr."""
    threads: int = 0
    """CPU threads for torch (0: every core)."""

    def __post_init__(self):
        self.teacher = Path(self.teacher)
        self.data = Path(self.data) if self.data is not None else None
        if self.batch_size <= 0 or self.threads < 0:
            raise LeaderError("--batch-size must be positive and --threads 0 or more")
