"""FHIR R4 resources -> cohort patient records: the one mapping `leader data fhir` and a CDS Hooks
prefetch (`patient_record`) share, so a patient reads the same in training and at the bedside.

Resources are first reduced to compact facts per patient (`Store.add`: a code, a time, an
encounter id; the raw JSON is not kept), then each patient is built (`Store.build`):

- **Patient** -> profile: gender, age at the first visit of the record (from birthDate, capped at
  90), ethnicity (US Core race, plus "Hispanic or Latino" from US Core ethnicity), marital status,
  communication language; admission_type is the first visit's Encounter class (IMP -> INPATIENT);
  insurance is the **Coverage** (its type's text, else the payor's name) in force at that visit.
- **Encounter** -> visit (``time`` = period.start). ``encounters-with-medication``: every encounter
  with a medication order; ``inpatient``: inpatient encounters (class IMP, ACUTE, NONAC) only, and
  they too need a medication (a visit without one has no label). A visit also needs a code.
- **Condition** -> diagnoses of the encounter it references; with ``active_conditions`` also every
  condition active at the encounter's start (onset, else recordedDate, <= start < abatement).
  Synthea, like many EHRs, records a chronic condition once, on the encounter where it was
  diagnosed (hypertension in 1995), so the 2019 visit that renews the antihypertensive would
  otherwise carry no diagnosis, or only "check up". **Procedure** -> procedures of its encounter.
- **MedicationRequest** and **MedicationAdministration** of the encounter -> medication labels: the
  drug's name (the RxNorm display; a ``medicationReference`` is resolved through the Medication
  resource, whose ingredients are tried when the product name does not map) -> ATC-3 classes
  (``atc3``, `leader.data.atc.AtcCoder`) or the normalised generic name (``name``). Requests that
  were cancelled or entered in error, administrations not done, and anything stopped before it
  started are skipped.
- **MedicationStatement** (home medications) active at the encounter's start -> the note's
  ``medications_on_admission``; **AllergyIntolerance** recorded by then (and not inactive,
  resolved, refuted or entered in error) -> its ``allergies``. The other two note sections stay empty;
  a visit with neither has no note.

Nothing a resource cannot give is fatal: a resource of another type, a Condition without a code,
a reference to a patient or encounter the export does not hold, all are counted.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leader.cohort import NOTE_SECTIONS
from leader.data import fhir_codes as fc
from leader.data.fhir_facts import Chart, Drug, Encounter, Store, iter_resources
from leader.errors import LeaderError

CODINGS = ("atc3", "name")
VISIT_RULES = ("encounters-with-medication", "inpatient")
VISIT_REASONS = ("no_start", "not_inpatient", "no_medication", "no_mapped_medication", "no_codes")
LABEL_CACHE = 1 << 16
"""Drug names whose labels `MapOptions.labeler` remembers (an export names a few thousand)."""


@dataclass
class MapOptions:
    """How resources become a patient record (the mapping options of `leader data fhir`)."""

    coding: str = "atc3"
    """atc3 (drug name -> ATC-3 classes) or name (the normalised generic drug name)."""
    drug_atc: Path | None = None
    """With atc3: a CSV drug,atc_code replacing the shipped name -> ATC map."""
    visits: str = "encounters-with-medication"
    """encounters-with-medication (any encounter with an order) or inpatient (hospital stays only)."""
    active_conditions: bool = True
    """Add the conditions active at the encounter's start to its diagnoses."""

    def __post_init__(self) -> None:
        if self.coding not in CODINGS:
            raise LeaderError(f"--coding must be one of {', '.join(CODINGS)}, got '{self.coding}'")
        if self.visits not in VISIT_RULES:
            raise LeaderError(f"--visits must be one of {', '.join(VISIT_RULES)}, got '{self.visits}'")
        if self.drug_atc is not None and self.coding != "atc3":
            raise LeaderError("--drug-atc maps names to ATC codes: use it with --coding atc3")

    @functools.cached_property
    def labeler(self) -> Callable[[str], tuple[str, ...]]:
        """Drug name -> medication labels (cached per name, up to LABEL_CACHE names: `leader serve`
        keeps one labeler for every request, whose drug names the callers choose)."""
        from leader.data.atc import AtcCoder, normalize_drug_name

        if self.coding == "atc3":
            coder = AtcCoder.from_file(self.drug_atc) if self.drug_atc is not None else AtcCoder.default()
            return functools.lru_cache(maxsize=LABEL_CACHE)(coder.atc3)

        @functools.lru_cache(maxsize=LABEL_CACHE)
        def name_label(name: str) -> tuple[str, ...]:
            label = normalize_drug_name(name)
            return (label,) if label else ()

        return name_label


