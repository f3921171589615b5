"""Medication-recommendation metrics (numpy only; the runtime may import this, so never torch).

Conventions shared by every function here:

- ``y_true`` is a {0,1} matrix [N samples, M medications]; ``probs`` the predicted probabilities
  [N, M]; a medication is *predicted* when ``probs >= threshold`` (one threshold, or one per
  column).
- Set metrics are computed per sample, then averaged over samples (PyHealth's ``*_samples``
  names, the convention of LEADER and LAMO tables). With T the true set and P the predicted set:
  Jaccard ``|T∩P| / |T∪P|``, precision ``|T∩P| / |P|``, recall ``|T∩P| / |T|``, F1
  ``2·prec·rec / (prec + rec)`` (0 when both are 0).
- Edge cases (decided here, the same for every metric): an undefined ratio is 1 when T and P are
  both empty (an empty prescription that is exactly right) and 0 otherwise. So an empty
  prediction for a non-empty truth scores 0 everywhere, and predicting drugs for an empty truth
  scores 0.
- PR-AUC of a sample with no true medication is undefined (there is nothing to rank); such
  samples are left out of the PR-AUC mean (scikit-learn, which PyHealth calls, would count them
  as 0). A group with no positive at all has PR-AUC ``None``.
- The DDI rate is pooled over pairs, not averaged per sample (see `ddi_score`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from leader.encoding import multi_hot

METRICS = (
    "jaccard_samples",
    "precision_samples",
    "recall_samples",
    "f1_samples",
    "pr_auc_samples",
    "ddi_score",
    "pred_count",
    "true_count",
)
GROUPS = ("overall", "single", "multi")


# ---------------------------------------------------------------------------------------------
# per-sample pieces


def _as_bool(matrix) -> np.ndarray:
    return np.asarray(matrix) > 0


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: np.ndarray) -> np.ndarray:
    """num / den per sample; 1 where T and P are both empty, 0 where only den is 0."""
    num, den = num.astype(np.float64), den.astype(np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(both_empty, 1.0, out)


def _set_parts(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t, p = _as_bool(y_true), _as_bool(y_pred)
    inter = (t & p).sum(1)
    n_true, n_pred = t.sum(1), p.sum(1)
    return inter, n_true, n_pred, (n_true == 0) & (n_pred == 0)


def jaccard_per_sample(y_true, y_pred) -> np.ndarray:
    """Jaccard index per sample, ``|T∩P| / |T∪P|`` (1 when both sets are empty)."""
    inter, n_true, n_pred, empty = _set_parts(y_true, y_pred)
    return _ratio(inter, n_true + n_pred - inter, empty)


def precision_per_sample(y_true, y_pred) -> np.ndarray:
    """``|T∩P| / |P|`` per sample (1 when both empty, 0 for an empty prediction otherwise)."""
    inter, _, n_pred, empty = _set_parts(y_true, y_pred)
    return _ratio(inter, n_pred, empty)


def recall_per_sample(y_true, y_pred) -> np.ndarray:
    """``|T∩P| / |T|`` per sample (1 when both empty, 0 when only T is empty)."""
    inter, n_true, _, empty = _set_parts(y_true, y_pred)
    return _ratio(inter, n_true, empty)


def f1_per_sample(y_true, y_pred) -> np.ndarray:
    """``2·prec·rec / (prec + rec)`` per sample, 0 when prec + rec = 0."""
    prec, rec = precision_per_sample(y_true, y_pred), recall_per_sample(y_true, y_pred)
    total = prec + rec
    return np.divide(2 * prec * rec, total, out=np.zeros_like(total), where=total > 0)


def average_precision_per_sample(y_true, probs) -> np.ndarray:
    """Average precision of each sample's medication ranking; NaN for a sample with no positive.

    ``AP = Σ_n (R_n − R_{n−1}) · P_n`` over the distinct scores taken as thresholds, from the
    highest down (scikit-learn's ``average_precision_score``, which PyHealth's
    ``pr_auc_samples`` averages over samples). Tied scores enter together: every positive in a
    tie gets the precision measured after the whole tie.
    """
    t = _as_bool(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    n, m = t.shape
    if n == 0:
        return np.zeros(0)
    order = np.argsort(-probs, axis=1, kind="stable")
    scores = np.take_along_axis(probs, order, 1)
    hits = np.take_along_axis(t, order, 1)
    # position of the last element of each element's tie group (ties are adjacent after sorting)
    positions = np.broadcast_to(np.arange(m), (n, m))
    is_end = np.ones((n, m), dtype=bool)
    is_end[:, :-1] = scores[:, :-1] != scores[:, 1:]
    ends = np.where(is_end, positions, m)
    ends = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]
    cum_hits = np.cumsum(hits, axis=1)
    precision_at_end = np.take_along_axis(cum_hits, ends, 1) / (ends + 1.0)
    n_pos = hits.sum(1)
    ap = (precision_at_end * hits).sum(1)
    return np.divide(ap, n_pos, out=np.full(n, np.nan), where=n_pos > 0)


def ddi_pair_counts(y_pred, ddi_pairs: Iterable[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (number of interacting pairs among its predicted drugs, number of pairs)."""
    p = _as_bool(y_pred)
    pairs = np.array(sorted({(min(i, j), max(i, j)) for i, j in ddi_pairs if i != j}), dtype=np.int64).reshape(-1, 2)
    k = p.sum(1).astype(np.float64)
    bad = (p[:, pairs[:, 0]] & p[:, pairs[:, 1]]).sum(1).astype(np.float64)
    return bad, k * (k - 1) / 2.0


