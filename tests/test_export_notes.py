"""A student that reads notes, end to end: distill --no-teacher on a cohort with notes, export,
ONNX = torch on samples with notes, the runtime encodes a patient exactly as training did; files
of earlier versions (no notes) still load, export and serve."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import onnx
import pytest

from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.encoding import INPUTS
from leader.errors import LeaderError
from leader.export.onnx_export import PARITY_TOL, max_parity_error, parity_cases, set_metadata
from leader.export.runtime import FORMAT_VERSION, PREFIX, Recommender
from leader.samples import make_samples
from tests.conftest import MEDS, TITLES, rule_patients

HOME = {"C07A": "metoprolol", "A10B": "metformin", "C10A": "atorvastatin", "B01A": "warfarin", "N02B": "paracetamol"}


def noted_patients(n: int = 60, seed: int = 0) -> list[dict]:
    """`rule_patients` whose visits after the first carry a note naming the drugs of the visit
    before (home medications) and an allergy; the first visits and every fifth patient have none."""
    rng = random.Random(seed)
    patients = rule_patients(n, seed)
    for p, patient in enumerate(patients):
        for v, visit in enumerate(patient["visits"]):
            if p % 5 == 0 or v == 0:
                continue
            home = [HOME[m] for m in patient["visits"][v - 1]["medications"] if m in HOME]
            visit["note"] = {
                "history_of_present_illness": f"{rng.choice(['Cough', 'Chest pain', 'Fall'])} since 2 days.",
                "past_medical_history": "Hypertension" if "C07A" in visit["medications"] else "",
                "allergies": rng.choice(["No known allergies", "penicillin"]),
                "medications_on_admission": ", ".join(home) or "none",
            }
    return patients


@pytest.fixture(scope="module")
def noted(tmp_path_factory):
    """(dataset folder, student folder, model.onnx) of a tiny note-reading student."""
    tmp = tmp_path_factory.mktemp("notes")
    data = write_dataset(tmp / "data", noted_patients(), MEDS, TITLES, [("C07A", "B01A")], source="test")
    student, model = tmp / "student", tmp / "model.onnx"
    assert main(["distill", "--data", str(data), "--out", str(student), "--no-teacher", "--epochs", "3",
                 "--dim", "16", "--hidden", "32", "--heads", "2", "--no-progress", "--min-patients", "2"]) == 0  # fmt: skip
    assert main(["export", "--onnx", "--student", str(student), "--out", str(model)]) == 0
    return data, student, model


def test_the_student_reads_notes_by_default_and_the_file_carries_the_note_vocabulary(noted):
    data, student, model = noted
    run = json.loads((student / "run.json").read_text())
    encoder = json.loads((student / "encoder.json").read_text())
    config = json.loads((student / "config.json").read_text())["student"]
    assert run["config"]["notes"] is True  # resolved: the training split has notes
    assert "medications_on_admission:metoprolol" in encoder["vocabs"]["notes"]
    assert config["n_notes"] == len(encoder["vocabs"]["notes"]) and encoder["max_note_tokens"] == 256
    proto = onnx.load(str(model))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta[PREFIX + "encoder"] == encoder and meta[PREFIX + "format_version"] == FORMAT_VERSION == 2
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert list(dims) == list(INPUTS) and dims["notes"] == ["batch", "note_tokens"]
    assert "admission note" in model.with_suffix(".md").read_text()


def test_onnx_equals_torch_on_samples_with_notes(noted):
    from leader.student import load_student

    data, student, model = noted
    torch_model, encoder, _ = load_student(student)
    cases = parity_cases(encoder)
    assert {c["notes"].shape[1] for c in cases} == {1, 300, 20}
    assert all((c["notes"] > 0).any() for c in cases) and (cases[2]["notes"].max(1) == 0).any()  # empty notes too
    assert max_parity_error(torch_model, model, cases) <= PARITY_TOL
    samples = make_samples(load_dataset(data))
    arrays = encoder.encode_samples(samples)
    assert (arrays["notes"] > 0).any(1).sum() > 20 and (arrays["notes"] == 0).all(1).sum() > 20
    assert max_parity_error(torch_model, model, [arrays]) <= PARITY_TOL


def test_the_runtime_encodes_a_patient_as_training_did(noted):
    from leader.student import load_student

    data, student, model = noted
    dataset = load_dataset(data)
    _, encoder, _ = load_student(student)
    rec = Recommender(model)
    want = encoder.encode_samples(make_samples(dataset, target="last"))
    got = rec.encode(dataset.patients)
    assert all(np.array_equal(got[k], want[k]) for k in INPUTS)
    assert (got["notes"] > 0).any()
    patient = next(p for p in dataset.patients if p["visits"][-1].get("note"))
    bare = {**patient, "visits": [*patient["visits"][:-1], {**patient["visits"][-1], "note": None}]}
    broken = {**patient, "visits": [*patient["visits"][:-1], {**patient["visits"][-1], "note": ["text"]}]}
    with_note, without, bad = rec.recommend([patient, bare, broken])
    assert with_note.ok and without.ok and with_note.ranked != without.ranked  # the note reaches the output
    assert "'note' must be null or an object of text sections" in bad.error


def test_folders_and_files_of_earlier_versions_still_work(noted, student_dir, exported, tmp_path):
    """A student folder without n_notes loads (and is the no-note model); a format-1 file (five
    inputs) is served with the same probabilities; a note vocabulary without its encoder is refused."""
    from leader.student import load_student

    old = tmp_path / "old-student"
    shutil.copytree(student_dir, old)
    config = json.loads((old / "config.json").read_text())
    assert config["student"].pop("n_notes") == 0
    (old / "config.json").write_text(json.dumps(config))
    model, encoder, _ = load_student(old)
    assert model.note_encoder is None and not encoder.reads_notes

    proto = onnx.load(str(exported))
    assert not any("notes" in node.input for node in proto.graph.node)  # a no-note student ignores the input
    kept = [i for i in proto.graph.input if i.name != "notes"]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    meta = {p.key: p.value for p in proto.metadata_props}
    set_metadata(proto, {**meta, PREFIX + "format_version": "1"})
    onnx.save(proto, str(tmp_path / "v1.onnx"))
    legacy, current = Recommender(tmp_path / "v1.onnx"), Recommender(exported)
    assert legacy.inputs == list(INPUTS[:5])
    patients = rule_patients(12, seed=5)
    assert np.array_equal(legacy.predict(patients), current.predict(patients))

    _, noted_student, _ = noted
    broken = tmp_path / "broken"
    shutil.copytree(noted_student, broken)
    config = json.loads((broken / "config.json").read_text())
    config["student"].pop("n_notes")
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(LeaderError, match="note vocabulary"):
        load_student(broken)
