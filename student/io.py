"""The student folder (output of `leader distill --out DIR`):

run.json          kind "student", name, dataset sha256, split, medications, thresholds, versions,
                  config (the resolved DistillConfig), teacher ({path, name, kd_standardized} | null),
                  prior ({path, sha256, unmapped}: the baseline inside the model, `leader distill --prior`)
config.json       {"student": StudentConfig}: the network's shape, what `load_student` builds
                  (folders of earlier versions also hold "distill" and "teacher" here: ignored)
encoder.json      vocabularies (with the note vocabulary when the student reads notes) and
                  truncation limits (leader.encoding.Encoder.to_dict())
model.safetensors the student's weights
ddi.csv           the dataset's interacting medication pairs (copied)
metrics.json      {"val": table, "test": table} (leader.scoring.score)
metrics.jsonl     one line per epoch: losses, validation PR-AUC, seconds
checkpoint/       resume state (weights, best weights, optimizer, epoch), apart from the model
"""

from __future__ import annotations

from pathlib import Path

import torch

from leader.encoding import Encoder
from leader.errors import LeaderError
from leader.io import atomic_path, read_json
from leader.runinfo import read_run

from .model import Student, StudentConfig

CHECKPOINT = "checkpoint"


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write the model's weights as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def load_weights(model: Student, path: Path) -> None:
    """Load safetensors weights into the student `model` (pad rows zeroed); a missing, corrupt or
    mismatched file is a LeaderError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise LeaderError(f"{path} not found: the student folder is incomplete; re-run `leader distill`")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise LeaderError(f"{path} is corrupt ({str(err).splitlines()[0]}); re-run `leader distill`") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise LeaderError(f"{path} does not match the model in config.json; re-run `leader distill`") from None
    model.zero_pad_rows()  # a masked pad row never counted; the mask-free sums need it zero


def load_student(folder: str | Path) -> tuple[Student, Encoder, dict]:
    """Load a student folder -> (Student in eval mode, Encoder, run record from run.json)."""
    folder = Path(folder)
    record = read_run(folder, "student")
    config = read_json(folder / "config.json", f"{folder}/config.json")
    encoder_dict = read_json(folder / "encoder.json", f"{folder}/encoder.json")
    try:
        cfg = StudentConfig.from_dict(config["student"])  # a folder from before the note encoder: n_notes 0
        encoder = Encoder.from_dict(encoder_dict)
        if cfg.n_notes != (len(encoder.vocabs["notes"]) if encoder.reads_notes else 0):
            raise ValueError("the note vocabulary does not match the model's note encoder")
    except (KeyError, TypeError, ValueError) as err:
        raise LeaderError(
            f"{folder}: config.json or encoder.json is malformed ({err}); re-run `leader distill`"
        ) from None
    model = Student(cfg)
    load_weights(model, folder / "model.safetensors")
    return model.eval(), encoder, record
