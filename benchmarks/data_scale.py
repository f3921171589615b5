"""Scale benchmark of `leader data mimic4`: a MIMIC-IV-sized synthetic input, time and peak memory.

    .venv/bin/python -m benchmarks.data_scale [--patients 200000] [--rows-per-admission 39] [--keep DIR]

Writes MIMIC-IV v2.x tables (hosp/*.csv.gz, the real column sets) for `--patients` patients with
~2.2 admissions each and ~39 prescription rows per admission (200,000 patients -> ~17M rows, as
MIMIC-IV v2.2's prescriptions table), codes and drugs from the synthetic clinical table, into a
temporary folder. Then runs `leader data mimic4 ... --ndc-map --atc-map` in a subprocess and reads
its wall time and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``). Prints a markdown table and
writes ``benchmarks/results/data_scale.json``. Target: < 3 minutes and < 6 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from leader.data.clinical import CONDITIONS, DDI_PAIRS, DRUGS, PROCEDURES

RESULTS = Path(__file__).resolve().parent / "results" / "data_scale.json"
CHUNK = 1_000_000


def _write_gz(path: Path, frames) -> int:
    """Write polars frames as one gzipped CSV (header once); return the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with gzip.open(path, "wb", compresslevel=1) as handle:
        for i, frame in enumerate(frames):
            handle.write(frame.write_csv(include_header=i == 0).encode("utf-8"))
            rows += frame.height
    return rows