# ---------------------------------------------------------------------------------------------
# averaged metrics (PyHealth names)


def jaccard_samples(y_true, y_pred) -> float:
    """Mean per-sample Jaccard, ``1/N Σ_i |T_i∩P_i| / |T_i∪P_i|`` (PyHealth ``jaccard_samples``; LEADER, LAMO)."""
    return float(jaccard_per_sample(y_true, y_pred).mean())


def precision_samples(y_true, y_pred) -> float:
    """Mean per-sample precision, ``1/N Σ_i |T_i∩P_i| / |P_i|`` (PyHealth ``precision_samples``)."""
    return float(precision_per_sample(y_true, y_pred).mean())


def recall_samples(y_true, y_pred) -> float:
    """Mean per-sample recall, ``1/N Σ_i |T_i∩P_i| / |T_i|`` (PyHealth ``recall_samples``)."""
    return float(recall_per_sample(y_true, y_pred).mean())


def f1_samples(y_true, y_pred) -> float:
    """Mean per-sample F1, ``1/N Σ_i 2·prec_i·rec_i / (prec_i + rec_i)`` (PyHealth ``f1_samples``; LEADER, LAMO)."""
    return float(f1_per_sample(y_true, y_pred).mean())


def pr_auc_samples(y_true, probs) -> float | None:
    """Mean per-sample average precision over samples with at least one true medication.

    ``1/|S| Σ_{i∈S} AP_i``, S = samples with a positive (PyHealth ``pr_auc_samples``; the PRAUC
    of LEADER and LAMO tables). None when no sample has a positive.
    """
    ap = average_precision_per_sample(y_true, probs)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else None


def ddi_score(y_pred, ddi_pairs: Iterable[tuple[int, int]]) -> float:
    """DDI rate: the share of interacting pairs among all pairs of co-predicted drugs.

    ``Σ_i #{(a,b) ⊂ P_i, a<b, (a,b) ∈ DDI} / Σ_i |P_i|(|P_i|−1)/2``, pooled over all samples
    (not a per-sample mean), 0 when no sample predicts two drugs. This is SafeDrug's
    ``ddi_rate_score`` (Yang et al. 2021), also PyHealth's, reported by LEADER and LAMO.
    ``ddi_pairs`` are unordered pairs of label indices.
    """
    bad, pairs = ddi_pair_counts(y_pred, ddi_pairs)
    total = pairs.sum()
    return float(bad.sum() / total) if total > 0 else 0.0


def pred_count(y_pred) -> float:
    """Mean number of predicted medications per sample, ``1/N Σ_i |P_i|`` (overprescription check, LAMO)."""
    return float(_as_bool(y_pred).sum(1).mean())


