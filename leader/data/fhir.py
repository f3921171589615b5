"""FHIR R4 (Bulk Data NDJSON or Bundles) -> prepared dataset (`leader data fhir`).

    leader data fhir --input export/ --out data/fhir [--coding atc3|name] [--drug-atc drug_atc.csv] \\
        [--visits encounters-with-medication|inpatient] [--no-active-conditions] [--top-meds 300] [--ddi pairs.csv]

``--input`` is a Bulk Data ``$export`` folder (``Type.ndjson`` or ``Type.ndjson.gz``, several files
per type allowed, e.g. ``Patient.000.ndjson.gz``; sub-folders are not read; the export's own
manifest .json is recognised and skipped), one NDJSON file, one
Bundle (``.json``: a Bundle or a single resource) or a folder of Bundles. A folder holding both
reads both. The mapping of resources to patients, visits, codes and labels is `leader.data.fhir_map`
(one place); its `patient_record(bundle, at_encounter=...)`, re-exported here, reads one patient's
resources (a CDS Hooks prefetch) the same way. This module reads the files and cleans.

Streaming: NDJSON files are read line by line (Patient, Encounter and Medication files first) and
each resource is reduced to a few compact fields at once; a Bundle is read whole, one at a time.

Cleaning, after the visit rules of `fhir_map` (``no_start``, ``not_inpatient``, ``no_medication``,
``no_mapped_medication``, ``no_codes``): the ``--top-meds`` most frequent labels (by visits, ties by
label) among those at least ``--min-patients`` distinct patients received (default 5, as `leader data
jsonl`) are kept, visits with none of them are dropped (``no_top_medication``), then patients with
no visit left (``no_visit_left``; ``no_encounter`` when the Patient had none). The manifest counts
resources read per type, skipped ones by reason, references to a patient or encounter the export
does not hold, and the medication coverage (share of orders whose drug maps to a label, with the
most frequent unmapped names).

Fatal: a file that is not UTF-8 JSON (one line naming the file and line), an NDJSON line that is
not a FHIR resource, no FHIR file at --input, no patient left. Nothing is written then.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from leader.cohort import iter_jsonl, write_dataset
from leader.data.fhir_facts import Store, iter_resources
from leader.data.fhir_map import VISIT_REASONS, MapOptions, build, patient_record
from leader.data.meds import read_ddi_pairs, unmapped_top
from leader.data.tables import log
from leader.encoding import MIN_PATIENTS
from leader.errors import LeaderError
from leader.io import claim_out, read_json

__all__ = ["FhirConfig", "patient_record", "run"]  # patient_record: the bedside entry point (leader serve)

FIRST_TYPES = ("Patient", "Encounter", "Medication")
"""NDJSON files of these types are read first (small, and what the others point to)."""


@dataclass
class FhirConfig:
    """Options of `leader data fhir`."""

    input: Path
    """A Bulk Data export folder (Type.ndjson[.gz]), one NDJSON file, a Bundle .json or a folder of Bundles."""
    out: Path
    """Where the prepared dataset goes."""
    coding: str = "atc3"
    """atc3 (RxNorm drug name -> ATC-3 classes through leader.data.atc) or name (normalised generic name)."""
    drug_atc: Path | None = None
    """With atc3: a CSV drug,atc_code used instead of the shipped drug name -> ATC map."""
    visits: str = "encounters-with-medication"
    """encounters-with-medication (every encounter with a medication order) or inpatient (IMP/ACUTE/NONAC only)."""
    active_conditions: bool = True
    """Add conditions active at an encounter's start to its diagnoses (Synthea records chronic ones once)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (by visits)."""
    min_patients: int = MIN_PATIENTS
    """A label is kept only when this many distinct patients received it (a rare label could single one out)."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs with a header (e.g. ddi_atc3_pairs_safedrug.csv)."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        self.input, self.out = Path(self.input), Path(self.out)
        if not self.input.exists():
            raise LeaderError(f"--input {self.input} not found; give a FHIR Bulk Data export folder, NDJSON or Bundle")
        if self.top_meds < 1:
            raise LeaderError(f"--top-meds must be at least 1, got {self.top_meds}")
        if self.min_patients < 1:
            raise LeaderError(f"--min-patients must be at least 1, got {self.min_patients}")
        self.mapping()  # checks --coding, --visits, --drug-atc

    def mapping(self) -> MapOptions:
        return MapOptions(self.coding, self.drug_atc, self.visits, self.active_conditions)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".ndjson", ".ndjson.gz")):
        return "ndjson"
    if name.endswith(".json"):
        return "bundle"
    return None


def find_files(path: Path) -> list[Path]:
    """FHIR files at `path`: NDJSON first (Patient, Encounter, Medication, then by name), then Bundles."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and _kind(p))
    if path.is_file() and _kind(path) is None:
        raise LeaderError(f"--input {path}: not a .ndjson, .ndjson.gz or .json file; give FHIR NDJSON or a Bundle")
    if not files:
        raise LeaderError(f"--input {path} holds no .ndjson, .ndjson.gz or .json file; give a FHIR Bulk Data export")

    def order(p: Path) -> tuple:
        rtype = p.name.split(".", 1)[0]
        first = FIRST_TYPES.index(rtype) if rtype in FIRST_TYPES else len(FIRST_TYPES)
        return (_kind(p) != "ndjson", first, p.name)

    return sorted(files, key=order)


