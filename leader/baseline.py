"""Baselines, the first rows of every results table (numpy only).

    leader baseline --data runs/data/synth --method frequency --out runs/base-freq
    leader baseline --data runs/data/synth --method logistic  --out runs/base-logistic

- ``frequency``: every sample gets the K medications most frequent in the training split; K is
  chosen on validation for the best mean Jaccard. The "probabilities" are the training
  frequencies, so PR-AUC is defined (it is the same ranking for everyone).
- ``logistic``: one-vs-rest logistic regression, one output per medication, on multi-hot
  features of the sample: the current visit's diagnoses and procedures, the previous visit's
  medications, the profile tokens (`leader.encoding.profile_tokens`: gender, age decade, ...),
  a "first visit" flag and a bias. Vocabularies are fitted on the training split (codes seen
  only later are ignored). Loss: mean binary cross-entropy + ``l2/2 · ||W||²`` (bias not
  penalised), mini-batch Adam, early stopping on validation loss. The decision threshold is
  tuned on validation with `leader.metrics.tune_threshold`.

Output folder: run.json, metrics.json, model.npz (frequencies, or weights W [D, M] and bias b
[M]; loaded with allow_pickle=False) and, for logistic, features.json (the feature tokens).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from leader.cohort import Dataset, load_dataset
from leader.encoding import MIN_PATIENTS, Vocab, closed_token, profile_tokens
from leader.errors import LeaderError
from leader.evaluate import score, write_metrics
from leader.io import atomic_dir, claim_out, read_json
from leader.metrics import labels_matrix
from leader.runinfo import read_run, write_run
from leader.samples import Sample, split_samples

METHODS = ("frequency", "logistic")
BLOCKS = ("diagnoses", "procedures", "medications", "profile")


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
    per_med: bool = False
    """logistic: one decision threshold per medication instead of one for all."""
    epochs: int = 100
    """logistic: most passes over the training split."""
    patience: int = 5
    """logistic: stop after this many epochs without a better validation loss."""
    lr: float = 0.05
    """logistic: Adam learning rate."""
    l2: float = 1e-6
    """logistic: weight of the L2 penalty l2/2·||W||²."""
    batch_size: int = 512
    """logistic: samples per Adam step (at most 1/8 of the training split, so a tiny split still
    takes 8 steps per epoch)."""
    bootstrap: int = 10
    """Bootstrap rounds (80% each) for the mean ± std in metrics.json."""
    min_patients: int = MIN_PATIENTS
    """logistic: a code or profile value becomes a feature only when this many distinct training
    patients carry it (`leader.encoding.MIN_PATIENTS`); rarer profile values read as FIELD=OTHER."""
    overwrite: bool = False
    """Replace an existing --out folder."""

    def __post_init__(self):
        self.data, self.out = Path(self.data), Path(self.out)
        self.external_data = Path(self.external_data) if self.external_data else None
        if self.method not in METHODS:
            raise LeaderError(f"--method must be frequency or logistic, got '{self.method}'")
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--patience", self.patience),
            ("--min-patients", self.min_patients),
        ):
            if value < 1:
                raise LeaderError(f"{flag} must be at least 1, got {value}")
        if not self.lr > 0 or self.l2 < 0:
            raise LeaderError("--lr must be > 0 and --l2 >= 0")
        if self.bootstrap < 0:
            raise LeaderError(f"--bootstrap must be 0 or more, got {self.bootstrap}")
        if self.per_med and self.method != "logistic":
            raise LeaderError("--per-med goes with --method logistic (frequency keeps the top K for everyone)")


# ---------------------------------------------------------------------------------------------
# features: each sample is a sorted list of active feature indices (binary CSR)


@dataclass
class Features:
    """Feature tokens per block; feature 0 is the bias, 1 the first-visit flag, then the blocks."""

    tokens: dict[str, list[str]]

    @classmethod
    def fit(cls, train: list[Sample], medications: list[str], min_patients: int = MIN_PATIENTS) -> Features:
        vocabs = {
            "diagnoses": Vocab.fit(train, lambda s: s.current["diagnoses"], min_patients),
            "procedures": Vocab.fit(train, lambda s: s.current["procedures"], min_patients),
            "profile": Vocab.fit(train, lambda s: profile_tokens(s.profile), min_patients, closed=True),
        }
        tokens = {kind: vocab.tokens[2:] for kind, vocab in vocabs.items()}  # drop <pad>, <unk>
        tokens["medications"] = list(medications)
        return cls({kind: tokens[kind] for kind in BLOCKS})

    def __post_init__(self):
        self.index, start = {}, 2
        for kind in BLOCKS:
            self.index[kind] = {t: start + i for i, t in enumerate(self.tokens[kind])}
            start += len(self.tokens[kind])
        self.size = start

    def rows(self, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(indptr [N+1], indices) of the binary feature matrix."""
        indptr, indices = [0], []
        for s in samples:
            active = {0} | ({1} if len(s.visits) == 1 else set())
            previous = s.visits[-2]["medications"] if len(s.visits) > 1 else []
            values = {
                "diagnoses": s.current["diagnoses"],
                "procedures": s.current["procedures"],
                "medications": previous,
                "profile": [closed_token(t, self.index["profile"]) for t in profile_tokens(s.profile)],
            }
            for kind in BLOCKS:
                active.update(self.index[kind][t] for t in values[kind] if t in self.index[kind])
            indices.extend(sorted(active))
            indptr.append(len(indices))
        return np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)


