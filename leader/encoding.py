"""Code vocabularies and the array encoding of patients, shared by the student and the runtime.

numpy only: the ONNX runtime imports this module, so it must never import torch.

A batch of samples becomes (B = samples, V = visits kept, C = codes kept per visit):

- ``diagnoses``, ``procedures``: int64 [B, V, C] code ids of each visit (0 = padding, 1 = unknown);
- ``medications``: int64 [B, V, C] the medications of the visit *before* each visit, so slot 0
  (the first visit kept) holds none: the student puts the patient's profile there instead (the
  pseudo medication record of ARCHITECTURE.md);
- ``profile``: int64 [B, P] profile tokens such as ``gender=F`` or ``age=60-69``;
- ``visit_mask``: float32 [B, V], 1 for a real visit; visits are left-aligned and
  the current visit is at index ``visit_mask.sum() - 1``;
- ``notes``: int64 [B, T] the current visit's admission note as distinct ``section:word`` ids
  (`note_tokens`; words outside the note vocabulary are left out, 0 = padding). A patient without
  a note, or an encoder without a note vocabulary (a model without a note encoder), gets one
  padding column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from leader.limits import MIN_PATIENTS

PAD, UNK = 0, 1
CODE_TYPES = ("diagnoses", "procedures", "medications")
INPUTS = ("diagnoses", "procedures", "medications", "profile", "visit_mask", "notes")
"""The model's input names, in order: the keys of `Encoder.encode` and the ONNX graph's inputs.
Models exported before the note encoder (format 1) take the first five."""
NOTE_ORDER = ("allergies", "medications_on_admission", "past_medical_history", "history_of_present_illness")
"""`leader.cohort.NOTE_SECTIONS` in the order their words are read: the short sections that name
drugs first, the long narrative last, so a cut at ``max_note_tokens`` drops narrative words."""
_WORD = re.compile(r"[a-z][a-z0-9]*")
OTHER = "OTHER"
"""The closed category of a profile field: a value kept out of the vocabulary reads as ``FIELD=OTHER``."""


def profile_tokens(profile: dict) -> list[str]:
    """Categorical tokens of a profile; age becomes a decade bucket capped at 90."""
    tokens = []
    for key in sorted(profile):
        value = profile[key]
        if value is None or value == "":
            continue
        if key == "age":
            try:
                age = min(int(float(value)), 90)  # inf and NaN raise OverflowError / ValueError here
            except (TypeError, ValueError, OverflowError):
                continue
            if age < 0:
                continue
            value = "90+" if age >= 90 else f"{age // 10 * 10}-{age // 10 * 10 + 9}"
        tokens.append(f"{key}={str(value).strip().upper()}")
    return tokens


def note_tokens(note: dict | None) -> list[str]:
    """The distinct words of a visit's note as ``section:word`` tokens, in `NOTE_ORDER` and then
    in order of first appearance: lower case, runs of letters and digits that start with a letter
    (numbers alone are dropped), so "penicillin" under allergies and under medications on admission
    are different tokens. The one note tokenizer of the baseline, the student and the runtime."""
    if not note:
        return []
    words = [f"{section}:{w}" for section in NOTE_ORDER for w in _WORD.findall(str(note.get(section) or "").lower())]
    return list(dict.fromkeys(words))


def note_words(note: dict | None) -> set[str]:
    """`note_tokens` as a set: the bag of words of the logistic baseline."""
    return set(note_tokens(note))


def current_note(sample) -> dict | None:
    """The note the model reads: the current visit's (earlier visits' notes are never input)."""
    return sample.visits[-1].get("note")


def patient_of(sample) -> str:
    """The patient a sample belongs to: its ``sample_id`` up to the last ':' (`leader.samples`
    numbers samples ``"<patient index>:<visit index>"``); samples repeat a patient's history, so
    vocabulary counts go by this, never by occurrences."""
    return sample.sample_id.rsplit(":", 1)[0]


def patients_per_token(samples, tokens_of) -> dict[str, int]:
    """How many distinct patients carry each token; `tokens_of(sample)` lists a sample's tokens."""
    carriers: dict[str, set[str]] = {}
    for sample in samples:
        patient = patient_of(sample)
        for token in tokens_of(sample):
            carriers.setdefault(token, set()).add(patient)
    return {token: len(patients) for token, patients in carriers.items()}


def _profile_field(token: str) -> str:
    return token.split("=", 1)[0]


def closed_token(token: str, known) -> str:
    """`token` when `known` holds it, else its field's ``FIELD=OTHER`` when `known` holds that
    (profile values outside the vocabulary are a closed category), else `token` unchanged."""
    if token in known:
        return token
    other = f"{_profile_field(token)}={OTHER}"
    return other if other in known else token