def load(files: list[Path], store: Store) -> None:
    """Add every resource of `files` to `store`, one NDJSON line or one Bundle at a time."""
    for path in files:
        if _kind(path) == "ndjson":
            add = store.add
            for number, resource in iter_jsonl(path):
                rtype = resource.get("resourceType") if isinstance(resource, dict) else None
                if not isinstance(rtype, str):
                    raise LeaderError(
                        f"{path}: line {number} is not a FHIR resource (no resourceType); "
                        "each line of a Bulk Data NDJSON file must be one resource"
                    )
                if rtype == "Bundle":
                    _add_bundle(store, resource, f"{path}: line {number}")
                else:
                    add(resource)
        else:
            document = read_json(path, "FHIR Bundle")
            if isinstance(document, dict) and {"transactionTime", "output"} <= document.keys():
                log(f"{path.name}: the Bulk Data export manifest, not resources: skipped")
                continue
            if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
                raise LeaderError(f"{path} is not a FHIR Bundle or resource (no resourceType); give a FHIR R4 Bundle")
            _add_bundle(store, document, str(path))


def _add_bundle(store: Store, document: dict, where: str) -> None:
    """Add a Bundle's (or one resource's) resources; an entry that is not a resource names `where`."""
    try:
        for resource, aliases in iter_resources(document):
            store.add(resource, aliases)
    except LeaderError as err:
        raise LeaderError(f"{where}: an entry is {err}") from None


def run(cfg: FhirConfig) -> Path:
    """Read the FHIR resources at cfg.input and write the prepared dataset to cfg.out."""
    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=[cfg.input, cfg.drug_atc, cfg.ddi], marker="manifest.json"):
        return _prepare(cfg)


