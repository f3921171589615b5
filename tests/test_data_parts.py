"""Pieces of `leader.data`: drug names, NDCs, maps, note sections, stats, table reading."""

from __future__ import annotations

import json

import pytest

from leader.cli import main
from leader.data import tables
from leader.data.meds import clean_ndc, label_titles, normalise_name, read_atc_map, read_ddi_pairs, read_ndc_map
from leader.data.notes import extract_sections
from leader.data.stats import dataset_stats, format_stats
from leader.errors import LeaderError


@pytest.mark.parametrize(
    "raw, name",
    [
        ("Metoprolol Tartrate", "metoprolol"),
        ("Metoprolol Succinate XL 50mg Tab", "metoprolol"),
        ("Potassium Chloride", "potassium chloride"),
        ("Magnesium Sulfate", "magnesium sulfate"),
        ("Heparin Sodium", "heparin"),
        ("Morphine Sulfate (Syringe)", "morphine"),
        ("Albuterol 0.083% Neb Soln", "albuterol"),
        ("*NF* Moxifloxacin 0.5% Ophth", "moxifloxacin"),
        ("Oxycodone-Acetaminophen", "oxycodone-acetaminophen"),
        ("Insulin", "insulin"),
        ("", None),
        (None, None),
        ("500 mg", None),
    ],
)
def test_normalise_name(raw, name):
    assert normalise_name(raw) == name


def test_clean_ndc():
    assert clean_ndc("00338004904") == "00338004904"
    assert clean_ndc(" 338004904 ") == "00338004904"
    assert clean_ndc("338004904.0") == "00338004904"
    assert clean_ndc("0") is None and clean_ndc("") is None and clean_ndc(None) is None


def test_read_ndc_map_accepts_gamenet_literals(tmp_path):
    path = tmp_path / "ndc2RXCUI.txt"
    path.write_text("{'00338004904': u'1807639', '00173024256': 309888, '338500241': u'1665021', '00000000001': ''}")
    assert read_ndc_map(path) == {"00338004904": "1807639", "00173024256": "309888", "00338500241": "1665021"}
    path.write_text("[1, 2]")
    with pytest.raises(LeaderError, match="non-empty dict"):
        read_ndc_map(path)
    path.write_bytes(b"{'00338004904': '\xff'}")
    with pytest.raises(LeaderError, match="not UTF-8"):
        read_ndc_map(path)


def test_read_atc_map_first_row_per_rxcui_wins(tmp_path):
    path = tmp_path / "RXCUI2atc4.csv"
    path.write_text(
        "RXCUI,YEAR,MONTH,NDC,ATC4\n313782,2016,1,x,N02BE\n313782,2016,1,x,N02AA\n866924,2016,1,x,c07ab\n"
        "111,2016,1,x,\n"
    )
    assert read_atc_map(path) == {"313782": "N02BE", "866924": "C07AB"}
    path.write_text("RXCUI,YEAR,MONTH,NDC,ATC4\n313782,2016,1\n")
    with pytest.raises(LeaderError, match="line 2 has 3 fields, the header has 5"):
        read_atc_map(path)


def test_read_ddi_pairs(tmp_path):
    path = tmp_path / "ddi.csv"
    path.write_text("atc3_a,atc3_b\nN02B,M01A\n\nC07A, C08D\n")
    assert read_ddi_pairs(path) == [("N02B", "M01A"), ("C07A", "C08D")]
    path.write_text("atc3_a,atc3_b\nN02B\n")
    with pytest.raises(LeaderError, match="line 2 must hold two medication labels"):
        read_ddi_pairs(path)


def test_label_titles():
    titles = label_titles(["C07A", "Z99Z"], "atc3")
    assert titles == {"C07A": "beta blocking agents", "Z99Z": "Z99Z"}
    assert label_titles(["metoprolol"], "name") == {"metoprolol": "metoprolol"}


MIMIC3_NOTE = """Admission Date:  [**2151-7-16**]       Discharge Date:  [**2151-8-4**]

Service: MEDICINE

Allergies:
Patient recorded as having No Known Allergies to Drugs

Attending:[**First Name3 (LF) 1234**]
Chief Complaint:
shortness of breath

HISTORY OF PRESENT ILLNESS:
72M with CHF presenting with dyspnea.
ROS: negative for chest pain.
On arrival to the floor: comfortable.

PAST MEDICAL HISTORY:
1. CHF (EF 30%)
2. Atrial fibrillation: on coumadin

Social History:
Lives with wife.

Medications on Admission:
Lasix 40 daily
Coumadin 5 daily

Brief Hospital Course:
Diuresed with IV lasix.

Discharge Medications:
1. Lasix 80 mg daily
"""


