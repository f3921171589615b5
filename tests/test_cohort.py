"""The prepared-dataset contract: write, load, validate, samples, splits, encoding."""

from __future__ import annotations

import gzip
import json

import pytest

from leader.cohort import FILES, load_dataset, validate_patient, write_dataset
from leader.encoding import Encoder, profile_tokens
from leader.errors import LeaderError
from leader.samples import make_samples, split_samples
from tests.conftest import MEDS, TITLES, hand_patients


def test_write_then_load_roundtrip(tmp_path):
    path = write_dataset(tmp_path / "d", hand_patients(), MEDS, TITLES, [("B01A", "C07A"), ("C07A", "XXXX")])
    assert sorted(p.name for p in path.iterdir()) == sorted(FILES)
    ds = load_dataset(path)
    assert [p["patient_id"] for p in ds.patients] == ["p1", "p2", "p3", "p4"]
    assert ds.ddi == [("B01A", "C07A")]  # the pair with an unknown label is dropped
    assert ds.manifest["counts"] == {"patients": 4, "visits": 7, "medications": 6, "ddi_pairs": 1}


def test_write_failure_leaves_nothing(tmp_path):
    bad = hand_patients()
    bad[2]["visits"][0]["diagnoses"] = ["4019"]
    with pytest.raises(LeaderError, match="lacks a system prefix"):
        write_dataset(tmp_path / "d", bad, MEDS, TITLES)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.pop("visits"), "missing field 'visits'"),
        (lambda p: p.update(visits=[]), "no visits"),
        (lambda p: p["visits"][0].update(diagnoses=[], procedures=[]), "empty visit"),
        (lambda p: p["visits"][0].update(medications=["ZZZZ"]), "not in vocab.json"),
    ],
)
def test_validate_names_the_problem(mutate, message):
    patient = hand_patients()[0]
    mutate(patient)
    with pytest.raises(LeaderError, match=message):
        validate_patient(patient, 3, set(MEDS))


def test_load_refuses_tampered_or_old(tmp_path, hand_dataset):
    path = hand_dataset.path
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 0
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LeaderError, match="format version 0"):
        load_dataset(path)
    manifest["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with gzip.open(path / "cohort.jsonl.gz", "wt") as handle:
        handle.write("{}\n")
    with pytest.raises(LeaderError, match="sha256"):
        load_dataset(path)


def test_samples_all_and_last(hand_dataset):
    all_ = make_samples(hand_dataset, "all")
    assert [s.sample_id for s in all_] == ["0:0", "1:0", "1:1", "1:2", "2:0", "3:0", "3:1"]
    assert [s.single_visit for s in all_] == [True, True, False, False, True, True, False]
    assert all_[3].labels == ["B01A", "C07A", "A10B"] and len(all_[3].history) == 2
    last = make_samples(hand_dataset, "last")
    assert [s.sample_id for s in last] == ["0:0", "1:2", "2:0", "3:1"]


def test_random_split_keeps_patients_apart(rule_dataset_path):
    ds = load_dataset(rule_dataset_path)
    splits = split_samples(ds, "random", seed=1)
    owners = {name: {s.sample_id.split(":")[0] for s in samples} for name, samples in splits.items()}
    assert not owners["train"] & owners["test"] and not owners["train"] & owners["val"]
    assert (len(owners["train"]), len(owners["val"]), len(owners["test"])) == (48, 6, 6)
    again = split_samples(ds, "random", seed=1)
    assert [s.sample_id for s in again["test"]] == [s.sample_id for s in splits["test"]]


def test_temporal_split_orders_years(rule_dataset_path):
    splits = split_samples(load_dataset(rule_dataset_path), "temporal")
    latest_train = max(s.current["time"] for s in splits["train"])
    assert all(s.current["time"] > latest_train for s in splits["test"])


def test_external_split_uses_other_dataset(rule_dataset_path, hand_dataset):
    splits = split_samples(load_dataset(rule_dataset_path), "external", external=hand_dataset)
    assert len(splits["test"]) == 7 and splits["test"][0].sample_id == "ext:0:0"


def test_profile_tokens_cap_age():
    assert profile_tokens({"age": 300, "gender": "f", "language": None}) == ["age=90+", "gender=F"]
    assert profile_tokens({"age": 64}) == ["age=60-69"]


def test_encoder_shapes_and_unknowns(hand_dataset):
    samples = make_samples(hand_dataset)
    enc = Encoder.fit(samples[:4], hand_dataset.medications, max_visits=2, max_codes=5, min_patients=1)
    arrays = enc.encode_samples(samples)
    assert arrays["diagnoses"].shape == (7, 2, 2)
    assert arrays["visit_mask"].tolist()[3] == [1.0, 1.0]  # 3 visits truncated to the last 2
    # the medications beside visit j are those of visit j-1; slot 0 of a first visit is empty
    meds = enc.vocabs["medications"]
    assert arrays["medications"][0, 0].tolist() == [0, 0]
    assert [meds.tokens[i] for i in arrays["medications"][3, 1] if i] == ["A10B", "C10A"]
    assert [meds.tokens[i] for i in arrays["medications"][3, 0] if i] == ["A10B"]
    assert enc.unknown_codes({}, samples[5].visits) == ["ICD10:I10", "ICD10P:02HV33Z"]
    assert (arrays["diagnoses"][5, 0, 0], arrays["diagnoses"][5, 1, 0]) == (1, 0)
    y = enc.multi_hot([s.labels for s in samples])
    assert y.shape == (7, 6) and y[0].sum() == 2
    assert Encoder.from_dict(json.loads(json.dumps(enc.to_dict()))).to_dict() == enc.to_dict()
    prof = enc.vocabs["profile"]
    assert [prof.tokens[i] for i in arrays["profile"][0] if i] == [
        "admission_type=EMERGENCY",
        "age=70-79",
        "gender=M",
        "insurance=MEDICARE",
    ]
