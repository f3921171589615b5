"""FHIR R4 resources -> compact facts per patient (`Store`): a code, a time, an encounter id each.

`Store.add` reads one resource (of any patient, in any order: Bulk Data files or Bundles) and keeps
only the fields the mapping needs, so the raw JSON of an export is never held; what it cannot use is
counted by reason (`Store.skipped`, `missing_patient`). How facts become visits is
`leader.data.fhir_map`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from leader.data import fhir_codes as fc
from leader.errors import LeaderError

SKIP_STATUS = {
    "Encounter": {"cancelled", "entered-in-error"},
    "Procedure": {"not-done", "entered-in-error"},
    "MedicationRequest": {"cancelled", "entered-in-error"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
    "MedicationStatement": {"not-taken", "entered-in-error"},
    "Coverage": {"cancelled", "entered-in-error"},
}
SKIP_VERIFICATION = {"entered-in-error", "refuted"}
DRUG_TYPES = ("MedicationRequest", "MedicationAdministration", "MedicationStatement")


class Encounter(NamedTuple):
    """Times here and below are seconds since 1970 (`fhir_codes.instant`), None when unknown."""

    start: str
    """period.start as written (the visit's ``time``)."""
    at: float | None
    cls: str | None


class Condition(NamedTuple):
    encounter: str | None
    """Id of the encounter it references (None: none referenced)."""
    code: str
    onset: float | None
    abatement: float | None


class Procedure(NamedTuple):
    encounter: str
    code: str


class Drug(NamedTuple):
    type: str
    encounter: str | None
    name: str | None
    medication: str | None
    """Id of the Medication resource (medicationReference), else None."""
    start: float | None
    end: float | None
    status: str | None


class Allergy(NamedTuple):
    text: str
    recorded: float | None


class Coverage(NamedTuple):
    name: str
    """The coverage type's text (e.g. "Medicare"), else the payor's display."""
    start: float | None
    end: float | None


@dataclass
class Chart:
    """One patient's compact facts (person is None while only references to the patient were seen)."""

    person: dict | None = None
    encounters: dict[str, Encounter] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)
    procedures: list[Procedure] = field(default_factory=list)
    drugs: list[Drug] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    coverages: list[Coverage] = field(default_factory=list)


def _period(value) -> tuple[float | None, float | None]:
    if not isinstance(value, dict):
        return None, None
    return fc.instant(value.get("start")), fc.instant(value.get("end"))