def _drug_labels(store: Store, drug: Drug, labeler) -> tuple[str | None, tuple[str, ...]]:
    name, ingredients = drug.name, ()
    if drug.medication is not None:
        if drug.medication not in store.medications:
            store.skipped[f"{drug.type}: Medication not found"] += 1
            return None, ()
        name, ingredients = store.medications[drug.medication]
    labels = labeler(name) if name else ()
    if not labels and ingredients:
        labels = tuple(sorted({label for part in ingredients for label in labeler(part)}))
    return name or (ingredients[0] if ingredients else None), labels


def build(store: Store, pid: str, options: MapOptions, current: str | None = None) -> dict | None:
    """The cohort record of one patient, or None (counted) when it has no visit.

    `current`, an encounter id, makes a bedside record: visits end with that encounter, which is
    kept whatever it holds (its medications are what is to be recommended).
    """
    chart = store.charts[pid]
    if chart.person is None:
        counts = {"Encounter": len(chart.encounters), "Condition": len(chart.conditions)}
        counts |= {"Procedure": len(chart.procedures), "AllergyIntolerance": len(chart.allergies)}
        store.missing_patient.update({kind: n for kind, n in counts.items() if n})
        store.missing_patient.update(d.type for d in chart.drugs)
        return None
    encounters, labeler = chart.encounters, options.labeler
    dx: dict[str, list[str]] = defaultdict(list)
    px: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, set[str]] = defaultdict(set)
    ordered: set[str] = set()
    for facts, target, kind in ((chart.conditions, dx, "Condition"), (chart.procedures, px, "Procedure")):
        for fact in facts:
            if fact.encounter in encounters:
                target[fact.encounter].append(fact.code)
            elif fact.encounter is not None:
                store.missing_encounter[kind] += 1
    for drug in chart.drugs:
        if drug.type == "MedicationStatement":
            continue
        if drug.encounter not in encounters:
            store.missing_encounter[drug.type] += 1
            continue
        name, mapped = _drug_labels(store, drug, labeler)
        ordered.add(drug.encounter)
        if mapped:
            labels[drug.encounter].update(mapped)
        store.drug_mentions[name] += 1
        if not mapped:
            store.unmapped[name] += 1
    order = sorted(encounters, key=lambda e: (encounters[e].at is None, encounters[e].at or 0.0, e))
    if current is not None:
        if current not in encounters:
            raise LeaderError(f"encounter '{current}' is not among the patient's encounters; check at_encounter")
        cut = encounters[current].at
        order = [e for e in order if e == current or (cut is not None and (encounters[e].at or cut) < cut)]
    visits, first = [], None
    for eid in order:
        enc = encounters[eid]
        reason = None if eid == current else _drop_reason(enc, options, eid in ordered, eid in labels)
        if reason is None:  # the diagnoses only now: most encounters are dropped before (no order)
            codes = _unique(dx.get(eid, []) + (_active(chart, enc.at) if options.active_conditions else []))
            reason = "no_codes" if not codes and not px.get(eid) and eid != current else None
        if reason is not None:
            store.visit_drops[reason] += 1
            continue
        first = first or enc
        visits.append(
            {
                "visit_id": eid,
                "time": enc.start,
                "diagnoses": codes,
                "procedures": _unique(px.get(eid, [])),
                "medications": sorted(labels.get(eid, ())),
                "note": _note(store, chart, enc.at),
            }
        )
    if not visits:
        store.patient_drops["no_visit_left" if encounters else "no_encounter"] += 1
        return None
    person = chart.person
    profile = {
        "gender": person["gender"],
        "age": fc.age_at(person["birth"], first.start),
        "insurance": _insurance(chart, first.at),
        "language": person["language"],
        "religion": None,
        "marital_status": person["marital_status"],
        "ethnicity": person["ethnicity"],
        "admission_type": fc.ADMISSION_TYPES.get(first.cls or "", first.cls),
    }
    return {"patient_id": pid, "profile": profile, "visits": visits}


