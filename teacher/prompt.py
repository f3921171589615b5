"""One sample as the teacher's prompt (LEADER's template with LAMO's note sections).

    Patient: male, 72 years old, insurance Medicare, admission type EMERGENCY.
    Previous visits: 2.
    Visit 1 of 2: diagnoses: Diabetes ...; procedures: none; medications: blood glucose ...
    Visit 2 of 2: diagnoses: Diabetes ...; Other and unspecified hyperlipidemia; procedures: ...
    Current visit: diagnoses: Atrial fibrillation; procedures: none.
    History of present illness: ...          (LAMO's four admission-time note sections,
    Past medical history: ...                  each only when present)
    Allergies: ...
    Medications on admission: ...
    Medications to prescribe:

Every history line carries *its own* visit's codes (LEADER's released template repeats the current
visit's diagnoses there; ARCHITECTURE.md says why not). Codes appear as titles from the dataset's
vocab.json; a medication label without one that is an ATC code gets its WHO name
(`leader.data.atc.label_title`: "C07A" -> "beta blocking agents"); any other code appears as itself.
At most `max_history` earlier visits are shown (the newest ones), but the count line gives the true
number. The fixed last line puts the same token at the end of every prompt, the one the medication
head reads.

Truncation to `max_tokens`: drop the oldest shown visit first, then shorten the note sections
(longest first, evenly), never the current visit: a current visit that alone exceeds the budget
is kept whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from leader.cohort import NOTE_SECTIONS, PROFILE_FIELDS
from leader.data.atc import label_title

SUFFIX = "Medications to prescribe:"
SECTION_NAMES = {
    "history_of_present_illness": "History of present illness",
    "past_medical_history": "Past medical history",
    "allergies": "Allergies",
    "medications_on_admission": "Medications on admission",
}
ELLIPSIS = " ..."


@dataclass(frozen=True)
class PromptSettings:
    """How samples become text; stored in teacher.json so features and inference match training."""

    max_tokens: int = 256
    """Token budget of a prompt (see the module docstring for what gets cut)."""
    max_history: int = 3
    """Earlier visits shown at most (LEADER uses 3)."""
    notes: bool = True
    """Include the four admission-time note sections when a visit has a note."""


class TokenCounter:
    """Counts tokens and cuts text to its first n tokens with a Hugging Face fast tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def cut(self, text: str, n: int) -> str:
        if n <= 0:
            return ""
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= n:
            return text
        return text[: offsets[n - 1][1]].rstrip()


def profile_sentence(profile: dict) -> str:
    """One sentence from the profile fields listed in ARCHITECTURE.md; other keys are never shown."""
    parts = []
    gender = str(profile.get("gender") or "").strip()
    if gender:
        parts.append({"M": "male", "F": "female"}.get(gender.upper(), gender.lower()))
    age = _age(profile.get("age"))
    if age is not None:
        # MIMIC shifts ages over 89 to ~300; say what is known
        parts.append("aged 90 or over" if age >= 90 else f"{age} years old")
    for key in PROFILE_FIELDS:
        if key in ("gender", "age"):
            continue
        value = str(profile.get(key) or "").strip()
        if value:
            parts.append(f"{key.replace('_', ' ')} {value}")
    return "Patient: " + (", ".join(parts) if parts else "no profile recorded") + "."


def _age(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _titles(codes: list[str], titles: dict[str, str], title_of=None) -> str:
    seen: list[str] = []
    for code in codes:
        title = title_of(code, titles) if title_of else str(titles.get(code) or code).strip()
        if title not in seen:
            seen.append(title)
    return "; ".join(seen) if seen else "none"


def _history_line(k: int, total: int, visit: dict, titles: dict[str, str]) -> str:
    return (
        f"Visit {k} of {total}: diagnoses: {_titles(visit['diagnoses'], titles)}; "
        f"procedures: {_titles(visit['procedures'], titles)}; "
        f"medications: {_titles(visit['medications'], titles, label_title)}."
    )


def _note_sections(visit: dict) -> list[tuple[str, str]]:
    note = visit.get("note") or {}
    out = []
    for key in NOTE_SECTIONS:
        text = " ".join(str(note.get(key) or "").split())
        if text:
            out.append((SECTION_NAMES[key], text))
    return out


def _assemble(head: list[str], history: list[str], current: str, note: list[tuple[str, str]]) -> str:
    lines = head + history + [current] + [f"{name}: {text}" for name, text in note] + [SUFFIX]
    return "\n".join(lines)


def render(sample, titles: dict[str, str], settings: PromptSettings = PromptSettings(), counter=None) -> str:
    """The prompt of one sample (anything with `.profile` and `.visits`, current visit last).

    `counter` (a TokenCounter, or anything with `count(text)` and `cut(text, n)`) enables the
    truncation to `settings.max_tokens`; without it the full prompt is returned.
    """
    earlier = sample.visits[:-1]
    current = sample.visits[-1]
    n_earlier = len(earlier)
    head = [profile_sentence(sample.profile), f"Previous visits: {n_earlier if n_earlier else 'none'}."]
    first_shown = max(0, n_earlier - settings.max_history)
    history = [_history_line(k + 1, n_earlier, earlier[k], titles) for k in range(first_shown, n_earlier)]
    current_line = (
        f"Current visit: diagnoses: {_titles(current['diagnoses'], titles)}; "
        f"procedures: {_titles(current['procedures'], titles)}."
    )
    note = _note_sections(current) if settings.notes else []
    text = _assemble(head, history, current_line, note)
    if counter is None:
        return text
    budget = settings.max_tokens
    while history and counter.count(text) > budget:
        history = history[1:]
        text = _assemble(head, history, current_line, note)
    if note and counter.count(text) > budget:
        note = _shorten_note(head, history, current_line, note, budget, counter)
        text = _assemble(head, history, current_line, note)
    return text


def _shorten_note(head, history, current_line, note, budget: int, counter) -> list[tuple[str, str]]:
    """Cut the note sections evenly (water-filling on their token counts) until the prompt fits."""
    lengths = [counter.count(text) for _, text in note]
    overflow = counter.count(_assemble(head, history, current_line, note)) - budget
    for _ in range(8):
        cap = _water_level(lengths, sum(lengths) - overflow)
        if cap <= 0:
            return []
        shorter = [
            (name, text if n <= cap else counter.cut(text, cap) + ELLIPSIS)
            for (name, text), n in zip(note, lengths, strict=True)
        ]
        over = counter.count(_assemble(head, history, current_line, shorter)) - budget
        if over <= 0:
            return shorter
        overflow += over  # token boundaries shift when text is cut: ask for a little more
    return []


def _water_level(lengths: list[int], target: int) -> int:
    """Largest cap c with sum(min(n, c)) <= target (0 when even an empty note does not fit)."""
    if target <= 0:
        return 0
    lo, hi = 0, max(lengths)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


def encode(samples, titles: dict[str, str], settings: PromptSettings, tokenizer) -> list[list[int]]:
    """Token ids of every sample's prompt, truncated to the budget (special tokens included)."""
    counter = TokenCounter(tokenizer)
    texts = [render(s, titles, settings, counter) for s in samples]
    return [list(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []
