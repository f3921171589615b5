"""CDS Hooks 2.0 for the student: discovery, reading a hook request, and the cards it answers.

No model logic: the patient record comes from `leader.data.fhir_map.patient_record` (the mapping the
importer uses, so a patient reads the same in training and at the bedside), the probabilities,
thresholds and DDI pairs from `leader.export.runtime.Recommender`. Drug names of active orders and
draft orders go to ATC-3 through `leader.data.atc` (the importer's `MapOptions().labeler`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from leader.data import fhir_codes as fc
from leader.data.atc import atc_title

SERVICE_ID = "leader-medication-recommendation"
HOOKS = ("patient-view", "order-select")
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "encounters": "Encounter?patient={{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}
"""The FHIR queries the EHR runs for us (CDS Hooks prefetch templates); the same ones are run against
`fhirServer` when the prefetch is missing."""
ACTIVE = {"active", "on-hold", "draft"}
"""MedicationRequest statuses that count as the patient's current medication."""
SHOWN = 10
"""Most drug classes listed in the recommendation card."""


class BadRequest(ValueError):
    """A hook request that is not CDS Hooks / FHIR as expected; str() names the field (400)."""


def discovery() -> dict:
    """The body of GET /cds-services: one service, offered on both hooks."""
    return {
        "services": [
            {
                "hook": hook,
                "id": SERVICE_ID,
                "title": "leader medication recommendation",
                "description": "Drug classes (ATC-3) a distilled student model recommends for the current visit, "
                "with drug-drug interaction warnings; for a clinician to review, never to prescribe alone.",
                "prefetch": dict(PREFETCH),
                "usageRequirements": "Send a JWT signed with a key of the service's JWKS (CDS Hooks 2.0 security).",
            }
            for hook in HOOKS
        ]
    }


@dataclass
class Hook:
    """The parts of a hook request the service reads."""

    hook: str
    instance: str
    patient_id: str
    encounter_id: str | None
    prefetch: dict[str, object]
    fhir_server: str | None = None
    fhir_token: str | None = None
    draft_orders: list[dict] = field(default_factory=list)


def _string(value, name: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 2048:
        raise BadRequest(f"'{name}' must be a non-empty string")
    return value.strip()


def _resource_or_bundle(value, name: str) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise BadRequest(f"'{name}' must be a FHIR resource or Bundle (an object with resourceType)")
    if value["resourceType"] == "Bundle" and not isinstance(value.get("entry", []), list):
        raise BadRequest(f"'{name}.entry' must be a list")
    return value


def parse_hook(body) -> Hook:
    """Check a hook request's shape; BadRequest names the first bad field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object (a CDS Hooks request)")
    hook = _string(body.get("hook"), "hook")
    if hook not in HOOKS:
        raise BadRequest(f"'hook' must be one of {', '.join(HOOKS)}")
    instance = _string(body.get("hookInstance"), "hookInstance")
    context = body.get("context")
    if not isinstance(context, dict):
        raise BadRequest("'context' must be an object")
    patient_id = _string(context.get("patientId"), "context.patientId")
    encounter_id = _string(context.get("encounterId"), "context.encounterId", required=False)
    prefetch = body.get("prefetch") or {}
    if not isinstance(prefetch, dict):
        raise BadRequest("'prefetch' must be an object")
    prefetch = {k: _resource_or_bundle(v, f"prefetch.{k}") for k, v in prefetch.items() if v is not None}
    server = _string(body.get("fhirServer"), "fhirServer", required=False)
    if server is not None and not server.startswith(("https://", "http://")):
        raise BadRequest("'fhirServer' must be an http(s) URL")
    token = None
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if not isinstance(auth, dict):
            raise BadRequest("'fhirAuthorization' must be an object")
        token = _string(auth.get("access_token"), "fhirAuthorization.access_token")
    drafts: list[dict] = []
    if hook == "order-select":
        bundle = _resource_or_bundle(context.get("draftOrders"), "context.draftOrders")
        drafts = [
            e["resource"]
            for e in bundle.get("entry", [])
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    missing = [k for k in PREFETCH if k not in prefetch]
    if missing and server is None:
        raise BadRequest(f"'prefetch.{missing[0]}' is missing and no 'fhirServer' is given to fetch it from")
    return Hook(hook, instance, patient_id, encounter_id, prefetch, server, token, drafts)


def query(key: str, patient_id: str) -> str:
    """The relative FHIR URL of prefetch `key` for this patient."""
    return PREFETCH[key].replace("{{context.patientId}}", patient_id)


def merged_bundle(prefetch: dict[str, object]) -> dict:
    """One Bundle of every prefetched resource (fullUrls kept, so urn:uuid references resolve)."""
    entries: list[dict] = []
    for value in prefetch.values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            entries.extend(
                e for e in value.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            )
        elif isinstance(value, dict):
            entries.append({"resource": value})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def order_labels(resource: dict, medications: dict[str, dict], labeler) -> tuple[str | None, tuple[str, ...]]:
    """(drug name, ATC-3 classes) of a MedicationRequest, through its code or its Medication resource."""
    concept = resource.get("medicationCodeableConcept")
    if concept is None:
        ref = fc.reference_id(resource.get("medicationReference"), "Medication")
        concept = (medications.get(ref) or {}).get("code") if ref else None
    name = fc.drug_name(concept)
    return name, (labeler(name) if name else ())


def active_labels(bundle: dict, labeler) -> set[str]:
    """ATC-3 classes of the patient's active MedicationRequests."""
    resources = [e["resource"] for e in bundle["entry"]]
    medications = {r.get("id"): r for r in resources if r.get("resourceType") == "Medication"}
    out: set[str] = set()
    for r in resources:
        if r.get("resourceType") == "MedicationRequest" and r.get("status") in ACTIVE:
            out.update(order_labels(r, medications, labeler)[1])
    return out


@dataclass
class ModelInfo:
    """What the cards say about the model (from its metadata and card), fixed per loaded file."""

    name: str
    version: str
    card_url: str
    limitations: str


def _title(label: str, names: dict[str, str]) -> str:
    return atc_title(label) or names.get(label, label)


def _card(summary: str, indicator: str, detail: str, info: ModelInfo) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary[:140],
        "indicator": indicator,
        "detail": detail,
        "source": {
            "label": f"{info.name} {info.version}",
            "url": info.card_url,
            "topic": {
                "system": "https://leader.invalid/cds-topics",
                "code": "medication-recommendation",
                "display": "Medication recommendation (model card)",
            },
        },
    }