def generate(root: Path, patients: int, rows_per_admission: float, seed: int = 0) -> dict:
    """Write the MIMIC-IV-layout tables and GAMENet-style maps under `root`; return row counts."""
    rng = np.random.default_rng(seed)
    hosp = root / "hosp"
    subjects = np.arange(10_000_000, 10_000_000 + patients)
    n_adm = np.minimum(rng.geometric(0.45, patients), 30)  # mean 2.2 admissions, as MIMIC-IV
    adm_subject = np.repeat(subjects, n_adm)
    n = len(adm_subject)
    hadm = 20_000_000 + rng.permutation(n)
    anchor_year = rng.integers(2110, 2190, patients)
    groups = np.array(["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019"])
    counts = {}
    counts["patients"] = _write_gz(
        hosp / "patients.csv.gz",
        [
            pl.DataFrame(
                {
                    "subject_id": subjects,
                    "gender": rng.choice(["F", "M"], patients),
                    "anchor_age": rng.integers(18, 92, patients),
                    "anchor_year": anchor_year,
                    "anchor_year_group": rng.choice(groups, patients),
                    "dod": [None] * patients,
                }
            )
        ],
    )
    year = np.repeat(anchor_year, n_adm) + rng.integers(0, 4, n)
    admittime = [
        f"{y}-{m:02d}-{d:02d} {h:02d}:15:00"
        for y, m, d, h in zip(year, rng.integers(1, 13, n), rng.integers(1, 29, n), rng.integers(0, 24, n), strict=True)
    ]
    counts["admissions"] = _write_gz(
        hosp / "admissions.csv.gz",
        [
            pl.DataFrame(
                {
                    "subject_id": adm_subject,
                    "hadm_id": hadm,
                    "admittime": admittime,
                    "dischtime": admittime,
                    "deathtime": [None] * n,
                    "admission_type": rng.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"], n),
                    "admit_provider_id": rng.choice(["P12345", "P54321"], n),
                    "admission_location": "EMERGENCY ROOM",
                    "discharge_location": "HOME",
                    "insurance": rng.choice(["Medicare", "Medicaid", "Other"], n),
                    "language": rng.choice(["ENGLISH", "?"], n),
                    "marital_status": rng.choice(["MARRIED", "SINGLE", "WIDOWED"], n),
                    "race": rng.choice(["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "HISPANIC/LATINO"], n),
                    "edregtime": [None] * n,
                    "edouttime": [None] * n,
                    "hospital_expire_flag": 0,
                }
            )
        ],
    )
    icd10 = rng.random(n) < 0.45
    dx9 = np.array([c.icd9 for c in CONDITIONS])
    dx10 = np.array([c.icd10 for c in CONDITIONS])
    counts["diagnoses_icd"] = _write_gz(
        hosp / "diagnoses_icd.csv.gz", _codes(rng, adm_subject, hadm, icd10, dx9, dx10, 11, False)
    )
    px9 = np.array([p[0] for p in PROCEDURES.values()])
    px10 = np.array([p[2] for p in PROCEDURES.values()])
    counts["procedures_icd"] = _write_gz(
        hosp / "procedures_icd.csv.gz", _codes(rng, adm_subject, hadm, icd10, px9, px10, 1.6, True)
    )
    for name, rows in (
        (
            "d_icd_diagnoses",
            [(c.icd9, 9, c.title9) for c in CONDITIONS] + [(c.icd10, 10, c.title10) for c in CONDITIONS],
        ),
        (
            "d_icd_procedures",
            [(p[0], 9, p[1]) for p in PROCEDURES.values()] + [(p[2], 10, p[3]) for p in PROCEDURES.values()],
        ),
    ):
        _write_gz(
            hosp / f"{name}.csv.gz",
            [pl.DataFrame(rows, schema=["icd_code", "icd_version", "long_title"], orient="row")],
        )
    counts["prescriptions"] = _write_gz(
        hosp / "prescriptions.csv.gz", _prescriptions(rng, adm_subject, hadm, rows_per_admission)
    )
    (root / "ndc2RXCUI.txt").write_text(repr({ndc: rx for ndc, rx, _, _ in DRUGS.values()}))
    (root / "RXCUI2atc4.csv").write_text(
        "RXCUI,YEAR,MONTH,NDC,ATC4\n" + "".join(f"{rx},2016,1,{ndc},{atc[:5]}\n" for ndc, rx, atc, _ in DRUGS.values())
    )
    (root / "ddi.csv").write_text("atc3_a,atc3_b\n" + "".join(f"{a},{b}\n" for a, b, _ in DDI_PAIRS))
    return counts


def _codes(rng, subjects, hadm, icd10, codes9, codes10, mean: float, procedures: bool):
    """Chunks of diagnoses_icd / procedures_icd rows (Poisson(mean) codes per admission)."""
    per = rng.poisson(mean, len(hadm))
    starts = np.concatenate([[0], np.cumsum(per)])
    for lo in range(0, len(hadm), CHUNK // 10):
        hi = min(lo + CHUNK // 10, len(hadm))
        k = per[lo:hi]
        idx = np.repeat(np.arange(lo, hi), k)
        seq = np.arange(len(idx)) - np.repeat(starts[lo:hi] - starts[lo], k) + 1
        pick = rng.integers(0, len(codes9), len(idx))
        ten = icd10[idx]
        frame = {"subject_id": subjects[idx], "hadm_id": hadm[idx], "seq_num": seq}
        if procedures:
            frame["chartdate"] = "2150-01-01"
        frame |= {"icd_code": np.where(ten, codes10[pick], codes9[pick]), "icd_version": np.where(ten, 10, 9)}
        yield pl.DataFrame(frame)


def _prescriptions(rng, subjects, hadm, per_admission: float):
    """Chunks of prescriptions rows with MIMIC-IV v2.2's 21 columns."""
    names = np.array([n.title() for n in DRUGS] + ["NS", "D5W", "Sodium Chloride 0.9%  Flush"])
    ndcs = np.array([d[0] for d in DRUGS.values()] + ["0", "0", "0"])
    weights = np.concatenate([np.full(len(DRUGS), 1.0), [8.0, 4.0, 6.0]])
    weights /= weights.sum()
    per = rng.poisson(per_admission, len(hadm))
    step = max(1, int(CHUNK / per_admission))
    for lo in range(0, len(hadm), step):
        hi = min(lo + step, len(hadm))
        idx = np.repeat(np.arange(lo, hi), per[lo:hi])
        m = len(idx)
        drug = rng.choice(len(names), m, p=weights)
        yield pl.DataFrame(
            {
                "subject_id": subjects[idx],
                "hadm_id": hadm[idx],
                "pharmacy_id": rng.integers(1, 10**8, m),
                "poe_id": [None] * m,
                "poe_seq": rng.integers(1, 300, m),
                "order_provider_id": "P12345",
                "starttime": "2150-01-01 08:00:00",
                "stoptime": "2150-01-03 20:00:00",
                "drug_type": np.where(ndcs[drug] == "0", "BASE", "MAIN"),
                "drug": names[drug],
                "formulary_drug_cd": "FORM1",
                "gsn": "004380",
                "ndc": ndcs[drug],
                "prod_strength": "25mg Tablet",
                "form_rx": [None] * m,
                "dose_val_rx": "25",
                "dose_unit_rx": "mg",
                "form_val_disp": "1",
                "form_unit_disp": "TAB",
                "doses_per_24_hrs": "2",
                "route": rng.choice(["PO", "IV", "SC"], m),
            }
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--rows-per-admission", type=float, default=39.0)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="leader-scale-") as tmp:
        root = args.keep or Path(tmp) / "mimiciv"
        start = time.perf_counter()
        counts = generate(root, args.patients, args.rows_per_admission)
        generated = time.perf_counter() - start
        print(f"generated {counts} in {generated:.0f} s", file=sys.stderr)
        leader = Path(sys.executable).with_name("leader")
        command = [
            str(leader),
            "data",
            "mimic4",
            "--root",
            str(root),
            "--out",
            str(Path(tmp) / "prepared"),
            "--ndc-map",
            str(root / "ndc2RXCUI.txt"),
            "--atc-map",
            str(root / "RXCUI2atc4.csv"),
            "--ddi",
            str(root / "ddi.csv"),
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "POLARS_MAX_THREADS": str(os.cpu_count())})
        seconds = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        manifest = json.loads((Path(tmp) / "prepared" / "manifest.json").read_text())
        input_gb = sum(p.stat().st_size for p in (root / "hosp").iterdir()) / 1024**3
    result = {
        "what": "leader data mimic4 --ndc-map --atc-map --ddi on a synthetic MIMIC-IV-sized input",
        "patients_in": counts["patients"],
        "admissions_in": counts["admissions"],
        "prescription_rows": counts["prescriptions"],
        "diagnosis_rows": counts["diagnoses_icd"],
        "input_csv_gz_gb": round(input_gb, 2),
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "patients_out": manifest["counts"]["patients"],
        "visits_out": manifest["counts"]["visits"],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "target": "< 180 s and < 6 GB on 2 cores",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| input | prescription rows | time | peak RSS | target |\n|---|---|---|---|---|")
    print(
        f"| {counts['patients']:,} patients, {counts['admissions']:,} admissions ({input_gb:.1f} GB csv.gz) "
        f"| {counts['prescriptions']:,} | {seconds:.0f} s | {peak_gb:.2f} GB | < 180 s, < 6 GB |"
    )
    return result


if __name__ == "__main__":
    main()
