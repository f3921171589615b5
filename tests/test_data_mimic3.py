"""`leader data mimic3` on the real MIMIC-III demo: the vendored ten-patient extract (always), and
the whole demo from the shared data folder for its exact counts (tests/conftest.py: shared_data)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from leader.cli import main
from leader.cohort import load_dataset
from leader.data.common import MimicConfig
from leader.data.mimic3 import run
from tests.conftest import MIMIC3_SUBSET, shared_data

SUBSET_NDC_MAP = MIMIC3_SUBSET / "ndc2RXCUI.txt"

# a hand-made RXCUI2atc4.csv for a few demo drugs (GAMENet's column layout); 313782 twice: first row wins
ATC_ROWS = """RXCUI,YEAR,MONTH,NDC,ATC4
1719291,2016,1,00517570425,C03CA
282452,2016,1,00074610204,C03CA
1361615,2016,1,63323026201,B01AB
866924,2016,1,51079025520,C07AB
855304,2016,1,00056017075,B01AA
309309,2016,1,00172531210,J01MA
313782,2016,1,00182844789,N02BE
313782,2016,1,00182844789,N02AA
1807508,2016,1,00338355248,J01XA
318272,2016,1,00904404073,B01AC
208958,2016,1,00456066270,A12BA
617314,2016,1,00071015540,C10AA
311354,2016,1,00172375810,C09AA
"""


@pytest.fixture(scope="module")
def demo_root():
    """The whole MIMIC-III demo (100 patients)."""
    return shared_data("mimic-iii-demo-1.4")


@pytest.fixture(scope="module")
def ndc_map():
    return shared_data("drug-maps", "ndc2RXCUI.txt")


@pytest.fixture(scope="module")
def ddi_file():
    return shared_data("drug-maps", "ddi_atc3_pairs_safedrug.csv")


@pytest.fixture(scope="module")
def demo_name(tmp_path_factory, demo_root, ndc_map):
    out = tmp_path_factory.mktemp("m3") / "demo"
    assert main(["data", "mimic3", "--root", str(demo_root), "--out", str(out), "--ndc-map", str(ndc_map)]) == 0
    return load_dataset(out)


def test_demo_counts_and_drop_reasons(demo_name):
    m = demo_name.manifest
    # 100 patients / 129 admissions in the demo; 7 admissions have no prescription row at all,
    # which leaves 6 patients without any visit
    assert m["counts"] == {"patients": 94, "visits": 122, "medications": 300, "ddi_pairs": 0}
    assert m["drops"]["visits"] == {
        "no_patient_row": 0,
        "no_admission_time": 0,
        "no_codes": 0,
        "no_prescription": 7,
        "no_mapped_medication": 0,
        "no_top_medication": 0,
    }
    assert m["drops"]["patients"] == {"no_admission": 0, "no_visit_left": 6}
    assert m["medication_coding"] == "name"
    assert m["medication_labels_before_top"] == 396  # names normalised by leader.data.atc.normalize_drug_name
    # shared/data/README.md: ndc2RXCUI covers 86% of the demo's prescription rows; name coding keeps those rows
    assert m["coverage"] == {
        "prescription_rows": 10398,
        "mapped_rows": 8896,
        "mapped_share": 0.8555,
        "ndc_rxcui_share": 0.8555,
        "unmapped_top": m["coverage"]["unmapped_top"],
    }
    assert (
        m["coverage"]["unmapped_top"][0] == ["Iso-Osmotic Dextrose", 265] and len(m["coverage"]["unmapped_top"]) == 30
    )
    assert m["source"] == "mimic3" and m["codes_without_title"] == 22 and m["visits_with_note"] == 0


def test_demo_cohort_content(demo_name):
    patients = {p["patient_id"]: p for p in demo_name.patients}
    first = patients["10006"]
    assert first["profile"] == {
        "gender": "F",
        "age": 70,
        "insurance": "Medicare",
        "language": None,
        "religion": "CATHOLIC",
        "marital_status": "SEPARATED",
        "ethnicity": "BLACK/AFRICAN AMERICAN",
        "admission_type": "EMERGENCY",
    }
    visit = first["visits"][0]
    assert visit["visit_id"] == "142345" and visit["time"] == "2164-10-23T21:09:00"
    assert visit["diagnoses"][:3] == ["ICD9:99591", "ICD9:99662", "ICD9:5672"]  # seq_num order
    assert visit["procedures"][0] == "ICD9P:9749"
    assert {"metoprolol", "warfarin", "acetaminophen"} <= set(visit["medications"])
    assert visit["note"] is None
    assert demo_name.titles["ICD9:4019"] == "Unspecified essential hypertension"
    assert demo_name.titles["ICD9P:3893"] == "Venous catheterization, not elsewhere classified"
    ages = [p["profile"]["age"] for p in demo_name.patients]
    assert max(ages) == 90 and min(ages) == 17  # birth dates shifted by ~300 years are capped
    assert sum(len(p["visits"]) == 1 for p in demo_name.patients) == 81
    for p in demo_name.patients:
        times = [v["time"] for v in p["visits"]]
        assert times == sorted(times)
    counts = {}
    for p in demo_name.patients:
        for v in p["visits"]:
            for med in v["medications"]:
                counts[med] = counts.get(med, 0) + 1
    assert demo_name.medications[:3] == ["heparin", "potassium chloride", "acetaminophen"]
    assert [counts[m] for m in demo_name.medications] == sorted(counts.values(), reverse=True)[:300]


def test_atc3_path_with_hand_made_map(tmp_path, demo_root, ndc_map, ddi_file):
    atc = tmp_path / "RXCUI2atc4.csv"
    atc.write_text(ATC_ROWS)
    out = tmp_path / "atc3"
    code = main(
        [
            "data",
            "mimic3",
            "--root",
            str(demo_root),
            "--out",
            str(out),
            "--ndc-map",
            str(ndc_map),
            "--atc-map",
            str(atc),
            "--ddi",
            str(ddi_file),
        ]
    )
    assert code == 0
    data = load_dataset(out)
    m = data.manifest
    assert m["medication_coding"] == "atc3"
    assert data.medications == ["B01A", "N02B", "C03C", "J01X", "A12B", "C07A", "J01M", "C10A", "C09A"]
    assert data.titles["C07A"] == "beta blocking agents" and data.titles["N02B"] == "other analgesics and antipyretics"
    assert m["counts"] == {"patients": 89, "visits": 117, "medications": 9, "ddi_pairs": 9}
    assert m["drops"]["visits"]["no_prescription"] == 7 and m["drops"]["visits"]["no_mapped_medication"] == 5
    assert m["drops"]["patients"]["no_visit_left"] == 11
    assert m["coverage"]["mapped_rows"] == 977 and m["coverage"]["ndc_rxcui_share"] == 0.8555
    assert "N02A" not in {med for p in data.patients for v in p["visits"] for med in v["medications"]}
    with open(ddi_file) as handle:
        safedrug = {tuple(sorted(row)) for row in list(csv.reader(handle))[1:]}
    labels = set(data.medications)
    assert set(data.ddi) == {p for p in safedrug if set(p) <= labels}
    assert ("A12B", "C07A") in data.ddi


def test_top_meds_limits_labels(tmp_path, demo_root, ndc_map):
    cfg = MimicConfig(root=demo_root, out=tmp_path / "top5", ndc_map=ndc_map, top_meds=5)
    data = load_dataset(run(cfg))
    assert data.medications == ["heparin", "potassium chloride", "acetaminophen", "docusate", "pantoprazole"]
    dropped = data.manifest["drops"]["visits"]["no_top_medication"]
    assert data.manifest["counts"]["visits"] == 122 - dropped
    assert all(set(v["medications"]) <= set(data.medications) for p in data.patients for v in p["visits"])


def test_subset_counts_and_drops(tmp_path):
    """The vendored extract: 10 patients, 13 admissions, two of them without any prescription row
    (10011's only admission, one of 10117's), so 11 visits of 9 patients are left."""
    out = tmp_path / "subset"
    assert (
        main(["data", "mimic3", "--root", str(MIMIC3_SUBSET), "--out", str(out), "--ndc-map", str(SUBSET_NDC_MAP)]) == 0
    )
    data = load_dataset(out)
    m = data.manifest
    assert m["counts"]["patients"] == 9 and m["counts"]["visits"] == 11
    assert m["drops"]["visits"]["no_prescription"] == 2 and m["drops"]["patients"]["no_visit_left"] == 1
    patients = {p["patient_id"]: p for p in data.patients}
    assert "10011" not in patients and [v["visit_id"] for v in patients["10006"]["visits"]] == ["142345"]
    assert len(patients["10117"]["visits"]) == 1 and len(patients["10119"]["visits"]) == 2
    assert {"metoprolol", "warfarin", "acetaminophen"} <= set(patients["10006"]["visits"][0]["medications"])
    assert patients["10006"]["visits"][0]["diagnoses"][:3] == ["ICD9:99591", "ICD9:99662", "ICD9:5672"]


def test_noteevents_sections(tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(MIMIC3_SUBSET, root)
    report = (
        "Admission Date:  [**2164-10-23**]\\nAllergies:\\nPenicillins\\n\\nAttending:[**First Name3 (LF) 1**]\\n"
        "Chief Complaint:\\nfever\\n\\nHistory of Present Illness:\\n70F with fever.\\nIn the ED, initial vitals: T 101.\\n\\n"
        "Past Medical History:\\nCHF, AFib\\n\\nSocial History:\\nlives alone\\n\\nBrief Hospital Course:\\n"
        "treated with vancomycin\\n\\nMedications on Admission:\\nwarfarin 5 mg daily\\n\\nDischarge Medications:\\n"
        "vancomycin\\n"
    ).replace("\\n", "\n")
    rows = [
        ["1", "10006", "142345", "2164-11-01", "Discharge summary", "Addendum", "", "Addendum: nothing new"],
        ["2", "10006", "142345", "2164-11-01", "Discharge summary", "Report", "", report],
        [
            "3",
            "10006",
            "142345",
            "2164-11-01",
            "Discharge summary",
            "Report",
            "1",
            "History of Present Illness:\nerror",
        ],
        ["4", "10011", "105331", "2126-08-28", "Nursing", "Report", "", "History of Present Illness:\nnursing"],
    ]
    with open(root / "NOTEEVENTS.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "ISERROR", "TEXT"])
        writer.writerows(rows)
    data = load_dataset(run(MimicConfig(root=root, out=tmp_path / "notes", ndc_map=SUBSET_NDC_MAP)))
    notes = {v["visit_id"]: v["note"] for p in data.patients for v in p["visits"] if v["note"]}
    assert list(notes) == ["142345"]
    assert notes["142345"] == {
        "history_of_present_illness": "70F with fever. In the ED, initial vitals: T 101.",
        "past_medical_history": "CHF, AFib",
        "allergies": "Penicillins",
        "medications_on_admission": "warfarin 5 mg daily",
    }
    assert data.manifest["visits_with_note"] == 1
    assert "vancomycin" not in json.dumps(notes)
