"""`leader distill`: train the student from the teacher's cached features (LEADER, arXiv 2402.02803).

    leader distill --data runs/data --teacher runs/teacher --out runs/student            # KD + align
    leader distill --data runs/data --teacher runs/teacher --out runs/student-kd --beta 0
    leader distill --data runs/data --teacher runs/teacher --out runs/student-bce --no-teacher

One loop, top to bottom: load the dataset and the teacher's split, fit the vocabularies on the
training split, read the teacher's features (building the cache if missing), train with Adam and
early stopping on validation PR-AUC, tune the threshold(s) on validation, write the folder
(`leader.student.io` lists its files). An interrupted run keeps its state in ``<out>.partial/``
and continues with --resume; a finished run keeps it in ``<out>/checkpoint/``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from leader.baseline_blocks import has_notes
from leader.cohort import Dataset, load_dataset
from leader.encoding import Encoder
from leader.errors import LeaderError
from leader.io import atomic_dir, atomic_path, claim_out, write_json, write_text
from leader.metrics import pr_auc_samples
from leader.runinfo import check_same_dataset, read_run, write_run
from leader.safejson import loads
from leader.samples import Sample, split_samples
from leader.scoring import score, write_metrics
from leader.teacher.prior import load_prior

from .batches import INPUTS, EncodedSamples, length_batches, predict
from .config import DistillConfig
from .io import CHECKPOINT, load_student, save_weights
from .losses import total_loss
from .model import Student, StudentConfig
from .prior import baseline_tables, set_prior

STATE = "state.pt"
# settings that change the training trajectory: a resumed run must agree on all of them
_FINGERPRINT = (
    "alpha beta tau kd_standardize kd_layer kd_proj batch_size lr weight_decay seed dim hidden heads dropout max_visits "
    "max_codes min_patients no_teacher"
).split()  # + gamma when > 0, so a run saved before logit KD still resumes


def predict_probs(run_dir: str | Path, samples: list[Sample], dataset: Dataset) -> np.ndarray:
    """Probabilities [N, M] of a student folder for `samples` (used by `leader evaluate`)."""
    model, encoder, record = load_student(run_dir)
    if record.get("medications") != list(dataset.medications):
        raise LeaderError(f"{run_dir} predicts other medication labels than {dataset.path}; use its own dataset")
    if not samples:
        return np.zeros((0, len(dataset.medications)), dtype=np.float32)
    return predict(model, EncodedSamples(encoder, samples))


def resolve_split(cfg: DistillConfig, teacher: dict | None) -> dict:
    """The split to train on: the teacher's when there is one (a conflicting flag is refused)."""
    if teacher is None:
        seed = 0 if cfg.split_seed is None else cfg.split_seed
        return {"how": cfg.split or "random", "seed": seed, "target": cfg.target or "all"}
    split = dict(teacher.get("split") or {})
    mine = {"how": ("--split", cfg.split), "seed": ("--split-seed", cfg.split_seed), "target": ("--target", cfg.target)}
    for key, (flag, value) in mine.items():
        if value is not None and value != split.get(key):
            raise LeaderError(
                f"{flag} {value} conflicts with the teacher's split ({key}={split.get(key)} in "
                f"{cfg.teacher}/run.json); drop {flag} to train on the teacher's split"
            )
    return split


class KDTargets:
    """The teacher's hidden states of the training samples (fp16 in memory), served per batch as
    fp32, standardised per dimension with the training mean and std when asked; `probs` serves
    the teacher's probabilities of the same samples (logit KD)."""

    def __init__(self, cfg: DistillConfig, dataset: Dataset, samples: list[Sample]):
        from leader.teacher.features import ensure_features, load_features

        ensure_features(cfg.teacher, dataset, progress=cfg.progress)
        ids, hidden, logits = load_features(cfg.teacher, dataset)
        row = {sid: r for r, sid in enumerate(ids)}
        missing = sum(s.sample_id not in row for s in samples)
        if missing:
            raise LeaderError(
                f"the teacher's feature cache lacks {missing} training samples; rebuild it with "
                f"`leader teach features --teacher {cfg.teacher} --data {cfg.data}`"
            )
        rows = [row[s.sample_id] for s in samples]
        self.hidden = torch.from_numpy(np.ascontiguousarray(hidden[rows]))
        self.teacher_probs = torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits[rows])).float())
        self.size = int(self.hidden.shape[1])
        full = self.hidden.float()
        self.mean, self.std = (full.mean(0), full.std(0).clamp(min=1e-3)) if cfg.kd_standardize else (0.0, 1.0)

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        return (self.hidden[torch.from_numpy(idx)].float() - self.mean) / self.std

    def probs(self, idx: np.ndarray) -> torch.Tensor:
        return self.teacher_probs[torch.from_numpy(idx)]


def resolve_notes(cfg: DistillConfig, train: list[Sample]) -> bool:
    """Whether the student reads notes: --notes/--no-notes, else whether the training split has any."""
    found = has_notes(train)
    if cfg.notes and not found:
        raise LeaderError("--notes: no training sample has a note; drop --notes (or prepare the data with notes)")
    return found if cfg.notes is None else cfg.notes


