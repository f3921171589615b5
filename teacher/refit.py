"""The teacher's last stage: refit the medication head on the cached states (`leader teach`, on
unless --no-refit-head).

Training moves the LoRA adapters and the head together for a few hundred noisy steps; the head
ends wherever the learning-rate schedule left it. Once the feature cache holds every sample's
pooled state, the head is a linear model on fixed inputs: a convex problem that L-BFGS solves
exactly in seconds. Here it is solved on the training split for each L2 weight of `L2_GRID`
(with a prior, on top of the baseline's logits, as training does), and the solution with the
best validation PR-AUC replaces the trained head if it beats the trained head's own validation
PR-AUC (the criterion that kept the best training step); otherwise nothing changes. The test
split is never read. The refitted head reads states standardised by the training split's own
statistics (`input_statistics`; the trained head's came from the calibration samples) and stores
them with its weights, so `leader evaluate` and a reloaded teacher apply it unchanged; the
feature cache gets the new logits under the new teacher sha256.

Synthetic cohort, the teacher of RESULTS.md ("The teacher's head refitted on its cached
states"): validation PR-AUC 0.7794 -> 0.7857, test Jaccard 0.5222 -> 0.5333 (the baseline
alone 0.5262).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from leader.io import read_json, write_json
from leader.metrics import labels_matrix, pr_auc_samples

L2_GRID = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
"""L2 weights tried, on the mean BCE of the standardised states (each fit is convex)."""
ITERATIONS = 300
"""L-BFGS iterations per fit (the loss has settled long before on the cohorts of RESULTS.md)."""


def fit_head(x, offsets, labels, l2: float, iterations: int = ITERATIONS):
    """Weight [M, H] and bias [M] minimising mean BCE(x @ weight.T + bias + offsets, labels)
    + l2 * |weight|^2 for x [N, H] (standardised states), offsets [N, M] (the prior's logits, or
    zeros) and multi-hot labels [N, M]. Convex: the result does not depend on the start."""
    import torch

    x, offsets, labels = (torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (x, offsets, labels))
    weight = torch.zeros(labels.shape[1], x.shape[1], requires_grad=True)
    bias = torch.zeros(labels.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight.T + bias + offsets, labels)
        value = value + l2 * weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return weight.detach(), bias.detach()


def refit_head(out: Path, dataset, splits: dict, prior=None) -> dict:
    """Refit the head of the finished teacher in `out` from its feature cache (see the module
    docstring); returns what teacher.json records under ``training.refit``."""
    import torch
    from safetensors.torch import load_file, save_file

    from leader.samples import make_samples

    from .features import INDEX_FILE, features_dir, load_features, write_features
    from .infer import read_teacher_info, sigmoid, teacher_sha256
    from .model import input_statistics

    info = read_teacher_info(out)
    ids, hidden, cached = load_features(out, dataset)
    row = {sample_id: k for k, sample_id in enumerate(ids)}
    head = load_file(out / "head.safetensors")
    train_rows = [row[s.sample_id] for s in splits["train"]]
    center, scale = (t.numpy() for t in input_statistics(torch.from_numpy(hidden[train_rows].astype(np.float32))))
    states = (hidden.astype(np.float32) - center) / scale
    everyone = make_samples(dataset, target=info["target"])  # the cache's rows, in its order
    prior_logits = prior.logits(everyone) if prior is not None else np.zeros_like(cached)
    parts = {}
    for name in ("train", "val"):
        rows = [row[s.sample_id] for s in splits[name]]
        parts[name] = (states[rows], prior_logits[rows], labels_matrix(splits[name], dataset.medications), rows)
    val_x, val_offsets, val_labels, val_rows = parts["val"]
    trained = pr_auc_samples(val_labels, sigmoid(cached[val_rows]))
    tried = {}
    best = None
    for l2 in L2_GRID:
        weight, bias = fit_head(*parts["train"][:3], l2)
        score = pr_auc_samples(val_labels, sigmoid(val_x @ weight.numpy().T + bias.numpy() + val_offsets))
        tried[str(l2)] = round(float(score), 6)
        if best is None or score > best[0]:
            best = (score, l2, weight, bias)
    score, l2, weight, bias = best
    record = {"val_pr_auc_trained": round(float(trained), 6), "val_pr_auc": tried, "l2": None, "kept": False}
    if score > trained:
        record.update(l2=l2, kept=True)
        dtype = head["weight"].dtype
        fitted = {"weight": weight, "bias": bias, "center": torch.from_numpy(center), "scale": torch.from_numpy(scale)}
        head = {k: v.to(dtype).contiguous() for k, v in fitted.items()}
        handle, tmp = tempfile.mkstemp(prefix=".head-", suffix=".safetensors", dir=out)
        os.close(handle)
        save_file(head, tmp)
        os.replace(tmp, out / "head.safetensors")
        logits = states @ weight.numpy().T + bias.numpy() + prior_logits
        folder = features_dir(out, dataset)
        precision = read_json(folder / INDEX_FILE, "features index").get("precision")
        write_features(folder, ids, hidden, logits, teacher_sha256(out, info), dataset, info["target"], precision)
    info = read_json(out / "teacher.json", "teacher.json")
    info.setdefault("training", {})["refit"] = record
    write_json(out / "teacher.json", info)
    verdict = f"refitted head kept, l2 {l2:g}" if record["kept"] else "the trained head kept"
    print(
        f"teacher head refit on cached states: validation PR-AUC {trained:.4f} -> {score:.4f} ({verdict})",
        file=sys.stderr,
    )
    return record


def refit_run(teacher_dir: Path, data: Path | None = None, batch_size: int = 16, progress: bool = True) -> dict:
    """`leader teach refit`: the same stage for a teacher trained before it existed (or with
    --no-refit-head). Computes the feature cache when missing, refits, and when the refit is kept
    scores validation and test again from the cache (threshold in teacher.json and run.json,
    metrics.json). A teacher already refitted is left as it is."""
    from leader.cohort import load_dataset
    from leader.errors import LeaderError
    from leader.runinfo import read_run
    from leader.samples import rebuild_split

    from .features import ensure_features
    from .infer import read_teacher_info
    from .prior import recorded_prior
    from .scores import cached_split_logits, print_test_line, run_name, write_scores

    teacher_dir = Path(teacher_dir)
    record = read_run(teacher_dir, "teacher")
    info = read_teacher_info(teacher_dir)
    if (info.get("training") or {}).get("refit", {}).get("kept"):
        print(f"{teacher_dir}: the head was refitted already; nothing to do", file=sys.stderr)
        return info["training"]["refit"]
    if (record.get("split") or {}).get("how") == "external":
        raise LeaderError(
            f"{teacher_dir} was trained with --split external: its validation split is not in one dataset"
        )
    data = Path(data) if data is not None else Path(record["dataset"]["path"])
    dataset = load_dataset(data)
    splits = {name: rebuild_split(record, dataset, name, teacher_dir) for name in ("train", "val", "test")}
    prior = recorded_prior(info, teacher_dir)
    ensure_features(teacher_dir, dataset, batch_size=batch_size, progress=progress)
    result = refit_head(teacher_dir, dataset, splits, prior)
    if result["kept"]:
        logits = cached_split_logits(teacher_dir, dataset, splits)
        thresholds, metrics = write_scores(teacher_dir, dataset, splits, logits)
        record["thresholds"] = thresholds
        record["name"] = run_name(info["base_model"]["name"], prior, refitted=True)  # as `leader teach` names it
        write_json(teacher_dir / "run.json", record)
        print_test_line(teacher_dir, metrics, thresholds)
    return result