def test_extract_sections_from_a_mimic3_style_note():
    sections = extract_sections(MIMIC3_NOTE)
    assert sections == {
        "history_of_present_illness": "72M with CHF presenting with dyspnea. ROS: negative for chest pain. "
        "On arrival to the floor: comfortable.",
        "past_medical_history": "1. CHF (EF 30%) 2. Atrial fibrillation: on coumadin",
        "allergies": "Patient recorded as having No Known Allergies to Drugs",
        "medications_on_admission": "Lasix 40 daily Coumadin 5 daily",
    }
    assert "IV lasix" not in json.dumps(sections) and "80 mg" not in json.dumps(sections)


def test_extract_sections_edge_cases():
    assert extract_sections(None) is None
    assert extract_sections("Just a line of text without headers.") is None
    only = extract_sections("Allergies: Sulfa\nChief Complaint: cough\n")
    assert only == {
        "history_of_present_illness": "",
        "past_medical_history": "",
        "allergies": "Sulfa",
        "medications_on_admission": "",
    }
    # an unknown header that ends its line stops the section (nothing after it can leak in)
    cut = extract_sections("History of Present Illness:\nfever\nHospital Summary by Day:\ngave cefepime\n")
    assert cut["history_of_present_illness"] == "fever"
    long = extract_sections("Past Medical History:\n" + "x" * 10000)
    assert len(long["past_medical_history"]) == 4000


def test_scan_table_any_case_and_optional_columns(tmp_path):
    path = tmp_path / "Patients.CSV"
    path.write_text('"ROW_ID","SUBJECT_ID","GENDER"\n1,10,"F"\n2,11,"M"\n')
    assert tables.find_table(tmp_path, "PATIENTS") == path
    frame = tables.collect(tables.scan_table(path, ["subject_id", "gender"], optional=("dob",)), path)
    assert frame.columns == ["subject_id", "gender", "dob"]
    assert frame.rows() == [(10, "F", None), (11, "M", None)]  # ids are read as integers
    path.write_text('"ROW_ID","SUBJECT_ID","GENDER"\n1,10,"F"\n2,x11,"M"\n')
    with pytest.raises(LeaderError, match="an id column holds a value that is not an integer"):
        tables.collect(tables.scan_table(path, ["subject_id", "gender"]), path)


def test_large_files_are_parsed_strictly_by_polars(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "FULL_CHECK_BYTES", 0)  # as for a file too big for the row-by-row check
    path = tmp_path / "T.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    with pytest.raises(LeaderError, match="malformed row"):
        tables.collect(tables.scan_table(path, ["a"]), path)
    path.write_bytes(b"a,b,c\n1,2,3\n4,\xff,6\n")
    with pytest.raises(LeaderError, match="not UTF-8"):
        tables.collect(tables.scan_table(path, ["a"]), path)


def test_short_rows_are_refused(tmp_path):
    path = tmp_path / "T.csv"
    path.write_text('a,b,c\n1,2,3\n4,"5\n5",6\n7,8\n')
    with pytest.raises(LeaderError, match="malformed row at line 5 \\(2 fields, the header has 3\\)"):
        tables.scan_table(path, ["a"])


def test_stats(hand_dataset, tmp_path, capsys):
    stats = dataset_stats(hand_dataset.path)
    assert stats["patients"] == 4 and stats["visits"] == 7
    assert stats["single_visit_patients"] == 2 and stats["single_visit_share"] == 0.5
    assert stats["diagnoses_per_visit"] == round(10 / 7, 3)
    assert stats["procedures_per_visit"] == round(3 / 7, 3)
    assert stats["medications_per_visit"] == round(10 / 7, 3)
    assert stats["medication_mapping_coverage"] is None and stats["ddi_pairs"] == 1
    assert stats["visits_with_note_share"] == round(1 / 7, 4)
    table = format_stats(stats)
    assert "| single visit share | 50.0% |" in table and "| medication mapping coverage | n/a |" in table
    assert "| medication mapping coverage | 85.5% |" in format_stats({"medication_mapping_coverage": 0.8555})
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    assert "prepared dataset not found" in capsys.readouterr().err
