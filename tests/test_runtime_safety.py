"""Issue 16 items 2 and 9: one bad patient never stops `recommend` or `leader predict`; tampered
model metadata is refused at load with one line; NaN thresholds never silently recommend nothing."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from leader.cli import main
from leader.errors import LeaderError
from leader.export.runtime import PREFIX, Recommender
from tests.conftest import TITLES, rule_patients
from tests.test_export import chain


@pytest.fixture(scope="session")
def exported(tmp_path_factory, rule_dataset_path):
    return chain(tmp_path_factory, rule_dataset_path)[1]


def _deep(levels: int = 100_000) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def _with_profile(patient: dict, **fields) -> dict:
    return {**patient, "profile": {**patient["profile"], **fields}}


def test_recommend_isolates_bad_patients(exported):
    rec = Recommender(exported)
    good = rule_patients(3, seed=11)
    bad = {
        "age 1e400": _with_profile(good[0], age=float("inf")),
        "age 'inf'": _with_profile(good[0], age="inf"),
        "age NaN": _with_profile(good[0], age=float("nan")),
        "5000-digit age": _with_profile(good[0], age=10**5000),
        "5000-digit field": _with_profile(good[0], weight=10**5000),
        "deep profile": _with_profile(good[0], gender=_deep()),
        "deep codes": {**good[0], "visits": [{"diagnoses": _deep(), "procedures": []}]},
    }
    batch = [good[0], *bad.values(), good[1], good[2]]
    results = rec.recommend(batch, top_k=3)
    assert len(results) == len(batch)
    for name, res in zip(bad, results[1:-2], strict=True):
        assert res.error and res.recommended == [] and res.ranked == [], name
        assert "\n" not in res.error, name
    alone = rec.recommend(good, top_k=3)
    for got, want in zip([results[0], *results[-2:]], alone, strict=True):
        assert got.ok and got.recommended == want.recommended and got.ranked == want.ranked
    assert results[0].patient_id == good[0]["patient_id"]
    assert rec.recommend([{**good[0], "patient_id": 10**5000}])[0].patient_id is None  # would break json.dumps


def test_recommend_survives_an_encoder_failure_no_check_foresaw(exported, monkeypatch):
    """The safety net: if encoding a batch fails, patients are run one by one and only the one
    that fails gets an error."""
    rec = Recommender(exported)
    good = rule_patients(4, seed=12)
    poisoned = good[2]["visits"][-1]["diagnoses"][0]
    encode = rec.encode

    def fragile(patients):
        if any(poisoned in v["diagnoses"] for p in patients for v in p["visits"]):
            raise OverflowError("boom")
        return encode(patients)

    monkeypatch.setattr(rec, "encode", fragile)
    results = rec.recommend(good)
    assert [r.ok for r in results] == [poisoned not in v["diagnoses"] for p in good for v in p["visits"][-1:]]
    assert results[2].error == "unusable patient record (OverflowError)"


def test_predict_serves_every_good_line_and_names_the_bad_ones(exported, tmp_path, capsys):
    patients = rule_patients(2, seed=8)
    good = [json.dumps(p) for p in patients]
    base = json.dumps(_with_profile(patients[0], age="AGE"))

    def age(raw: str) -> str:  # the first patient with its age written as raw JSON text
        return base.replace('"AGE"', raw)

    lines = [
        good[0],
        age("1e400"),
        age('"inf"'),
        age("9" * 5000),
        "[" * 100_000 + "]" * 100_000,
        age("[" * 100_000 + "]" * 100_000),
        age("NaN"),
        good[1],
    ]
    source = tmp_path / "patients.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "recs.jsonl"
    assert main(["predict", "--model", str(exported), "--input", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "line 2: not valid JSON here (the number 1e400 overflows" in err
    assert "line 3: profile 'age' must be a finite number" in err
    assert "line 4: not valid JSON here (a number of 5000 characters" in err
    assert "line 5: not valid JSON here (nested deeper than 64 levels)" in err
    assert "line 6: not valid JSON here (nested deeper than 64 levels)" in err
    assert "line 7: not valid JSON (NaN is not a JSON number" in err
    assert "served 2 of 8 patients" in err and "6 bad lines" in err
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 8]

    source.write_text("\n".join([good[0], good[1]]) + "\n")  # exit 0 when every line is good
    assert main(["predict", "--model", str(exported), "--input", str(source), "--out", str(out), "--overwrite"]) == 0


def _tamper(src, dst, **changes):
    """A copy of `src` whose leader metadata has `changes` applied: key -> function(old value) ->
    new value, or key -> raw JSON text (str)."""
    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        key = prop.key[len(PREFIX) :] if prop.key.startswith(PREFIX) else None
        if key in changes:
            change = changes[key]
            prop.value = change if isinstance(change, str) else json.dumps(change(json.loads(prop.value)))
    onnx.save(proto, str(dst))
    return dst


def _encoder(**fields):
    return lambda enc: {**enc, **fields}


def _vocab(kind, tokens):
    return lambda enc: {**enc, "vocabs": {**enc["vocabs"], kind: tokens(enc["vocabs"][kind])}}


def _extra_vocab(kind):
    return lambda enc: {**enc, "vocabs": {**enc["vocabs"], kind: ["<pad>", "<unk>"]}}


TAMPERED = {
    "null vocabulary": (dict(encoder=_vocab("diagnoses", lambda t: None)), "vocabulary 'diagnoses'"),
    "null vocabularies": (dict(encoder=_encoder(vocabs=None)), "lacks the diagnoses"),
    "vocabulary without padding": (dict(encoder=_vocab("procedures", lambda t: t[1:])), "padding and unknown first"),
    "vocabulary larger than the model": (
        dict(encoder=_vocab("diagnoses", lambda t: t + [f"ICD9:X{i}" for i in range(500)])),
        "does not accept its own vocabularies",
    ),
    "negative max_codes": (dict(encoder=_encoder(max_codes=-1)), "'encoder.max_codes' is -1"),
    "zero max_visits": (dict(encoder=_encoder(max_visits=0)), "'encoder.max_visits' is 0"),
    "float max_visits": (dict(encoder=_encoder(max_visits=2.5)), "'encoder.max_visits' is 2.5"),
    "note cap without note vocabulary": (dict(encoder=_encoder(max_note_tokens=8)), "no note vocabulary"),
    "note vocabulary without cap": (dict(encoder=_extra_vocab("notes")), "'encoder.max_note_tokens' is None"),
    "unknown vocabulary": (dict(encoder=_extra_vocab("words")), "lacks the diagnoses"),
    "fewer labels than outputs": (
        dict(encoder=lambda e: {**e, "medications": e["medications"][:-1]}, thresholds=lambda t: 0.5),
        "outputs but its metadata names",
    ),
    "duplicate labels": (dict(encoder=lambda e: {**e, "medications": e["medications"][:1] * 6}), "distinct labels"),
    "ddi pair of one": (dict(ddi=lambda d: [["C07A"]]), "'ddi' is not a list"),
    "ddi pair of numbers": (dict(ddi=lambda d: [[1, 2]]), "'ddi' is not a list"),
    "ddi null": (dict(ddi=lambda d: None), "'ddi' is not a list"),
    "NaN threshold text": (dict(thresholds="NaN"), "'thresholds' is not valid JSON (NaN"),
    "NaN in threshold list": (dict(thresholds="[0.5, 0.5, NaN, 0.5, 0.5, 0.5]"), "'thresholds' is not valid JSON"),
    "null thresholds": (dict(thresholds=lambda t: [None] * 6), "a NaN or null threshold would recommend nothing"),
    "threshold text": (dict(thresholds=lambda t: "0.5"), "'thresholds' must be finite numbers"),
    "threshold count": (dict(thresholds=lambda t: [0.5] * 5), "'thresholds' has 5 values for 6 medications"),
    "names not text": (dict(medication_names=lambda n: {k: None for k in n}), "'medication_names'"),
    "deep metrics": (dict(metrics="[" * 100_000 + "]" * 100_000), "'metrics' is not valid JSON here (nested"),
}


@pytest.mark.parametrize("name", TAMPERED)
def test_tampered_metadata_is_refused_at_load(exported, tmp_path, capsys, name):
    changes, message = TAMPERED[name]
    path = _tamper(exported, tmp_path / "model.onnx", **changes)
    with pytest.raises(LeaderError, match="re-export the model|export the model again") as info:
        Recommender(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    source = tmp_path / "p.jsonl"
    source.write_text(json.dumps(rule_patients(1)[0]) + "\n")
    assert main(["predict", "--model", str(path), "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_untampered_model_still_loads_and_carries_titles(exported):
    rec = Recommender(exported)
    assert rec.names == {m: TITLES.get(m, m) for m in rec.medications}
    [out] = rec.recommend(rule_patients(1, seed=4), top_k=2)
    ranked = out.to_dict(rec.names)["ranked"]
    assert [r["name"] for r in ranked] == [TITLES.get(r["medication"], r["medication"]) for r in ranked]
    assert np.isfinite([p for _, p in out.ranked]).all()


def test_non_finite_probabilities_are_an_error_not_an_empty_answer(exported, monkeypatch):
    rec = Recommender(exported)
    monkeypatch.setattr(
        rec, "predict_arrays", lambda arrays: np.full((len(arrays["visit_mask"]), len(rec.medications)), np.nan)
    )
    results = rec.recommend(rule_patients(3))
    assert all(r.error and "non-finite" in r.error and r.recommended == [] for r in results)