def true_count(y_true) -> float:
    """Mean number of true medications per sample, ``1/N Σ_i |T_i|``."""
    return float(_as_bool(y_true).sum(1).mean())


# ---------------------------------------------------------------------------------------------
# evaluation with groups and bootstrap


def _check_probs(probs: np.ndarray) -> None:
    if probs.size and not (np.isfinite(probs).all() and probs.min() >= 0.0 and probs.max() <= 1.0):
        raise ValueError("probs must be probabilities in [0, 1] (apply a sigmoid to logits first)")


def predict(probs, thresholds) -> np.ndarray:
    """Predicted sets: ``probs >= thresholds`` (a float, or one threshold per medication)."""
    return np.asarray(probs) >= np.asarray(thresholds, dtype=np.float64)


def _per_sample(y_true, probs, y_pred, ddi_pairs) -> dict[str, np.ndarray]:
    """Everything the metrics need, per sample, so a bootstrap round is a cheap mean."""
    bad, pairs = ddi_pair_counts(y_pred, ddi_pairs)
    return {
        "jaccard_samples": jaccard_per_sample(y_true, y_pred),
        "precision_samples": precision_per_sample(y_true, y_pred),
        "recall_samples": recall_per_sample(y_true, y_pred),
        "f1_samples": f1_per_sample(y_true, y_pred),
        "pr_auc_samples": average_precision_per_sample(y_true, probs),
        "ddi_bad": bad,
        "ddi_pairs": pairs,
        "pred_count": _as_bool(y_pred).sum(1).astype(np.float64),
        "true_count": _as_bool(y_true).sum(1).astype(np.float64),
    }


