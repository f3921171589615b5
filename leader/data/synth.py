"""A synthetic cohort in the MIMIC layout, prepared through the real loaders (`leader data synth`).

    leader data synth --patients 2000 --out data/synth --seed 0 [--format mimic3|mimic4] [--raw DIR]

`synthesize` simulates patients from the clinical table in `leader.data.clinical` (real ICD-9/10
codes, drugs with real NDCs, RXCUIs and ATC codes), writes raw tables exactly as MIMIC-III
(upper-case CSVs with NOTEEVENTS) or MIMIC-IV (hosp/*.csv.gz and note/discharge.csv.gz) ship,
with an ``ndc2RXCUI.txt`` dict literal, an ``RXCUI2atc4.csv`` map and a DDI pair file, then
prepares them with `leader.data.mimic3` / `leader.data.mimic4` using ATC-3 coding. The raw
tables go to a temporary folder beside --out that is deleted afterwards, unless ``raw`` (``--raw``)
names a folder to keep them in (it appears, like --out, only when everything succeeded). Output is
deterministic given ``seed``.

What decides a visit's medications (the signals a model can learn):

1. **Current diagnoses.** Each acute condition coded at the visit brings its treatment slots: a
   slot fires with its probability and picks one of its drugs at random (pneumonia: ceftriaxone
   90%, azithromycin 80%).
2. **Chronic conditions and their fixed drugs.** A patient with a chronic condition keeps it for
   life; at onset they get one drug per slot (hypertension: metoprolol, lisinopril, amlodipine or
   hydrochlorothiazide) and keep that choice on every visit (90% each visit; 10% held). The
   chronic condition is coded only on 80% of visits, but its drugs continue: the previous visits'
   medications and the note (past medical history, medications on admission) reveal which drug
   class it is. Current diagnoses alone only say "some antihypertensive" - or nothing.
3. **Procedures.** Ventilation brings fentanyl, intubation propofol, a stent clopidogrel, a hip
   replacement enoxaparin and oxycodone, hemodialysis epoetin, ...
4. **Allergies (in the note only).** Penicillin allergy swaps piperacillin-tazobactam for
   levofloxacin; ACE-inhibitor allergy swaps lisinopril for valsartan.
5. **Age and sex.** They shift condition risks (BPH only in men, osteoporosis mostly in women,
   atrial fibrillation and dementia with age); from 75 a chronic insomnia or anxiety drug is
   trazodone or sertraline instead of zolpidem or lorazepam (Beers criteria).
6. **Hospital routine and noise.** Routine drugs most inpatients get (acetaminophen 45%, IV
   saline 40%, heparin prophylaxis 35%, ...; sliding-scale insulin for diabetics); each drug is
   dropped with 7% chance and 0-2 random drugs are added (never one the patient is allergic to).

History: 60% of patients have one visit; later visits are 1-24 months apart, and chronic
conditions may start at any visit (their drugs start then). Notes exist for 90% of visits: the
four LAMO sections mention the presenting complaint, the chronic history, allergies and the home
medications; the hospital course and discharge medications (the answer) follow in sections a
loader must not keep.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from leader.data.clinical import ALLERGIES, CONDITIONS, DRUGS, HOSPITAL_ROUTINE, PROCEDURES, Condition
from leader.errors import LeaderError
from leader.io import atomic_dir, claim_out, out_path, scratch_dir

FORMATS = ("mimic3", "mimic4")
SINGLE_VISIT_SHARE = 0.6
CODED_CHRONIC = 0.8
"""Chance a chronic condition a patient has is coded at a visit."""
CONTINUE_CHRONIC = 0.9
"""Chance a chronic drug is given at a visit (else held)."""
NOTE_SHARE = 0.9
DROP_DRUG, ADD_ONE, ADD_TWO = 0.07, 0.3, 0.1
BY_KEY = {c.key: c for c in CONDITIONS}
CHRONIC = [c for c in CONDITIONS if c.chronic]
ACUTE = [c for c in CONDITIONS if not c.chronic]
_ELDERLY_SWAP = {"zolpidem": "trazodone", "lorazepam": "sertraline"}


@dataclass
class Visit:
    """One simulated admission (the truth behind the raw tables)."""

    month: int
    """Months since the patient's first admission."""
    acute: list[str]
    chronic_coded: list[str]
    chronic_all: list[str]
    """Every chronic condition the patient has at this visit, coded or not."""
    new_chronic: list[str]
    """Chronic conditions that start at this visit (not yet known at admission)."""
    procedures: list[str]
    drugs: list[str]
    home_drugs: list[str]
    note: bool


