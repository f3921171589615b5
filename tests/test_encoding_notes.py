"""The note input: one tokenizer (baseline, student, runtime), a note vocabulary under the
min-patients rule, the ``notes`` array (known words only, capped, all padding without a note)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leader import baseline_blocks
from leader.cohort import NOTE_SECTIONS
from leader.encoding import INPUTS, NOTE_ORDER, Encoder, note_tokens, note_words
from leader.samples import Sample

NOTE = {
    "history_of_present_illness": "Cough and fever; 3 days of cough. Seen by Dr Zorblat.",
    "past_medical_history": "Hypertension",
    "allergies": "Penicillin",
    "medications_on_admission": "metoprolol 25 mg, penicillin",
}


def _visit(note=None, dx=("ICD9:4019",)) -> dict:
    return {"diagnoses": list(dx), "procedures": [], "medications": ["C07A"], "note": note}


def _samples(notes: list[dict | None]) -> list[Sample]:
    """One single-visit sample per patient, patient i with note `notes[i]`."""
    return [Sample(f"{i}:0", {"gender": "F"}, [_visit(n)], ["C07A"]) for i, n in enumerate(notes)]


def test_one_tokenizer_in_reading_order():
    assert sorted(NOTE_ORDER) == sorted(NOTE_SECTIONS)  # the same four sections, another order
    assert baseline_blocks.note_words is note_words  # the baseline reads notes with the student's tokenizer
    tokens = note_tokens(NOTE)
    assert tokens == [
        "allergies:penicillin",
        "medications_on_admission:metoprolol",
        "medications_on_admission:mg",
        "medications_on_admission:penicillin",
        "past_medical_history:hypertension",
        "history_of_present_illness:cough",
        "history_of_present_illness:and",
        "history_of_present_illness:fever",
        "history_of_present_illness:days",
        "history_of_present_illness:of",
        "history_of_present_illness:seen",
        "history_of_present_illness:by",
        "history_of_present_illness:dr",
        "history_of_present_illness:zorblat",
    ]  # distinct, numbers dropped, a drug under allergies is another token than under medications
    assert note_words(NOTE) == set(tokens)
    assert note_tokens(None) == note_tokens({}) == [] and note_tokens({"allergies": None}) == []


def test_note_vocabulary_keeps_words_of_enough_patients():
    common = {"allergies": "penicillin", "medications_on_admission": "metoprolol"}
    notes = [common] * 5 + [{**common, "history_of_present_illness": "Dr Zorblat"}, None]
    encoder = Encoder.fit(_samples(notes), ["C07A"], max_note_tokens=8)
    assert encoder.vocabs["notes"].tokens == [
        "<pad>", "<unk>", "allergies:penicillin", "medications_on_admission:metoprolol",
    ]  # fmt: skip
    assert "zorblat" not in json.dumps(encoder.to_dict()).lower()  # one patient's word: never in encoder.json
    with_rare = Encoder.fit(_samples(notes), ["C07A"], max_note_tokens=8, min_patients=1)
    assert "history_of_present_illness:zorblat" in with_rare.vocabs["notes"].index  # the rule is the guard
    assert "notes" not in Encoder.fit(_samples(notes), ["C07A"]).vocabs  # no note vocabulary unless asked


def test_notes_array_known_words_capped_and_padded():
    common = dict(NOTE)
    encoder = Encoder.fit(_samples([common] * 5), ["C07A"], max_note_tokens=3)
    vocab = encoder.vocabs["notes"]
    visits = [[_visit(NOTE)], [_visit(None)], [_visit({"allergies": "penicillin", "past_medical_history": "gout"})]]
    arrays = encoder.encode([{}] * 3, visits)
    assert list(arrays) == list(INPUTS) and arrays["notes"].dtype == np.int64
    words = [[vocab.tokens[i] for i in row if i] for row in arrays["notes"]]
    assert words == [note_tokens(NOTE)[:3], [], ["allergies:penicillin"]]  # unknown "gout" left out, no UNK
    assert arrays["notes"].shape == (3, 3)
    assert encoder.truncated(visits[0]) and not encoder.truncated(visits[2])  # 14 known words > 3
    # only the current visit's note is read
    history = [_visit(NOTE), _visit(None)]
    assert encoder.encode([{}], [history])["notes"].tolist() == [[0]]
    assert encoder.encode([{}], [history[::-1]])["notes"].shape == (1, 3)


def test_an_encoder_without_notes_gives_one_padding_column_and_old_files_load():
    encoder = Encoder.fit(_samples([NOTE] * 5), ["C07A"])
    assert not encoder.reads_notes and encoder.max_note_tokens == 0
    arrays = encoder.encode([{}, {}], [[_visit(NOTE)], [_visit(None)]])
    assert arrays["notes"].tolist() == [[0], [0]]
    assert "max_note_tokens" not in encoder.to_dict()  # the encoder.json of earlier versions, unchanged
    with_notes = Encoder.fit(_samples([NOTE] * 5), ["C07A"], max_note_tokens=16)
    again = Encoder.from_dict(json.loads(json.dumps(with_notes.to_dict())))
    assert again.to_dict() == with_notes.to_dict() and again.max_note_tokens == 16
    with pytest.raises(ValueError, match="note vocabulary"):
        Encoder.from_dict({**with_notes.to_dict(), "max_note_tokens": 0})
