"""The runtime reads each visit's note once per `Recommender.recommend` call, and never keeps it."""

from __future__ import annotations

import copy

import leader.encoding
from leader.export.runtime import Recommender
from tests.test_export_notes import noted, noted_patients  # noqa: F401  (the module-scoped fixture)


def test_recommend_tokenizes_each_note_once_and_keeps_nothing(noted, monkeypatch):  # noqa: F811
    _, _, model = noted
    rec = Recommender(model)
    patients = [p for p in noted_patients(20, seed=3) if p["visits"][-1].get("note")][:4]
    assert len(patients) == 4
    want = [r.to_dict() for r in rec.recommend(copy.deepcopy(patients))]
    tokenized = []
    real = leader.encoding.note_tokens
    monkeypatch.setattr(leader.encoding, "note_tokens", lambda note: tokenized.append(note) or real(note))
    got = rec.recommend(patients)
    assert len(tokenized) == len(patients)  # `encode` and `truncated` share one tokenization
    assert [r.to_dict() for r in got] == want
    assert rec.encoder.note_memo is None  # nothing of a call outlives it

    # a note edited in place between calls is read again, never served from an earlier call
    patients[0]["visits"][-1]["note"] = {"allergies": "penicillin", "medications_on_admission": "warfarin"}
    fresh = Recommender(model).recommend(copy.deepcopy(patients[:1]))[0]
    assert rec.recommend(patients[:1])[0].to_dict() == fresh.to_dict()
    assert rec.predict(patients[:1]).tolist() == Recommender(model).predict(patients[:1]).tolist()
