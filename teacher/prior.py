"""A teacher started from the strongest cheap baseline: `leader teach --prior RUN_DIR`.

The teacher's logits become ``head(pooled state) + the logistic baseline's logits`` for the same
sample. The baseline's logits are fixed (computed by the baseline's own code,
`leader.baseline.predict_logits`) and the head starts at zero, so before the first step the
teacher *is* the baseline; training the LoRA adapters and the head then learns only what the
baseline gets wrong (a residual), instead of re-learning from the prompt what a bag of codes and
note words already gives in seconds.

Every path that turns the teacher into numbers adds the same prior: the training loss and its
validations, the feature cache (its ``logits`` hold the sum), `leader evaluate`, a resumed run.
The untrained teacher is validated before the first step, as the first candidate for the best
weights: if no step beats the baseline on validation, the teacher kept is the baseline.
teacher.json and run.json record the prior run's path and the sha256 of its ``model.npz``; a
teacher whose prior has changed since is refused rather than silently scored with other logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leader.errors import LeaderError
from leader.io import sha256_file
from leader.runinfo import read_run


@dataclass
class Prior:
    """A logistic baseline run whose logits a teacher adds to its head's."""

    path: Path
    sha256: str
    """sha256 of the run's model.npz (its weights)."""

    def logits(self, samples: list) -> np.ndarray:
        """The baseline's logits float32 [N, M] for `samples`, in their order."""
        from leader.baseline import predict_logits

        return predict_logits(self.path, samples)

    def record(self) -> dict:
        """What teacher.json and run.json keep about the prior."""
        return {"path": str(self.path), "sha256": self.sha256}


def load_prior(run_dir: str | Path, dataset, split: dict) -> Prior:
    """Check that `run_dir` is a logistic baseline trained on `dataset` (same cohort sha256 and
    labels) with the same `split` (how, seed, target: a baseline fitted on another split has seen
    the teacher's validation or test samples), and return it."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    fix = "pass a `leader baseline --method logistic` run trained on the same --data and split"
    if record.get("kind") != "baseline" or record.get("config", {}).get("method") != "logistic":
        what = record.get("config", {}).get("method") if record.get("kind") == "baseline" else record.get("kind")
        raise LeaderError(f"--prior {run_dir} is a {what} run, not a logistic baseline; {fix}")
    if record.get("dataset", {}).get("sha256") != dataset.sha256 or record.get("medications") != list(
        dataset.medications
    ):
        raise LeaderError(f"--prior {run_dir} was trained on other data or labels than {dataset.path}; {fix}")
    theirs = {k: record.get("split", {}).get(k) for k in ("how", "seed", "target")}
    ours = {k: split.get(k) for k in ("how", "seed", "target")}
    if theirs != ours or record.get("split", {}).get("external") != split.get("external"):
        raise LeaderError(f"--prior {run_dir} was trained on another split ({theirs}) than this run ({ours}); {fix}")
    if not (run_dir / "model.npz").is_file():
        raise LeaderError(f"--prior {run_dir} lacks model.npz; train the baseline again")
    return Prior(run_dir.resolve(), sha256_file(run_dir / "model.npz"))


def recorded_prior(info: dict, teacher_dir) -> Prior | None:
    """The prior a trained teacher's teacher.json names, checked unchanged since training (None
    without one)."""
    saved = info.get("prior")
    if not saved:
        return None
    path = Path(saved["path"])
    if not (path / "model.npz").is_file():
        raise LeaderError(
            f"{teacher_dir} adds the logits of the baseline {path}, which is missing; restore that run folder"
        )
    if sha256_file(path / "model.npz") != saved["sha256"]:
        raise LeaderError(
            f"the baseline {path} changed since {teacher_dir} was trained on it; restore it or train the teacher again"
        )
    return Prior(path, saved["sha256"])