def _active(chart: Chart, at: float | None) -> list[str]:
    """Codes of conditions active at `at`: onset <= at < abatement (no abatement: still active)."""
    if at is None:
        return []
    active = [
        c
        for c in chart.conditions
        if c.onset is not None and c.onset <= at and (c.abatement is None or at < c.abatement)
    ]
    return [c.code for c in sorted(active, key=lambda c: (c.onset, c.code))]


def _note(store: Store, chart: Chart, at: float | None) -> dict | None:
    """Allergies recorded by `at` and home medications (MedicationStatement) taken at `at`."""
    if at is None:
        return None
    allergies = sorted({a.text for a in chart.allergies if a.recorded is None or a.recorded <= at})
    home = []
    for drug in chart.drugs:
        if drug.type != "MedicationStatement" or drug.start is None or drug.start > at:
            continue
        if (drug.end is not None and at >= drug.end) or (drug.end is None and drug.status in ("completed", "stopped")):
            continue
        name = drug.name if drug.medication is None else store.medications.get(drug.medication, (None,))[0]
        if name:
            home.append(name)
    if not allergies and not home:
        return None
    note = dict.fromkeys(NOTE_SECTIONS, "")
    note.update(allergies="; ".join(allergies), medications_on_admission="; ".join(sorted(set(home))))
    return note


def _insurance(chart: Chart, at: float | None) -> str | None:
    """The first Coverage whose period holds `at` (no period: always), else None."""
    for coverage in chart.coverages:
        if at is None or ((coverage.start or at) <= at and (coverage.end is None or at < coverage.end)):
            return coverage.name
    return None


def _drop_reason(enc: Encounter, options: MapOptions, ordered: bool, mapped: bool) -> str | None:
    """The first visit rule (VISIT_REASONS) an encounter fails, before its codes are looked at."""
    if enc.at is None:
        return "no_start"
    if options.visits == "inpatient" and enc.cls not in fc.INPATIENT_CLASSES:
        return "not_inpatient"
    if not ordered:
        return "no_medication"
    if not mapped:
        return "no_mapped_medication"
    return None


def _unique(codes: list[str]) -> list[str]:
    return list(dict.fromkeys(codes))


def patient_record(resources, at_encounter: str | None = None, options: MapOptions | None = None) -> dict:
    """The cohort record (ARCHITECTURE.md's patient format) of one patient's FHIR resources.

    `resources`: a Bundle (a CDS Hooks prefetch), ``{type: [resources]}`` or an iterable of
    resources, holding one Patient. `at_encounter` (an id, ``Encounter/<id>`` or ``urn:uuid:<id>``):
    the visit to recommend for; the record then ends with that encounter, kept even without a
    medication or a code. Without it: every visit the importer would keep, before the top-N cut.
    """
    options = options or MapOptions()
    store = Store()
    for resource, aliases in iter_resources(resources):
        store.add(resource, aliases)
    people = [pid for pid, chart in store.charts.items() if chart.person is not None]
    if len(people) != 1:
        raise LeaderError(f"patient_record needs the resources of one patient; found {len(people)} Patient resources")
    current = at_encounter
    if current is not None and ("/" in current or current.startswith("urn:")):
        current = fc.reference_id(current, "Encounter")
    record = build(store, people[0], options, current)
    if record is None:
        raise LeaderError(
            "the patient has no visit with a medication and a code; pass at_encounter for a bedside record"
        )
    return record
