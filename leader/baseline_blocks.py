"""Feature blocks of the logistic baseline (numpy only): a block is a named set of columns.

Every block reads the same samples as the student (`leader.samples.Sample`); there is no second
sample format. A logistic run's features.json lists the tokens of the blocks it used, in column
order, so `Features` rebuilds the exact matrix at prediction time. Vocabularies are fitted on the
training split with the min-patients rule of `leader.encoding`: a code, profile value or note word
becomes a column only when enough distinct training patients carry it, so nothing that singles out
a patient (a name in a note) reaches a run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from leader.cohort import NOTE_SECTIONS
from leader.encoding import MIN_PATIENTS, Vocab, closed_token, note_words, profile_tokens
from leader.errors import LeaderError
from leader.samples import Sample


def _earlier(kind: str) -> Callable[[Sample], set[str]]:
    return lambda s: {code for visit in s.history for code in visit[kind]}


@dataclass(frozen=True)
class Block:
    """A named set of feature columns."""

    values: Callable[[Sample], Iterable[str]]
    """The tokens a sample shows to the block."""
    vocabulary: str
    """``fitted`` (tokens of at least min-patients training patients), ``profile`` (the same, plus
    the closed FIELD=OTHER category) or ``labels`` (the medication label list)."""


BLOCKS: dict[str, Block] = {
    "diagnoses": Block(lambda s: s.current["diagnoses"], "fitted"),
    "procedures": Block(lambda s: s.current["procedures"], "fitted"),
    "medications": Block(lambda s: s.visits[-2]["medications"] if len(s.visits) > 1 else [], "labels"),
    "profile": Block(lambda s: profile_tokens(s.profile), "profile"),
    "history_diagnoses": Block(_earlier("diagnoses"), "fitted"),
    "history_medications": Block(_earlier("medications"), "labels"),
    "notes": Block(lambda s: note_words(s.current.get("note")), "fitted"),
}
"""Every block: the current visit's codes, the previous visit's medications, the profile, every
earlier visit's diagnoses and medications (``--history all``), the current visit's note words."""
SAME_INPUTS = ("diagnoses", "procedures", "medications", "profile")
"""The blocks of ``--history previous --no-notes``: what the student reads, the inputs of the first logistic row."""


def blocks_for(history: str, notes: bool) -> tuple[str, ...]:
    """The block names of a logistic run, in column order."""
    extra = ("history_diagnoses", "history_medications") if history == "all" else ()
    return SAME_INPUTS + extra + (("notes",) if notes else ())


def has_notes(samples: list[Sample]) -> bool:
    """True when some sample's current visit has a non-empty note section."""
    return any(any((s.current.get("note") or {}).get(k) for k in NOTE_SECTIONS) for s in samples)


@dataclass
class Features:
    """Feature tokens per block (`BLOCKS`), in column order; feature 0 is the bias, 1 the
    first-visit flag, then the blocks one after the other."""

    tokens: dict[str, list[str]]

    @classmethod
    def fit(
        cls,
        train: list[Sample],
        medications: list[str],
        min_patients: int = MIN_PATIENTS,
        blocks: Iterable[str] = SAME_INPUTS,
    ) -> Features:
        tokens = {}
        for name in blocks:
            block = BLOCKS[name]
            if block.vocabulary == "labels":
                tokens[name] = list(medications)
            else:  # drop <pad>, <unk>
                tokens[name] = Vocab.fit(
                    train, block.values, min_patients, closed=block.vocabulary == "profile"
                ).tokens[2:]
        return cls(tokens)

    def __post_init__(self):
        unknown = sorted(set(self.tokens) - set(BLOCKS))
        if unknown:
            raise LeaderError(
                f"features.json names unknown feature blocks {unknown}; it was written by a newer leader: upgrade"
            )
        self.index, start = {}, 2
        for kind, tokens in self.tokens.items():
            self.index[kind] = {t: start + i for i, t in enumerate(tokens)}
            start += len(tokens)
        self.size = start

    def rows(self, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(indptr [N+1], indices) of the binary feature matrix."""
        indptr, indices = [0], []
        for s in samples:
            active = {0} | ({1} if len(s.visits) == 1 else set())
            for kind, index in self.index.items():
                values = BLOCKS[kind].values(s)
                if BLOCKS[kind].vocabulary == "profile":
                    values = [closed_token(t, index) for t in values]
                active.update(index[t] for t in values if t in index)
            indices.extend(sorted(active))
            indptr.append(len(indices))
        return np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