def _summarise(parts: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in METRICS:
        if name == "ddi_score":
            total = parts["ddi_pairs"][idx].sum()
            out[name] = float(parts["ddi_bad"][idx].sum() / total) if total > 0 else 0.0
        elif name == "pr_auc_samples":
            ap = parts[name][idx]
            ap = ap[~np.isnan(ap)]
            out[name] = float(ap.mean()) if ap.size else None
        else:
            out[name] = float(parts[name][idx].mean())
    return out


def _group_table(parts, idx: np.ndarray, bootstrap: int, frac: float, rng: np.random.Generator) -> dict:
    n = int(idx.size)
    if n == 0:
        return {"n": 0}
    whole = _summarise(parts, idx)
    size = max(1, int(round(frac * n)))
    rounds = [_summarise(parts, rng.choice(idx, size=size, replace=False)) for _ in range(bootstrap)]
    table: dict = {"n": n}
    for name in METRICS:
        values = [r[name] for r in rounds if r[name] is not None]
        table[name] = {
            "value": whole[name],
            "mean": float(np.mean(values)) if values else whole[name],
            "std": float(np.std(values)) if values else (None if whole[name] is None else 0.0),
        }
    return table


def evaluate(
    y_true,
    probs,
    thresholds,
    single,
    ddi_pairs: Sequence[tuple[int, int]],
    bootstrap: int = 10,
    frac: float = 0.8,
    seed: int = 0,
) -> dict:
    """All metrics for the overall, single-visit and multi-visit groups.

    Returns ``{"overall": T, "single": T, "multi": T}`` with
    ``T = {"n": n, metric: {"value": v, "mean": m, "std": s}, ...}`` for every name in METRICS:
    ``value`` on the whole group; ``mean``/``std`` (population std) over `bootstrap` subsets of
    ``round(frac·n)`` samples drawn without replacement (LEADER reports 10 rounds of 80%).
    With ``bootstrap=0``, mean = value and std = 0. An empty group is ``{"n": 0}``. `single`
    marks samples without an earlier visit.
    """
    y_true = _as_bool(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    single = np.asarray(single, dtype=bool)
    if y_true.shape != probs.shape or y_true.ndim != 2 or single.shape != (y_true.shape[0],):
        raise ValueError(f"shapes differ: y_true {y_true.shape}, probs {probs.shape}, single {single.shape}")
    _check_probs(probs)
    parts = _per_sample(y_true, probs, predict(probs, thresholds), ddi_pairs)
    rng = np.random.default_rng(seed)
    everyone = np.arange(y_true.shape[0])
    groups = {"overall": everyone, "single": everyone[single], "multi": everyone[~single]}
    return {name: _group_table(parts, idx, bootstrap, frac, rng) for name, idx in groups.items()}


# ---------------------------------------------------------------------------------------------
# decision thresholds


def _grid(probs: np.ndarray) -> np.ndarray:
    """Candidate thresholds: a fixed 0.01 grid plus quantiles of the scores (for peaked models)."""
    fixed = np.linspace(0.01, 0.99, 99)
    flat = probs.ravel()[:: max(1, probs.size // 200_000)]  # a strided subsample is plenty for quantiles
    quant = np.quantile(flat, np.linspace(0.0, 1.0, 201)) if flat.size else np.zeros(0)
    return np.unique(np.concatenate([fixed, quant[(quant > 0) & (quant <= 1)]]))


def _jaccard_and_count(y_true: np.ndarray, scores: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean Jaccard and mean |P| when predicting ``scores >= t``, for every t in sorted `grid`.

    One pass: each score falls in a bin (how many grid values it reaches); per-sample
    histograms of bins, summed from the top, give |P_i| and |T_i∩P_i| at every threshold.
    """
    n, g = scores.shape[0], len(grid)
    jaccard_sum, count_sum = np.zeros(g), np.zeros(g)
    for start in range(0, n, 4096):  # chunks keep the [rows, G] histograms small
        rows = slice(start, min(n, start + 4096))
        y, k = y_true[rows], min(n, start + 4096) - start
        bins = np.searchsorted(grid, scores[rows], side="right")  # predicted at grid[j] iff j < bin
        keys = (np.arange(k)[:, None] * (g + 1) + bins).ravel()
        hist = np.bincount(keys, minlength=k * (g + 1)).reshape(k, g + 1)
        hits = np.bincount(keys, weights=y.ravel(), minlength=k * (g + 1)).reshape(k, g + 1)
        n_pred = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # [rows, G]: bins above j
        tp = np.cumsum(hits[:, ::-1], axis=1)[:, ::-1][:, 1:]
        union = y.sum(1)[:, None] + n_pred - tp
        jaccard_sum += np.where(union > 0, tp / np.maximum(union, 1), 1.0).sum(0)
        count_sum += n_pred.sum(0)
    return jaccard_sum / n, count_sum / n


def _pick(jaccard: np.ndarray, count: np.ndarray, target: float, tol: float) -> int:
    """Index of the best candidate: max Jaccard among counts within tolerance, else closest count."""
    slack = max(tol * target, 0.25)
    gap = np.abs(count - target)
    ok = np.flatnonzero(gap <= slack + 1e-12)
    if ok.size:
        best = ok[jaccard[ok] == jaccard[ok].max()]
        return int(best[np.argmin(gap[best])])
    closest = np.flatnonzero(gap == gap.min())
    return int(closest[np.argmax(jaccard[closest])])


def tune_threshold(y_true, probs, per_med: bool = False, count_tol: float = 0.10, min_pos: int = 5):
    """Decision threshold(s) chosen on validation so the predicted count tracks the true count.

    LAMO (Zhao et al. 2025) shows LLM recommenders overprescribe: tuning for Jaccard alone can
    buy a little accuracy with many extra drugs. The rule here:

    Global (``per_med=False``): over candidate thresholds t (a 0.01 grid and score quantiles),
    keep those whose mean predicted count is within ``max(count_tol · true_count, 0.25)`` of the
    mean true count, and take the one with the highest mean Jaccard (ties: the count closest to
    the truth). If none is within tolerance, take the t with the closest count (ties: higher
    Jaccard). Returns a float.

    Per medication (``per_med=True``): each column with at least `min_pos` validation positives
    first gets the threshold maximising its own F1 over the grid; other columns get the global
    threshold above. Then the whole vector is checked against the count: a common shift δ
    (−0.5…0.5, step 0.01; thresholds clipped to [0.001, 1]) is chosen by the same rule as the
    global threshold, so the per-column choice cannot drift into overprescription. Returns an
    array [M].

    An empty input falls back to 0.5; a validation set without positives ends at the lowest
    threshold that predicts nothing (count closest to 0).
    """
    y_true = _as_bool(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.shape != probs.shape or probs.ndim != 2:
        raise ValueError(f"shapes differ: y_true {y_true.shape}, probs {probs.shape}")
    _check_probs(probs)
    if probs.size == 0:
        return np.full(probs.shape[1], 0.5) if per_med else 0.5
    target = float(y_true.sum(1).mean())
    grid = _grid(probs)
    glob = float(grid[_pick(*_jaccard_and_count(y_true, probs, grid), target, count_tol)])
    if not per_med:
        return glob
    thresholds = np.full(probs.shape[1], glob)
    for col in np.flatnonzero(y_true.sum(0) >= min_pos):
        order = np.argsort(probs[:, col], kind="stable")
        suffix = np.append(np.cumsum(y_true[order[::-1], col])[::-1], 0)  # positives at sorted index >= j
        first = np.searchsorted(probs[order, col], grid, side="left")
        f1 = 2 * suffix[first] / (len(order) - first + suffix[0])
        thresholds[col] = grid[int(np.argmax(f1))]
    # probs >= t + δ  <=>  probs − t >= δ: the shift is a global threshold on the margins
    shifts = np.round(np.arange(-0.5, 0.5001, 0.01), 2)
    jaccard, count = _jaccard_and_count(y_true, probs - thresholds, shifts)
    order = np.argsort(np.abs(shifts), kind="stable")  # prefer no shift when it is as good
    best = order[_pick(jaccard[order], count[order], target, count_tol)]
    return np.clip(thresholds + shifts[best], 0.001, 1.0)


# ---------------------------------------------------------------------------------------------
# helpers for the stages


def labels_matrix(samples, medications: Sequence[str]) -> np.ndarray:
    """{0,1} float32 [N, M] of each sample's `labels` (`leader.encoding.multi_hot`)."""
    return multi_hot([sample.labels for sample in samples], medications)


def single_mask(samples) -> np.ndarray:
    """bool [N]: True for a sample without an earlier visit."""
    return np.array([len(s.visits) == 1 for s in samples], dtype=bool)


def ddi_index(ddi: Iterable[tuple[str, str]], medications: Sequence[str]) -> list[tuple[int, int]]:
    """DDI pairs of labels as sorted, unique (i, j) index pairs; pairs outside `medications` are dropped."""
    index = {m: i for i, m in enumerate(medications)}
    pairs = {tuple(sorted((index[a], index[b]))) for a, b in ddi if a in index and b in index and a != b}
    return sorted(pairs)


_COLUMNS = (("jaccard_samples", "Jaccard"), ("f1_samples", "F1"), ("pr_auc_samples", "PR-AUC"), ("ddi_score", "DDI"))


def _cell(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    mean, std = entry["mean"], entry.get("std")
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f}"


def format_table(tables: dict[str, dict], split: str = "test") -> str:
    """Markdown table, one row per model: Jaccard, F1, PR-AUC, DDI (bootstrap mean ± std) and
    mean predicted / true medication count, for the overall, single-visit and multi-visit groups.

    `tables` maps a model name to its metrics (``{"val": {...}, "test": {...}}``, as in
    metrics.json); `split` picks which one is shown.
    """
    head = ["model"]
    for group in GROUPS:
        head += [f"{label} ({group})" for _, label in _COLUMNS] + [f"#meds pred/true ({group})", f"n ({group})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, metrics in tables.items():
        row = [name]
        for group in GROUPS:
            table = (metrics.get(split) or {}).get(group) or {"n": 0}
            row += [_cell(table.get(key)) for key, _ in _COLUMNS]
            if table.get("n"):
                row.append(f"{table['pred_count']['value']:.2f} / {table['true_count']['value']:.2f}")
            else:
                row.append("–")
            row.append(str(table.get("n", 0)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
