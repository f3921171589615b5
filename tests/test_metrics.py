"""leader.metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leader import metrics as M
from leader.samples import make_samples

# four samples, four medications; worked out by hand in the comments
Y = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
P = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
# row 0: T={0,1} P={0,2}: J=1/3 prec=1/2 rec=1/2 F1=1/2
# row 1: T={2}   P={2,3}: J=1/2 prec=1/2 rec=1   F1=2/3
# row 2: both empty     : 1 everywhere (exactly right)
# row 3: T={0}   P={}   : 0 everywhere


def test_set_metrics_by_hand():
    assert M.jaccard_samples(Y, P) == pytest.approx((1 / 3 + 1 / 2 + 1 + 0) / 4)
    assert M.precision_samples(Y, P) == pytest.approx((1 / 2 + 1 / 2 + 1 + 0) / 4)
    assert M.recall_samples(Y, P) == pytest.approx((1 / 2 + 1 + 1 + 0) / 4)
    assert M.f1_samples(Y, P) == pytest.approx((1 / 2 + 2 / 3 + 1 + 0) / 4)
    assert M.pred_count(P) == 1.0 and M.true_count(Y) == 1.0


def test_perfect_and_empty_predictions():
    assert M.jaccard_samples(Y, Y) == M.f1_samples(Y, Y) == M.precision_samples(Y, Y) == 1.0
    empty = np.zeros_like(Y)
    # only row 2 (empty truth) is right
    for fn in (M.jaccard_samples, M.precision_samples, M.recall_samples, M.f1_samples):
        assert fn(Y, empty) == pytest.approx(1 / 4)
    assert M.pred_count(empty) == 0.0
    assert M.ddi_score(empty, [(0, 1)]) == 0.0
    # predicting drugs for an empty truth scores 0
    assert M.jaccard_samples([[0, 0]], [[1, 0]]) == 0.0
    assert M.recall_samples([[0, 0]], [[1, 0]]) == 0.0


def test_ddi_rate_pools_pairs():
    # row 0 predicts {0,2}: 1 pair, interacting; row 1 predicts {2,3}: 1 pair, not -> 1/2
    assert M.ddi_score(P, [(2, 0)]) == pytest.approx(0.5)
    # three drugs = three pairs, two of them interact; plus row 1's single clean pair -> 2/4
    three = np.array([[1, 1, 1, 0], [0, 0, 1, 1]])
    assert M.ddi_score(three, [(0, 1), (1, 2)]) == pytest.approx(2 / 4)
    assert M.ddi_score(three, []) == 0.0


def test_average_precision_by_hand():
    # ranking 0(+) 2(-) 1(+) 3(-): precision 1/1 and 2/3 at the hits -> 5/6
    ap = M.average_precision_per_sample([[1, 1, 0, 0]], [[0.9, 0.2, 0.8, 0.1]])
    assert ap[0] == pytest.approx(5 / 6)
    # a tie enters together: the positive gets the precision after the whole tie (1/2)
    assert M.average_precision_per_sample([[1, 0, 0]], [[0.5, 0.5, 0.1]])[0] == pytest.approx(0.5)
    # no positive: undefined, left out of the mean; nothing defined -> None
    ap = M.average_precision_per_sample([[0, 0], [1, 0]], [[0.3, 0.2], [0.9, 0.1]])
    assert math.isnan(ap[0]) and ap[1] == 1.0
    assert M.pr_auc_samples([[0, 0], [1, 0]], [[0.3, 0.2], [0.9, 0.1]]) == 1.0
    assert M.pr_auc_samples([[0, 0]], [[0.3, 0.2]]) is None


def _reference_ap(y, s):
    """scikit-learn's definition, one threshold at a time."""
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        pred = s >= t
        precision = (pred & y).sum() / pred.sum()
        recall = (pred & y).sum() / y.sum()
        total += (recall - prev_recall) * precision
        prev_recall = recall
    return total