@dataclass
class Vocab:
    """Token <-> id; ids 0 and 1 are padding and unknown."""

    tokens: list[str] = field(default_factory=lambda: ["<pad>", "<unk>"])

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, samples, tokens_of, min_patients: int = MIN_PATIENTS, closed: bool = False) -> Vocab:
        """The tokens that at least `min_patients` distinct patients carry (`MIN_PATIENTS`).

        `closed` (profile vocabularies): each field that enough patients have (whatever its
        values) also gets ``FIELD=OTHER``, where its rarer values and unseen ones are read
        (`encode`), so a rare value is a closed category, not an unknown.
        """
        if min_patients < 1:
            raise ValueError(f"min_patients must be at least 1, got {min_patients}")
        counts = patients_per_token(samples, tokens_of)
        kept = {t for t, n in counts.items() if n >= min_patients}
        if closed:
            fields = patients_per_token(samples, lambda s: {_profile_field(t) for t in tokens_of(s)})
            kept |= {f"{name}={OTHER}" for name, n in fields.items() if n >= min_patients}
        return cls(["<pad>", "<unk>", *sorted(kept)])

    def encode(self, tokens) -> list[int]:
        """Ids of tokens; an unseen ``FIELD=VALUE`` reads as ``FIELD=OTHER`` when the vocabulary has
        that category (a profile vocabulary fitted with `closed`), anything else unseen as UNK."""
        index = self.index
        return [index.get(closed_token(t, index), UNK) for t in tokens]

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Encoder:
    """Vocabularies fitted on the training split plus the truncation limits."""

    vocabs: dict[str, Vocab]
    """Keys: diagnoses, procedures, medications, profile, and notes when the model reads notes."""
    medications: list[str]
    """Output labels in order."""
    max_visits: int = 8
    max_codes: int = 40
    max_note_tokens: int = 0
    """Most note ids read per visit (`MAX_NOTE_TOKENS`); 0 when there is no note vocabulary."""

    def __post_init__(self):
        if ("notes" in self.vocabs) != (self.max_note_tokens > 0):
            raise ValueError("an encoder has a note vocabulary exactly when max_note_tokens > 0")

    @property
    def reads_notes(self) -> bool:
        return "notes" in self.vocabs

    @classmethod
    def fit(
        cls,
        train_samples,
        medications: list[str],
        max_visits: int = 8,
        max_codes: int = 40,
        min_patients: int = MIN_PATIENTS,
        max_note_tokens: int = 0,
    ) -> Encoder:
        """Fit vocabularies on training samples (each has `.sample_id`, `.visits` and `.profile`):
        a code, profile token or note word is kept when at least `min_patients` distinct patients
        carry it; profile values below that read as ``FIELD=OTHER`` (see `Vocab.fit`). With
        `max_note_tokens` > 0 the current visits' note words get a vocabulary too (`note_tokens`)."""
        vocabs = {
            kind: Vocab.fit(train_samples, lambda s, kind=kind: {c for v in s.visits for c in v[kind]}, min_patients)
            for kind in CODE_TYPES
        }
        vocabs["profile"] = Vocab.fit(train_samples, lambda s: profile_tokens(s.profile), min_patients, closed=True)
        if max_note_tokens > 0:
            vocabs["notes"] = Vocab.fit(train_samples, lambda s: note_tokens(current_note(s)), min_patients)
        return cls(vocabs, list(medications), max_visits, max_codes, max_note_tokens)

    def to_dict(self) -> dict:
        out = {
            "vocabs": {k: v.tokens for k, v in self.vocabs.items()},
            "medications": self.medications,
            "max_visits": self.max_visits,
            "max_codes": self.max_codes,
        }
        if self.reads_notes:  # without notes, the encoder.json of earlier versions, unchanged
            out["max_note_tokens"] = self.max_note_tokens
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Encoder:
        return cls(
            {k: Vocab(list(v)) for k, v in d["vocabs"].items()},
            list(d["medications"]),
            d["max_visits"],
            d["max_codes"],
            d.get("max_note_tokens", 0),
        )

    def note_ids(self, visits: list[dict]) -> list[int]:
        """The note ids the model reads of these visits: the current visit's note words that the
        note vocabulary holds, in `note_tokens` order, at most `max_note_tokens` of them (none
        without a note vocabulary). Unknown words are left out, as the baseline's bag of words
        leaves them out: free text is mostly words no vocabulary holds."""
        if not self.reads_notes:
            return []
        index = self.vocabs["notes"].index
        return [index[t] for t in note_tokens(visits[-1].get("note")) if t in index]

    def input_codes(self, visits: list[dict], limit: bool = True) -> dict[str, list[list[str]]]:
        """What the model reads of one patient's visits (current visit last), per code type and visit.

        This is the one home of the rule "the current visit's medications are never model input":
        the medications shown with visit j are those of visit j-1 (none for the first visit ever),
        so the current visit contributes its diagnoses and procedures only. With `limit`, only the
        last `max_visits` visits are kept (codes are cut to `max_codes` by `encode`); without it,
        every visit, for `unknown_codes` and `truncated`.
        """
        start = max(0, len(visits) - self.max_visits) if limit else 0
        out = {kind: [visits[j][kind] for j in range(start, len(visits))] for kind in CODE_TYPES[:2]}
        out["medications"] = [visits[j - 1]["medications"] if j > 0 else [] for j in range(start, len(visits))]
        return out

    def unknown_codes(self, profile: dict, visits: list[dict]) -> list[str]:
        """Input codes the vocabularies have never seen (read as UNK; reported, not fatal), sorted,
        then the profile tokens outside the profile vocabulary as ``profile:FIELD=VALUE``. Every
        visit counts, also those beyond `max_visits`; the current visit's medications are no input."""
        codes = self.input_codes(visits, limit=False)
        unknown = {c for kind in CODE_TYPES for row in codes[kind] for c in row if c not in self.vocabs[kind].index}
        known = self.vocabs["profile"].index
        return sorted(unknown) + [f"profile:{t}" for t in profile_tokens(profile) if t not in known]

    def truncated(self, visits: list[dict]) -> bool:
        """True when `encode` drops something of these visits: visits beyond `max_visits` (the
        oldest go first), codes beyond `max_codes` in an input list or known note words beyond
        `max_note_tokens`."""
        if len(visits) > self.max_visits or len(self.note_ids(visits)) > self.max_note_tokens:
            return True
        codes = self.input_codes(visits, limit=False)
        return any(len(row) > self.max_codes for kind in CODE_TYPES for row in codes[kind])

    def encode(self, profiles: list[dict], visit_lists: list[list[dict]]) -> dict[str, np.ndarray]:
        """Encode patients (profile + visits, current visit last) into padded arrays (`INPUTS`).

        Reads what `input_codes` says (the last `max_visits` visits), the first `max_codes`
        codes of each list and the current visit's `note_ids` (cut at `max_note_tokens`). Padding
        is to the batch's own maximum, so shapes vary from batch to batch.
        """
        batch = len(visit_lists)
        inputs = [self.input_codes(visits) for visits in visit_lists]
        n_visits = max(1, max(len(codes["diagnoses"]) for codes in inputs))
        out = {}
        for kind in CODE_TYPES:
            rows = [codes[kind] for codes in inputs]
            width = max(1, min(self.max_codes, max((len(c) for r in rows for c in r), default=1)))
            arr = np.zeros((batch, n_visits, width), dtype=np.int64)
            vocab = self.vocabs[kind]
            for b, row in enumerate(rows):
                for j, codes in enumerate(row):
                    ids = vocab.encode(codes[: self.max_codes])
                    arr[b, j, : len(ids)] = ids
            out[kind] = arr
        tokens = [self.vocabs["profile"].encode(profile_tokens(p)) for p in profiles]
        prof = np.zeros((batch, max(1, max(len(t) for t in tokens))), dtype=np.int64)
        for b, ids in enumerate(tokens):
            prof[b, : len(ids)] = ids
        out["profile"] = prof
        mask = np.zeros((batch, n_visits), dtype=np.float32)
        for b, codes in enumerate(inputs):
            mask[b, : len(codes["diagnoses"])] = 1.0
        out["visit_mask"] = mask
        notes = [self.note_ids(visits)[: self.max_note_tokens] for visits in visit_lists]
        out["notes"] = np.zeros((batch, max(1, max(len(ids) for ids in notes))), dtype=np.int64)
        for b, ids in enumerate(notes):
            out["notes"][b, : len(ids)] = ids
        return out

    def encode_samples(self, samples) -> dict[str, np.ndarray]:
        return self.encode([s.profile for s in samples], [s.visits for s in samples])

    def multi_hot(self, label_lists: list[list[str]]) -> np.ndarray:
        """Targets as float32 [B, n_meds] over this encoder's labels (`multi_hot`)."""
        return multi_hot(label_lists, self.medications)


def multi_hot(label_lists, medications) -> np.ndarray:
    """The one label encoding: {0,1} float32 [B, M], column m = ``medications[m]``; labels outside
    `medications` are ignored (an external test set's, or a run's fewer labels)."""
    index = {m: i for i, m in enumerate(medications)}
    y = np.zeros((len(label_lists), len(medications)), dtype=np.float32)
    for b, labels in enumerate(label_lists):
        for m in labels:
            if m in index:
                y[b, index[m]] = 1.0
    return y
