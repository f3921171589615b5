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
- Codes carry their system: ``ICD9:``/``ICD10:`` for diagnoses, ``ICD9P:``/``ICD10P:`` for
  procedures, without dots. Medications are labels of one coding (ATC-3 such as ``C07A``, or
  generic names); they are used as written, stripped of surrounding spaces.

Cleaning, as for MIMIC: visits with no diagnosis and no procedure are dropped (``no_codes``),
visits with no medication (``no_medication``) or none among the top-N labels
(``no_top_medication``) too, then patients with no visit left. The labels are the ``--top-meds``
most frequent (by visits), or, when ``--vocab`` holds a ``"medications"`` list, exactly that
list in that order (other medications are left out and counted). ``--vocab`` is a JSON object
with optional ``"titles"`` (code or label -> human title; a prepared dataset's vocab.json works)
and ``"medications"``; codes without a title are titled by the code itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from leader.cohort import iter_jsonl, validate_patient, write_dataset
from leader.data.meds import read_ddi_pairs
from leader.data.tables import log
from leader.errors import LeaderError
from leader.io import read_json


@dataclass
class JsonlConfig:
    """Options of `leader data jsonl`."""

    input: Path
    """The export: JSON Lines, one patient per line (.jsonl or .jsonl.gz)."""
    out: Path
    """Where the prepared dataset goes."""
    vocab: Path | None = None
    """JSON with optional "titles" {code: title} and "medications" [label, ...] (fixes the label list)."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs (header, then two labels per row)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (ignored when --vocab lists the medications)."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        self.input, self.out = Path(self.input), Path(self.out)
        if not self.input.is_file():
            raise LeaderError(f"--input {self.input} not found; give the cohort JSONL export")
        if self.top_meds < 1:
            raise LeaderError(f"--top-meds must be at least 1, got {self.top_meds}")


def read_export(path: Path) -> tuple[list[dict], Counter]:
    """Read and check the export; return patients with empty visits removed, and drop counts."""
    patients, drops = [], Counter()
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("visits"), list) or not record["visits"]:
            validate_patient(record, number)  # raises the precise error
            continue
        visits = []
        for visit in record["visits"]:
            if isinstance(visit, dict) and not visit.get("diagnoses") and not visit.get("procedures"):
                drops["no_codes"] += 1
            elif isinstance(visit, dict) and isinstance(visit.get("medications"), list) and not visit["medications"]:
                drops["no_medication"] += 1
            else:
                visits.append(visit)
        if not visits:
            drops["patients_no_visit_left"] += 1
            continue
        record = {**record, "visits": visits}
        validate_patient(record, number)
        if all(isinstance(v.get("time"), str) and v["time"] for v in visits):
            record["visits"] = sorted(visits, key=lambda v: v["time"])
        record["visits"] = [{**v, "medications": [m.strip() for m in v["medications"]]} for v in record["visits"]]
        patients.append(record)
    if not patients:
        raise LeaderError(f"{path} holds no patient with a usable visit")
    return patients, drops


def run(cfg: JsonlConfig) -> Path:
    """Validate the export at cfg.input and write the prepared dataset to cfg.out."""
    vocab = read_json(cfg.vocab, "--vocab file") if cfg.vocab is not None else {}
    if not isinstance(vocab, dict) or not isinstance(vocab.get("titles", {}), dict):
        raise LeaderError(f'--vocab {cfg.vocab} must be a JSON object with "titles": {{code: title}}')
    fixed = vocab.get("medications")
    if fixed is not None and (not isinstance(fixed, list) or not fixed or not all(isinstance(m, str) for m in fixed)):
        raise LeaderError(f'--vocab {cfg.vocab}: "medications" must be a non-empty list of labels')
    ddi = read_ddi_pairs(cfg.ddi) if cfg.ddi is not None else []
    patients, drops = read_export(cfg.input)
    log(f"{cfg.input.name}: {len(patients):,} patients read")

    counts = Counter(m for p in patients for v in p["visits"] for m in set(v["medications"]))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    medications = list(fixed) if fixed is not None else [label for label, _ in ranked[: cfg.top_meds]]
    keep = set(medications)
    mentions = sum(len(set(v["medications"])) for p in patients for v in p["visits"])
    kept_mentions = 0
    cleaned = []
    for patient in patients:
        visits = []
        for visit in patient["visits"]:
            meds = sorted({m for m in visit["medications"] if m in keep})
            kept_mentions += len(meds)
            if meds:
                visits.append({**visit, "medications": meds})
            else:
                drops["no_top_medication"] += 1
        if visits:
            cleaned.append({**patient, "visits": visits})
        else:
            drops["patients_no_visit_left"] += 1

    titles_in = vocab.get("titles", {})
    codes = sorted({c for p in cleaned for v in p["visits"] for c in v["diagnoses"] + v["procedures"]})
    titles = {c: str(titles_in.get(c, c)) for c in codes} | {m: str(titles_in.get(m, m)) for m in medications}
    visit_drops = {r: drops[r] for r in ("no_codes", "no_medication", "no_top_medication")}
    extra = {
        "medication_coding": "as given",
        "top_meds": cfg.top_meds if fixed is None else len(fixed),
        "medication_labels_before_top": len(ranked),
        "drops": {"visits": visit_drops, "patients": {"no_visit_left": drops["patients_no_visit_left"]}},
        "coverage": {
            "medication_mentions": mentions,
            "kept_mentions": kept_mentions,
            "mapped_share": round(kept_mentions / mentions, 4) if mentions else 0.0,
        },
        "codes_without_title": sum(1 for c in codes if c not in titles_in),
        "visits_with_note": sum(1 for p in cleaned for v in p["visits"] if v.get("note")),
    }
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return write_dataset(
        cfg.out,
        cleaned,
        medications,
        titles,
        ddi,
        source="jsonl",
        options=options,
        extra=extra,
        overwrite=cfg.overwrite,
    )