def _prepare(cfg: FhirConfig) -> Path:
    options = cfg.mapping()
    options.labeler  # noqa: B018 -- load the name -> ATC map (and check --drug-atc) before reading the export
    ddi = read_ddi_pairs(cfg.ddi) if cfg.ddi is not None else []
    files = find_files(cfg.input)
    store = Store()
    load(files, store)
    log(f"{len(files)} FHIR file(s): {sum(store.read.values()):,} resources read")
    records = [r for pid in sorted(store.charts) if (r := build(store, pid, options)) is not None]
    for what, tally in (
        ("skipped", store.skipped),
        ("pointing to a patient not in the export", store.missing_patient),
        ("pointing to an encounter not in the export", store.missing_encounter),
    ):
        if tally:
            log(f"resources {what}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(tally.items())))
    if not records:
        raise LeaderError(
            f"{cfg.input}: no patient has a visit with a medication and a code ({store.read['Encounter']:,} "
            f"Encounters, {store.read['MedicationRequest']:,} MedicationRequests read); check --visits and the export"
        )

    counts = Counter(m for p in records for v in p["visits"] for m in v["medications"])
    receivers = Counter(m for p in records for m in {m for v in p["visits"] for m in v["medications"]})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    medications = [label for label, _ in ranked if receivers[label] >= cfg.min_patients][: cfg.top_meds]
    if not medications:
        raise LeaderError(
            f"no medication label is received by {cfg.min_patients} or more patients; "
            "lower --min-patients (only for data that stays inside the hospital) or export more patients"
        )
    keep, drops, cleaned = set(medications), Counter(), []
    for patient in records:
        visits = []
        for visit in patient["visits"]:
            meds = [m for m in visit["medications"] if m in keep]
            if meds:
                visits.append({**visit, "medications": meds})
            else:
                drops["no_top_medication"] += 1
        if visits:
            cleaned.append({**patient, "visits": visits})
        else:
            drops["no_visit_left"] += 1

    codes = sorted({c for p in cleaned for v in p["visits"] for c in v["diagnoses"] + v["procedures"]})
    titles = {c: store.titles.get(c, c) for c in codes} | _label_titles(medications, cfg.coding)
    mentions, unmapped = sum(store.drug_mentions.values()), sum(store.unmapped.values())
    extra = {
        "medication_coding": cfg.coding,
        "top_meds": cfg.top_meds,
        "medication_labels_before_top": len(ranked),
        "medication_labels_below_min_patients": sum(1 for label in counts if receivers[label] < cfg.min_patients),
        "profile_from": "first kept visit",
        "drops": {
            "visits": {
                **{r: store.visit_drops[r] for r in VISIT_REASONS},
                "no_top_medication": drops["no_top_medication"],
            },
            "patients": {
                "no_encounter": store.patient_drops["no_encounter"],
                "no_visit_left": store.patient_drops["no_visit_left"] + drops["no_visit_left"],
            },
        },
        "resources": {
            "read": dict(sorted(store.read.items())),
            "skipped": dict(sorted(store.skipped.items())),
            "missing_patient": dict(sorted(store.missing_patient.items())),
            "missing_encounter": dict(sorted(store.missing_encounter.items())),
        },
        "coverage": {
            "medication_orders": mentions,
            "mapped_orders": mentions - unmapped,
            "mapped_share": round((mentions - unmapped) / mentions, 4) if mentions else 0.0,
            "drug_names": len(store.drug_mentions),
            "mapped_drug_names": len(store.drug_mentions) - len(store.unmapped),
            "unmapped_top": unmapped_top(dict(store.unmapped)),
        },
        "codes_without_title": sum(1 for c in codes if c not in store.titles),
        "visits_with_note": sum(1 for p in cleaned for v in p["visits"] if v.get("note")),
    }
    log(
        f"kept {len(cleaned):,} patients, {sum(len(p['visits']) for p in cleaned):,} visits; "
        f"{extra['coverage']['mapped_share']:.1%} of medication orders mapped ({cfg.coding})"
    )
    options_out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return write_dataset(
        cfg.out,
        cleaned,
        medications,
        titles,
        ddi,
        source="fhir",
        options=options_out,
        extra=extra,
        overwrite=cfg.overwrite,
    )


def _label_titles(labels: list[str], coding: str) -> dict[str, str]:
    """ATC-3 labels titled by their WHO name (the code itself if unknown); names title themselves."""
    if coding != "atc3":
        return {label: label for label in labels}
    from leader.data.atc import atc_title

    return {label: atc_title(label) or label for label in labels}
