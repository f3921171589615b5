"""FHIR R4 (Bulk Data NDJSON or Bundles) -> prepared dataset (`leader data fhir`).

    leader data fhir --input export/ --out data/fhir [--coding atc3|name] [--drug-atc drug_atc.csv] \\
        [--visits encounters-with-medication|inpatient] [--no-active-conditions] [--top-meds 300] [--ddi pairs.csv] \\
        [--workers N]

``--input`` is a Bulk Data ``$export`` folder (``Type.ndjson`` or ``Type.ndjson.gz``, several files
per type allowed, e.g. ``Patient.000.ndjson.gz``; sub-folders are not read; the export's own
manifest .json is recognised and skipped), one NDJSON file, one
Bundle (``.json``: a Bundle or a single resource) or a folder of Bundles. A folder holding both
reads both. The mapping of resources to patients, visits, codes and labels is `leader.data.fhir_map`
(one place); its `patient_record(bundle, at_encounter=...)`, re-exported here, reads one patient's
resources (a CDS Hooks prefetch) the same way. `leader.data.fhir_read` reads the files; this module
cleans and writes.

Streaming: NDJSON files are read line by line (Patient, Encounter and Medication files first) and
each resource is reduced to a few compact fields at once; a Bundle is read whole, one at a time.
``--workers`` processes read files at the same time (`leader.data.fhir_read`; default: the CPU
cores, at most 4); the dataset is byte for byte the same with any number.

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
from pathlib import Path

from leader.cohort import write_dataset
from leader.data.assemble import top_record_labels
from leader.data.config import FhirConfig
from leader.data.fhir_facts import Store
from leader.data.fhir_map import VISIT_REASONS, build, patient_record
from leader.data.fhir_read import default_workers, find_files, load, paused_gc
from leader.data.meds import read_ddi_pairs, unmapped_top
from leader.data.tables import log
from leader.errors import LeaderError
from leader.io import claim_out

__all__ = ["FhirConfig", "patient_record", "run"]  # patient_record: the bedside entry point (leader serve)


def run(cfg: FhirConfig) -> Path:
    """Read the FHIR resources at cfg.input and write the prepared dataset to cfg.out."""
    with (
        claim_out(cfg.out, overwrite=cfg.overwrite, inputs=[cfg.input, cfg.drug_atc, cfg.ddi], marker="manifest.json"),
        paused_gc(),  # until the import's objects are freed: switched on among them, it would scan them all
    ):
        return _prepare(cfg)


def _prepare(cfg: FhirConfig) -> Path:
    options = cfg.mapping()
    options.labeler  # noqa: B018 -- load the name -> ATC map (and check --drug-atc) before reading the export
    ddi = read_ddi_pairs(cfg.ddi) if cfg.ddi is not None else []
    files = find_files(cfg.input)
    store = Store()
    load(files, store, cfg.workers or default_workers())
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

    medications, cut = top_record_labels(records, cfg.top_meds, cfg.min_patients)
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
        **cut,
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
    return write_dataset(
        cfg.out,
        cleaned,
        medications,
        titles,
        ddi,
        source="fhir",
        options=cfg.options(),
        extra=extra,
        overwrite=cfg.overwrite,
    )


def _label_titles(labels: list[str], coding: str) -> dict[str, str]:
    """ATC-3 labels titled by their WHO name (the code itself if unknown); names title themselves."""
    if coding != "atc3":
        return {label: label for label in labels}
    from leader.data.atc import atc_title

    return {label: atc_title(label) or label for label in labels}
