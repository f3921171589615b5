"""`leader data jsonl`: a hospital export in the cohort format, validated and cleaned."""

from __future__ import annotations

import gzip
import json

import pytest

from leader.cli import main
from leader.cohort import load_dataset


def _visit(vid, time, dx, meds, px=(), note=None):
    return {
        "visit_id": vid,
        "time": time,
        "diagnoses": list(dx),
        "procedures": list(px),
        "medications": list(meds),
        "note": note,
    }


PATIENTS = [
    {
        "patient_id": "a",
        "profile": {"gender": "F", "age": 71},
        "visits": [
            _visit("a2", "2021-05-01T00:00:00", ["ICD10:I10"], ["C07A"]),
            _visit("a1", "2020-01-01T00:00:00", ["ICD10:I10", "ICD10:E119"], [" C07A ", "A10B"], ["ICD10P:02HV33Z"]),
        ],
    },
    {
        "patient_id": "b",
        "profile": {"gender": "M"},
        "visits": [
            _visit("b1", "2020-02-02T00:00:00", [], ["C07A"]),  # no codes: dropped
            _visit(
                "b2",
                "2020-03-03T00:00:00",
                ["ICD9:4019"],
                ["N02B"],
                note={
                    "history_of_present_illness": "pain",
                    "past_medical_history": "",
                    "allergies": "",
                    "medications_on_admission": "",
                },
            ),
        ],
    },
    {
        "patient_id": "c",
        "profile": {},
        "visits": [_visit("c1", "2020-04-04T00:00:00", ["ICD9:486"], [])],
    },  # no medication
]


def _write(path, patients, gz=False):
    text = "\n".join(json.dumps(p) for p in patients) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_jsonl_export_is_cleaned_and_written(tmp_path):
    source = _write(tmp_path / "export.jsonl.gz", PATIENTS, gz=True)
    vocab = tmp_path / "titles.json"
    vocab.write_text(
        json.dumps({"titles": {"ICD10:I10": "Essential (primary) hypertension", "C07A": "Beta blocking agents"}})
    )
    out = tmp_path / "prepared"
    args = ["data", "jsonl", "--input", str(source), "--out", str(out), "--vocab", str(vocab), "--min-patients", "1"]
    assert main(args) == 0
    data = load_dataset(out)
    assert [p["patient_id"] for p in data.patients] == ["a", "b"]
    assert [v["visit_id"] for v in data.patients[0]["visits"]] == ["a1", "a2"]  # sorted by time
    assert data.patients[0]["visits"][0]["medications"] == ["A10B", "C07A"]
    assert data.medications == ["C07A", "A10B", "N02B"]
    assert data.titles["ICD10:I10"] == "Essential (primary) hypertension" and data.titles["ICD10:E119"] == "ICD10:E119"
    assert data.titles["C07A"] == "Beta blocking agents"
    m = data.manifest
    assert m["source"] == "jsonl"
    assert m["drops"] == {
        "visits": {"no_codes": 1, "no_medication": 1, "no_top_medication": 0},
        "patients": {"no_visit_left": 1},
        "codes": {"malformed": 0, "malformed_by_system": {}},
        "medications": {"blank": 0},
    }
    assert m["visits_with_note"] == 1 and m["codes_without_title"] == 3


def test_fixed_medication_list(tmp_path):
    source = _write(tmp_path / "export.jsonl", PATIENTS)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"medications": ["N02B", "C07A"]}))
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o"), "--vocab", str(vocab)]) == 0
    data = load_dataset(tmp_path / "o")
    assert data.medications == ["N02B", "C07A"]
    # kept visits mention C07A+A10B, C07A, N02B: A10B is not in the fixed list
    assert data.manifest["coverage"] == {"medication_mentions": 4, "kept_mentions": 3, "mapped_share": 0.75}
    assert all(v["medications"] for p in data.patients for v in p["visits"])


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2 is not valid JSON"),
        (
            json.dumps({"patient_id": "x", "profile": {}, "visits": [_visit("x1", "2020", ["I10"], ["C07A"])]}),
            "line 2, visit 1, 'diagnoses': code 'I10' lacks a system prefix; write codes as SYSTEM:VALUE",
        ),
        (
            json.dumps({"patient_id": "x", "visits": [_visit("x1", "2020", ["ICD10:I10"], ["C07A"])]}),
            "line 2: missing field 'profile'",
        ),
        (json.dumps({"patient_id": "x", "profile": {}, "visits": []}), "line 2: patient has no visits"),
        (
            json.dumps(
                {
                    "patient_id": "x",
                    "profile": {},
                    "visits": [{"visit_id": "1", "diagnoses": "ICD10:I10", "procedures": [], "medications": ["C07A"]}],
                }
            ),
            "'diagnoses' must be a list of strings",
        ),
    ],
)
def test_bad_exports(tmp_path, capsys, line, message):
    source = tmp_path / "export.jsonl"
    source.write_text(json.dumps(PATIENTS[0]) + "\n" + line + "\n")
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_non_utf8_export(tmp_path, capsys):
    source = tmp_path / "export.jsonl"
    source.write_bytes(json.dumps(PATIENTS[0]).encode() + b"\n\xff\xfe\n")
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o")]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_bad_vocab(tmp_path, capsys):
    source = _write(tmp_path / "export.jsonl", PATIENTS)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"medications": "C07A"}))
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o"), "--vocab", str(vocab)]) == 2
    assert '"medications" must be a non-empty list' in capsys.readouterr().err