@dataclass
class Person:
    """One simulated patient."""

    gender: str
    age: int
    """Age at the first admission."""
    allergies: list[str]
    insurance: str
    language: str
    religion: str
    marital_status: str
    ethnicity: str
    visits: list[Visit] = field(default_factory=list)


def _risk(c: Condition, age: int, gender: str) -> float:
    factor = max(0.05, 1.0 + c.age * (age - 60) / 10)
    if c.sex == "M only":
        factor *= gender == "M"
    elif c.sex and c.sex != gender:
        factor *= 0.4
    return c.rate * factor


def _pick_chronic_drugs(c: Condition, person: Person, rng: random.Random) -> list[str]:
    """The drugs a patient takes for chronic condition `c`, chosen once at onset."""
    chosen = []
    for prob, options in c.drugs:
        if rng.random() < prob:
            drug = _allergy_swap(rng.choice(options), person)
            if person.age >= 75:
                drug = _ELDERLY_SWAP.get(drug, drug)
            chosen.append(drug)
    return chosen


def _allergy_swap(drug: str, person: Person) -> str:
    for allergy in person.allergies:
        drug = ALLERGIES[allergy][1].get(drug, drug)
    return drug


def _visit_count(rng: random.Random) -> int:
    if rng.random() < SINGLE_VISIT_SHARE:
        return 1
    n = 2
    while n < 8 and rng.random() < 0.4:
        n += 1
    return n


def _acute(person: Person, chronic: dict, age: int, rng: random.Random) -> list[str]:
    pool = [(c.key, _risk(c, age, person.gender)) for c in ACUTE if not c.needs or c.needs in chronic]
    picked: list[str] = []
    for _ in range(1 + (rng.random() < 0.45) + (rng.random() < 0.15)):
        keys = [k for k, _ in pool if k not in picked]
        weights = [w for k, w in pool if k not in picked]
        picked.append(rng.choices(keys, weights)[0])
    return picked


def simulate(n: int, seed: int = 0) -> list[Person]:
    """Simulate `n` patients (deterministic given `seed`)."""
    rng = random.Random(seed)
    people = []
    for _ in range(n):
        gender = "M" if rng.random() < 0.55 else "F"
        age = int(min(max(rng.gauss(64, 17), 18), 99))
        allergies = [name for name, (prob, _) in ALLERGIES.items() if rng.random() < prob]
        person = Person(
            gender,
            age,
            allergies,
            insurance="Medicare"
            if age >= 65 and rng.random() < 0.85
            else rng.choice(["Private", "Medicaid", "Private", "Self Pay"]),
            language=rng.choice(["ENGL"] * 8 + ["SPAN", "PORT"]),
            religion=rng.choice(["CATHOLIC", "PROTESTANT QUAKER", "JEWISH", "NOT SPECIFIED", "UNOBTAINABLE"]),
            marital_status=rng.choice(["MARRIED", "MARRIED", "SINGLE", "WIDOWED", "DIVORCED"]),
            ethnicity=rng.choice(
                ["WHITE"] * 6 + ["BLACK/AFRICAN AMERICAN", "HISPANIC OR LATINO", "ASIAN", "UNKNOWN/NOT SPECIFIED"]
            ),
        )
        chronic: dict[str, list[str]] = {}  # condition -> the patient's drugs for it
        for c in CHRONIC:
            if rng.random() < min(0.9, _risk(c, age, gender)):
                chronic[c.key] = _pick_chronic_drugs(c, person, rng)
        month = 0
        for v in range(_visit_count(rng)):
            if v:
                month += rng.randint(1, 24)
            age_now = age + month // 12
            home = sorted({d for drugs in chronic.values() for d in drugs if rng.random() < 0.9})
            new = []
            if v:
                for c in CHRONIC:
                    if c.key not in chronic and rng.random() < 0.15 * min(0.9, _risk(c, age_now, gender)):
                        chronic[c.key] = _pick_chronic_drugs(c, person, rng)
                        new.append(c.key)
            person.visits.append(_visit(person, chronic, new, home, month, age_now, rng))
        people.append(person)
    return people


