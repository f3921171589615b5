"""The embedded SmolLM2-135M-Instruct: conversion, a few training steps, reproducible features."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

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
    """Teach, then the feature cache: bitwise the same when recomputed in the same batches, the
    same numbers in other batches (padding) up to what the precision promises.

    fp32 tests the algorithm (right padding, the last real token pooled): batch sizes 1, 3 and 16
    agree to 1e-3 of the logit scale (measured 4e-7 on an AMD EPYC; a wrong padding side or pooled
    token moves logits by 94-126% of it). bf16 tests the shipped path: AMX, AVX512-BF16 and GPUs
    sum matmuls in different orders, and each order rounds differently at every one of the 30
    layers (~2^-8 relative each), which the head's standardisation amplifies. Simulated here by
    1-8 ulps of noise on every Linear output: <= 9% of max |logit| and a cosine >= 0.97 between
    the standardised states the head reads (the Intel AMX failure of issue 15 was 0.31 apart).
    Bound: 15% of max |logit| and cosine >= 0.9; the bugs above give 94-126% and cosines below 0.
    """
    from leader.teacher.backbone import COMPILED, bf16_supported
    from leader.teacher.features import ensure_features, load_features
    from leader.teacher.infer import load_teacher, run_teacher

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
        "--no-refit-head",  # the cache as the model computes it (a refit head's logits come from the fp16 states)
    ]
    assert main(args) == 0
    info = json.loads((out / "teacher.json").read_text())
    assert info["base_model"] == {"spec": "smollm2-135m", "name": "SmolLM2-135M-Instruct", "sha256": smollm2.sha256}
    precision = "bf16" if bf16_supported() else "fp32"  # --precision auto: bf16 where the CPU has fast bf16
    assert info["hidden_size"] == 576 and info["training"]["precision"] == precision
    # the blocks train compiled (the default) wherever torch has a C++ compiler to compile them with
    compiler = shutil.which("g++") or shutil.which("c++")
    assert info["training"]["compiled"] == (COMPILED if compiler else "off: no C++ compiler (g++) for torch.compile")
    folder = ensure_features(out, hand_dataset, batch_size=4, progress=False)  # written by teach (batches of 16)
    assert json.loads((folder / "index.json").read_text())["precision"] == precision
    ids, hidden, logits = load_features(out, hand_dataset)
    samples = make_samples(hand_dataset)
    n = len(samples)
    assert len(ids) == n and hidden.shape == (n, 576) and logits.shape == (n, len(hand_dataset.medications))
    assert np.isfinite(hidden.astype(np.float32)).all() and np.isfinite(logits).all()
    shutil.rmtree(folder)
    # computed again as teach computed it (compiled blocks, batches of 16): the same bits
    ensure_features(out, hand_dataset, batch_size=16, progress=False, compile=True)
    _, hidden1, logits1 = load_features(out, hand_dataset)
    np.testing.assert_array_equal(hidden1, hidden)
    np.testing.assert_array_equal(logits1, logits)

    head = load_file(out / "head.safetensors")

    def standardised(states):
        return (states.astype(np.float32) - head["center"]) / head["scale"]

    def min_cosine(a, b):
        return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

    # the algorithm, in fp32: padding and batch composition change nothing beyond fp32 rounding
    teacher = load_teacher(out, precision="fp32")
    exact = {bs: run_teacher(teacher, samples, hand_dataset.titles, batch_size=bs) for bs in (1, 3, 16)}
    scale = np.abs(exact[1][1]).max()
    for bs in (3, 16):
        assert np.abs(exact[bs][1] - exact[1][1]).max() <= 1e-3 * scale, bs
        assert np.abs(exact[bs][0] - exact[1][0]).max() <= 1e-3 * np.abs(exact[1][0]).max(), bs
    # the shipped precision in other batches: as close as that precision's rounding allows
    shutil.rmtree(folder)
    ensure_features(out, hand_dataset, batch_size=3, progress=False)
    _, hidden2, logits2 = load_features(out, hand_dataset)
    assert np.abs(logits2 - logits).max() <= 0.15 * np.abs(logits).max()
    assert min_cosine(standardised(hidden2), standardised(hidden)) >= 0.9
    # and that precision computes what fp32 computes
    assert min_cosine(standardised(hidden), standardised(exact[1][0])) >= 0.9
