"""Baselines, the first rows of every results table (numpy only).

    leader baseline --data runs/data/synth --method frequency --out runs/base-freq
    leader baseline --data runs/data/synth --method logistic  --out runs/base-logistic
    leader baseline --data runs/data/synth --method logistic --history previous --no-notes --out runs/base-same-inputs

- ``frequency``: every sample gets the K medications most frequent in the training split; K is
  chosen on validation for the best mean Jaccard. The "probabilities" are the training
  frequencies, so PR-AUC is defined (it is the same ranking for everyone).
- ``logistic``: one-vs-rest logistic regression, one output per medication, on multi-hot
  features made of named feature blocks (`leader.baseline_blocks`): the current visit's
  diagnoses and procedures, the previous visit's medications and the profile tokens (what the
  student reads), optionally every earlier visit's diagnoses and medications (``--history all``)
  and the words of the current visit's four note sections (``--notes``), plus a "first visit"
  flag and a bias. Vocabularies are fitted on the training split with the min-patients rule of
  `leader.encoding`. Loss: mean binary cross-entropy + ``l2/2 · ||W||²`` (bias not penalised),
  mini-batch Adam, early stopping on validation loss. The decision threshold is tuned on
  validation with `leader.metrics.tune_threshold`.

The default is the strongest cheap baseline, so the row a teacher or student is compared with is
the bar a hospital could build in an afternoon: notes on when the training split has them, and
``--history`` (previous or all) and ``--l2`` (`L2_GRID`) chosen by validation loss (10 fits,
seconds each). ``--history previous --no-notes`` gives the student's inputs. `strongest_first`
puts the baseline with the best validation Jaccard first, marked, in every results table.

Output folder: run.json (its name says the blocks: "logistic (+notes, all history)"),
metrics.json, model.npz (frequencies, or weights W [D, M] and bias b [M]; loaded with
allow_pickle=False) and, for logistic, features.json (the tokens of each block, in column order).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from leader.baseline_blocks import Features, blocks_for, has_notes
from leader.cohort import Dataset, load_dataset
from leader.config import BaselineConfig
from leader.errors import LeaderError
from leader.io import atomic_dir, claim_out, read_json
from leader.metrics import labels_matrix
from leader.runinfo import read_run, write_run
from leader.samples import Sample, split_samples
from leader.scoring import score, write_metrics

L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
"""The L2 weights tried without ``--l2`` (the one with the lowest validation loss wins). Too little
lets the weights of rare note words and codes grow until validation loss rises after one epoch
(eICU); the grid spans the values that won on the synthetic and eICU cohorts with one step either side."""
STRONGEST = "strongest baseline"
"""The mark `strongest_first` puts after the name of the strongest baseline of a table."""


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


def fit_logistic(train: tuple, y_train, val: tuple, y_val, n_features: int, cfg: BaselineConfig, l2: float):
    """Mini-batch Adam on BCE + ``l2/2·||W||²``, keeping the weights of the best validation loss."""
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
            gW, gb = gradient(ptr, idx, y_train[rows], W, b, l2)
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
    return (
        best[1],
        best[2],
        {"best_epoch": best[3], "best_val_loss": best[0], "epochs_run": len(history), "val_loss": history},
    )


def select_logistic(cfg: BaselineConfig, train, y_train, val, y_val, medications: list[str], notes: bool):
    """Fit one logistic regression per candidate (``--history auto``: previous and all;
    no ``--l2``: `L2_GRID`) and keep the one with the lowest validation loss.

    Returns (features, W, b, training log of the winner, every candidate's history / l2 /
    validation loss)."""
    best, tried = None, []
    for history in ("previous", "all") if cfg.history == "auto" else (cfg.history,):
        features = Features.fit(train, medications, cfg.min_patients, blocks_for(history, notes))
        rows_train, rows_val = features.rows(train), features.rows(val)
        for l2 in L2_GRID if cfg.l2 is None else (cfg.l2,):
            W, b, training = fit_logistic(rows_train, y_train, rows_val, y_val, features.size, cfg, l2)
            loss = training["best_val_loss"]
            tried.append(
                {"history": history, "l2": l2, "val_loss": round(loss, 6), "best_epoch": training["best_epoch"]}
            )
            if best is None or loss < best[0]:
                best = (loss, features, W, b, {"history": history, "l2": l2, **training})
    return *best[1:], tried


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


def run_name(method: str, per_med: bool, blocks: list[str]) -> str:
    """A baseline's row name, saying what it reads beyond the student's inputs:
    "logistic", "logistic (+notes, all history)", "logistic (per-med, all history)"."""
    extras = ["per-med"] if per_med else []
    extras += ["+notes"] if "notes" in blocks else []
    extras += ["all history"] if "history_medications" in blocks else []
    return f"{method} ({', '.join(extras)})" if extras else method


def strongest_baseline(runs: list[tuple[dict, dict]]) -> int | None:
    """Index of the strongest baseline among runs ``(run.json record, metrics.json)``: the baseline
    with the best overall validation Jaccard (chosen on validation, as a user would, never on
    test; ties go to the earlier run). None when no baseline has validation metrics."""
    best = None
    for i, (record, metrics) in enumerate(runs):
        cell = ((metrics.get("val") or {}).get("overall") or {}).get("jaccard_samples") or {}
        value = cell.get("value", cell.get("mean"))
        if record.get("kind") == "baseline" and value is not None and (best is None or value > best[0]):
            best = (value, i)
    return None if best is None else best[1]


def strongest_first(rows: list[tuple[str, dict, dict]]) -> list[tuple[str, dict, dict]]:
    """Rows ``(name, run.json record, metrics.json)`` of a results table with the strongest
    baseline (`strongest_baseline`) first and ``· strongest baseline`` after its name; the other
    rows keep their order."""
    best = strongest_baseline([(record, metrics) for _, record, metrics in rows])
    if best is None:
        return list(rows)
    name, record, metrics = rows[best]
    return [(f"{name} · {STRONGEST}", record, metrics)] + [row for i, row in enumerate(rows) if i != best]


CLEAR_BY = 2.0
"""Bootstrap standard deviations a model must clear the strongest baseline by to count as above it."""


def _test_jaccard(metrics: dict, split: str) -> tuple[float, float] | None:
    cell = ((metrics.get(split) or {}).get("overall") or {}).get("jaccard_samples") or {}
    mean = cell.get("mean", cell.get("value"))
    return None if mean is None else (float(mean), float(cell.get("std") or 0.0))


def standing(metrics: dict, bar: dict, split: str = "test") -> tuple[float, str] | None:
    """Where a model stands against the strongest baseline (`bar`, its metrics.json): the gap of
    the overall Jaccard (bootstrap means) in bootstrap standard deviations (the larger of the two
    stds), and one of ``above``, ``level`` or ``below`` at `CLEAR_BY` std. None without metrics."""
    mine, theirs = _test_jaccard(metrics, split), _test_jaccard(bar, split)
    if mine is None or theirs is None:
        return None
    unit = max(mine[1], theirs[1], 1e-4)
    gap = (mine[0] - theirs[0]) / unit
    return gap, "above" if gap >= CLEAR_BY else "below" if gap <= -CLEAR_BY else "level"


def standings(rows: list[tuple[str, dict, dict]], split: str = "test") -> list[str]:
    """One line per model (not baseline) of a results table ordered by `strongest_first`, saying
    whether it clears the strongest baseline: a model that does not is not yet a result a
    hospital should deploy instead of the baseline. Empty when the table has no strongest baseline."""
    if not rows or not rows[0][0].endswith(STRONGEST):
        return []
    bar_name, _, bar = rows[0]
    words = {
        "above": "above it: a result",
        "level": f"level with it (within {CLEAR_BY:g} std): not yet better than the baseline",
        "below": "below it: not yet meaningful, use the baseline instead",
    }
    lines = []
    for name, record, metrics in rows[1:]:
        where = None if record.get("kind") == "baseline" else standing(metrics, bar, split)
        if where is not None:
            lines.append(f"- {name}: {where[0]:+.1f} std, {words[where[1]]}")
    if not lines:  # no model row, or no metrics of this split to compare
        return []
    mean, std = _test_jaccard(bar, split)
    name = bar_name.removesuffix(" · " + STRONGEST)
    return [f"Against the {STRONGEST} ({name}, {split} Jaccard {mean:.4f} ± {std:.4f}):"] + lines


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
            notes = has_notes(train) if cfg.notes is None else cfg.notes
            if notes and not has_notes(train):
                raise LeaderError(f"--notes: no visit of {cfg.data}'s training split has a note; leave out --notes")
            features, W, b, training, tried = select_logistic(cfg, train, y_train, val, y_val, meds, notes)
            np.savez(tmp / "model.npz", W=W, b=b)
            (tmp / "features.json").write_text(
                json.dumps({"tokens": features.tokens}, ensure_ascii=False), encoding="utf-8"
            )
            extra["training"] = training
            extra["n_features"] = features.size
            extra["blocks"] = {name: len(tokens) for name, tokens in features.tokens.items()}
            extra["selection"] = tried
            probs_val = _predict_logistic(features, val, W, b)
            probs_test = _predict_logistic(features, test, W, b)
            thresholds, metrics = score(probs_val, probs_test, val, test, dataset, cfg.per_med, bootstrap=cfg.bootstrap)
        extra["seconds"] = round(time.time() - started, 2)
        write_metrics(tmp, metrics)
        split = {"how": cfg.split, "seed": cfg.seed, "target": cfg.target}
        if cfg.external_data is not None:
            split["external"] = str(cfg.external_data)
        config = _config_json(cfg)
        if cfg.method == "logistic":
            # resolved: re-running this config fits the chosen model; "selection" lists what was tried
            config.update(notes="notes" in features.tokens, history=training["history"], l2=training["l2"])
        name = run_name(cfg.method, cfg.per_med, list(features.tokens) if cfg.method == "logistic" else [])
        write_run(tmp, "baseline", name, dataset, split, thresholds, config, **extra)
    return cfg.out


def _load_run(run_dir: Path) -> tuple[str, dict]:
    """(method, arrays of model.npz) of a baseline run folder."""
    record = read_run(run_dir, "baseline")
    method = record.get("config", {}).get("method")
    if not (run_dir / "model.npz").is_file():
        raise LeaderError(f"{run_dir} lacks model.npz; the baseline run is incomplete, train it again")
    with np.load(run_dir / "model.npz", allow_pickle=False) as weights:
        arrays = {k: weights[k] for k in weights.files}  # float32, exactly as in training
    if method not in ("frequency", "logistic"):
        raise LeaderError(f"{run_dir}/run.json names an unknown baseline method '{method}'")
    return method, arrays


def _features(run_dir: Path) -> Features:
    """The feature columns of a logistic run (its features.json)."""
    return Features(read_json(run_dir / "features.json", "baseline features")["tokens"])


def _logistic_logits(run_dir: Path, arrays: dict, samples: list[Sample]) -> np.ndarray:
    return _chunked_logits(*_features(run_dir).rows(samples), arrays["W"], arrays["b"])


def load_logistic(run_dir: Path) -> tuple[Features, np.ndarray, np.ndarray]:
    """(features, W [D, M], b [M]) of a logistic baseline run: what `predict_logits` computes
    with, and what a student started from the baseline (`leader distill --prior`) copies."""
    run_dir = Path(run_dir)
    method, arrays = _load_run(run_dir)
    if method != "logistic":
        raise LeaderError(f"{run_dir} is a {method} baseline, which has no logits; pass a logistic baseline run")
    return _features(run_dir), arrays["W"], arrays["b"]


def predict_logits(run_dir: Path, samples: list[Sample]) -> np.ndarray:
    """Logits float32 [N, M] of a logistic baseline run for `samples` (`predict_probs` is their
    sigmoid): what a teacher started from the baseline (`leader teach --prior`) adds to its head's."""
    features, weights, bias = load_logistic(run_dir)
    return _chunked_logits(*features.rows(samples), weights, bias)


def predict_probs(run_dir: Path, samples: list[Sample], dataset: Dataset) -> np.ndarray:
    """Probabilities [N, M] of a baseline run for `samples` (M = the run's medication labels)."""
    run_dir = Path(run_dir)
    method, arrays = _load_run(run_dir)
    if method == "frequency":
        return np.tile(arrays["freq"], (len(samples), 1))
    return _sigmoid(_logistic_logits(run_dir, arrays, samples))
