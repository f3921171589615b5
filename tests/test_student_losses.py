"""Student losses: properties of the maths, a numpy re-derivation, and stored golden values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from leader.student.losses import bce_loss, info_nce, kd_loss, total_loss

GOLDEN = Path(__file__).parent / "golden" / "student_losses.json"


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(6, 5, generator=g),
        "targets": (torch.rand(6, 5, generator=g) > 0.6).float(),
        "projected": torch.randn(6, 8, generator=g),
        "teacher": torch.randn(6, 8, generator=g).half(),
        "profile": torch.randn(6, 4, generator=g),
        "meds": torch.randn(6, 4, generator=g),
    }


def _values(x) -> dict[str, float]:
    out = {"logits": x["logits"], "profile": x["profile"], "current_meds": x["meds"]}
    total, parts = total_loss(out, x["targets"], x["projected"], x["teacher"], alpha=0.4, beta=0.005, tau=0.5)
    return {
        "bce": float(bce_loss(x["logits"], x["targets"])),
        "kd": float(kd_loss(x["projected"], x["teacher"])),
        "info_nce_tau1": float(info_nce(x["profile"], x["meds"], 1.0)),
        "info_nce_tau05": float(info_nce(x["profile"], x["meds"], 0.5)),
        "total": float(total),
        **{f"part_{k}": v for k, v in parts.items()},
    }


def _numpy_info_nce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = a @ b.T / tau

    def ce(m):
        return float(np.mean(np.log(np.exp(m).sum(1)) - np.diag(m)))

    return (ce(s) + ce(s.T)) / 2


def test_kd_is_zero_when_projection_equals_teacher():
    teacher = torch.randn(4, 16).half()
    assert kd_loss(teacher.float(), teacher).item() == 0.0
    assert kd_loss(teacher.float() + 0.5, teacher).item() == pytest.approx(0.25)


def test_info_nce_is_symmetric():
    x = _inputs(1)
    assert info_nce(x["profile"], x["meds"], 0.7).item() == pytest.approx(info_nce(x["meds"], x["profile"], 0.7).item())


def test_info_nce_is_minimal_for_matched_pairs():
    a = torch.eye(5) * 3.0  # orthogonal: every pairing but the matched one is worse
    matched = info_nce(a, a, 0.1).item()
    for shift in range(1, 5):
        assert matched < info_nce(a, a.roll(shift, 0), 0.1).item()
    # matched orthogonal pairs: -log(e^(1/tau) / (e^(1/tau) + (N-1)))
    assert matched == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 4)), rel=1e-3)


def test_info_nce_weight_drops_rows_without_positive():
    x = _inputs(2)
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    sim = torch.nn.functional.normalize(x["profile"], dim=1) @ torch.nn.functional.normalize(x["meds"], dim=1).T
    rows = -torch.log_softmax(sim, 1).diag() - torch.log_softmax(sim.T, 1).diag()
    expected = (rows * weight).sum() / (2 * weight.sum())
    assert info_nce(x["profile"], x["meds"], 1.0, weight).item() == pytest.approx(expected.item(), rel=1e-6)


def test_losses_match_numpy():
    x = _inputs(0)
    z, y = x["logits"].double().numpy(), x["targets"].double().numpy()
    p = 1 / (1 + np.exp(-z))
    assert bce_loss(x["logits"], x["targets"]).item() == pytest.approx(
        float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()), rel=1e-5
    )
    diff = x["projected"].double().numpy() - x["teacher"].double().numpy()
    assert kd_loss(x["projected"], x["teacher"]).item() == pytest.approx(float((diff**2).mean()), rel=1e-5)
    nce = _numpy_info_nce(x["profile"].double().numpy(), x["meds"].double().numpy(), 0.5)
    assert info_nce(x["profile"], x["meds"], 0.5).item() == pytest.approx(nce, rel=1e-5)


def test_total_loss_weights_the_parts():
    x = _inputs(0)
    v = _values(x)
    assert v["total"] == pytest.approx(v["bce"] + 0.4 * v["kd"] + 0.005 * v["info_nce_tau05"], rel=1e-6)


def test_golden_values():
    golden = json.loads(GOLDEN.read_text())
    values = _values(_inputs(0))
    assert set(values) == set(golden)
    for key, expected in golden.items():
        assert values[key] == pytest.approx(expected, rel=1e-5, abs=1e-7), key


if __name__ == "__main__":  # regenerate the golden file: python tests/test_student_losses.py
    GOLDEN.write_text(json.dumps(_values(_inputs(0)), indent=2) + "\n")
