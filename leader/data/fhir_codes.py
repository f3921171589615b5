"""FHIR R4 value readers shared by the FHIR mapping: code systems, references, dates, profile values.

Code systems become the cohort's ``SYSTEM:VALUE`` prefixes (ARCHITECTURE.md), normalised by
`leader.cohort.normalize_code`:

- SNOMED CT (``http://snomed.info/sct``) -> ``SNOMED:``
- ICD-10-CM (``http://hl7.org/fhir/sid/icd-10-cm``) and WHO ICD-10 -> ``ICD10:``, the prefix the MIMIC-IV
  loader gives ICD-10-CM diagnoses, so a FHIR cohort and a MIMIC-IV cohort share their ICD-10 codes
- ICD-9-CM -> ``ICD9:`` in a Condition, ``ICD9P:`` in a Procedure (volume 3 procedure codes)
- ICD-10-PCS (``http://www.cms.gov/Medicare/Coding/ICD10``) -> ``ICD10P:``
- CPT (``http://www.ama-assn.org/go/cpt``) -> ``CPT:``

The HL7 OIDs of the same systems (``urn:oid:2.16.840.1.113883.6.96`` for SNOMED CT, ...) are
accepted too. A coding in any other system is not used (the resource is counted).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from leader.cohort import code_fits_system, normalize_code
from leader.errors import LeaderError

SYSTEMS = {
    "http://snomed.info/sct": "SNOMED",
    "urn:oid:2.16.840.1.113883.6.96": "SNOMED",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10",
    "urn:oid:2.16.840.1.113883.6.90": "ICD10",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "urn:oid:2.16.840.1.113883.6.3": "ICD10",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD9",
    "urn:oid:2.16.840.1.113883.6.103": "ICD9",
    "urn:oid:2.16.840.1.113883.6.104": "ICD9P",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD10P",
    "urn:oid:2.16.840.1.113883.6.4": "ICD10P",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "urn:oid:2.16.840.1.113883.6.12": "CPT",
}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
INPATIENT_CLASSES = {"IMP", "ACUTE", "NONAC"}
"""v3 ActCode encounter classes that are a hospital stay (inpatient encounter, acute, non-acute)."""
ADMISSION_TYPES = {
    "AMB": "AMBULATORY",
    "EMER": "EMERGENCY",
    "FLD": "FIELD",
    "HH": "HOME HEALTH",
    "IMP": "INPATIENT",
    "ACUTE": "INPATIENT ACUTE",
    "NONAC": "INPATIENT NON-ACUTE",
    "OBSENC": "OBSERVATION",
    "PRENC": "PRE-ADMISSION",
    "SS": "SHORT STAY",
    "VR": "VIRTUAL",
}
MARITAL = {
    "A": "ANNULLED",
    "D": "DIVORCED",
    "I": "INTERLOCUTORY",
    "L": "SEPARATED",
    "M": "MARRIED",
    "P": "POLYGAMOUS",
    "S": "SINGLE",
    "T": "DOMESTIC PARTNER",
    "U": "UNMARRIED",
    "W": "WIDOWED",
}
GENDERS = {"male": "M", "female": "F", "other": "O"}
_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
_HISPANIC = "2135-2"  # CDC race & ethnicity code of "Hispanic or Latino"


@functools.lru_cache(maxsize=1 << 16)
def _system_code(prefix: str, value: str) -> str | None:
    """`normalize_code` of ``prefix:value`` when it fits its system, else None (cached: few distinct codes)."""
    try:
        code = normalize_code(f"{prefix}:{value}")
    except LeaderError:
        return None
    return code if code_fits_system(code) else None


def concept_code(concept, kind: str) -> tuple[str, str] | str:
    """``(SYSTEM:VALUE, title)`` of the first usable coding, else why there is none: "no code",
    "code system not used" or "malformed code" (a value that does not fit its system, e.g. SNOMED
    letters).

    `kind` is "diagnoses" or "procedures" (it decides ICD9 vs ICD9P). The title is the coding's
    display, else the concept's text, else the code.
    """
    why = "no code"
    for coding in concept.get("coding") or () if isinstance(concept, dict) else ():
        value = coding.get("code") if isinstance(coding, dict) else None
        if not isinstance(value, str) or not value.strip():
            continue
        prefix = SYSTEMS.get(coding.get("system"))
        if prefix is None:
            why = "code system not used" if why == "no code" else why
            continue
        if prefix == "ICD9" and kind == "procedures":
            prefix = "ICD9P"
        code = _system_code(prefix, value)
        if code is None:
            why = "malformed code"
            continue
        title = coding.get("display") or concept.get("text") or code
        return code, str(title).strip()
    return why


def concept_text(concept) -> str | None:
    """A human name of a CodeableConcept: its text, else the first display."""
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"].strip()
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and isinstance(coding.get("display"), str) and coding["display"].strip():
            return coding["display"].strip()
    return None


def drug_name(concept) -> str | None:
    """The drug's name: the RxNorm coding's display (e.g. "Ibuprofen 200 MG Oral Tablet"), else any name."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("system") == RXNORM and isinstance(coding.get("display"), str):
            if coding["display"].strip():
                return coding["display"].strip()
    return concept_text(concept)


