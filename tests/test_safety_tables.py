"""PhysioNet tables that would be read wrongly (issue 16, items 6, 9, 11): refused in one line or cleaned.

A header naming a column twice (case ignored) would read the wrong column; NAME.csv beside
NAME.csv.gz leaves the choice to chance; a header field beyond csv's 128 KiB limit used to end in a
traceback; NUL bytes in codes made distinct tokens of one code. A UTF-8 byte-order mark is accepted.
The tables come from `leader data synth --raw` (MIMIC-III layout) and are broken one at a time.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from leader.cli import main


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict]:
    """(raw MIMIC-III tables, the counts `leader data mimic3` prepares from them) - read-only: copy before use."""
    base = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--patients", "40", "--out", str(base / "data"), "--raw", str(base / "raw")]) == 0
    assert prepare(base / "raw", base / "plain") == 0
    return base / "raw", json.loads((base / "plain" / "manifest.json").read_text())["counts"]


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    copy = tmp_path / "mimic"
    shutil.copytree(pristine[0], copy)
    return copy


def prepare(root: Path, out: Path) -> int:
    return main(["data", "mimic3", "--root", str(root), "--out", str(out)])


def refused(capsys, root: Path, tmp_path: Path, expect: list[str]) -> str:
    """Exit 2, one error line naming every item of `expect`, no traceback, nothing written."""
    out = tmp_path / "prepared"
    code = prepare(root, out)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert all(word in lines[0] for word in expect), lines[0]
    assert "Traceback" not in err and not out.exists()
    return lines[0]


def test_a_column_named_twice_up_to_case_is_refused(root, tmp_path, capsys):
    path = root / "PATIENTS.csv"
    lines = path.read_text().splitlines(keepends=True)
    assert lines[0].startswith("ROW_ID,SUBJECT_ID,GENDER,DOB,DOD,")
    path.write_text(lines[0].replace(",DOD,", ",gender,", 1) + "".join(lines[1:]))  # every gender would be a date
    refused(capsys, root, tmp_path, ["PATIENTS.csv", "'gender'", "twice"])


def test_a_table_as_both_csv_and_csv_gz_is_refused(root, tmp_path, capsys):
    data = (root / "PATIENTS.csv").read_bytes()
    with gzip.open(root / "PATIENTS.csv.gz", "wb") as handle:
        handle.write(data.replace(b",F,", b",M,"))  # which one holds the truth is unknowable
    refused(capsys, root, tmp_path, ["PATIENTS.csv", "PATIENTS.csv.gz", "keep only one"])


def test_a_header_field_over_the_csv_field_limit_is_one_line(root, tmp_path, capsys):
    path = root / "ADMISSIONS.csv"
    lines = path.read_text().splitlines(keepends=True)
    huge = '"' + "x" * (200 << 10) + '"'  # 200 KiB, over csv's 128 KiB default
    path.write_text(
        lines[0].rstrip("\n") + "," + huge + "\n" + "".join(line.rstrip("\n") + ",\n" for line in lines[1:])
    )
    refused(capsys, root, tmp_path, ["ADMISSIONS.csv", "field larger than field limit"])


def test_a_utf8_byte_order_mark_is_accepted(pristine, root, tmp_path):
    for name in ("PATIENTS.csv", "DIAGNOSES_ICD.csv"):
        path = root / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert prepare(root, tmp_path / "out") == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"] == pristine[1]


def test_nul_bytes_in_codes_are_removed_and_counted(pristine, root, tmp_path, capsys):
    path = root / "DIAGNOSES_ICD.csv"
    text = path.read_bytes()
    rows = text.split(b"\n")
    header, first = rows[0], rows[1].split(b",")
    code = first[-1]
    assert header.endswith(b"ICD9_CODE") and len(code) >= 3
    first[-1] = code[:2] + b"\x00" + code[2:]
    rows[1] = b",".join(first)
    path.write_bytes(b"\n".join(rows))
    assert prepare(root, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "DIAGNOSES_ICD.csv: removed NUL bytes from 1 values (1 in 'icd9_code')" in err, err
    with gzip.open(tmp_path / "out" / "cohort.jsonl.gz", "rt", encoding="utf-8") as handle:
        cohort = handle.read()
    assert "\\u0000" not in cohort and "\x00" not in cohort
    assert f'"ICD9:{code.decode()}"' in cohort
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"] == pristine[1]


@pytest.mark.parametrize("flag", ["--ddi", "--atc-map"])
def test_a_map_field_over_the_csv_field_limit_is_one_line(root, tmp_path, capsys, flag):
    huge = '"' + "x" * (200 << 10) + '"'
    if flag == "--ddi":
        path, text = tmp_path / "ddi.csv", f"atc3_a,atc3_b\nC07A,{huge}\n"
        extra = [flag, str(path)]
    else:
        path, text = tmp_path / "atc.csv", f"RXCUI,YEAR,MONTH,NDC,ATC4\n1,2016,1,{huge},C07AB\n"
        extra = ["--ndc-map", str(root / "ndc2RXCUI.txt"), flag, str(path)]
    path.write_text(text)
    out = tmp_path / "prepared"
    code = main(["data", "mimic3", "--root", str(root), "--out", str(out), *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert path.name in lines[0] and "line 2" in lines[0] and flag in lines[0], lines[0]
    assert "Traceback" not in err and not out.exists()
