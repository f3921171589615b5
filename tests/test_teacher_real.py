"""The embedded SmolLM2-135M-Instruct: conversion, a few training steps, reproducible features."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from leader.cli import main
from leader.samples import make_samples

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def smollm2():
    from leader.teacher.backbone import resolve

    return resolve("smollm2-135m")  # converted once into $LEADER_CACHE, then reused


def test_embedded_backbone_is_converted_once(smollm2):
    from leader.teacher.backbone import EMBEDDED, embedded_gguf, resolve

    assert smollm2.sha256 == smollm2.folder.name and len(smollm2.sha256) == 64
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in smollm2.folder.iterdir()}
    again = resolve(EMBEDDED)
    assert again.folder == smollm2.folder and embedded_gguf().is_file()


def test_a_few_steps_lower_the_loss(smollm2, hand_dataset):
    import torch

    from leader.metrics import labels_matrix
    from leader.teacher.backbone import load_backbone
    from leader.teacher.model import TeacherModel, add_lora, collate
    from leader.teacher.prompt import PromptSettings, encode

    torch.manual_seed(0)
    base, tokenizer = load_backbone(smollm2, dtype=torch.bfloat16)
    model = TeacherModel(
        add_lora(base, 8, 32, 0.0, ["q_proj", "v_proj", "up_proj", "down_proj"]), len(hand_dataset.medications)
    )
    samples = make_samples(hand_dataset)
    ids, mask = collate(encode(samples, hand_dataset.titles, PromptSettings(), tokenizer), tokenizer.pad_token_id)
    y = torch.from_numpy(labels_matrix(samples, hand_dataset.medications))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, pooled = model(ids, mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert pooled.shape == (len(samples), 576)
    assert losses[0] == pytest.approx(np.log(2), abs=1e-4)  # zero-initialised head: p = 0.5 everywhere
    assert losses[-1] < 0.75 * losses[0], losses


def test_teach_and_features_on_smollm2(smollm2, hand_dataset, tmp_path):
    from leader.teacher.features import ensure_features, load_features

    out = tmp_path / "teacher"
    args = [
        "teach",
        "--data",
        str(hand_dataset.path),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    assert main(args) == 0
    info = json.loads((out / "teacher.json").read_text())
    assert info["base_model"] == {"spec": "smollm2-135m", "name": "SmolLM2-135M-Instruct", "sha256": smollm2.sha256}
    assert info["hidden_size"] == 576 and info["training"]["precision"] in ("bf16", "fp32")
    folder = ensure_features(out, hand_dataset, batch_size=4, progress=False)  # written by teach (batches of 16)
    ids, hidden, logits = load_features(out, hand_dataset)
    n = len(make_samples(hand_dataset))
    assert len(ids) == n and hidden.shape == (n, 576) and logits.shape == (n, len(hand_dataset.medications))
    assert np.isfinite(hidden.astype(np.float32)).all() and np.isfinite(logits).all()
    shutil.rmtree(folder)
    ensure_features(out, hand_dataset, batch_size=16, progress=False)  # computed again: the same bits
    _, hidden1, logits1 = load_features(out, hand_dataset)
    np.testing.assert_array_equal(hidden1, hidden)
    np.testing.assert_array_equal(logits1, logits)
    shutil.rmtree(folder)
    ensure_features(out, hand_dataset, batch_size=3, progress=False)  # other batches (padding), same numbers
    _, hidden2, logits2 = load_features(out, hand_dataset)
    a, b = hidden.astype(np.float32), hidden2.astype(np.float32)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999, cosine  # bf16 sums in another order: close, not equal
    # the head reads standardised states, which scales bf16 rounding up with the logits' size
    np.testing.assert_allclose(logits2, logits, rtol=0.1, atol=0.05)