def status_code(concept) -> str | None:
    """The code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    if isinstance(concept, dict):
        for coding in concept.get("coding") or ():
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return coding["code"]
    return None


def reference_id(ref, rtype: str, aliases: dict[str, tuple[str, str]] | None = None) -> str | None:
    """The id a Reference points to when it names a `rtype` resource, else None.

    ``Patient/123``, ``https://ehr.example/fhir/Patient/123/_history/2`` and ``urn:uuid:...``
    (through the Bundle's fullUrl -> resource map `aliases`) all resolve. A ``urn:uuid:`` that the
    Bundle does not hold resolves to the uuid itself: the resource id exporters such as Synthea use.
    """
    text = ref.get("reference") if isinstance(ref, dict) else ref
    if not isinstance(text, str) or not text or text[0] == "#":
        return None
    head, sep, tail = text.partition("/")
    if head == rtype and sep and tail and "/" not in tail:  # the Bulk Data form, Type/id: most references
        return tail
    if text.startswith("urn:"):
        hit = (aliases or {}).get(text)
        if hit is not None:
            return hit[1] if hit[0] == rtype else None
        return text.rsplit(":", 1)[1] or None
    parts = text.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
        return parts[-1]
    return None


def instant(text) -> float | None:
    """Seconds since 1970 of a FHIR date or dateTime ("2019", "2019-05", "2019-05-03", with time and
    offset); no offset means UTC. None when missing or malformed."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        if len(text) == 4:
            moment = datetime(int(text), 1, 1)
        elif len(text) == 7:
            moment = datetime(int(text[:4]), int(text[5:7]), 1)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def age_at(birth: str | None, when: str) -> int | None:
    """Whole years from a birthDate to the date part of `when`, capped at 90 as the MIMIC loaders do
    (ages over 89 are an identifier under HIPAA Safe Harbor); None when unknown."""
    if not birth or not when:
        return None
    try:
        (by, bm, bd), (wy, wm, wd) = _ymd(birth), _ymd(when)
    except ValueError:
        return None
    age = wy - by - ((wm, wd) < (bm, bd))
    return min(age, 90) if age >= 0 else None


def _ymd(text: str) -> tuple[int, int, int]:
    """Year, month, day of a FHIR date ("1956", "1956-08", "1956-08-03", or a dateTime)."""
    parts = [int(p) for p in text[:10].split("-")]
    return parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1


def profile_values(patient: dict) -> dict:
    """gender, birth date, ethnicity, marital status and language of a Patient resource.

    ``ethnicity`` follows the MIMIC column of that name, which mixes race and ethnicity: the US Core
    race text ("White"), with ", Hispanic or Latino" added when the US Core ethnicity says so.
    """
    race = hispanic = None
    for ext in patient.get("extension") or ():
        if not isinstance(ext, dict) or ext.get("url") not in (_RACE, _ETHNICITY):
            continue
        text = omb = None
        for part in ext.get("extension") or ():
            if isinstance(part, dict) and part.get("url") == "text" and isinstance(part.get("valueString"), str):
                text = part["valueString"].strip()
            elif (
                isinstance(part, dict)
                and part.get("url") == "ombCategory"
                and isinstance(part.get("valueCoding"), dict)
            ):
                omb = part["valueCoding"]
        if ext["url"] == _RACE:
            race = text or (omb or {}).get("display")
        else:
            hispanic = (omb or {}).get("code") == _HISPANIC
    ethnicity = ", ".join(x for x in (race, "Hispanic or Latino" if hispanic else None) if x) or None
    marital = patient.get("maritalStatus")
    marital_code = status_code(marital)
    language = None
    communication = [c for c in patient.get("communication") or () if isinstance(c, dict)]
    preferred = [c for c in communication if c.get("preferred")] or communication
    if preferred:
        language = concept_text(preferred[0].get("language"))
    gender = patient.get("gender")
    return {
        "gender": GENDERS.get(gender, gender) if isinstance(gender, str) and gender != "unknown" else None,
        "birth": patient.get("birthDate") if isinstance(patient.get("birthDate"), str) else None,
        "ethnicity": ethnicity.upper() if ethnicity else None,
        "marital_status": MARITAL.get(marital_code) or (concept_text(marital) or "").upper() or None,
        "language": language.upper() if language else None,
    }


def encounter_class(encounter: dict) -> str | None:
    """The v3 ActCode class of an Encounter (R4: a Coding; R5: a list of CodeableConcepts)."""
    value = encounter.get("class")
    if isinstance(value, dict):
        return value.get("code") if isinstance(value.get("code"), str) else None
    if isinstance(value, list) and value:
        return status_code(value[0])
    return None
