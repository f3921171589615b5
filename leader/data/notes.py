"""LAMO's four note sections, cut out of a discharge summary by rule.

LAMO (Zhao et al., arXiv 2503.03687) keeps what is known at admission: history of present
illness, past medical history, allergies and medications on admission. A section starts at its
header line ("History of Present Illness:", "PAST MEDICAL HISTORY:", ...) and ends at the next
header: a known one ("Brief Hospital Course:", "Social History:", "Discharge Medications:", ...)
or any short line ending in a colon, so nothing from the hospital course or the discharge part can leak in; a
header-like line inside a section only ends it early, which is the safe side.
"""

from __future__ import annotations

import re

from leader.cohort import NOTE_SECTIONS

_ALIASES = {
    "history_of_present_illness": (
        "history of present illness",
        "hpi",
        "history of the present illness",
        "present illness",
    ),
    "past_medical_history": (
        "past medical history",
        "pmh",
        "past medical/surgical history",
        "past medical history/past surgical history",
        "medical history",
    ),
    "allergies": ("allergies", "allergy", "allergies/adverse reactions"),
    "medications_on_admission": (
        "medications on admission",
        "admission medications",
        "meds on admission",
        "home medications",
        "outpatient medications",
        "medications prior to admission",
        "preadmission medications",
    ),
}
_SECTION_OF = {alias: section for section, aliases in _ALIASES.items() for alias in aliases}
# headers that end a section even with text after the colon on the same line
_OTHER_HEADERS = {
    "admission date",
    "discharge date",
    "date of birth",
    "sex",
    "service",
    "attending",
    "chief complaint",
    "major surgical or invasive procedure",
    "major surgical and invasive procedures",
    "social history",
    "family history",
    "physical exam",
    "physical examination",
    "review of systems",
    "pertinent results",
    "labs",
    "imaging",
    "studies",
    "brief hospital course",
    "hospital course",
    "transitional issues",
    "discharge medications",
    "medications on discharge",
    "discharge disposition",
    "disposition",
    "discharge diagnosis",
    "discharge diagnoses",
    "discharge condition",
    "condition at discharge",
    "discharge instructions",
    "followup instructions",
    "facility",
    "completed by",
    "impression",
    "assessment and plan",
    "assessment/plan",
}
# a header candidate: at the start of a line, up to ~6 words, then a colon
_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&(),'\-]{0,60}?)[ \t]*:[ \t]*(\n|$)?", re.MULTILINE)
MAX_CHARS = 4000
"""Longest section kept (characters): a bound for pathological notes, far above a normal section."""


def extract_sections(text: str | None) -> dict[str, str] | None:
    """The four sections of a discharge summary, or None when none of them is found.

    Missing sections are empty strings. Whitespace runs are collapsed; MIMIC's ``[** **]`` and
    ``___`` de-identification marks are kept as written.
    """
    if not text:
        return None
    text = text.replace("\r\n", "\n")
    headers = []
    for match in _HEADER.finditer(text):
        name = re.sub(r"\s+", " ", match.group(1).strip().lower())
        ends_line = match.group(2) is not None
        if name in _SECTION_OF or name in _OTHER_HEADERS or (ends_line and len(name.split()) <= 6):
            headers.append((match.start(), match.end(), name))
    found: dict[str, str] = {}
    for i, (_, end, name) in enumerate(headers):
        section = _SECTION_OF.get(name)
        if section is None or section in found:
            continue
        stop = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        body = re.sub(r"\s+", " ", text[end:stop]).strip()
        found[section] = body[:MAX_CHARS]
    if not found:
        return None
    return {section: found.get(section, "") for section in NOTE_SECTIONS}
