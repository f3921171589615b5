"""Bad input to `leader data`: one clear line, exit code 2, no traceback, no output folder left behind."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from leader.cli import main
from tests.conftest import MIMIC3_SUBSET

# ten patients of the MIMIC-III demo, vendored (tests/fixtures/README.md): these tests never skip
DEMO = MIMIC3_SUBSET
NDC_MAP = MIMIC3_SUBSET / "ndc2RXCUI.txt"


@pytest.fixture
def demo(tmp_path) -> Path:
    """A private copy of the demo tables to break."""
    root = tmp_path / "demo"
    root.mkdir()
    for path in DEMO.glob("*.csv"):
        shutil.copy(path, root / path.name)
    return root


def test_the_untouched_copy_loads(tmp_path, demo):
    """The copy the tests below break is itself valid: each of their errors comes from its one break."""
    assert main(["data", "mimic3", "--root", str(demo), "--ndc-map", str(NDC_MAP), "--out", str(tmp_path / "ok")]) == 0


def run_fails(capsys, tmp_path: Path, args: list[str], expect: str) -> str:
    """Run the CLI, check exit 2 with one 'error:' line naming `expect`, and that nothing was written."""
    out = tmp_path / "prepared"
    code = main(["data", *args, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert expect.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".prepared.tmp-*")), "a temporary output folder was left behind"
    return lines[0]


def test_wrong_root(capsys, tmp_path):
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(tmp_path / "nowhere")], "is not a folder")


def test_root_without_tables(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(tmp_path / "empty")], "table PATIENTS not found")


def test_missing_table(capsys, tmp_path, demo):
    (demo / "PRESCRIPTIONS.csv").unlink()
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "table PRESCRIPTIONS not found")


def test_missing_column(capsys, tmp_path, demo):
    path = demo / "ADMISSIONS.csv"
    path.write_text(path.read_text().replace("admittime", "admit_time", 1))
    line = run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "has no column 'admittime'")
    assert "ADMISSIONS.csv" in line


def test_empty_file(capsys, tmp_path, demo):
    (demo / "DIAGNOSES_ICD.csv").write_bytes(b"")
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "DIAGNOSES_ICD.csv is empty")


def test_header_only(capsys, tmp_path, demo):
    (demo / "PATIENTS.csv").write_text("row_id,subject_id,gender,dob,dod,dod_hosp,dod_ssn,expire_flag\n")
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "has a header but no rows")


def test_malformed_row(capsys, tmp_path, demo):
    path = demo / "PROCEDURES_ICD.csv"
    path.write_text(path.read_text() + "9999,10006,142345,8,3893,extra,fields\n")
    line = run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "malformed row")
    assert "PROCEDURES_ICD.csv" in line


def test_non_utf8_byte(capsys, tmp_path, demo):
    path = demo / "PRESCRIPTIONS.csv"
    path.write_bytes(path.read_bytes().replace(b"Bisacodyl", b"Bisacod\xffl", 1))
    line = run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "not UTF-8")
    assert "PRESCRIPTIONS.csv" in line


def test_bad_date(capsys, tmp_path, demo):
    path = demo / "ADMISSIONS.csv"
    path.write_text(path.read_text().replace("2164-10-23 21:09:00", "yesterday", 1))
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo)], "'admittime' has 1 value(s) that are not dates")


def test_ndc_map_in_wrong_format(capsys, tmp_path, demo):
    bad = tmp_path / "ndc.csv"
    bad.write_text("ndc,rxcui\n00338004904,1807639\n")
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo), "--ndc-map", str(bad)], "not a Python dict literal")


def test_ndc_map_is_never_evaluated(capsys, tmp_path, demo):
    bad = tmp_path / "ndc.txt"
    marker = tmp_path / "pwned"
    bad.write_text(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo), "--ndc-map", str(bad)], "not a Python dict literal")
    assert not marker.exists()


def test_atc_map_in_wrong_format(capsys, tmp_path, demo):
    bad = tmp_path / "RXCUI2atc4.csv"
    bad.write_text("{'866924': 'C07AB'}\n")
    run_fails(
        capsys,
        tmp_path,
        ["mimic3", "--root", str(demo), "--ndc-map", str(NDC_MAP), "--atc-map", str(bad)],
        "must be a CSV with columns RXCUI and ATC4",
    )


def test_atc_map_with_bad_code(capsys, tmp_path, demo):
    bad = tmp_path / "RXCUI2atc4.csv"
    bad.write_text("RXCUI,YEAR,MONTH,NDC,ATC4\n866924,2016,1,51079025520,metoprolol\n")
    run_fails(
        capsys,
        tmp_path,
        ["mimic3", "--root", str(demo), "--ndc-map", str(NDC_MAP), "--atc-map", str(bad)],
        "'METOPROLOL' is not an ATC code",
    )


def test_atc_map_without_ndc_map(capsys, tmp_path, demo):
    atc = tmp_path / "RXCUI2atc4.csv"
    atc.write_text("RXCUI,ATC4\n866924,C07AB\n")
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo), "--atc-map", str(atc)], "--atc-map needs --ndc-map")


def test_missing_map_file(capsys, tmp_path, demo):
    run_fails(
        capsys, tmp_path, ["mimic3", "--root", str(demo), "--ndc-map", str(tmp_path / "none.txt")], "NDC map not found"
    )


def test_ddi_file_in_wrong_format(capsys, tmp_path, demo):
    bad = tmp_path / "ddi.csv"
    bad.write_text("a,b,c\nC07A,C08D,x\n")
    run_fails(capsys, tmp_path, ["mimic3", "--root", str(demo), "--ddi", str(bad)], "two-column CSV")


def test_existing_output_is_kept(capsys, tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["data", "mimic3", "--root", str(DEMO), "--out", str(out)])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_mimic4_corrupt_gzip(capsys, tmp_path):
    hosp = tmp_path / "m4" / "hosp"
    hosp.mkdir(parents=True)
    for name in (
        "patients",
        "admissions",
        "diagnoses_icd",
        "procedures_icd",
        "prescriptions",
        "d_icd_diagnoses",
        "d_icd_procedures",
    ):
        (hosp / f"{name}.csv.gz").write_bytes(gzip.compress(b"subject_id\n1\n"))
    (hosp / "patients.csv.gz").write_bytes(gzip.compress(b"subject_id,gender\n1,F\n")[:12])
    run_fails(capsys, tmp_path, ["mimic4", "--root", str(tmp_path / "m4")], "cannot read")


def test_mimic4_missing_hosp_folder(capsys, tmp_path):
    (tmp_path / "m4").mkdir()
    run_fails(capsys, tmp_path, ["mimic4", "--root", str(tmp_path / "m4")], "has no 'hosp/' folder")


def test_synth_bad_format(capsys, tmp_path):
    run_fails(capsys, tmp_path, ["synth", "--patients", "5", "--format", "mimic5"], "--format must be one of")


def test_synth_raw_folder_exists(capsys, tmp_path):
    (tmp_path / "raw").mkdir()
    run_fails(capsys, tmp_path, ["synth", "--patients", "5", "--raw", str(tmp_path / "raw")], "--raw")
