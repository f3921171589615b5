"""The teacher's feature cache, the input of distillation.

    leader teach features --teacher runs/teacher --data runs/data/synth

writes, once per (teacher, dataset), the folder ``<teacher>/features/<dataset sha256[:16]>/``:

- ``features.safetensors``: ``hidden`` fp16 [N, H], the pooled last-layer hidden state (the
  medication head's input: the last non-pad token, or the mean with --pooling mean), and ``logits`` fp32 [N, M];
- ``index.json``: ``sample_ids`` (row order; `leader.samples.Sample.sample_id`, no patient
  identifier), ``teacher_sha256``, ``dataset_sha256``, ``target``, ``hidden_size`` and counts.

Rows cover every sample of ``make_samples(dataset, target=<the teacher's target>)``, all
splits. A later call with the same teacher and dataset reuses the folder; a retrained teacher
(another sha256) recomputes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from leader.errors import LeaderError
from leader.io import atomic_dir, read_json
from leader.samples import make_samples

from .infer import check_labels, load_teacher, read_teacher_info, run_teacher, teacher_sha256

FEATURES_FILE = "features.safetensors"
INDEX_FILE = "index.json"


def features_dir(teacher_dir: str | Path, dataset) -> Path:
    """Where the features of `dataset` under this teacher live."""
    if not dataset.sha256:
        raise LeaderError(f"{dataset.path} has no cohort sha256 in its manifest; prepare it again with `leader data`")
    return Path(teacher_dir) / "features" / dataset.sha256[:16]


def ensure_features(
    teacher_dir: str | Path, dataset, batch_size: int = 16, progress: bool = True, compile: bool = False
) -> Path:
    """Compute the features of every sample of `dataset` unless a valid cache exists; return its
    folder (`compile`: run the teacher's blocks compiled, `leader.teacher.backbone.compile_layers`)."""
    teacher_dir = Path(teacher_dir)
    info = read_teacher_info(teacher_dir)
    check_labels(info, dataset, teacher_dir)
    folder = features_dir(teacher_dir, dataset)
    samples = make_samples(dataset, target=info["target"])
    sample_ids = [s.sample_id for s in samples]
    sha = teacher_sha256(teacher_dir, info)
    try:
        ids, _, _ = _read(folder, dataset, sha, info)
        if ids == sample_ids:
            return folder
    except LeaderError:
        pass  # missing, stale or corrupt: compute again
    teacher = load_teacher(teacher_dir, compile=compile)
    hidden, logits = run_teacher(teacher, samples, dataset.titles, batch_size, progress)
    precision = "bf16" if teacher.autocast is not None else "fp32"
    write_features(folder, sample_ids, hidden, logits, sha, dataset, info["target"], precision)
    if progress:
        print(f"teacher features: {len(sample_ids)} samples x {hidden.shape[1]} -> {folder}", file=sys.stderr)
    return folder


def write_features(folder: Path, sample_ids, hidden, logits, sha: str, dataset, target: str, precision) -> None:
    """Write (replace) the cache folder of `dataset`: hidden states as fp16, logits as fp32."""
    import torch
    from safetensors.torch import save_file

    index = {
        "sample_ids": list(sample_ids),
        "teacher_sha256": sha,
        "dataset_sha256": dataset.sha256,
        "target": target,
        "hidden_size": int(hidden.shape[1]),
        "n_samples": len(sample_ids),
        "n_medications": int(logits.shape[1]),
        "precision": precision,
    }
    with atomic_dir(folder, overwrite=True, marker=INDEX_FILE) as tmp:
        tensors = {
            "hidden": torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float16)),
            "logits": torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)),
        }
        save_file(tensors, tmp / FEATURES_FILE, metadata={"teacher_sha256": sha, "dataset_sha256": dataset.sha256})
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


def load_features(teacher_dir: str | Path, dataset) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sample_ids, hidden float16 [N, H], logits float32 [N, M]) from the cache of `dataset`.

    Raises LeaderError when the cache is missing, corrupt, of another dataset or of an older
    version of the teacher.
    """
    teacher_dir = Path(teacher_dir)
    info = read_teacher_info(teacher_dir)
    check_labels(info, dataset, teacher_dir)
    return _read(features_dir(teacher_dir, dataset), dataset, teacher_sha256(teacher_dir, info), info)


def _read(folder: Path, dataset, sha: str, info: dict):
    again = f"run `leader teach features --teacher {folder.parent.parent} --data {dataset.path}`"
    if not (folder / INDEX_FILE).is_file() or not (folder / FEATURES_FILE).is_file():
        raise LeaderError(f"no teacher features for {dataset.path} in {folder.parent.parent}; {again}")
    index = read_json(folder / INDEX_FILE, "features index")
    if index.get("dataset_sha256") != dataset.sha256:
        raise LeaderError(f"the features in {folder} belong to another dataset than {dataset.path}; {again}")
    if index.get("teacher_sha256") != sha:
        raise LeaderError(f"the features in {folder} were made by an earlier version of the teacher; {again}")
    if index.get("target") != info["target"]:
        raise LeaderError(
            f"the features in {folder} use --target {index.get('target')}, the teacher {info['target']}; {again}"
        )
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(folder / FEATURES_FILE)
    except (SafetensorError, OSError, ValueError) as err:
        raise LeaderError(f"{folder / FEATURES_FILE} is corrupt ({err}); {again}") from None
    ids = index.get("sample_ids")
    hidden, logits = tensors.get("hidden"), tensors.get("logits")
    n_meds = len(info["medications"])
    if (
        not isinstance(ids, list)
        or hidden is None
        or logits is None
        or hidden.dtype != np.float16
        or logits.dtype != np.float32
        or hidden.shape != (len(ids), index.get("hidden_size"))
        or logits.shape != (len(ids), n_meds)
    ):
        raise LeaderError(f"{folder} holds features of the wrong shape or type; {again}")
    return [str(i) for i in ids], hidden, logits
