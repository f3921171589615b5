"""Open code systems: `SYSTEM:VALUE` for any system, one normal form (`leader.cohort.normalize_code`),
system patterns that keep names out of code columns, and `leader data jsonl` cleaning labels and codes."""

from __future__ import annotations

import json

import polars as pl
import pytest

from leader.cli import main
from leader.cohort import code_fits_system, load_dataset, normalize_code, normalize_label, validate_patient
from leader.data.common import ordered_codes
from leader.errors import LeaderError


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("ICD9:401.9", "ICD9:4019"),
        ("ICD9:4019 ", "ICD9:4019"),
        (" ICD9:4019", "ICD9:4019"),
        ("icd9: 401.9", "ICD9:4019"),
        ("ICD10:i10", "ICD10:I10"),
        ("ICD10:E11.9", "ICD10:E119"),
        ("ICD9P:38.93", "ICD9P:3893"),
        ("ICD10P:02hv33z", "ICD10P:02HV33Z"),
        ("ICD10CM:s72.001a", "ICD10CM:S72001A"),
        ("SNOMED: 38341003 ", "SNOMED:38341003"),
        ("snomed:38341003", "SNOMED:38341003"),
        ("CPT:99213", "CPT:99213"),
        ("OPS:5-984", "OPS:5-984"),  # not an ICD system: the dash and case stay as given
        ("LOINC:4548-4", "LOINC:4548-4"),
        ("EICU-DX:cardiovascular|chest pain", "EICU-DX:cardiovascular|chest pain"),
        ("eicu-tx: pulmonary|ventilation ", "EICU-TX:pulmonary|ventilation"),
    ],
)
def test_normalize_code(raw, normal):
    assert normalize_code(raw) == normal
    assert normalize_code(normal) == normal  # idempotent: the normal form is a fixed point


@pytest.mark.parametrize(
    "raw, message",
    [
        ("4019", "lacks a system prefix; write codes as SYSTEM:VALUE, e.g. ICD10:I10 or SNOMED:38341003"),
        (":4019", "lacks a system prefix"),
        ("ICD 9:4019", "lacks a system prefix"),
        ("ICD9:", "has an empty value"),
        ("ICD9:  ", "has an empty value"),
        ("ICD9:.", "has an empty value"),
        ("ICD9:40\x0019", "control character"),
        ("SNOMED:3834\n1003", "control character"),
    ],
)
def test_bad_codes_are_refused(raw, message):
    with pytest.raises(LeaderError, match=message.replace("(", r"\(")) as err:
        normalize_code(raw)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "code, fits",
    [
        ("ICD9:4019", True),
        ("ICD9:401", True),
        ("ICD9:25000", True),
        ("ICD9:V3001", True),
        ("ICD9:E8497", True),
        ("ICD9:JANEDOE0", False),
        ("ICD9:40", False),
        ("ICD9:401999", False),
        ("ICD10:I10", True),
        ("ICD10:C4A0", True),
        ("ICD10:S72001A", True),
        ("ICD10:JANEDOE", False),  # 7 characters, but a name: the second one must be a digit
        ("ICD10:I", False),
        ("ICD10CM:E119", True),
        ("ICD9P:38", True),
        ("ICD9P:3893", True),
        ("ICD9P:38931", False),
        ("ICD9P:AB12", False),
        ("ICD10P:02HV33Z", True),
        ("ICD10P:02HV33", False),
        ("ICD10PCS:0DTJ4ZZ", True),
        ("SNOMED:38341003", True),
        ("SNOMED:123456789012345678", True),
        ("SNOMED:12345", False),
        ("SNOMED:3834100X", False),
        ("CPT:anything at all", True),  # systems without a pattern accept any value
    ],
)
def test_codes_must_fit_their_system(code, fits):
    assert code_fits_system(normalize_code(code)) is fits


def test_labels_normalised_once():
    assert normalize_label(" c07a ") == "C07A" == normalize_label("C07A")
    assert normalize_label("a10ba02") == "A10BA02"
    assert normalize_label(" metoprolol ") == "metoprolol"  # names are not ATC-looking: kept as written
    assert normalize_label("   ") == ""


def _patient(pid, dx, meds=("C07A",), px=(), profile=None, **visit):
    visit = {"visit_id": f"{pid}-1", "diagnoses": list(dx), "procedures": list(px), "medications": list(meds), **visit}
    return {"patient_id": pid, "profile": profile or {"gender": "F", "age": 60}, "visits": [visit]}


def test_any_system_passes_validation():
    patient = _patient("p", ["SNOMED:38341003", "ICD10CM:E119", "EICU-DX:cardiovascular|chest pain"], px=["CPT:99213"])
    assert validate_patient(patient) is patient
    with pytest.raises(LeaderError, match="not in normal form"):  # a prepared cohort holds normal forms only
        validate_patient(_patient("p", ["ICD9:401.9"]))
    assert validate_patient(_patient("p", ["ICD9:401.9"]), normalized=False)


def test_mimic_loaders_normalise_through_normalize_code():
    frame = pl.DataFrame({"hadm_id": [1, 1, 2], "seq_num": ["2", "1", "1"], "code": ["401.9", "v30.01", " 486"]})
    out = ordered_codes(frame, pl.lit("ICD9"))
    assert out["code"].to_list() == ["ICD9:V3001", "ICD9:4019", "ICD9:486"]


def _write(path, patients):
    path.write_text("".join(json.dumps(p) + "\n" for p in patients), encoding="utf-8")
    return path


