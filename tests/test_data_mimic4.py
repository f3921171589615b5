"""`leader data mimic4` on tiny MIMIC-IV v2.x tables written by the test (csv.gz, lowercase headers)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest

from leader.cli import main
from leader.cohort import load_dataset

TABLES = {
    "hosp/patients": [
        "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
        "1,F,60,2150,2008 - 2010,",
        "2,M,91,2160,2017 - 2019,",
        "3,F,40,2170,2014 - 2016,",
        "4,M,50,2180,2011 - 2013,",
    ],
    "hosp/admissions": [
        "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,admission_location,"
        "discharge_location,insurance,language,marital_status,race,edregtime,edouttime,hospital_expire_flag",
        "1,102,2152-05-01 10:00:00,2152-05-04 10:00:00,,URGENT,P1,CLINIC,HOME,Medicare,ENGLISH,MARRIED,WHITE,,,0",
        "1,101,2150-03-01 10:00:00,2150-03-05 10:00:00,,EW EMER.,P1,EMERGENCY ROOM,HOME,Medicare,ENGLISH,MARRIED,WHITE,,,0",
        "1,103,2153-01-01 10:00:00,2153-01-02 10:00:00,,URGENT,P1,CLINIC,HOME,Medicare,ENGLISH,MARRIED,WHITE,,,0",
        "2,201,2161-01-01 08:00:00,2161-01-03 08:00:00,,EW EMER.,P2,EMERGENCY ROOM,HOME,Medicaid,?,SINGLE,ASIAN,,,0",
        "2,202,2162-01-01 08:00:00,2162-01-03 08:00:00,,ELECTIVE,P2,CLINIC,HOME,Medicaid,?,SINGLE,ASIAN,,,0",
        "3,301,2170-01-01 08:00:00,2170-01-02 08:00:00,,ELECTIVE,P3,CLINIC,HOME,Private,ENGLISH,,OTHER,,,0",
        "5,501,2171-01-01 08:00:00,2171-01-02 08:00:00,,ELECTIVE,P3,CLINIC,HOME,Private,ENGLISH,,OTHER,,,0",
    ],
    "hosp/diagnoses_icd": [
        "subject_id,hadm_id,seq_num,icd_code,icd_version",
        "1,101,2,4019,9",
        "1,101,1,486,9",
        "1,102,1,I10,10",
        "1,103,1,4019,9",
        "2,201,1,I214,10",
        "2,201,2,I10 ,10",
        "2,202,1,I10,10",
        "5,501,1,4019,9",
    ],
    "hosp/procedures_icd": [
        "subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version",
        "1,101,1,2150-03-02,3893,9",
        "2,201,1,2161-01-02,027034Z,10",
    ],
    "hosp/prescriptions": [
        "subject_id,hadm_id,pharmacy_id,starttime,stoptime,drug_type,drug,formulary_drug_cd,gsn,ndc,route",
        "1,101,1,2150-03-01 12:00:00,2150-03-03 12:00:00,MAIN,Ceftriaxone,CEFT1,,00338500241,IV",
        "1,101,2,2150-03-01 12:00:00,2150-03-03 12:00:00,MAIN,Metoprolol Tartrate,MET25,,51079025520,PO",
        "1,101,3,2150-03-02 12:00:00,2150-03-03 12:00:00,MAIN,Metoprolol Tartrate,MET25,,51079025520,PO",
        "1,101,4,2150-03-01 12:00:00,2150-03-03 12:00:00,BASE,NS,NS1000,,0,IV",
        "1,102,5,2152-05-01 12:00:00,2152-05-03 12:00:00,MAIN,Metoprolol Tartrate,MET25,,51079025520,PO",
        "1,103,6,2153-01-01 12:00:00,2153-01-02 12:00:00,MAIN,Mystery Cream,MYS1,,99999999999,TP",
        "2,201,7,2161-01-01 12:00:00,2161-01-02 12:00:00,MAIN,Aspirin,ASA81,,00904404073,PO",
        "2,201,8,2161-01-01 12:00:00,2161-01-02 12:00:00,MAIN,Heparin Sodium,HEP5,,63323026201,SC",
        "3,301,9,2170-01-01 12:00:00,2170-01-02 12:00:00,MAIN,Aspirin,ASA81,,00904404073,PO",
        "5,501,10,2171-01-01 12:00:00,2171-01-02 12:00:00,MAIN,Aspirin,ASA81,,00904404073,PO",
    ],
    "hosp/d_icd_diagnoses": [
        "icd_code,icd_version,long_title",
        "4019,9,Unspecified essential hypertension",
        '486,9,"Pneumonia, organism unspecified"',
        "I10,10,Essential (primary) hypertension",
        "I214,10,Non-ST elevation (NSTEMI) myocardial infarction",
    ],
    "hosp/d_icd_procedures": [
        "icd_code,icd_version,long_title",
        '3893,9,"Venous catheterization, not elsewhere classified"',
        '027034Z,10,"Dilation of coronary artery, one artery with drug-eluting intraluminal device, '
        'percutaneous approach"',
    ],
}
NOTE = (
    "Name:  ___\nAllergies: \nPenicillins\n \nChief Complaint:\ncough\n \nHistory of Present Illness:\n"
    "___ year old woman with cough.\n \nPast Medical History:\nHypertension\n \nBrief Hospital Course:\n"
    "Given ceftriaxone.\n \nMedications on Admission:\nMetoprolol 25 mg BID\n \nDischarge Medications:\n"
    "Ceftriaxone\n"
)


def _gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8")))


@pytest.fixture
def mimic4(tmp_path) -> dict[str, Path]:
    """The tiny MIMIC-IV tables, a MIMIC-IV-Note folder and GAMENet-style maps."""
    root = tmp_path / "mimiciv"
    for name, lines in TABLES.items():
        _gz(root / f"{name}.csv.gz", lines)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"])
    writer.writerow(["1-DS-3", 1, 101, "DS", 3, "2150-03-05", "", "History of Present Illness:\nlater copy"])
    writer.writerow(["1-DS-2", 1, 101, "DS", 2, "2150-03-05", "", NOTE])
    notes = tmp_path / "mimic-iv-note"
    _gz(notes / "note" / "discharge.csv.gz", buffer.getvalue().strip().splitlines())
    ndc = tmp_path / "ndc2RXCUI.txt"
    ndc.write_text(
        "{'00338500241': u'1665021', '51079025520': u'866924', '00904404073': 318272, '63323026201': '1361615'}"
    )
    atc = tmp_path / "RXCUI2atc4.csv"
    atc.write_text(
        "RXCUI,YEAR,MONTH,NDC,ATC4\n1665021,2016,1,x,J01DD\n866924,2016,1,x,C07AB\n318272,2016,1,x,B01AC\n"
        "1361615,2016,1,x,B01AB\n"
    )
    return {"root": root, "notes": notes, "ndc": ndc, "atc": atc}


def test_atc3_with_notes(mimic4, tmp_path):
    out = tmp_path / "prepared"
    code = main(
        [
            "data",
            "mimic4",
            "--root",
            str(mimic4["root"]),
            "--out",
            str(out),
            "--notes",
            str(mimic4["notes"]),
            "--ndc-map",
            str(mimic4["ndc"]),
            "--atc-map",
            str(mimic4["atc"]),
        ]
    )
    assert code == 0
    data = load_dataset(out)
    assert [p["patient_id"] for p in data.patients] == ["1", "2"]
    one, two = data.patients
    assert one["profile"] == {
        "gender": "F",
        "age": 60,
        "insurance": "Medicare",
        "language": "ENGLISH",
        "religion": None,
        "marital_status": "MARRIED",
        "ethnicity": "WHITE",
        "admission_type": "EW EMER.",
    }
    first, second = one["visits"]
    assert first["visit_id"] == "101" and first["time"] == "2150-03-01T10:00:00"
    assert first["year_group"] == "2008 - 2010"
    assert first["diagnoses"] == ["ICD9:486", "ICD9:4019"]  # seq_num order
    assert first["procedures"] == ["ICD9P:3893"]
    assert first["medications"] == ["C07A", "J01D"]
    assert first["note"] == {
        "history_of_present_illness": "___ year old woman with cough.",
        "past_medical_history": "Hypertension",
        "allergies": "Penicillins",
        "medications_on_admission": "Metoprolol 25 mg BID",
    }
    assert second["diagnoses"] == ["ICD10:I10"] and second["medications"] == ["C07A"] and second["note"] is None
    assert two["profile"]["age"] == 90  # anchor_age 91 (MIMIC-IV's "over 89") + 1 year, capped
    assert two["profile"]["ethnicity"] == "ASIAN" and two["profile"]["religion"] is None
    assert two["visits"][0]["diagnoses"] == ["ICD10:I214", "ICD10:I10"]
    assert two["visits"][0]["procedures"] == ["ICD10P:027034Z"]
    assert two["visits"][0]["medications"] == ["B01A"]
    assert data.titles["ICD9:486"] == "Pneumonia, organism unspecified"
    assert data.titles["ICD10:I10"] == "Essential (primary) hypertension"
    assert data.titles["ICD10P:027034Z"].startswith("Dilation of coronary artery")
    assert data.titles["J01D"] == "other beta-lactam antibacterials"
    m = data.manifest
    assert m["drops"]["visits"] == {
        "no_patient_row": 1,
        "no_admission_time": 0,
        "no_codes": 1,
        "no_prescription": 1,
        "no_mapped_medication": 1,
        "no_top_medication": 0,
    }
    assert m["drops"]["patients"] == {"no_admission": 1, "no_visit_left": 1}
    assert m["coverage"] == {"prescription_rows": 10, "mapped_rows": 8, "mapped_share": 0.8, "ndc_rxcui_share": 0.8} | {
        "unmapped_top": m["coverage"]["unmapped_top"]
    }
    assert sum(rows for _, rows in m["coverage"]["unmapped_top"]) == 2
    assert m["visits_with_note"] == 1 and m["source"] == "mimic4"


def test_name_coding_and_any_case(mimic4, tmp_path):
    hosp = mimic4["root"] / "hosp"
    (hosp / "patients.csv.gz").rename(hosp / "PATIENTS.CSV.GZ")
    upper = gzip.decompress((hosp / "admissions.csv.gz").read_bytes()).decode()
    header, rest = upper.split("\n", 1)
    (hosp / "admissions.csv.gz").unlink()
    (hosp / "admissions.csv").write_text(header.upper() + "\n" + rest)
    out = tmp_path / "names"
    assert main(["data", "mimic4", "--root", str(mimic4["root"]), "--out", str(out)]) == 0
    data = load_dataset(out)
    meds = {v["visit_id"]: v["medications"] for p in data.patients for v in p["visits"]}
    assert meds == {
        "101": ["ceftriaxone", "metoprolol", "ns"],
        "102": ["metoprolol"],
        "103": ["mystery"],
        "201": ["aspirin", "heparin"],
    }
    assert data.medications[0] == "metoprolol"
    assert data.manifest["coverage"]["mapped_share"] == 1.0
    assert all(v["note"] is None for p in data.patients for v in p["visits"])


def test_bad_icd_version(mimic4, tmp_path, capsys):
    lines = list(TABLES["hosp/diagnoses_icd"]) + ["1,101,3,4019,11"]
    _gz(mimic4["root"] / "hosp" / "diagnoses_icd.csv.gz", lines)
    assert main(["data", "mimic4", "--root", str(mimic4["root"]), "--out", str(tmp_path / "x")]) == 2
    assert "icd_version must be 9 or 10, found '11'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_notes_folder_without_discharge(mimic4, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "data",
            "mimic4",
            "--root",
            str(mimic4["root"]),
            "--out",
            str(tmp_path / "x"),
            "--notes",
            str(tmp_path / "empty"),
        ]
    )
    assert code == 2
    assert "no note/discharge.csv.gz under --notes" in capsys.readouterr().err