def _start_state(cfg: DistillConfig, out: Path, partial: Path, fingerprint: dict) -> dict | None:
    """Check the output folder; return the saved state when resuming (None for a fresh run)."""
    if partial.is_symlink():
        raise LeaderError(f"{partial} is a symbolic link; remove it (a run writes its work folder only in place)")
    if not cfg.resume:
        if out.exists() and not cfg.overwrite:
            raise LeaderError(f"{out} already exists: choose another --out, pass --overwrite, or --resume it")
        if (partial / CHECKPOINT / STATE).is_file() and not cfg.overwrite:
            raise LeaderError(f"{partial} holds an interrupted run: pass --resume to continue it or --overwrite")
        shutil.rmtree(partial, ignore_errors=True)
        return None  # the work folder appears with the first checkpoint
    source = partial if (partial / CHECKPOINT / STATE).is_file() else out
    path = source / CHECKPOINT / STATE
    if not path.is_file():
        raise LeaderError(f"nothing to resume: no {CHECKPOINT}/{STATE} in {partial} or {out}; run without --resume")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # a truncated or foreign file: torch raises many types
        raise LeaderError(f"{path} is corrupt ({type(err).__name__}); remove it and run without --resume") from None
    saved = loads(state["fingerprint"])
    changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if changed:
        raise LeaderError(f"--resume with other settings than the saved run ({', '.join(changed)}); use the same flags")
    if source == out:  # continue a finished run (e.g. with more --epochs): work on a copy of its state
        shutil.copytree(out / CHECKPOINT, partial / CHECKPOINT, dirs_exist_ok=True)
        shutil.copyfile(out / "metrics.jsonl", partial / "metrics.jsonl")
    return state


