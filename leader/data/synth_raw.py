"""Write simulated patients (`leader.data.synth`) as raw MIMIC-III or MIMIC-IV tables and drug maps.

MIMIC-III: upper-case ``NAME.csv`` files with upper-case headers, as the full v1.4 release;
patients over 89 get a birth date ~300 years earlier, as MIMIC-III shifts them. MIMIC-IV:
``hosp/<name>.csv.gz`` with lowercase headers, shifted years with ``anchor_age`` /
``anchor_year`` / ``anchor_year_group`` (ICD-10 from October 2015 on, so patients mix ICD-9 and
ICD-10), and ``note/discharge.csv.gz``. Beside them: ``ndc2RXCUI.txt`` (a Python dict literal),
``RXCUI2atc4.csv`` (RXCUI,YEAR,MONTH,NDC,ATC4) and ``ddi_atc3_pairs.csv`` (atc3_a,atc3_b), and
``synth.json`` (patients, seed, format, leader version): the marker that lets `--overwrite` replace the folder.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

from leader import __version__
from leader.data.clinical import CONDITIONS, DDI_PAIRS, DRUGS, PROCEDURES

BY_KEY = {c.key: c for c in CONDITIONS}
_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
# MIMIC's IV fluids carry NDC 0: in every stay, never mapped to a medication label
_BASE = (("NS", "Sodium Chloride 0.9%  Flush"), ("D5W", "Dextrose 5%"), ("SW", "Sterile Water"))


def _title(name: str) -> str:
    return " ".join(w.capitalize() for w in name.split())


def discharge_note(person, visit, age: int, deid: str) -> str:
    """A discharge summary: the four LAMO sections first, then hospital course and discharge parts."""
    prior = [BY_KEY[k].words for k in visit.chronic_all if k not in visit.new_chronic]
    sex = "man" if person.gender == "M" else "woman"
    history = f"a history of {', '.join(prior)}" if prior else "no significant past medical history"
    complaint = " and ".join(BY_KEY[k].words for k in visit.acute)
    allergies = (
        "\n".join(person.allergies) if person.allergies else "Patient recorded as having No Known Allergies to Drugs"
    )
    home = "\n".join(f"{i}. {_title(d)} {DRUGS[d][3]}" for i, d in enumerate(visit.home_drugs, 1)) or "None."
    course = "\n".join(
        f"# {_title(BY_KEY[k].words)}: treated with {', '.join(visit.drugs) or 'supportive care'}." for k in visit.acute
    )
    discharge = "\n".join(f"{i}. {_title(d)}" for i, d in enumerate(visit.drugs, 1)) or "None."
    diagnoses = "\n".join(BY_KEY[k].title9 for k in visit.acute + visit.chronic_coded)
    return (
        f"Name:  {deid}                 Unit No:   {deid}\n\nAdmission Date:  {deid}              Discharge Date:   {deid}\n\n"
        f"Date of Birth:  {deid}             Sex:   {person.gender}\n\nService: MEDICINE\n\n"
        f"Allergies: \n{allergies}\n\nAttending: {deid}.\n\nChief Complaint:\n{BY_KEY[visit.acute[0]].words}\n\n"
        f"Major Surgical or Invasive Procedure:\n{', '.join(PROCEDURES[p][1] for p in visit.procedures) or 'None'}\n\n"
        f"History of Present Illness:\n{age} year old {sex} with {history} who presents with {complaint}.\n"
        f"Vitals on arrival: T 98.9 HR 92 BP 132/78 RR 18 O2 96% RA.\n\n"
        f"Past Medical History:\n" + ("\n".join(f"- {p}" for p in prior) or "None.") + "\n\n"
        f"Social History:\n{deid}\nFamily History:\nNon-contributory.\n\n"
        f"Brief Hospital Course:\n{course}\n\nMedications on Admission:\n{home}\n\n"
        f"Discharge Medications:\n{discharge}\n\nDischarge Disposition:\nHome\n\n"
        f"Discharge Diagnosis:\n{diagnoses}\n\nDischarge Condition:\nStable.\n\n"
        f"Followup Instructions:\n{deid}\n"
    )


# the columns of each table, as PhysioNet ships them (MIMIC-III upper-cases them when written)
HEADERS = {
    "PATIENTS": "row_id,subject_id,gender,dob,dod,dod_hosp,dod_ssn,expire_flag",
    "ADMISSIONS": "row_id,subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admission_location,"
    "discharge_location,insurance,language,religion,marital_status,ethnicity,edregtime,edouttime,diagnosis,"
    "hospital_expire_flag,has_chartevents_data",
    "DIAGNOSES_ICD": "row_id,subject_id,hadm_id,seq_num,icd9_code",
    "PROCEDURES_ICD": "row_id,subject_id,hadm_id,seq_num,icd9_code",
    "PRESCRIPTIONS": "row_id,subject_id,hadm_id,icustay_id,startdate,enddate,drug_type,drug,drug_name_poe,"
    "drug_name_generic,formulary_drug_cd,gsn,ndc,prod_strength,dose_val_rx,dose_unit_rx,form_val_disp,form_unit_disp,route",
    "NOTEEVENTS": "row_id,subject_id,hadm_id,chartdate,charttime,storetime,category,description,cgid,iserror,text",
    "D_ICD_DIAGNOSES": "row_id,icd9_code,short_title,long_title",
    "D_ICD_PROCEDURES": "row_id,icd9_code,short_title,long_title",
    "hosp/patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
    "hosp/admissions": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
    "admission_location,discharge_location,insurance,language,marital_status,race,edregtime,edouttime,"
    "hospital_expire_flag",
    "hosp/diagnoses_icd": "subject_id,hadm_id,seq_num,icd_code,icd_version",
    "hosp/procedures_icd": "subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version",
    "hosp/prescriptions": "subject_id,hadm_id,pharmacy_id,starttime,stoptime,drug_type,drug,formulary_drug_cd,gsn,ndc,"
    "prod_strength,dose_val_rx,dose_unit_rx,route",
    "hosp/d_icd_diagnoses": "icd_code,icd_version,long_title",
    "hosp/d_icd_procedures": "icd_code,icd_version,long_title",
    "note/discharge": "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text",
}


class _Writer:
    """Collects rows per table and writes them as CSV (gzipped for MIMIC-IV) under HEADERS."""

    def __init__(self) -> None:
        self.tables: dict[str, list[list]] = {}

    def add(self, name: str, row: list) -> None:
        assert len(row) == len(HEADERS[name].split(",")), name
        self.tables.setdefault(name, []).append(row)

    def write(self, folder: Path, upper: bool, gz: bool) -> None:
        for name, rows in self.tables.items():
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            header = HEADERS[name].split(",")
            writer.writerow([h.upper() for h in header] if upper else header)
            writer.writerows(rows)
            path = folder / (name + (".csv.gz" if gz else ".csv"))
            path.parent.mkdir(parents=True, exist_ok=True)
            data = buffer.getvalue().encode("utf-8")
            path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0) if gz else data)


def write_raw(folder: Path, people: list, fmt: str, seed: int) -> dict[str, Path]:
    """Write the raw tables of `people` into the fresh folder `folder` (the caller renames it); return the paths."""
    rng = random.Random(seed + 1)
    mimic4 = fmt == "mimic4"
    w = _Writer()
    hadm = 100000 + rng.randint(0, 50000)
    row_id = 0
    for p, person in enumerate(people):
        subject = str(10000 + p)
        first = datetime(rng.randint(2110, 2190), 1, 1)
        first += timedelta(days=rng.randint(0, 364), hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
        group_start = int(rng.choice(_GROUPS)[:4])
        real_start = group_start + rng.randint(0, 2)
        if mimic4:
            anchor_age = 91 if person.age > 89 else person.age  # MIMIC-IV's value for "over 89"
            group = f"{group_start} - {group_start + 2}"
            w.add("hosp/patients", [subject, person.gender, anchor_age, first.year, group, ""])
        else:
            dob = first - timedelta(days=int(person.age * 365.25) + rng.randint(1, 300))
            if person.age > 89:  # MIMIC-III hides the age of patients over 89 by moving the birth date
                dob = dob.replace(year=dob.year - 300)
            w.add("PATIENTS", [p + 1, subject, person.gender, f"{dob:%Y-%m-%d} 00:00:00", "", "", "", 0])
        for visit in person.visits:
            hadm += rng.randint(1, 40)
            admit = first + timedelta(days=visit.month * 30 + rng.randint(0, 20), hours=rng.randint(0, 12))
            if visit.month == 0:
                admit = first
            disch = admit + timedelta(days=rng.randint(2, 10), hours=rng.randint(0, 12))
            kind = rng.choice(["EMERGENCY", "EMERGENCY", "EMERGENCY", "URGENT", "ELECTIVE"])
            age = person.age + visit.month // 12
            icd10 = mimic4 and real_start + visit.month // 12 + (admit.month >= 10) > 2015
            version = 10 if icd10 else 9
            _admission(w, mimic4, person, subject, hadm, admit, disch, kind)
            for seq, key in enumerate(visit.acute + visit.chronic_coded, 1):
                c = BY_KEY[key]
                if mimic4:
                    w.add("hosp/diagnoses_icd", [subject, hadm, seq, c.icd10 if icd10 else c.icd9, version])
                else:
                    row_id += 1
                    w.add("DIAGNOSES_ICD", [row_id, subject, hadm, seq, c.icd9])
            for seq, proc in enumerate(visit.procedures, 1):
                code9, _, code10, _, _ = PROCEDURES[proc]
                if mimic4:
                    day = f"{admit:%Y-%m-%d}"
                    w.add("hosp/procedures_icd", [subject, hadm, seq, day, code10 if icd10 else code9, version])
                else:
                    row_id += 1
                    w.add("PROCEDURES_ICD", [row_id, subject, hadm, seq, code9])
            _prescriptions(w, mimic4, subject, hadm, admit, visit.drugs, rng)
            if visit.note:
                text = discharge_note(person, visit, age, "___" if mimic4 else "[**Known lastname 1234**]")
                if mimic4:
                    stored = f"{disch:%Y-%m-%d %H:%M:%S}"
                    note_id = f"{subject}-DS-{hadm % 100}"
                    w.add("note/discharge", [note_id, subject, hadm, "DS", hadm % 100, stored, stored, text])
                else:
                    row_id += 1
                    row = [
                        row_id,
                        subject,
                        hadm,
                        f"{disch:%Y-%m-%d}",
                        "",
                        "",
                        "Discharge summary",
                        "Report",
                        "",
                        "",
                        text,
                    ]
                    w.add("NOTEEVENTS", row)
    _dictionaries(w, mimic4)
    w.write(folder, upper=not mimic4, gz=mimic4)
    ndcs = {info[0]: info[1] for info in DRUGS.values()}
    (folder / "ndc2RXCUI.txt").write_text(repr(ndcs), encoding="utf-8")
    rows = ["RXCUI,YEAR,MONTH,NDC,ATC4"] + [f"{rx},2016,1,{ndc},{atc[:5]}" for ndc, rx, atc, _ in DRUGS.values()]
    (folder / "RXCUI2atc4.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    pairs = ["atc3_a,atc3_b"] + [f"{a},{b}" for a, b, _ in DDI_PAIRS]
    (folder / "ddi_atc3_pairs.csv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    marker = {"patients": len(people), "seed": seed, "format": fmt, "leader_version": __version__}
    (folder / "synth.json").write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    files = {"root": folder, "ndc_map": folder / "ndc2RXCUI.txt", "atc_map": folder / "RXCUI2atc4.csv"}
    files["ddi"] = folder / "ddi_atc3_pairs.csv"
    if mimic4:
        files["notes"] = folder
    return files


def _admission(w: _Writer, mimic4: bool, person, subject: str, hadm: int, admit, disch, kind: str) -> None:
    times = [f"{admit:%Y-%m-%d %H:%M:%S}", f"{disch:%Y-%m-%d %H:%M:%S}", ""]
    if mimic4:
        kind4 = {"EMERGENCY": "EW EMER.", "URGENT": "URGENT", "ELECTIVE": "ELECTIVE"}[kind]
        language = "ENGLISH" if person.language == "ENGL" else "?"
        place = ["P00001", "EMERGENCY ROOM", "HOME", person.insurance, language, person.marital_status]
        w.add("hosp/admissions", [subject, hadm, *times, kind4, *place, person.ethnicity, "", "", 0])
    else:
        place = ["EMERGENCY ROOM ADMIT", "HOME", person.insurance, person.language, person.religion]
        row = [hadm, subject, hadm, *times, kind, *place, person.marital_status, person.ethnicity, "", "", "", 0, 1]
        w.add("ADMISSIONS", row)


def _prescriptions(w: _Writer, mimic4: bool, subject: str, hadm: int, admit, drugs: list[str], rng) -> None:
    orders = [(d, _title(d), DRUGS[d][0], "MAIN") for d in drugs]
    orders += [(name, drug, "0", "BASE") for name, drug in _BASE if rng.random() < 0.5]
    for generic, drug, ndc, kind in orders:
        for _ in range(rng.choice((1, 1, 2, 3))):
            start = admit + timedelta(days=rng.randint(0, 3))
            stop = start + timedelta(days=rng.randint(1, 4))
            if mimic4:
                times = [f"{start:%Y-%m-%d %H:%M:%S}", f"{stop:%Y-%m-%d %H:%M:%S}"]
                row = [subject, hadm, rng.randint(1, 10**7), *times, kind, drug, "", "", ndc, "", "1", "", "PO/NG"]
                w.add("hosp/prescriptions", row)
            else:
                times = [f"{start:%Y-%m-%d} 00:00:00", f"{stop:%Y-%m-%d} 00:00:00"]
                name = generic if kind == "MAIN" else ""
                row = ["", subject, hadm, "", *times, kind, drug, drug, name, "", "", ndc, "", "1", "", "", "", "PO"]
                w.add("PRESCRIPTIONS", row)


def _dictionaries(w: _Writer, mimic4: bool) -> None:
    """D_ICD_DIAGNOSES / D_ICD_PROCEDURES for every code of the clinical table."""
    dx = [(c.icd9, c.title9, c.icd10, c.title10) for c in CONDITIONS]
    px = [(code9, title9, code10, title10) for code9, title9, code10, title10, _ in PROCEDURES.values()]
    for name, rows in (("d_icd_diagnoses", dx), ("d_icd_procedures", px)):
        for i, (code9, title9, code10, title10) in enumerate(rows, 1):
            if mimic4:
                w.add(f"hosp/{name}", [code9, 9, title9])
                w.add(f"hosp/{name}", [code10, 10, title10])
            else:
                w.add(name.upper(), [i, code9, title9[:24], title9])
