"""`leader distill`: train the student from the teacher's cached features (LEADER, arXiv 2402.02803).

    leader distill --data runs/data --teacher runs/teacher --out runs/student            # KD + align
    leader distill --data runs/data --teacher runs/teacher --out runs/student-kd --beta 0
    leader distill --data runs/data --teacher runs/teacher --out runs/student-bce --no-teacher

One loop, top to bottom: load the dataset and the teacher's split, fit the vocabularies on the
training split, read the teacher's features (building the cache if missing), train with Adam and
early stopping on validation PR-AUC, tune the threshold(s) on validation, write the folder
(`leader.student.io` lists its files). Interrupted runs keep their state in ``<out>.partial/``
and continue with --resume; a finished run keeps it in ``<out>/checkpoint/``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from leader.cohort import Dataset, load_dataset
from leader.encoding import CODE_TYPES, Encoder
from leader.errors import LeaderError
from leader.evaluate import score, write_metrics
from leader.io import atomic_dir, atomic_path, write_json, write_text
from leader.metrics import pr_auc_samples
from leader.runinfo import check_same_dataset, read_run, write_run
from leader.samples import Sample, split_samples

from .config import DistillConfig
from .io import CHECKPOINT, load_student, save_weights
from .losses import total_loss
from .model import Student, StudentConfig

STATE = "state.pt"
# settings that change the training trajectory: a resumed run must agree on all of them
_FINGERPRINT = ("alpha", "beta", "tau", "kd_standardize", "batch_size", "lr", "weight_decay", "seed", "dim",
                "hidden", "heads", "dropout", "max_visits", "max_codes", "no_teacher")
INPUTS = ("diagnoses", "procedures", "medications", "profile", "visit_mask")


class EncodedSamples:
    """Samples encoded once (padded to the set's maximum); `batch` trims a subset to its own maximum."""

    def __init__(self, encoder: Encoder, samples: list[Sample]):
        self.arrays = encoder.encode_samples(samples)
        self.targets = encoder.multi_hot([s.labels for s in samples])
        # ids are left-packed (0 = padding), so a row's width is its count of non-zero ids
        self.n_visits = self.arrays["visit_mask"].sum(1).astype(np.int64)
        self.widths = {k: (self.arrays[k] > 0).sum(-1).max(-1) for k in CODE_TYPES}
        self.widths["profile"] = (self.arrays["profile"] > 0).sum(-1)

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        v = max(1, int(self.n_visits[idx].max()))
        out = {}
        for kind in CODE_TYPES:
            out[kind] = self.arrays[kind][idx, :v, : max(1, int(self.widths[kind][idx].max()))]
        out["profile"] = self.arrays["profile"][idx, : max(1, int(self.widths["profile"][idx].max()))]
        out["visit_mask"] = self.arrays["visit_mask"][idx, :v]
        out["targets"] = self.targets[idx]
        return {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in out.items()}


def length_batches(n_visits: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 32) -> list[np.ndarray]:
    """Shuffled batches of samples with similar visit counts: shuffle, sort each pool of
    `pool` batches by visit count, cut, shuffle the batches. A batch is padded to its longest
    sample, and one 8-visit patient among 1-visit ones would multiply the work of the batch."""
    order = rng.permutation(len(n_visits))
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort(n_visits[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def predict(model: Student, data: EncodedSamples, batch_size: int = 512) -> np.ndarray:
    """Probabilities [N, M] of an encoded set (model put in eval mode)."""
    model.eval()
    out = np.zeros(data.targets.shape, dtype=np.float32)
    order = np.argsort(data.n_visits, kind="stable")
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        batch = data.batch(idx)
        out[idx] = torch.sigmoid(model(*(batch[k] for k in INPUTS))).numpy()
    return out


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
        return {"how": cfg.split or "random", "seed": 0 if cfg.split_seed is None else cfg.split_seed,
                "target": cfg.target or "all"}
    split = dict(teacher.get("split") or {})
    for key, flag, mine in (("how", "--split", cfg.split), ("seed", "--split-seed", cfg.split_seed),
                            ("target", "--target", cfg.target)):
        if mine is not None and mine != split.get(key):
            raise LeaderError(f"{flag} {mine} conflicts with the teacher's split ({key}={split.get(key)} in "
                              f"{cfg.teacher}/run.json); drop {flag} to train on the teacher's split")
    return split


def teacher_features(cfg: DistillConfig, dataset: Dataset, samples: list[Sample]) -> torch.Tensor:
    """The teacher's hidden states (fp16 [N, H]) of `samples`, from its cache (built if missing)."""
    from leader.teacher.features import ensure_features, load_features

    ensure_features(cfg.teacher, dataset, progress=cfg.progress)
    ids, hidden, _ = load_features(cfg.teacher, dataset)
    row = {sid: r for r, sid in enumerate(ids)}
    missing = [s.sample_id for s in samples if s.sample_id not in row]
    if missing:
        raise LeaderError(f"the teacher's feature cache lacks {len(missing)} training samples; rebuild it with "
                          f"`leader teach features --teacher {cfg.teacher} --data {cfg.data}`")
    return torch.from_numpy(np.ascontiguousarray(hidden[[row[s.sample_id] for s in samples]]))


def _fingerprint(cfg: DistillConfig, dataset: Dataset, split: dict, teacher: dict | None) -> dict:
    return {**{k: getattr(cfg, k) for k in _FINGERPRINT}, "dataset_sha256": dataset.sha256, "split": split,
            "teacher": None if teacher is None else str(Path(cfg.teacher).resolve())}


def _start_state(cfg: DistillConfig, out: Path, partial: Path, fingerprint: dict) -> dict | None:
    """Prepare the work folder; return the saved state when resuming."""
    if not cfg.resume:
        if out.exists() and not cfg.overwrite:
            raise LeaderError(f"{out} already exists: choose another --out, pass --overwrite, or --resume it")
        if partial.exists():
            if not cfg.overwrite:
                raise LeaderError(f"{partial} holds an interrupted run: pass --resume to continue it or --overwrite")
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        return None
    source = partial if (partial / CHECKPOINT / STATE).is_file() else out
    path = source / CHECKPOINT / STATE
    if not path.is_file():
        raise LeaderError(f"nothing to resume: no {CHECKPOINT}/{STATE} in {partial} or {out}; run without --resume")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # a truncated or foreign file: torch raises many types
        raise LeaderError(f"{path} is corrupt ({type(err).__name__}); remove it and run without --resume") from None
    saved = json.loads(state["fingerprint"])
    changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if changed:
        raise LeaderError(f"--resume with other settings than the saved run ({', '.join(changed)}); "
                          "use the same flags or start a new --out")
    if source == out:  # continue a finished run (e.g. with more --epochs): work on a copy of its state
        shutil.copytree(out / CHECKPOINT, partial / CHECKPOINT, dirs_exist_ok=True)
        if (out / "metrics.jsonl").is_file():
            shutil.copyfile(out / "metrics.jsonl", partial / "metrics.jsonl")
    return state


def _save_state(partial: Path, model, best, optimizer, progress: dict, history: list, fingerprint: dict) -> None:
    state = {"model": model.state_dict(), "best": best, "optimizer": optimizer.state_dict(),
             "fingerprint": json.dumps(fingerprint, sort_keys=True), **progress}
    (partial / CHECKPOINT).mkdir(exist_ok=True)
    with atomic_path(partial / CHECKPOINT / STATE) as tmp:
        torch.save(state, tmp)
    write_text(partial / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def run(cfg: DistillConfig) -> Path:
    """Train a student as `cfg` says and write its folder; returns the folder."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: DistillConfig) -> Path:
    out = Path(cfg.out)
    partial = out.with_name(out.name + ".partial")
    dataset = load_dataset(cfg.data)
    teacher = None
    if cfg.teacher:
        teacher = read_run(cfg.teacher, "teacher")
        check_same_dataset(teacher, dataset, cfg.teacher)
    split = resolve_split(cfg, teacher)
    external = load_dataset(cfg.external_data) if split.get("how") == "external" and cfg.external_data else None
    splits = split_samples(dataset, split["how"], int(split["seed"]), split["target"], external)
    for name in ("train", "val"):
        if not splits[name]:
            raise LeaderError(f"the {name} split is empty: the dataset needs more patients")
    fingerprint = _fingerprint(cfg, dataset, split, teacher)
    state = _start_state(cfg, out, partial, fingerprint)

    encoder = Encoder.fit(splits["train"], dataset.medications, cfg.max_visits, cfg.max_codes)
    train, val = EncodedSamples(encoder, splits["train"]), EncodedSamples(encoder, splits["val"])
    kd_target = teacher_features(cfg, dataset, splits["train"]) if cfg.use_kd else None
    kd_mean = kd_std = None
    if kd_target is not None and cfg.kd_standardize:
        full = kd_target.float()
        kd_mean, kd_std = full.mean(0), full.std(0).clamp(min=1e-3)

    v = encoder.vocabs
    student_cfg = StudentConfig(
        len(v["diagnoses"]), len(v["procedures"]), len(v["medications"]), len(v["profile"]), len(dataset.medications),
        cfg.dim, cfg.hidden, cfg.heads, cfg.dropout, cfg.max_visits,
        teacher_hidden=0 if kd_target is None else int(kd_target.shape[1]),
    )
    torch.manual_seed(cfg.seed)
    model = Student(student_cfg)
    model.set_label_map(v["medications"].encode(dataset.medications))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    progress = {"epoch": 0, "best_epoch": 0, "best_score": -1.0, "bad_epochs": 0}
    history: list[dict] = []
    best = {k: t.clone() for k, t in model.state_dict().items()}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best = state["best"]
        progress = {k: state[k] for k in progress}
        log = partial / "metrics.jsonl"
        lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
        history = [json.loads(line) for line in lines][: progress["epoch"]]

    y_val = val.targets
    bar = tqdm(range(progress["epoch"], cfg.epochs), desc="distill", unit="epoch", file=sys.stderr,
               disable=not cfg.progress, initial=progress["epoch"], total=cfg.epochs)
    for epoch in bar:
        if progress["bad_epochs"] >= cfg.patience:
            break
        started = time.perf_counter()
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: same draws whether resumed or not
        batches = length_batches(train.n_visits, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
        sums: dict[str, float] = {}
        for idx in tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, file=sys.stderr, disable=not cfg.progress):
            batch = train.batch(idx)
            outputs = model.encode(*(batch[k] for k in INPUTS), labels=batch["targets"] if cfg.use_align else None)
            projected = target = None
            if kd_target is not None:
                projected = model.project(outputs["mediator"])
                target = kd_target[torch.from_numpy(idx)].float()
                if kd_mean is not None:
                    target = (target - kd_mean) / kd_std
            loss, parts = total_loss(outputs, batch["targets"], projected, target,
                                     cfg.alpha if cfg.use_kd else 0.0, cfg.beta if cfg.use_align else 0.0, cfg.tau)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, value in parts.items():
                sums[k] = sums.get(k, 0.0) + value * len(idx)
        val_score = pr_auc_samples(y_val, predict(model, val))
        val_score = -1.0 if val_score is None else val_score
        progress["epoch"] = epoch + 1
        if val_score > progress["best_score"] + 1e-6:
            progress.update(best_epoch=epoch + 1, best_score=val_score, bad_epochs=0)
            best = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            progress["bad_epochs"] += 1
        history.append({"epoch": epoch + 1, "train": {k: s / len(train) for k, s in sums.items()},
                        "val_pr_auc": val_score, "best_epoch": progress["best_epoch"],
                        "seconds": round(time.perf_counter() - started, 3)})
        _save_state(partial, model, best, optimizer, progress, history, fingerprint)
        bar.set_postfix(loss=f"{history[-1]['train']['loss']:.4f}", val_pr_auc=f"{val_score:.4f}")
    bar.close()

    model.load_state_dict(best)
    test = EncodedSamples(encoder, splits["test"]) if splits["test"] else None
    probs_test = predict(model, test) if test is not None else np.zeros((0, len(dataset.medications)))
    thresholds, metrics = score(predict(model, val), probs_test, splits["val"], splits["test"], dataset,
                                per_med=cfg.per_med_threshold, seed=cfg.seed)
    _write_folder(cfg, out, partial, dataset, split, teacher, model, student_cfg, encoder, thresholds, metrics,
                  progress, kd_mean is not None)
    return out


def _write_folder(cfg, out, partial, dataset, split, teacher, model, student_cfg, encoder, thresholds, metrics,
                  progress, standardized) -> None:
    with atomic_dir(out, overwrite=True) as tmp:
        teacher_info = None if teacher is None else {"path": str(cfg.teacher), "name": teacher.get("name"),
                                                     "kd_standardized": standardized}
        write_run(tmp, "student", cfg.label, dataset, split, thresholds, cfg.to_dict(), teacher=teacher_info,
                  best_epoch=progress["best_epoch"], epochs_run=progress["epoch"])
        write_json(tmp / "config.json", {"student": student_cfg.to_dict(), "distill": cfg.to_dict(),
                                         "teacher": teacher_info})
        write_json(tmp / "encoder.json", encoder.to_dict())
        save_weights(model, tmp / "model.safetensors")
        shutil.copyfile(Path(dataset.path) / "ddi.csv", tmp / "ddi.csv")
        write_metrics(tmp, metrics)
        shutil.copyfile(partial / "metrics.jsonl", tmp / "metrics.jsonl")
        shutil.copytree(partial / CHECKPOINT, tmp / CHECKPOINT)
    shutil.rmtree(partial, ignore_errors=True)
