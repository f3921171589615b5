"""`leader export --onnx`: dynamic shapes, parity with torch, metadata, int8 check.

The student folder fixture is built here (random tiny Student, real Encoder on the rule dataset,
every file `leader distill` writes); the export runs once per session (~15 s) and is shared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from leader.cohort import load_dataset
from leader.encoding import Encoder
from leader.errors import LeaderError
from leader.export.runtime import FORMAT_VERSION, INPUTS, PREFIX
from leader.samples import split_samples

pytestmark = pytest.mark.filterwarnings("ignore")  # the exporter's FutureWarnings are not ours


def make_student_dir(out, dataset_path, thresholds=0.5, seed=0):
    """A student folder as `leader distill --out` writes it, with a random tiny model."""
    import torch

    from leader.io import write_json
    from leader.metrics import ddi_index, evaluate, labels_matrix, single_mask
    from leader.runinfo import write_run
    from leader.student.io import save_weights
    from leader.student.model import Student, StudentConfig, tensors

    torch.manual_seed(seed)
    dataset = load_dataset(dataset_path)
    split = {"how": "random", "seed": 0, "target": "all"}
    parts = split_samples(dataset, split["how"], split["seed"], split["target"])
    encoder = Encoder.fit(parts["train"], dataset.medications, max_visits=8, max_codes=40)
    cfg = StudentConfig(
        n_diagnoses=len(encoder.vocabs["diagnoses"]),
        n_procedures=len(encoder.vocabs["procedures"]),
        n_medications=len(encoder.vocabs["medications"]),
        n_profile=len(encoder.vocabs["profile"]),
        n_labels=len(dataset.medications),
        dim=16,
        hidden=32,
        heads=2,
        max_visits=encoder.max_visits,
    )
    model = Student(cfg).eval()
    out.mkdir(parents=True)
    save_weights(model, out / "model.safetensors")
    write_json(out / "config.json", {"student": cfg.to_dict(), "train": {"epochs": 0, "seed": seed}})
    write_json(out / "encoder.json", encoder.to_dict())
    (out / "ddi.csv").write_text("med_a,med_b\n" + "".join(f"{a},{b}\n" for a, b in dataset.ddi))
    tables = {}
    for name in ("val", "test"):
        samples = parts[name]
        with torch.inference_mode():
            probs = torch.sigmoid(model(*tensors(encoder.encode_samples(samples)))).numpy()
        tables[name] = evaluate(labels_matrix(samples, dataset.medications), probs, thresholds,
                                single_mask(samples), ddi_index(dataset.ddi, dataset.medications))
    write_json(out / "metrics.json", tables)
    write_run(out, "student", "student (random)", dataset, split, thresholds, {"seed": seed})
    return out


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory, rule_dataset_path):
    return make_student_dir(tmp_path_factory.mktemp("student") / "student", rule_dataset_path)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, student_dir):
    """(model, encoder, path of the fp32 ONNX file with its metadata) for the fixture student."""
    from leader.export.onnx_export import build_metadata, save_checked, set_metadata, to_onnx
    from leader.student import load_student

    model, encoder, record = load_student(student_dir)
    proto = to_onnx(model, encoder)
    set_metadata(proto, build_metadata(record, encoder, {"C07A": "beta blocking agents"}, [("B01A", "C07A")], {"test": {}}))
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    save_checked(proto, path)
    return model, encoder, path
