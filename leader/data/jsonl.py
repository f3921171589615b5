"""A hospital's own export in the cohort format -> prepared dataset (`leader data jsonl`).

    leader data jsonl --input export.jsonl.gz --out data/hospital [--vocab titles.json] [--ddi pairs.csv]

The input is JSON Lines (plain or ``.gz``, UTF-8), one patient per line::

    {"patient_id": "p1",
     "profile": {"gender": "F", "age": 71, "insurance": "Medicare", "language": "ENGLISH",
                 "religion": null, "marital_status": "MARRIED", "ethnicity": "WHITE",
                 "admission_type": "EMERGENCY"},
     "visits": [{"visit_id": "v1", "time": "2021-03-04T10:00:00",
                 "diagnoses": ["ICD10:I10", "ICD10:E119"], "procedures": ["ICD10P:02HV33Z"],
                 "medications": ["C07A", "A10B"],
                 "note": {"history_of_present_illness": "...", "past_medical_history": "...",
                          "allergies": "...", "medications_on_admission": "..."}}]}

- ``patient_id``, ``profile`` and ``visits`` are required; profile keys are optional (missing
  ones are unknown). ``patient_id`` stays in the cohort file but is never logged.
- Each visit needs ``visit_id``, ``diagnoses``, ``procedures`` and ``medications``; ``time`` (ISO)
  and ``note`` (the four LAMO sections, or null) are optional; ``year_group`` may name a period
  for temporal splits. Visits are sorted by ``time`` when every visit has one.
- Codes are ``SYSTEM:VALUE`` for any system (``ICD9``, ``ICD10``, ``ICD9P``, ``ICD10P``,
  ``SNOMED``, ``CPT``, ``OPS``, ``LOINC``, ...; `leader.cohort.normalize_code`): ICD values lose
  their dots and are upper-cased (``ICD9:401.9``, `` icd9:4019 `` -> ``ICD9:4019``), other
  values are stripped. A code without a system, with an empty value or with a control character
  (NUL) refuses the file with its line number. Medications are labels of one coding (ATC-3 such
  as ``C07A``, or generic names), stripped; ATC-looking labels are upper-cased (``c07a`` ==
  ``C07A``, `leader.cohort.normalize_label`).

Cleaning, as for MIMIC:

- A code whose value does not have its system's shape (`leader.cohort.CODE_PATTERNS`: ICD-9
  ``4019``/``V3001``, ICD-10 ``I10``, SNOMED 6-18 digits, ...) is *dropped and counted*
  (``drops.codes.malformed`` in the manifest, per system, and a log line with the first line
  number; the value itself is never logged). Dropping rather than refusing: a real export
  carries a few legacy or local codes, and refusing a whole file for them would push users to
  clean it outside, where nobody counts; a systematic problem (a column of names) still shows
  as a large count. Either way ``ICD9:JANEDOE0`` never reaches a model.
- Blank medication labels are dropped and counted (``drops.medications.blank``); a code or label
  written twice in one visit (``ICD9:401.9`` and ``ICD9:4019``) is kept once, in first-seen order.
- The same ``patient_id`` on two lines is refused, naming both lines: a split by patient would
  otherwise put one person in train and test. Merging is left to the export, which knows whether
  the two records are one stay written twice or two stays to join.
- Visits with no diagnosis and no procedure are dropped (``no_codes``), visits with no
  medication (``no_medication``) or none among the kept labels (``no_top_medication``) too, then
  patients with no visit left.

The labels are the ``--top-meds`` most frequent (by visits) among those at least
``--min-patients`` distinct patients received (default 5: a label is a model output, and a rare
one could single a patient out), or, when ``--vocab`` holds a ``"medications"`` list, exactly
that list in that order (other medications are left out and counted). ``--vocab`` is a JSON
object with optional ``"titles"`` (code or label -> human title; a prepared dataset's vocab.json
works; its keys are normalised like the cohort's) and ``"medications"``; codes without a title
are titled by the code itself.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from leader.cohort import (
    CODE_KINDS,
    code_fits_system,
    iter_jsonl,
    normalize_code,
    normalize_label,
    validate_patient,
    write_dataset,
)
from leader.data.assemble import top_record_labels
from leader.data.config import JsonlConfig
from leader.data.meds import read_ddi_pairs
from leader.data.tables import log
from leader.errors import LeaderError
from leader.io import claim_out, read_json


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def clean_visit(visit, where: str, number: int, drops: Counter, malformed: Counter) -> dict:
    """The visit with its codes normalised (malformed ones dropped and counted per system) and its
    labels normalised (blank ones dropped and counted); a visit of the wrong shape is returned
    as it is, for `validate_patient` to name the problem."""
    if not isinstance(visit, dict):
        return visit
    visit = dict(visit)
    for kind in CODE_KINDS:
        if not _strings(visit.get(kind)):
            continue
        kept = []
        for code in visit[kind]:
            try:
                code = normalize_code(code)
            except LeaderError as err:
                raise LeaderError(f"{where}, '{kind}': {err}") from None
            if code_fits_system(code):
                kept.append(code)
            else:
                malformed[code.split(":", 1)[0]] += 1
                drops.setdefault("first_malformed_line", number)
        visit[kind] = list(dict.fromkeys(kept))
    if _strings(visit.get("medications")):
        labels = [normalize_label(m) for m in visit["medications"]]
        drops["blank_medications"] += labels.count("")
        visit["medications"] = list(dict.fromkeys(m for m in labels if m))
    return visit


def read_export(path: Path) -> tuple[list[dict], Counter, Counter]:
    """Read and check the export; return patients (codes and labels normalised, empty visits
    removed), drop counts and malformed codes per system."""
    patients, drops, malformed = [], Counter(), Counter()
    lines: dict[str, int] = {}
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("visits"), list) or not record["visits"]:
            validate_patient(record, number, normalized=False)  # raises the precise error
        if not isinstance(record.get("patient_id"), (str, int)):
            validate_patient(record, number, normalized=False)
        key = str(record["patient_id"]).strip()
        if key in lines:
            raise LeaderError(
                f"lines {lines[key]} and {number} have the same patient_id: write each patient on one line "
                "(all visits in 'visits'), or a split by patient could put one person in train and test"
            )
        lines[key] = number
        visits = []
        for v, visit in enumerate(record["visits"], 1):
            visit = clean_visit(visit, f"line {number}, visit {v}", number, drops, malformed)
            if isinstance(visit, dict) and not visit.get("diagnoses") and not visit.get("procedures"):
                drops["no_codes"] += 1
            elif isinstance(visit, dict) and isinstance(visit.get("medications"), list) and not visit["medications"]:
                drops["no_medication"] += 1
            else:
                visits.append(visit)
        if not visits:
            drops["patients_no_visit_left"] += 1
            continue
        record = validate_patient({**record, "visits": visits}, number)
        if all(isinstance(v.get("time"), str) and v["time"] for v in visits):
            record["visits"] = sorted(visits, key=lambda v: v["time"])
        patients.append(record)
    if malformed:
        log(
            f"{path.name}: {sum(malformed.values()):,} codes dropped that do not fit their system "
            f"({', '.join(f'{s} {n:,}' for s, n in sorted(malformed.items()))}; first on line "
            f"{drops['first_malformed_line']}); see CODE_PATTERNS in leader/cohort.py"
        )
    if not patients:
        raise LeaderError(f"{path} holds no patient with a usable visit")
    return patients, drops, malformed


def _titles(vocab: dict) -> tuple[dict[str, str], dict[str, str]]:
    """--vocab titles keyed like the cohort: (code titles, label titles)."""
    codes, labels = {}, {}
    for key, title in vocab.get("titles", {}).items():
        labels[normalize_label(key)] = str(title)
        try:
            codes[normalize_code(key)] = str(title)
        except LeaderError:
            pass  # a medication label, not a code
    return codes, labels


def _fixed_labels(vocab: dict, path) -> list[str] | None:
    fixed = vocab.get("medications")
    if fixed is None:
        return None
    if not _strings(fixed) or not fixed:
        raise LeaderError(f'--vocab {path}: "medications" must be a non-empty list of labels')
    labels = [normalize_label(m) for m in fixed]
    if "" in labels or len(set(labels)) != len(labels):
        raise LeaderError(f'--vocab {path}: "medications" has a blank or repeated label (c07a and C07A are one)')
    return labels


def run(cfg: JsonlConfig) -> Path:
    """Validate the export at cfg.input and write the prepared dataset to cfg.out."""
    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=cfg.inputs(), marker="manifest.json"):
        return _prepare(cfg)


def _prepare(cfg: JsonlConfig) -> Path:
    vocab = read_json(cfg.vocab, "--vocab file") if cfg.vocab is not None else {}
    if not isinstance(vocab, dict) or not isinstance(vocab.get("titles", {}), dict):
        raise LeaderError(f'--vocab {cfg.vocab} must be a JSON object with "titles": {{code: title}}')
    fixed = _fixed_labels(vocab, cfg.vocab)
    ddi = [(normalize_label(a), normalize_label(b)) for a, b in read_ddi_pairs(cfg.ddi)] if cfg.ddi else []
    patients, drops, malformed = read_export(cfg.input)
    log(f"{cfg.input.name}: {len(patients):,} patients read")

    top, cut = top_record_labels(patients, cfg.top_meds, cfg.min_patients, required=fixed is None)
    medications = fixed if fixed is not None else top
    keep = set(medications)
    mentions = sum(len(v["medications"]) for p in patients for v in p["visits"])
    kept_mentions = 0
    cleaned = []
    for patient in patients:
        visits = []
        for visit in patient["visits"]:
            meds = sorted(m for m in visit["medications"] if m in keep)
            kept_mentions += len(meds)
            if meds:
                visits.append({**visit, "medications": meds})
            else:
                drops["no_top_medication"] += 1
        if visits:
            cleaned.append({**patient, "visits": visits})
        else:
            drops["patients_no_visit_left"] += 1

    code_titles, label_titles = _titles(vocab)
    codes = sorted({c for p in cleaned for v in p["visits"] for c in v["diagnoses"] + v["procedures"]})
    titles = {c: code_titles.get(c, c) for c in codes} | {m: label_titles.get(m, m) for m in medications}
    visit_drops = {r: drops[r] for r in ("no_codes", "no_medication", "no_top_medication")}
    extra = {
        "medication_coding": "as given",
        "top_meds": cfg.top_meds if fixed is None else len(fixed),
        **cut,
        "drops": {
            "visits": visit_drops,
            "patients": {"no_visit_left": drops["patients_no_visit_left"]},
            "codes": {"malformed": sum(malformed.values()), "malformed_by_system": dict(sorted(malformed.items()))},
            "medications": {"blank": drops["blank_medications"]},
        },
        "coverage": {
            "medication_mentions": mentions,
            "kept_mentions": kept_mentions,
            "mapped_share": round(kept_mentions / mentions, 4) if mentions else 0.0,
        },
        "codes_without_title": sum(1 for c in codes if c not in code_titles),
        "visits_with_note": sum(1 for p in cleaned for v in p["visits"] if v.get("note")),
    }
    return write_dataset(
        cfg.out,
        cleaned,
        medications,
        titles,
        ddi,
        source="jsonl",
        options=cfg.options(),
        extra=extra,
        overwrite=cfg.overwrite,
    )
