"""Shared fixtures: a few hand-written patients and a small rule-based prepared dataset."""

from __future__ import annotations

import random

import pytest

from leader.cohort import load_dataset, write_dataset

MEDS = ["C07A", "C10A", "A10B", "N02B", "B01A", "J01C"]
TITLES = {
    "ICD9:4019": "Unspecified essential hypertension",
    "ICD9:25000": "Diabetes mellitus without mention of complication, type II",
    "ICD9:2724": "Other and unspecified hyperlipidemia",
    "ICD9:42731": "Atrial fibrillation",
    "ICD9:486": "Pneumonia, organism unspecified",
    "ICD9:7242": "Lumbago",
    "ICD10:I10": "Essential (primary) hypertension",
    "ICD9P:3893": "Venous catheterization, not elsewhere classified",
    "ICD9P:9904": "Transfusion of packed cells",
    "ICD10P:02HV33Z": "Insertion of infusion device into superior vena cava, percutaneous approach",
    "C07A": "beta blocking agents",
    "C10A": "lipid modifying agents, plain",
    "A10B": "blood glucose lowering drugs, excl. insulins",
    "N02B": "other analgesics and antipyretics",
    "B01A": "antithrombotic agents",
    "J01C": "beta-lactam antibacterials, penicillins",
}


def hand_patients() -> list[dict]:
    """Four patients written by hand: two single-visit, one with three visits, one with a note."""
    note = {
        "history_of_present_illness": "72 year old man with cough and fever for three days.",
        "past_medical_history": "Hypertension. Hyperlipidemia.",
        "allergies": "Penicillins",
        "medications_on_admission": "metoprolol 25 mg daily; atorvastatin 40 mg",
    }
    return [
        {
            "patient_id": "p1",
            "profile": {"gender": "M", "age": 72, "insurance": "Medicare", "admission_type": "EMERGENCY"},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2150-01-03T10:00:00",
                    "diagnoses": ["ICD9:486", "ICD9:4019"],
                    "procedures": ["ICD9P:3893"],
                    "medications": ["J01C", "C07A"],
                    "note": note,
                },
            ],
        },
        {
            "patient_id": "p2",
            "profile": {"gender": "F", "age": 55, "insurance": "Private"},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2160-03-01T08:00:00",
                    "diagnoses": ["ICD9:25000"],
                    "procedures": [],
                    "medications": ["A10B"],
                    "note": None,
                },
                {
                    "visit_id": "v2",
                    "time": "2161-05-09T08:00:00",
                    "diagnoses": ["ICD9:25000", "ICD9:2724"],
                    "procedures": ["ICD9P:9904"],
                    "medications": ["A10B", "C10A"],
                    "note": None,
                },
                {
                    "visit_id": "v3",
                    "time": "2162-07-20T08:00:00",
                    "diagnoses": ["ICD9:42731"],
                    "procedures": [],
                    "medications": ["B01A", "C07A", "A10B"],
                    "note": None,
                },
            ],
        },
        {
            "patient_id": "p3",
            "profile": {"gender": "F", "age": 300, "insurance": "Medicare"},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2170-11-11T00:00:00",
                    "diagnoses": ["ICD9:7242"],
                    "procedures": [],
                    "medications": ["N02B"],
                },
            ],
        },
        {
            "patient_id": "p4",
            "profile": {"gender": "M", "age": 64},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2155-02-02T00:00:00",
                    "diagnoses": ["ICD10:I10"],
                    "procedures": ["ICD10P:02HV33Z"],
                    "medications": ["C07A"],
                },
                {
                    "visit_id": "v2",
                    "time": "2156-02-02T00:00:00",
                    "diagnoses": ["ICD10:I10", "ICD9:4019"],
                    "procedures": [],
                    "medications": [],
                },
            ],
        },
    ]


# condition -> drugs it calls for: the rule behind `rule_patients`
RULES = {
    "ICD9:4019": ["C07A"],
    "ICD9:25000": ["A10B"],
    "ICD9:2724": ["C10A"],
    "ICD9:42731": ["B01A", "C07A"],
    "ICD9:486": ["J01C"],
    "ICD9:7242": ["N02B"],
}


def rule_patients(n: int = 60, seed: int = 0) -> list[dict]:
    """`n` random patients whose medications follow RULES (chronic conditions persist)."""
    rng = random.Random(seed)
    conditions = list(RULES)
    patients = []
    for p in range(n):
        chronic = rng.sample(conditions[:4], rng.randint(0, 2))
        visits = []
        for v in range(rng.choice([1, 1, 2, 3])):
            acute = rng.sample(conditions[4:], rng.randint(0, 1))
            dx = sorted(set(chronic + acute)) or ["ICD9:7242"]
            meds = sorted({m for c in dx for m in RULES[c]})
            procs = ["ICD9P:3893"] if "ICD9:486" in dx else []
            visits.append(
                {
                    "visit_id": f"v{v}",
                    "time": f"{2100 + p % 10 + v}-01-01T00:00:00",
                    "diagnoses": dx,
                    "procedures": procs,
                    "medications": meds,
                    "note": None,
                }
            )
        profile = {
            "gender": rng.choice("MF"),
            "age": rng.randint(20, 95),
            "insurance": rng.choice(["Medicare", "Private"]),
        }
        patients.append({"patient_id": f"r{p}", "profile": profile, "visits": visits})
    return patients


@pytest.fixture
def hand_dataset(tmp_path):
    """The hand-written patients as a prepared dataset (loaded)."""
    path = write_dataset(tmp_path / "hand", hand_patients(), MEDS, TITLES, [("C07A", "B01A")], source="test")
    return load_dataset(path)


@pytest.fixture(scope="session")
def rule_dataset_path(tmp_path_factory):
    """60 rule-based patients as a prepared dataset folder (shared by the session: do not modify)."""
    out = tmp_path_factory.mktemp("data") / "rule"
    return write_dataset(out, rule_patients(), MEDS, TITLES, [("C07A", "B01A"), ("N02B", "B01A")], source="test")