def test_average_precision_matches_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random((40, 12)) < 0.3
    y[:, 0] = True
    s = rng.integers(0, 5, (40, 12)) / 4.0  # many ties
    ours = M.average_precision_per_sample(y, s)
    ref = [_reference_ap(y[i], s[i]) for i in range(40)]
    np.testing.assert_allclose(ours, ref)


def test_evaluate_groups_and_bootstrap():
    probs = np.array([[0.9, 0.2, 0.8, 0.1], [0.1, 0.2, 0.7, 0.6], [0.1, 0.1, 0.1, 0.1], [0.3, 0.1, 0.2, 0.1]])
    single = np.array([True, False, True, False])
    out = M.evaluate(Y, probs, 0.5, single, [(0, 2)], bootstrap=5, frac=1.0)
    assert set(out) == {"overall", "single", "multi"}
    overall = out["overall"]
    assert overall["n"] == 4 and set(overall) == {"n", *M.METRICS}
    # probs >= 0.5 is exactly P
    assert overall["jaccard_samples"]["value"] == pytest.approx(M.jaccard_samples(Y, P))
    assert overall["ddi_score"]["value"] == pytest.approx(0.5)
    # frac=1.0: every round is the whole group
    assert overall["f1_samples"]["mean"] == pytest.approx(overall["f1_samples"]["value"])
    assert overall["f1_samples"]["std"] == pytest.approx(0.0)
    # single = rows 0 and 2: J = (1/3 + 1) / 2; multi = rows 1 and 3: (1/2 + 0) / 2
    assert out["single"]["jaccard_samples"]["value"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["multi"]["jaccard_samples"]["value"] == pytest.approx(1 / 4)
    assert out["single"]["true_count"]["value"] == 1.0 and out["multi"]["pred_count"]["value"] == 1.0


def test_evaluate_bootstrap_spread_and_seed():
    rng = np.random.default_rng(0)
    y = rng.random((200, 10)) < 0.3
    probs = np.clip(0.4 * y + 0.6 * rng.random((200, 10)), 0, 1)
    single = rng.random(200) < 0.5
    a = M.evaluate(y, probs, 0.5, single, [(0, 1)], bootstrap=10, frac=0.8, seed=1)
    b = M.evaluate(y, probs, 0.5, single, [(0, 1)], bootstrap=10, frac=0.8, seed=1)
    c = M.evaluate(y, probs, 0.5, single, [(0, 1)], bootstrap=10, frac=0.8, seed=2)
    assert a == b and a != c
    jac = a["overall"]["jaccard_samples"]
    assert 0 < jac["std"] < 0.05 and abs(jac["mean"] - jac["value"]) < 3 * jac["std"]


def test_evaluate_empty_group_and_bad_input():
    out = M.evaluate(Y, Y.astype(float), 0.5, np.zeros(4, bool), [])
    assert out["single"] == {"n": 0} and out["multi"]["n"] == 4
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        M.evaluate(Y, Y * 3.0, 0.5, np.zeros(4, bool), [])
    with pytest.raises(ValueError, match="shapes"):
        M.evaluate(Y, Y[:3], 0.5, np.zeros(4, bool), [])


def test_jaccard_and_count_match_brute_force():
    rng = np.random.default_rng(5)
    y = rng.random((50, 9)) < 0.3
    probs = np.round(rng.random((50, 9)), 2)  # ties with the grid values
    grid = np.array([0.0, 0.1, 0.25, 0.5, 0.77, 1.0])
    jaccard, count = M._jaccard_and_count(y, probs, grid)
    for k, t in enumerate(grid):
        assert jaccard[k] == pytest.approx(M.jaccard_samples(y, probs >= t))
        assert count[k] == pytest.approx(M.pred_count(probs >= t))


def test_tune_threshold_picks_the_exact_cut():
    y = np.array([[1, 1, 0], [1, 0, 0]])
    probs = np.array([[0.9, 0.6, 0.3], [0.8, 0.4, 0.2]])
    t = M.tune_threshold(y, probs)
    assert 0.4 < t <= 0.6  # the only cut giving {0,1} and {0}: count 1.5 = truth, Jaccard 1
    assert M.jaccard_samples(y, probs >= t) == 1.0


def test_tune_threshold_tracks_the_count():
    rng = np.random.default_rng(0)
    y = rng.random((600, 40)) < 0.15
    probs = np.clip(0.3 * y + 0.7 * rng.random((600, 40)), 0, 1)
    t = M.tune_threshold(y, probs)
    truth = M.true_count(y)
    assert abs(M.pred_count(probs >= t) - truth) <= 0.1 * truth
    # it is the best Jaccard among the cuts whose count is within tolerance
    for cut in np.linspace(0.01, 0.99, 99):
        if abs(M.pred_count(probs >= cut) - truth) <= 0.1 * truth:
            assert M.jaccard_samples(y, probs >= cut) <= M.jaccard_samples(y, probs >= t) + 1e-12


def test_tune_threshold_fallback_closest_count():
    # only counts 0 or 3 are possible, truth is 1: 0 is closer
    t = M.tune_threshold([[1, 0, 0]], [[0.7, 0.7, 0.7]])
    assert t > 0.7
    assert M.tune_threshold(np.zeros((0, 3)), np.zeros((0, 3))) == 0.5
    assert M.tune_threshold(np.zeros((0, 3)), np.zeros((0, 3)), per_med=True).tolist() == [0.5] * 3


def test_tune_threshold_per_med_separates_columns():
    # column 0: positives 0.8, negatives 0.6; column 1: positives 0.3, negatives 0.1
    y = np.zeros((20, 2), dtype=int)
    y[:10, 0] = 1
    y[5:15, 1] = 1
    probs = np.where(y == 1, [0.8, 0.3], [0.6, 0.1])
    glob = M.tune_threshold(y, probs)
    per = M.tune_threshold(y, probs, per_med=True)
    assert per.shape == (2,)
    assert M.jaccard_samples(y, probs >= per) == 1.0
    assert M.jaccard_samples(y, probs >= glob) < 1.0


def test_helpers_on_samples(hand_dataset):
    samples = make_samples(hand_dataset)
    y = M.labels_matrix(samples, hand_dataset.medications)
    assert y.shape == (7, 6) and y.sum() == 10  # 2 + 1 + 2 + 3 + 1 + 1 + 0 medications
    assert (
        y[samples.index(next(s for s in samples if s.sample_id == "1:2")), hand_dataset.medications.index("B01A")] == 1
    )
    assert M.single_mask(samples).tolist() == [True, True, False, False, True, True, False]
    meds = hand_dataset.medications
    assert M.ddi_index([("C07A", "B01A"), ("B01A", "C07A"), ("C07A", "ZZZ")], meds) == [
        tuple(sorted((meds.index("C07A"), meds.index("B01A"))))
    ]


def test_format_table():
    probs = np.array([[0.9, 0.2, 0.8, 0.1], [0.1, 0.2, 0.7, 0.6], [0.1, 0.1, 0.1, 0.1], [0.3, 0.1, 0.2, 0.1]])
    table = M.evaluate(Y, probs, 0.5, np.zeros(4, bool), [(0, 2)], bootstrap=3, frac=1.0)
    text = M.format_table({"frequency": {"test": table}, "other": {"val": table}}, split="test")
    lines = text.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | Jaccard (overall)")
    row = lines[2].split(" | ")
    assert row[0] == "| frequency" and row[1] == f"{M.jaccard_samples(Y, P):.4f} ± 0.0000"
    assert "1.00 / 1.00" in lines[2]
    assert lines[2].count("–") == 5  # the empty single-visit group (n shows 0)
    assert lines[3].count("–") == 15  # no test metrics for "other"
