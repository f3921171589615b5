"""Which eICU treatments may be model input: none that names a medication or a drug class.

eICU's ``treatment.treatmentstring`` is a path such as
``cardiovascular|arrhythmias|anticoagulant administration|low molecular weight heparin|enoxaparin``.
A path that names a drug, a drug class or a fluid given as a drug is the answer the model is asked
for (the visit's medication labels), so it never becomes an ``EICU-TX:`` code. A path is excluded
when any of its segments

1. holds a word of `CLASS_WORDS` (drug classes, "medications", fluids, electrolytes, blood
   products, parenteral nutrition, contrast; matched at word starts, so "antibacterials" matches
   "antibacterial") or of `WHOLE_WORDS` ("H2", "ACE", "ARB"), or its last segment holds a word of
   `LEAF_WORDS` ("VTE prophylaxis"), or
2. is mapped to an ATC class by the drug name coder (the whole segment, or any of its pieces
   split at ``/ , ( ) -``), or
3. holds a word that is a coded drug name ordered anywhere in the data set (`drug_words`).

The rule is deliberately wide: a non-drug treatment lost costs a little input; a drug kept leaks
the label. The distinct kept strings of the eICU demo were read by hand, and
tests/test_data_eicu.py checks on the whole demo that no input names a drug of its visit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

CLASS_WORDS = (
    # the words "medication(s)", "drug", "agent", "pharmacologic" themselves
    "medication",
    "drug",
    "agent",
    "pharmac",
    # drug classes
    "anti",  # antibacterials, antiarrhythmics, anticoagulants, antiemetic, antiplatelet, antihypertensive...
    "analges",
    "sedati",
    "hypnotic",
    "anesthe",
    "anaesthe",
    "narcotic",
    "opioid",
    "opiate",
    "benzodiazep",
    "paralytic",
    "neuromuscular",
    "vasopress",
    "pressor",
    "inotrop",
    "vasodilat",
    "vasoconstrict",
    "diuretic",
    "blocker",
    "inhibitor",
    "angiotensin",
    "statin",
    "nitrate",
    "nitro",
    "thrombolys",
    "thrombolytic",
    "fibrinoly",
    "heparin",
    "bronchodilat",
    "steroid",
    "glucocorticoid",
    "corticoster",
    "mineralocort",
    "insulin",
    "hypoglyc",
    "glucose",
    "dextrose",
    "hormone",
    "laxative",
    "stool softener",
    "cathartic",
    "enema",
    "ulcer",
    "proton pump",
    "immunosupp",
    "immunoglob",
    "chemo",  # chemotherapy, chemical cardioversion, chemocautery
    "chemical",
    "cytotoxic",
    "chelat",
    "vitamin",
    "thiamine",
    "folate",
    "folic",
    "supplement",
    "vaccin",
    "immuniz",
    "toxoid",
    "antidote",
    "reversal",
    "nicotine",
    "bicarbonate",
    "alkali",
    "contrast",  # contrast media are ATC V08 labels
    # fluids, electrolytes, blood products and parenteral nutrition (ordered as medications in eICU)
    "fluid",
    "saline",
    "ringer",
    "crystalloid",
    "colloid",
    "albumin",
    "hetastarch",
    "electrolyte",
    "potassium",
    "magnesium",
    "calcium",
    "phosph",
    "sodium",
    "blood product",
    "transfus",
    "packed red",
    "plasma",
    "platelet",
    "cryoprecip",
    "factor",
    "parenteral",
    "lipid",
)
"""Word starts that make a path segment name a drug or a drug class, wherever the segment stands."""
WHOLE_WORDS = ("h2", "arb", "ace", "ppi", "nmb", "tpn", "iron", "ssri", "snri", "prbc", "ivig", "ffp", "kcl", "d5w")
"""Abbreviations that name a drug class only as a whole word ("H2 blocker", not "H2O")."""
LEAF_WORDS = ("prophyla", "hyperkal", "hypokal", "hyponat", "hypernat", "hypercalc", "hypocalc", "hypomagn", "hypophos")
"""Word starts that name a drug only in the path's last segment: ``VTE prophylaxis`` alone is a drug,
``VTE prophylaxis|compression stockings`` is not (its drug children name the drug or class themselves)."""
_CLASS = re.compile(
    r"\b(?:" + "|".join(re.escape(w) for w in CLASS_WORDS) + r")|\b(?:" + "|".join(WHOLE_WORDS) + r")\b"
)
_LEAF = re.compile(r"\b(?:" + "|".join(LEAF_WORDS) + r")")
_PIECES = re.compile(r"[/,()\-]+")


def names_drug(path: str, coder: Callable[[str], tuple[str, ...]], drug_words: frozenset[str]) -> bool:
    """True when a treatment path names a medication, a drug class or a fluid given as a drug."""
    segments = [segment.strip() for segment in path.lower().split("|") if segment.strip()]
    if segments and _LEAF.search(segments[-1]):
        return True
    for segment in segments:
        if _CLASS.search(segment):
            return True
        if any(word in drug_words for word in re.findall(r"[a-z][a-z0-9]+", segment)):
            return True
        pieces = [segment, *(p.strip() for p in _PIECES.split(segment))]
        if any(piece and coder(piece) for piece in pieces):
            return True
    return False


def drug_words(names: Iterable[str], normalize: Callable[[str], str]) -> frozenset[str]:
    """Single words that are coded drug names of the data (normalised, at least 5 letters): "enoxaparin"."""
    words = set()
    for name in names:
        for part in normalize(name).split(" / "):
            part = part.strip()
            if re.fullmatch(r"[a-z][a-z0-9]{4,}", part):
                words.add(part)
    return frozenset(words)