def cards(
    rec,
    names: dict[str, str],
    ddi: set[frozenset],
    current: set[str],
    drafts: list[tuple[str | None, tuple]],
    info: ModelInfo,
) -> list[dict]:
    """The cards for one scored patient: the recommendation, DDI warnings, notes on unrecommended drafts."""
    probability = dict(rec.ranked)
    shown = rec.recommended[:SHOWN]
    rows = [f"| {m} | {_title(m, names)} | {probability.get(m, 0.0):.2f} |" for m in shown]
    if shown:
        summary = "Drug classes to consider: " + ", ".join(f"{m} {_title(m, names)}" for m in shown[:3])
        summary += f" (+{len(rec.recommended) - 3} more)" if len(rec.recommended) > 3 else ""
        table = "| ATC-3 | class (WHO) | probability |\n|---|---|---|\n" + "\n".join(rows)
    else:
        summary = "No drug class reaches the model's threshold for this visit"
        table = "Most probable classes: " + ", ".join(f"{m} {_title(m, names)} ({p:.2f})" for m, p in rec.ranked[:3])
    notes = []
    if rec.unknown_codes:
        notes.append(f"{len(rec.unknown_codes)} of the patient's codes were unknown to the model (read as unknown).")
    if rec.truncated:
        notes.append("Older visits or codes beyond the model's limits were left out.")
    detail = "\n\n".join([table, *notes, "**Limitations.** " + info.limitations])
    out = [_card(summary, "info", detail, info)]
    for a, b in rec.ddi_warnings:
        out.append(
            _card(
                f"Interaction between recommended {a} and {b}",
                "warning",
                f"{a} ({_title(a, names)}) and {b} ({_title(b, names)}) are a known drug-drug interaction "
                "pair; both are recommended. Review before ordering both.",
                info,
            )
        )
    for m in rec.recommended:
        for active in sorted(current - {m}):
            if frozenset((m, active)) in ddi:
                out.append(
                    _card(
                        f"Recommended {m} interacts with active {active}",
                        "warning",
                        f"{m} ({_title(m, names)}) is recommended and the patient has an active order of "
                        f"{active} ({_title(active, names)}); the pair is a known drug-drug interaction.",
                        info,
                    )
                )
    recommended = set(rec.recommended)
    for name, labels in drafts:
        if labels and not set(labels) & recommended:
            classes = ", ".join(f"{c} {_title(c, names)}" for c in labels)
            out.append(
                _card(
                    f"Draft order not among the recommended classes ({', '.join(labels)})",
                    "info",
                    f"The draft order {name or ''} ({classes}) is not among the drug classes the model "
                    "recommends for this visit. This is a note, not a contraindication.",
                    info,
                )
            )
    return out