def _segment_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of the row segments of `values` that begin at `starts` (all non-empty)."""
    return np.add.reduceat(values, starts, axis=0)


def _logits(indptr, indices, W, b) -> np.ndarray:
    """``X·W + b`` for a binary CSR matrix X: each row sums the weight rows of its features
    (every row has the bias feature, so no segment is empty)."""
    return _segment_sum(W[indices], indptr[:-1]) + b


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -z))


def _bce(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy from logits: ``mean(log(1 + e^z) − y·z)`` (the same as
    ``−mean(y·log σ(z) + (1−y)·log(1−σ(z)))``)."""
    return float((np.logaddexp(0, z) - y * z).mean(dtype=np.float64))


def gradient(indptr, indices, y, W, b, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of ``mean BCE(X·W + b, y) + l2/2·||W[2:]||²`` for a binary sparse X (CSR).

    ``dL/dz = (σ(z) − y) / (N·M)``; ``dL/dW = Xᵀ·dL/dz + l2·W`` (bias rows 0-1 not penalised),
    with Xᵀ·G summing, for each feature, the rows of G of the samples where it is active.
    """
    err = (_sigmoid(_logits(indptr, indices, W, b)) - y) / y.size
    # Xᵀ·err: group the nonzero entries by feature and sum the err rows of their samples
    sort = np.argsort(indices, kind="stable")
    features, first = np.unique(indices[sort], return_index=True)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[sort]
    gW = np.zeros_like(W)
    gW[features] = _segment_sum(err[rows], first)
    gW[2:] += l2 * W[2:]
    return gW, err.sum(0)


def _batch(indptr, indices, rows):
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    sub_ptr = np.concatenate([[0], np.cumsum(lengths)])
    sub_idx = indices[np.arange(sub_ptr[-1]) + np.repeat(starts - sub_ptr[:-1], lengths)]
    return sub_ptr, sub_idx


def fit_logistic(train: tuple, y_train, val: tuple, y_val, n_features: int, cfg: BaselineConfig):
    """Mini-batch Adam on BCE + L2, keeping the weights of the best validation loss."""
    from tqdm import tqdm

    n, m = y_train.shape
    rng = np.random.default_rng(cfg.seed)
    freq = np.clip(y_train.mean(0), 1e-4, 1 - 1e-4)
    # float32 halves the memory traffic of the gathers, which dominate a step
    W = np.zeros((n_features, m), dtype=np.float32)
    b = np.log(freq / (1 - freq)).astype(np.float32)  # start at the label frequencies
    params = [W, b]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    best = (np.inf, W.copy(), b.copy(), 0)
    batch_size = max(1, min(cfg.batch_size, -(-n // 8)))
    history = []
    bar = tqdm(range(cfg.epochs), desc="logistic", unit="epoch", leave=False)
    for epoch in bar:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            ptr, idx = _batch(*train, rows)
            gW, gb = gradient(ptr, idx, y_train[rows], W, b, cfg.l2)
            step += 1
            lr = cfg.lr * np.sqrt(1 - beta2**step) / (1 - beta1**step)  # Adam's bias corrections
            for p, g, (mom, var) in zip(params, (gW, gb), moments, strict=True):
                mom *= beta1
                mom += (1 - beta1) * g
                var *= beta2
                g *= g
                var += (1 - beta2) * g
                denom = np.sqrt(var, out=g)  # reuse g's memory
                denom += eps
                p -= lr * mom / denom
        loss = _bce(_chunked_logits(*val, W, b), y_val)
        history.append(round(loss, 6))
        bar.set_postfix(val_loss=f"{loss:.4f}", refresh=False)
        if loss < best[0] - 1e-6:
            best = (loss, W.copy(), b.copy(), epoch + 1)
        elif epoch + 1 - best[3] >= cfg.patience:
            break
    return best[1], best[2], {"best_epoch": best[3], "epochs_run": len(history), "val_loss": history}


def _chunked_logits(indptr, indices, W, b, batch: int = 2048) -> np.ndarray:
    n = len(indptr) - 1
    out = np.empty((n, W.shape[1]), dtype=W.dtype)
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        out[rows] = _logits(*_batch(indptr, indices, rows), W, b)
    return out


def _predict_logistic(features: Features, samples: list[Sample], W, b) -> np.ndarray:
    return _sigmoid(_chunked_logits(*features.rows(samples), W, b))


# ---------------------------------------------------------------------------------------------
# frequency


def tune_top_k(freq: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """A threshold on the training frequencies that keeps the K most frequent medications.

    Candidates cut between consecutive distinct frequencies (K = 0, then each tie group added);
    the one with the best mean Jaccard on `y` wins, ties going to the smaller K. Returns
    (threshold, K); medications tied at the cut all come in together.
    """
    levels = np.unique(freq)[::-1]
    cuts = np.concatenate([[np.nextafter(levels[0], np.inf)], (levels[:-1] + levels[1:]) / 2])
    if levels[-1] > 0:
        cuts = np.append(cuts, levels[-1] / 2)
    # the sets are nested: take medications by decreasing frequency, count hits cumulatively
    order = np.argsort(-freq, kind="stable")
    hits = np.concatenate([np.zeros((len(y), 1)), np.cumsum(np.asarray(y, dtype=np.float64)[:, order], axis=1)], axis=1)
    k = (freq[None, :] >= cuts[:, None]).sum(1)  # [C] set size at each cut
    inter = hits[:, k]  # [N, C]
    n_true = hits[:, -1:]
    union = n_true + k[None, :] - inter
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean(0)
    best_cut = float(cuts[int(np.argmax(jaccard))])  # first maximum: the smallest K
    return best_cut, int((freq >= best_cut).sum())


# ---------------------------------------------------------------------------------------------
# the command


def _config_json(cfg: BaselineConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def run(cfg: BaselineConfig) -> Path:
    """Fit the baseline on the training split, tune on validation, write the run folder."""
    inputs = [cfg.data, cfg.external_data]
    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=inputs, marker="run.json"):
        return _run(cfg)


def _run(cfg: BaselineConfig) -> Path:
    dataset = load_dataset(cfg.data)
    if cfg.external_data is not None and cfg.split != "external":
        raise LeaderError("--external-data goes with --split external")
    external = load_dataset(cfg.external_data) if cfg.external_data is not None else None
    splits = split_samples(dataset, cfg.split, cfg.seed, cfg.target, external)
    if not splits["train"] or not splits["val"] or not splits["test"]:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        raise LeaderError(f"{cfg.data}: a split is empty ({sizes}); the dataset needs at least 3 patients")
    meds = dataset.medications
    train, val, test = splits["train"], splits["val"], splits["test"]
    y_train, y_val = labels_matrix(train, meds), labels_matrix(val, meds)
    started = time.time()
    extra: dict = {"samples": {k: len(v) for k, v in splits.items()}}
    with atomic_dir(cfg.out, overwrite=cfg.overwrite, marker="run.json") as tmp:
        if cfg.method == "frequency":
            freq = y_train.mean(0)
            np.savez(tmp / "model.npz", freq=freq)
            cut, k = tune_top_k(freq, y_val)
            extra["k"] = k
            probs_val, probs_test = np.tile(freq, (len(val), 1)), np.tile(freq, (len(test), 1))
            thresholds, metrics = score(
                probs_val, probs_test, val, test, dataset, thresholds=cut, bootstrap=cfg.bootstrap
            )
        else:
            features = Features.fit(train, meds, cfg.min_patients)
            W, b, training = fit_logistic(features.rows(train), y_train, features.rows(val), y_val, features.size, cfg)
            np.savez(tmp / "model.npz", W=W, b=b)
            (tmp / "features.json").write_text(
                json.dumps({"tokens": features.tokens}, ensure_ascii=False), encoding="utf-8"
            )
            extra["training"] = training
            extra["n_features"] = features.size
            probs_val = _predict_logistic(features, val, W, b)
            probs_test = _predict_logistic(features, test, W, b)
            thresholds, metrics = score(probs_val, probs_test, val, test, dataset, cfg.per_med, bootstrap=cfg.bootstrap)
        extra["seconds"] = round(time.time() - started, 2)
        write_metrics(tmp, metrics)
        split = {"how": cfg.split, "seed": cfg.seed, "target": cfg.target}
        if cfg.external_data is not None:
            split["external"] = str(cfg.external_data)
        name = "logistic (per-med)" if cfg.per_med else cfg.method
        write_run(tmp, "baseline", name, dataset, split, thresholds, _config_json(cfg), **extra)
    return cfg.out


def predict_probs(run_dir: Path, samples: list[Sample], dataset: Dataset) -> np.ndarray:
    """Probabilities [N, M] of a baseline run for `samples` (M = the run's medication labels)."""
    run_dir = Path(run_dir)
    record = read_run(run_dir, "baseline")
    method = record.get("config", {}).get("method")
    if not (run_dir / "model.npz").is_file():
        raise LeaderError(f"{run_dir} lacks model.npz; the baseline run is incomplete, train it again")
    with np.load(run_dir / "model.npz", allow_pickle=False) as weights:
        arrays = {k: weights[k] for k in weights.files}  # float32, exactly as in training
    if method == "frequency":
        return np.tile(arrays["freq"], (len(samples), 1))
    if method != "logistic":
        raise LeaderError(f"{run_dir}/run.json names an unknown baseline method '{method}'")
    features = Features(read_json(run_dir / "features.json", "baseline features")["tokens"])
    return _predict_logistic(features, samples, arrays["W"], arrays["b"])
