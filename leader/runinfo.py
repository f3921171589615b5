"""What every run folder says about itself: `run.json`.

Each stage's output folder (baseline, teacher, student) holds a ``run.json``:

    {"kind": "baseline" | "teacher" | "student",
     "name": short label for tables, e.g. "logistic" or "student (KD + align)",
     "dataset": {"path": ..., "sha256": ...},
     "split": {"how": ..., "seed": ..., "target": ...},
     "medications": [label, ...],
     "thresholds": float | [float per medication],
     "config": {resolved config of the stage},
     "versions": {"leader": ..., "python": ..., "torch": ..., ...}}

plus ``metrics.json`` ({"val": table, "test": table}, tables from `leader.metrics.evaluate`).
`leader evaluate` and `leader results` read only these two files and the stage's own weights.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from leader import __version__
from leader.errors import LeaderError
from leader.io import read_json, write_json

KINDS = ("baseline", "teacher", "student")
_PACKAGES = ("numpy", "torch", "transformers", "peft", "accelerate", "onnx", "onnxruntime", "onnxscript")


def versions() -> dict[str, str]:
    """Versions of leader, Python and the installed parts of the stack."""
    out = {"leader": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_run(
    folder: str | Path, kind: str, name: str, dataset, split: dict, thresholds, config: dict, **extra
) -> None:
    """Write ``run.json`` into `folder` (atomically)."""
    assert kind in KINDS, kind
    record = {
        "kind": kind,
        "name": name,
        "dataset": {"path": str(dataset.path), "sha256": dataset.sha256},
        "split": split,
        "medications": list(dataset.medications),
        "thresholds": thresholds,
        "config": config,
        "versions": versions(),
        **extra,
    }
    write_json(Path(folder) / "run.json", record)


def read_run(folder: str | Path, kind: str | None = None) -> dict:
    """Read a run folder's ``run.json``, checking its kind when given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LeaderError(
            f"run folder not found: {folder}; check the path (a folder a leader command wrote with --out)"
        )
    record = read_json(folder / "run.json", f"{folder} is not a leader run folder: run.json")
    if kind is not None and record.get("kind") != kind:
        raise LeaderError(f"{folder} holds a {record.get('kind')} run, expected a {kind} run")
    return record


def check_same_dataset(record: dict, dataset, folder) -> None:
    """Refuse a run trained on another dataset than `dataset` (labels or cohort hash differ)."""
    if record.get("medications") != list(dataset.medications):
        raise LeaderError(
            f"{folder} was trained with other medication labels than {dataset.path}; use the dataset it was trained on"
        )
    if record.get("dataset", {}).get("sha256") != dataset.sha256:
        raise LeaderError(
            f"{folder} was trained on another dataset (sha256 differs from {dataset.path}); retrain or pass the matching --data"
        )
