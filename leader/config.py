"""The configs of the stages whose code sits in leader/: `leader baseline`, `evaluate`, `results`,
`report` and `demo` (one dataclass each, a docstring under every field).

They live apart from their stages so the CLI can read their defaults and help
(`leader.cli.options`) without importing the stages: this module imports only the standard
library, `leader.errors` and `leader.limits`. Each stage module
re-exports its config (`leader.baseline.BaselineConfig`, `leader.report.ReportConfig`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leader.errors import LeaderError
from leader.limits import MIN_PATIENTS

METHODS = ("frequency", "logistic")
HISTORY = ("previous", "all", "auto")
RUN_KINDS = ("run", "teacher", "student", "baseline")
"""The ways `leader evaluate` names its run folder: ``--run`` (any kind, read from run.json) or its kind."""


@dataclass
class BaselineConfig:
    """`leader baseline` options."""

    data: Path
    """Prepared dataset folder (made by `leader data ...`)."""
    out: Path
    """Output run folder (must not exist unless overwrite)."""
    method: str = "logistic"
    """frequency (top-K training medications) or logistic (one-vs-rest logistic regression)."""
    split: str = "random"
    """random (by patient 8:1:1), temporal, site (held-out hospitals) or external."""
    seed: int = 0
    """Seed of the split and of the logistic regression's batch order."""
    target: str = "all"
    """all (one sample per visit) or last (each patient's last visit)."""
    external_data: Path | None = None
    """With --split external: the prepared dataset to test on."""
    history: str = "auto"
    """logistic: ``all`` adds every earlier visit's diagnoses and medications to the previous
    visit's medications; ``previous`` reads the previous visit's medications only (as the student);
    ``auto`` fits both and keeps the one with the lower validation loss."""
    notes: bool | None = None
    """logistic: add the words of the current visit's four note sections (vocabulary fitted on the
    training split, min-patients rule). None: on when the training split has notes."""
    per_med: bool = False
    """logistic: one decision threshold per medication instead of one for all."""
    epochs: int = 100
    """logistic: most passes over the training split."""
    patience: int = 5
    """logistic: stop after this many epochs without a better validation loss."""
    lr: float = 0.05
    """logistic: Adam learning rate."""
    l2: float | None = None
    """logistic: weight of the L2 penalty l2/2·||W||²; None (no ``--l2``): the value of `leader.baseline.L2_GRID`
    with the lowest validation loss."""
    batch_size: int = 512
    """logistic: samples per Adam step (at most 1/8 of the training split, so a tiny split still
    takes 8 steps per epoch)."""
    bootstrap: int = 10
    """Bootstrap rounds (80% each) for the mean ± std in metrics.json."""
    min_patients: int = MIN_PATIENTS
    """logistic: a code, profile value or note word becomes a feature only when this many distinct
    training patients carry it (`leader.encoding.MIN_PATIENTS`); rarer profile values read as FIELD=OTHER."""
    overwrite: bool = False
    """Replace an existing --out folder."""

    def __post_init__(self):
        self.data, self.out = Path(self.data), Path(self.out)
        self.external_data = Path(self.external_data) if self.external_data else None
        if self.method not in METHODS:
            raise LeaderError(f"--method must be frequency or logistic, got '{self.method}'")
        if self.history not in HISTORY:
            raise LeaderError(f"--history must be previous, all or auto, got '{self.history}'")
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--patience", self.patience),
            ("--min-patients", self.min_patients),
        ):
            if value < 1:
                raise LeaderError(f"{flag} must be at least 1, got {value}")
        if not self.lr > 0 or (self.l2 is not None and self.l2 < 0):
            raise LeaderError("--lr must be > 0 and --l2 >= 0")
        if self.bootstrap < 0:
            raise LeaderError(f"--bootstrap must be 0 or more, got {self.bootstrap}")
        if self.per_med and self.method != "logistic":
            raise LeaderError("--per-med goes with --method logistic (frequency keeps the top K for everyone)")


@dataclass
class EvaluateConfig:
    """`leader evaluate` options: one run folder (by --run or by its kind) on one split of a dataset."""

    data: Path
    """Prepared dataset folder to evaluate on (the run's own, or any dataset for an external-split run)."""
    run: Path | None = None
    """Any run folder (its kind read from its run.json)."""
    teacher: Path | None = None
    """A teacher run folder (refused if its run.json says another kind)."""
    student: Path | None = None
    """A student run folder (refused if its run.json says another kind)."""
    baseline: Path | None = None
    """A baseline run folder (refused if its run.json says another kind)."""
    split: str = "test"
    """train, val or test."""
    out: Path | None = None
    """Write the metrics here as JSON (atomically)."""
    bootstrap: int = 10
    """Bootstrap rounds (80% each) for mean ± std."""

    def __post_init__(self) -> None:
        given = [kind for kind in RUN_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise LeaderError("give exactly one of --run, --teacher, --student, --baseline")

    def folder(self) -> tuple[str | None, Path]:
        """(the kind the run must have, None for --run; its folder)."""
        [kind] = [kind for kind in RUN_KINDS if getattr(self, kind) is not None]
        return (None if kind == "run" else kind), Path(getattr(self, kind))


@dataclass
class ResultsConfig:
    """`leader results` options: several runs' stored metrics as one markdown table."""

    runs: list[Path]
    """Run folders, one table row each (from their metrics.json)."""
    split: str = "test"
    """val or test."""
    out: Path | None = None
    """Write the markdown table here too (atomically)."""

    def __post_init__(self) -> None:
        if self.split not in ("val", "test"):
            raise LeaderError(f"--split must be val or test, got '{self.split}'")


@dataclass
class ReportConfig:
    """What `leader report` reads and writes."""

    runs: list[Path]
    """Run folders (baseline, teacher, student) to compare; their run.json names label the rows."""
    out: Path = Path("report.html")
    """The HTML file to write (atomically)."""
    bench: Path | None = None
    """A `leader bench --out` JSON for the speed and size section (optional)."""
    data: Path | None = None
    """Prepared dataset for the count histogram (default: the path in each run's run.json)."""
    split: str = "test"
    """Which split's metrics to show."""
    with_teacher: bool = False
    """Also recompute the teacher's predictions for the count histogram (slow on a CPU)."""
    title: str = "leader report"
    """Heading and page title of the report."""


@dataclass
class DemoConfig:
    """`leader demo` options."""

    out: Path = Path("runs/demo")
    """Folder for every stage's output (resumable: finished stages are skipped)."""
    quick: bool = False
    """Tiny random teacher and a small cohort: the whole chain in a few minutes (CI)."""
    patients: int | None = None
    """Synthetic patients (default 2,000; 300 with --quick)."""
    teacher_minutes: float = 8.0
    """Time budget of the SmolLM2 teacher's training (the demo's longest stage)."""
    seed: int = 0
    """Seed of the cohort, the split and the models."""
    progress: bool = False
    """Show the stages' own progress bars (not the students', which train side by side; the demo prints one line per stage either way)."""