def _save_state(partial: Path, model, best, optimizer, progress: dict, history: list, fingerprint: dict) -> None:
    state = {"model": model.state_dict(), "best": best, "optimizer": optimizer.state_dict(), **progress}
    state["fingerprint"] = json.dumps(fingerprint, sort_keys=True)
    (partial / CHECKPOINT).mkdir(parents=True, exist_ok=True)
    with atomic_path(partial / CHECKPOINT / STATE) as tmp:
        torch.save(state, tmp)
    write_text(partial / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def _train_epoch(model: Student, optimizer, train: EncodedSamples, kd: KDTargets | None, cfg, epoch: int) -> dict:
    """One pass over the training set; returns the sample-weighted mean of each loss part."""
    model.train()
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: the same draws whether resumed or not
    batches = length_batches(train.n_visits, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
    sums: dict[str, float] = {}
    for idx in tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, file=sys.stderr, disable=not cfg.progress):
        batch = train.batch(idx)
        out = model.encode(*(batch[k] for k in INPUTS), labels=batch["targets"] if cfg.use_align else None)
        projected = model.project(out) if cfg.use_kd else None
        loss, parts = total_loss(
            out, batch["targets"], projected, kd(idx) if cfg.use_kd else None,
            alpha=cfg.alpha if cfg.use_kd else 0.0, beta=cfg.beta if cfg.use_align else 0.0, tau=cfg.tau,
            teacher_probs=kd.probs(idx) if cfg.use_logit_kd else None, gamma=cfg.gamma if cfg.use_logit_kd else 0.0,
        )  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, value in parts.items():
            sums[k] = sums.get(k, 0.0) + value * len(idx)
    return {k: s / len(train) for k, s in sums.items()}


def run(cfg: DistillConfig) -> Path:
    """Train a student as `cfg` says and write its folder; returns the folder."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # --resume continues (and at the end replaces) the finished run at --out, as --overwrite would
    inputs = [cfg.data, cfg.teacher, cfg.prior, cfg.external_data]
    try:
        with claim_out(cfg.out, overwrite=cfg.overwrite or cfg.resume, inputs=inputs, marker="run.json"):
            return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: DistillConfig) -> Path:
    out = Path(cfg.out)
    partial = out.with_name(out.name + ".partial")
    dataset = load_dataset(cfg.data)
    teacher = read_run(cfg.teacher, "teacher") if cfg.teacher else None
    if teacher is not None:
        check_same_dataset(teacher, dataset, cfg.teacher)
    split = resolve_split(cfg, teacher)
    external = load_dataset(cfg.external_data) if split.get("how") == "external" and cfg.external_data else None
    splits = split_samples(dataset, split["how"], int(split["seed"]), split["target"], external)
    for name in ("train", "val"):
        if not splits[name]:
            raise LeaderError(f"the {name} split is empty: the dataset needs more patients")
    cfg = replace(cfg, notes=resolve_notes(cfg, splits["train"]))
    prior = load_prior(cfg.prior, dataset, split) if cfg.prior else None
    note_tokens = cfg.max_note_tokens if cfg.notes else 0
    fingerprint = {k: getattr(cfg, k) for k in _FINGERPRINT}
    fingerprint.update(dataset_sha256=dataset.sha256, split=split, teacher=teacher and str(Path(cfg.teacher).resolve()))
    if note_tokens:  # absent without notes, so a run saved before the note encoder still resumes
        fingerprint["note_tokens"] = note_tokens
    if cfg.use_logit_kd:
        fingerprint["gamma"] = cfg.gamma
    if prior is not None:
        fingerprint["prior"] = prior.record()
    state = _start_state(cfg, out, partial, fingerprint)

    encoder = Encoder.fit(
        splits["train"], dataset.medications, cfg.max_visits, cfg.max_codes, cfg.min_patients, note_tokens
    )
    train, val = EncodedSamples(encoder, splits["train"]), EncodedSamples(encoder, splits["val"])
    kd = KDTargets(cfg, dataset, splits["train"]) if cfg.use_kd or cfg.use_logit_kd else None
    v = encoder.vocabs
    sizes = [len(v[k]) for k in ("diagnoses", "procedures", "medications", "profile")] + [len(dataset.medications)]
    student_cfg = StudentConfig(
        *sizes, dim=cfg.dim, hidden=cfg.hidden, heads=cfg.heads, dropout=cfg.dropout, max_visits=cfg.max_visits,
        teacher_hidden=kd.size if cfg.use_kd else 0, kd_layer=cfg.kd_layer, kd_proj=cfg.kd_proj,
        n_notes=len(v["notes"]) if encoder.reads_notes else 0, prior=prior is not None,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    model = Student(student_cfg)
    model.set_label_map(v["medications"].encode(dataset.medications))
    if prior is not None:
        arrays, unmapped = baseline_tables(prior.path, encoder)
        set_prior(model, arrays)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    progress = {"epoch": 0, "best_epoch": 0, "best_score": -1.0, "bad_epochs": 0}
    best, history = {k: t.clone() for k, t in model.state_dict().items()}, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best, progress = state["best"], {k: state[k] for k in progress}
        lines = (partial / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        history = [loads(line) for line in lines][: progress["epoch"]]
    elif prior is not None:  # epoch 0, the baseline itself, is the first candidate for the best weights
        start_score = pr_auc_samples(val.targets, predict(model, val))
        progress["best_score"] = -1.0 if start_score is None else start_score

    bar = tqdm(range(progress["epoch"], cfg.epochs), desc="distill", unit="epoch", file=sys.stderr,
               disable=not cfg.progress, initial=progress["epoch"], total=cfg.epochs)  # fmt: skip
    for epoch in bar:
        if progress["bad_epochs"] >= cfg.patience:
            break
        started = time.perf_counter()
        losses = _train_epoch(model, optimizer, train, kd, cfg, epoch)
        val_score = pr_auc_samples(val.targets, predict(model, val))
        val_score = -1.0 if val_score is None else val_score
        progress["epoch"] = epoch + 1
        if val_score > progress["best_score"] + 1e-6:
            progress.update(best_epoch=epoch + 1, best_score=val_score, bad_epochs=0)
            best = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            progress["bad_epochs"] += 1
        seconds = round(time.perf_counter() - started, 3)
        history.append({"epoch": epoch + 1, "train": losses, "val_pr_auc": val_score,
                        "best_epoch": progress["best_epoch"], "seconds": seconds})  # fmt: skip
        _save_state(partial, model, best, optimizer, progress, history, fingerprint)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", val_pr_auc=f"{val_score:.4f}")
    bar.close()

    model.load_state_dict(best)
    probs_test = predict(model, EncodedSamples(encoder, splits["test"])) if splits["test"] else None
    if probs_test is None:
        probs_test = np.zeros((0, len(dataset.medications)))
    thresholds, metrics = score(predict(model, val), probs_test, splits["val"], splits["test"], dataset,
                                per_med=cfg.per_med_threshold, seed=cfg.seed)  # fmt: skip
    teacher_info = None
    if teacher is not None:
        standardized = cfg.use_kd and cfg.kd_standardize
        teacher_info = {"path": str(cfg.teacher), "name": teacher.get("name"), "kd_standardized": standardized}
    extra = {} if prior is None else {"prior": {**prior.record(), "unmapped": unmapped}}
    with atomic_dir(out, overwrite=cfg.overwrite or cfg.resume, marker="run.json") as tmp:
        write_run(tmp, "student", cfg.label, dataset, split, thresholds, cfg.to_dict(), teacher=teacher_info,
                  best_epoch=progress["best_epoch"], epochs_run=progress["epoch"], **extra)  # fmt: skip
        write_json(tmp / "config.json", {"student": student_cfg.to_dict()})  # the options are in run.json only
        write_json(tmp / "encoder.json", encoder.to_dict())
        save_weights(model, tmp / "model.safetensors")
        shutil.copyfile(Path(dataset.path) / "ddi.csv", tmp / "ddi.csv")
        write_metrics(tmp, metrics)
        shutil.copyfile(partial / "metrics.jsonl", tmp / "metrics.jsonl")
        shutil.copytree(partial / CHECKPOINT, tmp / CHECKPOINT)
    shutil.rmtree(partial, ignore_errors=True)
    return out