def _jsonl(tmp_path, patients, *extra):
    source = _write(tmp_path / "export.jsonl", patients)
    out = tmp_path / "prepared"
    return main(["data", "jsonl", "--input", str(source), "--out", str(out), *extra]), out


def test_snomed_cohort_through_data_jsonl(tmp_path):
    """A hospital coding its problem list in SNOMED CT uses `leader data jsonl` as it is."""
    patients = [_patient(f"s{i}", ["SNOMED:38341003", "SNOMED:44054006"], ["C07A", "A10B"]) for i in range(5)]
    code, out = _jsonl(tmp_path, patients)
    assert code == 0
    data = load_dataset(out)
    assert data.patients[0]["visits"][0]["diagnoses"] == ["SNOMED:38341003", "SNOMED:44054006"]


def test_jsonl_one_token_per_code_and_label(tmp_path):
    spellings = ["ICD9:401.9", "ICD9:4019 ", " ICD9:4019", "icd9:4019"]
    patients = [
        _patient(f"p{i}", [spelling, "ICD10:i10" if i % 2 else "ICD10:I10"], ["c07a" if i % 2 else " C07A", "A10B"])
        for i, spelling in enumerate(spellings + ["ICD9:4019"])
    ]
    titles = tmp_path / "titles.json"
    titles.write_text(json.dumps({"titles": {"ICD9:401.9": "Hypertension NOS", "c07a": "beta blocking agents"}}))
    code, out = _jsonl(tmp_path, patients, "--vocab", str(titles))
    assert code == 0
    data = load_dataset(out)
    assert {c for p in data.patients for v in p["visits"] for c in v["diagnoses"]} == {"ICD9:4019", "ICD10:I10"}
    assert data.medications == ["A10B", "C07A"]  # c07a and C07A are one label, received by all five
    assert data.titles["ICD9:4019"] == "Hypertension NOS" and data.titles["C07A"] == "beta blocking agents"


def test_jsonl_drops_and_counts_malformed_codes_and_blank_labels(tmp_path, capsys):
    patients = [_patient(f"p{i}", ["ICD9:4019"], ["C07A"]) for i in range(6)]
    patients[1]["visits"][0]["diagnoses"] += ["ICD9:JANEDOE0", "SNOMED:MRN123450"]
    patients[2]["visits"][0]["medications"] += ["", "   "]
    patients[3]["visits"][0]["diagnoses"] = ["ICD10:DOEJANE"]  # nothing usable left: the visit goes
    code, out = _jsonl(tmp_path, patients)
    assert code == 0
    err = capsys.readouterr().err
    assert "3 codes dropped that do not fit their system (ICD10 1, ICD9 1, SNOMED 1; first on line 2)" in err
    assert "JANEDOE" not in err and "MRN" not in err  # the dropped values are never logged
    data = load_dataset(out)
    drops = data.manifest["drops"]
    assert drops["codes"] == {"malformed": 3, "malformed_by_system": {"ICD10": 1, "ICD9": 1, "SNOMED": 1}}
    assert drops["medications"] == {"blank": 2} and drops["visits"]["no_codes"] == 1
    text = (out / "cohort.jsonl.gz").read_bytes() + (out / "vocab.json").read_bytes()
    assert b"JANEDOE" not in text and b"MRN" not in text
    assert [v["medications"] for p in data.patients for v in p["visits"]] == [["C07A"]] * 5


@pytest.mark.parametrize(
    "bad, message",
    [
        ("ICD9:", "line 2, visit 1, 'diagnoses': code 'ICD9:' has an empty value"),
        ("4019", "line 2, visit 1, 'diagnoses': code '4019' lacks a system prefix; write codes as SYSTEM:VALUE"),
        ("ICD9:40\x0019", "line 2, visit 1, 'diagnoses': code 'ICD9:40\\x0019' holds a control character"),
    ],
)
def test_jsonl_refuses_codes_without_system_or_value(tmp_path, capsys, bad, message):
    patients = [_patient("a", ["ICD9:4019"]), _patient("b", [bad])]
    code, out = _jsonl(tmp_path, patients, "--min-patients", "1")
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_jsonl_refuses_a_patient_on_two_lines(tmp_path, capsys):
    patients = [_patient("a", ["ICD9:4019"]), _patient("b", ["ICD9:486"]), _patient("a", ["ICD9:2724"])]
    patients[2]["visits"][0]["visit_id"] = "a-2"  # disjoint visits: still refused, the export must join them
    code, out = _jsonl(tmp_path, patients, "--min-patients", "1")
    assert code == 2
    err = capsys.readouterr().err
    assert "lines 1 and 3 have the same patient_id" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    numeric = [_patient(7, ["ICD9:4019"]), _patient("7", ["ICD9:486"])]  # 7 and "7" are one patient
    assert _jsonl(tmp_path, numeric, "--min-patients", "1")[0] == 2


def test_jsonl_labels_need_min_patients(tmp_path):
    patients = [_patient(f"p{i}", ["ICD9:4019"], ["C07A"] + (["JANE DOE CREAM"] if i == 0 else [])) for i in range(6)]
    code, out = _jsonl(tmp_path, patients)
    assert code == 0
    data = load_dataset(out)
    assert data.medications == ["C07A"] and data.manifest["medication_labels_below_min_patients"] == 1
    assert data.manifest["options"]["min_patients"] == 5
    code, out = _jsonl(tmp_path, patients, "--min-patients", "1", "--overwrite")
    assert code == 0 and load_dataset(out).medications == ["C07A", "JANE DOE CREAM"]