class Store:
    """Compact facts of many patients, the counters of what was skipped, and the code titles."""

    def __init__(self) -> None:
        self.charts: dict[str, Chart] = {}
        self.medications: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        self.titles: dict[str, str] = {}
        self.read: Counter = Counter()
        self.skipped: Counter = Counter()
        self.missing_patient: Counter = Counter()
        self.missing_encounter: Counter = Counter()
        self.visit_drops: Counter = Counter()
        self.patient_drops: Counter = Counter()
        self.drug_mentions: Counter = Counter()
        """Drug name -> orders attached to an encounter of a known patient (for the coverage)."""
        self.unmapped: Counter = Counter()

    # -- reading ---------------------------------------------------------------------------------
    def add(self, resource, aliases: dict | None = None) -> None:
        """Reduce one resource to its facts. `aliases` maps a Bundle's fullUrls to (type, id)."""
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            raise LeaderError("not a FHIR resource (no resourceType); give FHIR R4 resources as JSON objects")
        handler = _HANDLERS.get(rtype)
        if handler is None:
            self.skipped[f"{rtype}: unexpected type"] += 1
            return
        self.read[rtype] += 1
        rid = resource.get("id")
        if rtype in SKIP_STATUS and resource.get("status") in SKIP_STATUS[rtype]:
            self.skipped[f"{rtype}: status {resource['status']}"] += 1
        elif rtype in ("Patient", "Encounter", "Medication") and not (isinstance(rid, str) and rid):
            self.skipped[f"{rtype}: no id"] += 1
        else:
            handler(self, resource, aliases)

    def _chart(self, resource: dict, field_name: str, aliases) -> Chart | None:
        pid = fc.reference_id(resource.get(field_name), "Patient", aliases)
        if pid is None:
            self.missing_patient[resource["resourceType"]] += 1
            return None
        chart = self.charts.get(pid)
        if chart is None:
            chart = self.charts[pid] = Chart()
        return chart

    def _patient(self, r: dict, aliases) -> None:
        chart = self.charts.setdefault(r["id"], Chart())
        chart.person = fc.profile_values(r)

    def _medication(self, r: dict, aliases) -> None:
        ingredients = tuple(
            name
            for part in r.get("ingredient") or ()
            if isinstance(part, dict) and (name := fc.drug_name(part.get("itemCodeableConcept")))
        )
        self.medications[r["id"]] = (fc.drug_name(r.get("code")), ingredients)

    def _encounter(self, r: dict, aliases) -> None:
        if (chart := self._chart(r, "subject", aliases)) is None:
            return
        start = (r.get("period") or {}).get("start") if isinstance(r.get("period"), dict) else None
        start = start if isinstance(start, str) else ""
        chart.encounters[r["id"]] = Encounter(start, fc.instant(start), fc.encounter_class(r))

    def _coded(self, r: dict, kind: str) -> str | None:
        found = fc.concept_code(r.get("code"), kind)
        if isinstance(found, str):
            self.skipped[f"{r['resourceType']}: {found}"] += 1
            return None
        self.titles.setdefault(*found)
        return found[0]

    def _condition(self, r: dict, aliases) -> None:
        if fc.status_code(r.get("verificationStatus")) in SKIP_VERIFICATION:
            self.skipped[f"Condition: verification {fc.status_code(r['verificationStatus'])}"] += 1
            return
        if (code := self._coded(r, "diagnoses")) is None or (chart := self._chart(r, "subject", aliases)) is None:
            return
        onset = (
            fc.instant(r.get("onsetDateTime")) or _period(r.get("onsetPeriod"))[0] or fc.instant(r.get("recordedDate"))
        )
        abatement = fc.instant(r.get("abatementDateTime")) or _period(r.get("abatementPeriod"))[0]
        encounter = fc.reference_id(r.get("encounter"), "Encounter", aliases)
        chart.conditions.append(Condition(encounter, code, onset, abatement))

    def _procedure(self, r: dict, aliases) -> None:
        if (code := self._coded(r, "procedures")) is None or (chart := self._chart(r, "subject", aliases)) is None:
            return
        if (encounter := fc.reference_id(r.get("encounter"), "Encounter", aliases)) is None:
            self.skipped["Procedure: no encounter"] += 1
            return
        chart.procedures.append(Procedure(encounter, code))

    def _drug(self, r: dict, aliases) -> None:
        rtype = r["resourceType"]
        name = fc.drug_name(r.get("medicationCodeableConcept"))
        medication = fc.reference_id(r.get("medicationReference"), "Medication", aliases)
        if name is None and medication is None:
            self.skipped[f"{rtype}: no medication"] += 1
            return
        if rtype == "MedicationRequest":
            dispense = r.get("dispenseRequest") if isinstance(r.get("dispenseRequest"), dict) else {}
            start, end = _period(dispense.get("validityPeriod"))
            start = start or fc.instant(r.get("authoredOn"))
        else:
            start, end = _period(r.get("effectivePeriod"))
            start = start or fc.instant(r.get("effectiveDateTime"))
        if r.get("status") == "stopped" and start is not None and end is not None and end <= start:
            self.skipped[f"{rtype}: stopped before start"] += 1
            return
        encounter = fc.reference_id(
            r.get("encounter" if rtype == "MedicationRequest" else "context"), "Encounter", aliases
        )
        if encounter is None and rtype != "MedicationStatement":
            self.skipped[f"{rtype}: no encounter"] += 1
            return
        if (chart := self._chart(r, "subject", aliases)) is not None:
            status = r.get("status") if isinstance(r.get("status"), str) else None
            chart.drugs.append(Drug(rtype, encounter, name, medication, start, end, status))

    def _allergy(self, r: dict, aliases) -> None:
        verification = fc.status_code(r.get("verificationStatus"))
        clinical = fc.status_code(r.get("clinicalStatus"))
        if verification in SKIP_VERIFICATION or clinical in ("inactive", "resolved"):
            self.skipped[f"AllergyIntolerance: {verification if verification in SKIP_VERIFICATION else clinical}"] += 1
            return
        if (text := fc.concept_text(r.get("code"))) is None:
            self.skipped["AllergyIntolerance: no code"] += 1
            return
        if (chart := self._chart(r, "patient", aliases)) is not None:
            recorded = fc.instant(r.get("recordedDate")) or fc.instant(r.get("onsetDateTime"))
            chart.allergies.append(Allergy(text, recorded))

    def _coverage(self, r: dict, aliases) -> None:
        payor = next((p for p in r.get("payor") or () if isinstance(p, dict)), {})
        name = fc.concept_text(r.get("type")) or (
            payor.get("display") if isinstance(payor.get("display"), str) else None
        )
        if not name:
            self.skipped["Coverage: no type or payor name"] += 1
            return
        if (chart := self._chart(r, "beneficiary", aliases)) is not None:
            chart.coverages.append(Coverage(name.strip(), *_period(r.get("period"))))


_HANDLERS = {
    "Patient": Store._patient,
    "Encounter": Store._encounter,
    "Condition": Store._condition,
    "Procedure": Store._procedure,
    "Medication": Store._medication,
    **dict.fromkeys(DRUG_TYPES, Store._drug),
    "AllergyIntolerance": Store._allergy,
    "Coverage": Store._coverage,
}


def bundle_resources(bundle: dict) -> Iterator[tuple[dict, dict]]:
    """The resources of a Bundle (nested Bundles opened) with its fullUrl -> (type, id) map.

    A transaction Bundle's resources may have no id: the fullUrl's last part becomes it.
    """
    entries = [
        e["resource"] for e in bundle.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    urls = [
        e.get("fullUrl")
        for e in bundle.get("entry") or ()
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    aliases: dict[str, tuple[str, str]] = {}
    for resource, url in zip(entries, urls, strict=True):
        if isinstance(url, str) and url:
            rid = resource.get("id") or url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            aliases[url] = (resource.get("resourceType"), rid)
    for resource, url in zip(entries, urls, strict=True):
        if resource.get("resourceType") == "Bundle":
            yield from bundle_resources(resource)
        elif not resource.get("id") and url in aliases:
            yield {**resource, "id": aliases[url][1]}, aliases
        else:
            yield resource, aliases


def iter_resources(resources) -> Iterator[tuple[dict, dict | None]]:
    """(resource, aliases) from a Bundle, one resource, {type: [resources]} or an iterable of these."""
    if isinstance(resources, dict) and resources.get("resourceType") == "Bundle":
        yield from bundle_resources(resources)
    elif isinstance(resources, dict) and "resourceType" in resources:
        yield resources, None
    elif isinstance(resources, dict):
        for group in resources.values():
            yield from iter_resources(group if isinstance(group, list) else [group])
    elif isinstance(resources, Iterable) and not isinstance(resources, (str, bytes)):
        for item in resources:
            if isinstance(item, dict) and item.get("resourceType") == "Bundle":
                yield from bundle_resources(item)
            else:
                yield item, None
    else:
        raise LeaderError(
            f"expected FHIR resources (a Bundle, a resource or a list of them), got {type(resources).__name__}"
        )
