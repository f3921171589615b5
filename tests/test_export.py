"""`leader export --onnx`: dynamic shapes, parity with torch, metadata, the int8 check.

The chain (tests/conftest.py: `chain`, fixtures `student_dir` and `exported`) runs once per session
on the rule dataset: `leader distill --no-teacher` (tiny student, ~10 s) then `leader export --onnx
--int8 --force` (~15-30 s); tests here and in test_runtime*.py share its files.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from leader.cli import main
from leader.encoding import Encoder
from leader.errors import LeaderError
from leader.export.onnx_export import PARITY_TOL, max_parity_error, parity_cases
from leader.export.quantize import quantize_checked
from leader.export.runtime import PREFIX, Recommender
from leader.io import read_json
from tests.conftest import chain, rule_patients  # noqa: F401 (chain: other modules import it from here)


def test_export_writes_two_checked_files_with_dynamic_axes(exported):
    assert sorted(p.name for p in exported.parent.iterdir()) == ["model.int8.onnx", "model.md", "model.onnx"]
    card = exported.with_name("model.md").read_text()
    assert "model.int8.onnx" in card and "validation Jaccard drop" in card  # the card knows the int8 check
    for path in (exported, exported.with_name("model.int8.onnx")):
        onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(exported)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["visit_mask"] == ["batch", "visits"]
    assert dims["profile"] == ["batch", "profile_tokens"]
    code_axes = [dims[k][2] for k in ("diagnoses", "procedures", "medications")]
    assert all(dims[k][:2] == ["batch", "visits"] for k in ("diagnoses", "procedures", "medications"))
    assert len(set(code_axes)) == 3 and all(isinstance(a, str) for a in code_axes)  # each its own axis
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][0] == "batch"
    assert not any(n.metadata_props for n in graph.node)  # no stack traces / machine paths inside


def test_the_exported_graph_stays_small(exported):
    """onnxruntime spends a batch-1 call mostly on per-node overhead (ARCHITECTURE.md, "The exported
    graph"), so the node count is a speed figure a test can hold: this tiny student exported in 189
    nodes (the benchmark's student, with a note encoder, in 204; 261 before the rows-first layers,
    407 before the batch-first ones). A change that adds shape arithmetic or unfused products
    back shows here first."""
    graph = onnx.load(str(exported)).graph
    ops = [n.op_type for n in graph.node]
    assert len(ops) <= 195, f"{len(ops)} nodes"
    assert ops.count("Split") == 4 and ops.count("Slice") <= 3  # one Split a layer cuts q, k, v


def test_parity_with_torch_on_shapes_unlike_the_example(exported, student_dir):
    from leader.student import load_student

    model, encoder, _ = load_student(student_dir)
    cases = parity_cases(encoder)
    shapes = [
        (a["visit_mask"].shape, tuple(a[k].shape[2] for k in ("diagnoses", "procedures", "medications"))) for a in cases
    ]
    assert {s[0][0] for s in shapes} == {1, 7, 256} and {1, 40} <= {s[0][1] for s in shapes}
    assert {1, 50} <= {w for s in shapes for w in s[1]}
    real = cases[1]["visit_mask"] > 0
    assert ((cases[1]["procedures"].max(-1) == 0) & real).any()  # real visits with no codes of a type
    assert max_parity_error(model, exported, cases) <= PARITY_TOL
    # and through the encoder, on real patients (mixed history lengths in one batch)
    patients = rule_patients(40, seed=3)
    arrays = encoder.encode([p["profile"] for p in patients], [p["visits"] for p in patients])
    assert max_parity_error(model, exported, [arrays]) <= PARITY_TOL


def test_metadata_describes_the_model_and_no_patient(exported, student_dir, rule_dataset_path):
    meta = Recommender(exported).meta
    run = read_json(student_dir / "run.json")
    assert meta["encoder"] == read_json(student_dir / "encoder.json")
    assert meta["thresholds"] == run["thresholds"]
    assert meta["dataset_sha256"] == run["dataset"]["sha256"] != ""
    assert meta["metrics"] == read_json(student_dir / "metrics.json")["test"]
    assert meta["medication_names"]["C07A"] == "beta blocking agents"  # titles from the dataset's vocab.json
    assert sorted(map(sorted, meta["ddi"])) == [["B01A", "C07A"], ["B01A", "N02B"]]
    assert {"leader", "onnxruntime", "torch"} <= set(meta["versions"]["export"])
    assert meta["model"]["precision"] == "fp32"
    text = json.dumps({p.key: p.value for p in onnx.load(str(exported)).metadata_props})
    for patient in rule_patients():
        assert f'"{patient["patient_id"]}"' not in text.replace("\\", "")
        assert patient["visits"][0]["time"] not in text
    assert str(rule_dataset_path) not in text  # no local paths either


def test_int8_twin_is_smaller_close_and_says_how_it_was_checked(exported):
    fp32, int8 = Recommender(exported), Recommender(exported.with_name("model.int8.onnx"))
    q = int8.meta["quantization"]
    assert q["val_samples"] > 0 and q["jaccard_drop"] == pytest.approx(
        q["val_jaccard_fp32"] - q["val_jaccard_int8"], abs=1e-5
    )
    assert int8.meta["model"]["precision"] == "int8" and int8.meta["encoder"] == fp32.meta["encoder"]
    assert exported.with_name("model.int8.onnx").stat().st_size < exported.stat().st_size
    patients = rule_patients(20, seed=5)
    a, b = fp32.predict_arrays(fp32.encode(patients)), int8.predict_arrays(int8.encode(patients))
    assert np.abs(a - b).max() < 0.1


def test_int8_refused_above_max_drop_leaves_no_file(exported, student_dir, rule_dataset_path, tmp_path):
    meta = {PREFIX + k: json.dumps(v) for k, v in Recommender(exported).meta.items()}
    record = read_json(student_dir / "run.json")
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(LeaderError, match="--force"):  # any drop is above a negative limit
        quantize_checked(exported, out, meta, record, rule_dataset_path, max_drop=-1.0)
    assert list(tmp_path.iterdir()) == []
    check = quantize_checked(exported, out, meta, record, rule_dataset_path, max_drop=-1.0, force=True)
    assert check["forced"] and out.is_file()


def test_export_refuses_bad_input_before_writing(student_dir, tmp_path, capsys):
    assert main(["export", "--onnx", "--student", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["export", "--onnx", "--student", str(student_dir), "--out", str(tmp_path / "m.bin")]) == 2
    assert "--out must end in .onnx" in capsys.readouterr().err
    moved = tmp_path / "student"  # the student without a reachable dataset: --int8 cannot check accuracy
    moved.mkdir()
    for f in student_dir.iterdir():
        if f.is_file():
            (moved / f.name).write_bytes(f.read_bytes())
    run = read_json(moved / "run.json")
    run["dataset"]["path"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(run))
    assert main(["export", "--onnx", "--student", str(moved), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_current_visit_medications_never_reach_the_model(exported, student_dir):
    """Training (`Encoder.encode` of samples, whose current visit still lists its drugs) and the
    runtime read the current visit's medications as nothing: whatever it lists changes no input
    and no probability. The drugs of earlier visits are input, one visit later."""
    rec = Recommender(exported)
    encoder = Encoder.from_dict(read_json(student_dir / "encoder.json"))
    patients = rule_patients(10, seed=9)

    def listing(meds):
        return [{**p, "visits": [*p["visits"][:-1], {**p["visits"][-1], "medications": meds}]} for p in patients]

    def training_encode(ps):
        return encoder.encode([p["profile"] for p in ps], [p["visits"] for p in ps])

    nothing, everything = listing([]), listing(list(encoder.medications))
    for encode in (training_encode, rec.encode):
        a, b = encode(nothing), encode(everything)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ours, theirs = rec.encode(everything), training_encode(everything)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    np.testing.assert_array_equal(rec.predict(nothing), rec.predict(everything))
    # visit j shows the drugs of visit j - 1 (none at the first visit)
    vocab = encoder.vocabs["medications"]
    shown = theirs["medications"]
    assert sum(len(p["visits"]) > 1 for p in patients) >= 3
    for b, patient in enumerate(everything):
        for j in range(len(patient["visits"])):
            want = vocab.encode(patient["visits"][j - 1]["medications"][: encoder.max_codes]) if j else []
            assert list(shown[b, j, : len(want)]) == want and not shown[b, j, len(want) :].any(), (b, j)