def _visit(
    person: Person, chronic: dict, new: list[str], home: list[str], month: int, age: int, rng: random.Random
) -> Visit:
    acute = _acute(person, chronic, age, rng)
    chronic_all = [c.key for c in CHRONIC if c.key in chronic]
    coded = [k for k in chronic_all if k in new or rng.random() < CODED_CHRONIC]
    procedures = []
    for key in acute + chronic_all:
        for proc, prob in BY_KEY[key].procedures:
            if proc not in procedures and rng.random() < prob:
                procedures.append(proc)
    if "central_line" not in procedures and rng.random() < 0.08:
        procedures.append("central_line")
    drugs: set[str] = set()
    for key in acute:
        for prob, options in BY_KEY[key].drugs:
            if rng.random() < prob:
                drugs.add(_allergy_swap(rng.choice(options), person))
    for key in chronic_all:
        drugs.update(d for d in chronic[key] if rng.random() < CONTINUE_CHRONIC)
    for proc in procedures:
        drugs.update(d for d, prob in PROCEDURES[proc][4] if rng.random() < prob)
    for drug, prob in HOSPITAL_ROUTINE:
        if rng.random() < prob:
            drugs.add(drug)
    if "diabetes" in chronic and rng.random() < 0.5:
        drugs.add("insulin regular")
    drugs = {d for d in sorted(drugs) if rng.random() >= DROP_DRUG}
    names = list(DRUGS)
    for chance in (ADD_ONE, ADD_TWO):
        if rng.random() < chance:
            drugs.add(_allergy_swap(rng.choice(names), person))
    return Visit(month, acute, coded, chronic_all, new, procedures, sorted(drugs), home, rng.random() < NOTE_SHARE)


def synthesize(
    out: Path, patients: int, seed: int = 0, fmt: str = "mimic3", raw: Path | None = None, overwrite: bool = False
) -> Path:
    """Simulate `patients`, write raw MIMIC tables, prepare them into `out`; return `out`."""
    from leader.data import mimic3, mimic4
    from leader.data.common import MimicConfig
    from leader.data.synth_raw import write_raw

    if fmt not in FORMATS:
        raise LeaderError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if patients < 1:
        raise LeaderError(f"--patients must be at least 1, got {patients}")
    out = Path(out)
    if raw is not None:
        a, b = out_path(out), out_path(raw)
        if a == b or a in b.parents or b in a.parents:
            raise LeaderError(f"--raw {raw} and --out {out} overlap; give them separate folders")
    with contextlib.ExitStack() as stack:
        stack.enter_context(claim_out(out, overwrite=overwrite, inputs=[raw], marker="manifest.json"))
        if raw is not None:
            stack.enter_context(claim_out(raw, overwrite=overwrite, inputs=[out], marker="synth.json", what="--raw"))
        people = simulate(patients, seed)
        # the raw tables are written under a temporary name and read from there; --raw appears only at the end
        where = atomic_dir(raw, overwrite, marker="synth.json") if raw is not None else scratch_dir(out)
        with where as folder:
            files = write_raw(folder, people, fmt, seed)
            cfg = MimicConfig(
                root=files["root"],
                out=out,
                ndc_map=files["ndc_map"],
                atc_map=files["atc_map"],
                ddi=files["ddi"],
                notes=files.get("notes"),
                overwrite=overwrite,
            )
            loader = mimic3 if fmt == "mimic3" else mimic4
            extra = {
                "synth": {
                    "patients": patients,
                    "seed": seed,
                    "format": fmt,
                    "raw": str(raw) if raw is not None else "temporary folder, deleted",
                }
            }
            return loader.run(cfg, source=f"synth-{fmt}", extra=extra)
