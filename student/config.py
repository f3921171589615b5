"""`DistillConfig`: everything `leader distill` needs, resolved and saved in the student folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from leader.errors import LeaderError
from leader.limits import MAX_NOTE_TOKENS, MIN_PATIENTS


@dataclass
class DistillConfig:
    """Resolved settings of one distillation run (the CLI flags of `leader distill`)."""

    data: str
    """Prepared dataset folder (`leader data ...`)."""
    out: str
    """Output student folder; must not exist unless --resume or --overwrite."""
    teacher: str | None = None
    """Teacher run folder (`leader teach`); its split is used and its feature cache read (built if missing)."""
    prior: str | None = None
    """A logistic baseline run (`leader baseline --method logistic --history previous`, same data
    and split) whose logits the student adds to its own, frozen (`leader.student.prior`): the
    student starts as that baseline and learns what it gets wrong."""
    no_teacher: bool = False
    """Train the same student on BCE alone (the ablation); --teacher then only supplies the split."""
    alpha: float = 0.4
    """Weight of the feature-KD loss MSE(proj(mediator), teacher_hidden) (LEADER)."""
    beta: float = 0.0
    """Weight of the profile-alignment InfoNCE loss (LEADER used 0.005; off by default: on the synthetic cohort it never beat KD alone, RESULTS.md)."""
    tau: float = 1.0
    """InfoNCE temperature."""
    gamma: float = 0.0
    """Weight of logit-level KD: BCE between the student's logits and the teacher's probabilities (from its feature cache; a teacher with --prior includes the baseline's logits)."""
    kd_layer: str = "mediator"
    """Student layer feature KD reads: mediator (LEADER) or patient (the visit encoder's output)."""
    kd_proj: str = "linear"
    """KD projection into the teacher's space: linear (LEADER) or mlp."""
    kd_standardize: bool = True
    """Standardise the teacher's hidden states per dimension (train-split mean/std) before the MSE."""
    epochs: int = 60
    """Maximum number of epochs."""
    patience: int = 8
    """Stop after this many epochs without a better validation PR-AUC."""
    batch_size: int = 64
    """Samples per optimisation step."""
    lr: float = 5e-4
    """Adam learning rate (5e-4 and weight decay 1e-4 had the best validation PR-AUC on the synthetic cohort)."""
    weight_decay: float = 1e-4
    """Adam L2 weight decay."""
    seed: int = 0
    """Seed of initialisation, shuffling and dropout."""
    split: str | None = None
    """random | temporal | site | external; None = the teacher's split (random without a teacher)."""
    split_seed: int | None = None
    """Seed of a random split; None = the teacher's (0 without a teacher)."""
    target: str | None = None
    """all (one sample per visit) | last; None = the teacher's (all without a teacher)."""
    external_data: str | None = None
    """Test dataset of an external split."""
    per_med_threshold: bool = False
    """One decision threshold per medication instead of one global threshold."""
    dim: int = 64
    """Student embedding width d."""
    hidden: int = 128
    """Student mediator width."""
    heads: int = 4
    """Attention heads."""
    dropout: float = 0.1
    """Dropout."""
    max_visits: int = 8
    """Most recent visits kept per sample."""
    max_codes: int = 40
    """Codes kept per visit and type."""
    notes: bool | None = None
    """Read the current visit's admission note with a note encoder (bag of section:word tokens);
    neither flag = on when the training split has notes. run.json records the resolved value."""
    max_note_tokens: int = MAX_NOTE_TOKENS
    """Most note words read per visit (distinct section:word tokens of the note vocabulary, the
    allergy and admission-medication sections first, so a cut drops narrative words)."""
    min_patients: int = MIN_PATIENTS
    """A code, profile value or note word enters the vocabularies only when this many distinct
    training patients carry it (`leader.encoding.MIN_PATIENTS`); rarer ones read as unknown or
    ``FIELD=OTHER``, rare note words are left out."""
    threads: int = 1
    """torch CPU threads (0 = torch's default). The student's matrices are small: on the shared
    2-core machine a training step took 108 ms with one thread and 450 ms with two."""
    resume: bool = False
    """Continue from the resume checkpoint of an interrupted (or finished) run at --out."""
    overwrite: bool = False
    """Replace an existing --out folder."""
    name: str | None = None
    """Row label in result tables; None = from the losses used."""
    progress: bool = True
    """Show progress bars on stderr."""

    def __post_init__(self):
        for name in ("data", "out", "teacher", "prior", "external_data"):  # Paths from the CLI -> JSON-ready str
            if getattr(self, name) is not None:
                setattr(self, name, str(getattr(self, name)))
        if not self.no_teacher and self.alpha > 0 and not self.teacher:
            raise LeaderError("--alpha > 0 needs --teacher DIR (or pass --no-teacher, or --alpha 0)")
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--patience", self.patience),
            ("--min-patients", self.min_patients),
            ("--max-note-tokens", self.max_note_tokens),
        ):
            if value < 1:
                raise LeaderError(f"{flag} must be at least 1, got {value}")
        if not self.no_teacher and self.gamma > 0 and not self.teacher:
            raise LeaderError("--gamma > 0 needs --teacher DIR (or pass --no-teacher, or --gamma 0)")
        if self.lr <= 0 or self.tau <= 0:
            raise LeaderError("--lr and --tau must be positive")
        if self.alpha < 0 or self.beta < 0 or self.gamma < 0:
            raise LeaderError("--alpha, --beta and --gamma must be 0 or more")
        if self.dim % self.heads:
            raise LeaderError(f"--dim ({self.dim}) must be a multiple of --heads ({self.heads})")
        if self.kd_layer not in ("mediator", "patient"):
            raise LeaderError(f"--kd-layer must be mediator or patient, got '{self.kd_layer}'")
        if self.kd_proj not in ("linear", "mlp"):
            raise LeaderError(f"--kd-proj must be linear or mlp, got '{self.kd_proj}'")
        if self.resume and self.overwrite:
            raise LeaderError("--resume and --overwrite are exclusive")

    @property
    def use_kd(self) -> bool:
        return not self.no_teacher and self.alpha > 0

    @property
    def use_logit_kd(self) -> bool:
        return not self.no_teacher and self.gamma > 0

    @property
    def use_align(self) -> bool:
        return not self.no_teacher and self.beta > 0

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = (("KD", self.use_kd), ("logit KD", self.use_logit_kd), ("align", self.use_align))
        used = " + ".join(p for p, on in parts if on) or "no teacher"
        return f"student ({used})" + (" + baseline prior" if self.prior else "")

    def to_dict(self) -> dict:
        return asdict(self)
