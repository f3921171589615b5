"""One record -> sample -> model-input contract (issue 15, item 2).

- one sample constructor (`leader.samples.visit_sample`) for training and serving;
- the rule "the current visit's medications are never model input" in one place
  (`Encoder.input_codes`), also for the runtime's unknown-code and truncation report;
- one label encoding (`leader.encoding.multi_hot`) and one list of input names (`leader.encoding.INPUTS`);
- one way to rebuild a finished run's split (`leader.samples.rebuild_split`), so `leader evaluate`
  and `leader report` work on external-split and site-split runs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from leader.baseline import BaselineConfig
from leader.baseline import run as run_baseline
from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.encoding import INPUTS, Encoder, multi_hot
from leader.errors import LeaderError
from leader.evaluate import evaluate_run
from leader.io import read_json
from leader.metrics import labels_matrix
from leader.report import ReportConfig
from leader.report import run as run_report
from leader.samples import make_samples, rebuild_split, split_samples, visit_sample
from tests.conftest import MEDS, TITLES, rule_patients

DDI = [("C07A", "B01A")]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A training dataset whose visits carry a hospital (6 of them), and another dataset."""
    root = tmp_path_factory.mktemp("contract-data")
    patients = rule_patients(90, seed=5)
    for p, patient in enumerate(patients):
        for visit in patient["visits"]:
            visit["site"] = f"hospital-{p % 6}"
    train = write_dataset(root / "sites", patients, MEDS, TITLES, DDI, source="test")
    other = write_dataset(root / "other", rule_patients(40, seed=9), MEDS, TITLES, DDI, source="test")
    return train, other


@pytest.fixture(scope="module")
def split_runs(datasets, tmp_path_factory):
    train, other = datasets
    root = tmp_path_factory.mktemp("contract-runs")
    site = run_baseline(BaselineConfig(data=train, out=root / "site", method="logistic", split="site"))
    external = run_baseline(
        BaselineConfig(data=train, out=root / "ext", method="frequency", split="external", external_data=other)
    )
    return {"site": site, "external": external}


def test_rebuild_split_matches_the_training_split(datasets, split_runs):
    train, other = datasets
    dataset, other_ds = load_dataset(train), load_dataset(other)
    site = read_json(split_runs["site"] / "run.json")
    parts = split_samples(dataset, "site", site["split"]["seed"], site["split"]["target"])
    for name in ("train", "val", "test"):
        assert [s.sample_id for s in rebuild_split(site, dataset, name)] == [s.sample_id for s in parts[name]]
    ext = read_json(split_runs["external"] / "run.json")
    test = rebuild_split(ext, other_ds, "test")
    assert [s.sample_id for s in test] == ["ext:" + s.sample_id for s in make_samples(other_ds)]
    val = rebuild_split(ext, dataset, "val")
    assert val and all(not s.sample_id.startswith("ext:") for s in val)
    with pytest.raises(LeaderError, match="external dataset"):
        rebuild_split(ext, dataset, "test")
    with pytest.raises(LeaderError, match="other medication labels|another dataset"):
        rebuild_split(site, other_ds, "test")


def test_evaluate_and_report_work_on_site_and_external_runs(datasets, split_runs, tmp_path):
    train, other = datasets
    for kind, data in (("site", train), ("external", other)):
        result = evaluate_run(split_runs[kind], data)
        assert result["metrics"]["test"] == read_json(split_runs[kind] / "metrics.json")["test"], kind  # same split
        assert main(["evaluate", "--run", str(split_runs[kind]), "--data", str(data)]) == 0
    page = run_report(ReportConfig(runs=[split_runs["site"], split_runs["external"]], out=tmp_path / "r.html"))
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,", page.read_text())
    assert "medication counts" in images  # rebuilt the test split of both runs
    assert main(["report", str(split_runs["external"]), "--out", str(tmp_path / "ext.html")]) == 0


def test_one_sample_constructor_and_the_current_visit_rule(rule_dataset_path):
    dataset = load_dataset(rule_dataset_path)
    samples = make_samples(dataset)
    patient = next(p for p in dataset.patients if len(p["visits"]) >= 3)
    p = dataset.patients.index(patient)
    built = visit_sample(f"{p}:2", patient, 2)
    made = next(s for s in samples if s.sample_id == f"{p}:2")
    assert (built.profile, built.visits, built.labels) == (made.profile, made.visits, made.labels)
    assert visit_sample("x", patient, 2, labelled=False).labels == []

    encoder = Encoder.fit(samples, dataset.medications, max_visits=2, max_codes=2, min_patients=1)
    visits = patient["visits"][:3]
    codes = encoder.input_codes(visits)
    assert codes["medications"] == [visits[0]["medications"], visits[1]["medications"]]  # visit j shows j-1's
    changed = [*visits[:-1], {**visits[-1], "medications": ["N02B", "C07A", "J01C", "B01A"]}]
    assert encoder.input_codes(changed) == codes
    a, b = encoder.encode([patient["profile"]], [visits]), encoder.encode([patient["profile"]], [changed])
    assert all(np.array_equal(a[k], b[k]) for k in INPUTS) and sorted(a) == sorted(INPUTS)
    # nothing of the current visit's medications is reported as unknown or as truncated
    assert "ZZZ:NEW" not in encoder.unknown_codes({}, [*visits[:-1], {**visits[-1], "medications": ["ZZZ:NEW"]}])
    assert "ZZZ:NEW" in encoder.unknown_codes({}, [{**visits[0], "medications": ["ZZZ:NEW"]}, visits[1]])
    assert encoder.truncated(visits)  # 3 visits > max_visits 2
    one = [{"diagnoses": ["ICD9:4019"], "procedures": [], "medications": ["a", "b", "c"]}]
    assert not encoder.truncated(one) and encoder.truncated([*one, *one])  # 3 codes > 2, once they are input
    assert encoder.unknown_codes({"gender": "X", "ward": "B"}, one)[-1] == "profile:ward=B"


def test_one_label_encoding(rule_dataset_path):
    dataset = load_dataset(rule_dataset_path)
    samples = make_samples(dataset)
    encoder = Encoder.fit(samples, dataset.medications, min_patients=1)
    want = multi_hot([s.labels for s in samples], dataset.medications)
    assert want.dtype == np.float32 and want.sum() == sum(len(set(s.labels)) for s in samples)
    assert np.array_equal(encoder.multi_hot([s.labels for s in samples]), want)
    assert np.array_equal(labels_matrix(samples, dataset.medications), want)
    assert multi_hot([["C07A", "NOT-A-LABEL"]], ["B01A", "C07A"]).tolist() == [[0.0, 1.0]]


def test_runtime_builds_samples_as_training_does(exported, rule_dataset_path):
    from leader.export.runtime import Recommender
    from leader.student.batches import INPUTS as STUDENT_INPUTS

    assert STUDENT_INPUTS == INPUTS
    rec = Recommender(exported)
    assert [i.name for i in rec.session.get_inputs()] == list(INPUTS)
    dataset = load_dataset(rule_dataset_path)
    last = make_samples(dataset, target="last")
    arrays = rec.encode(dataset.patients)
    want = rec.encoder.encode_samples(last)
    assert all(np.array_equal(arrays[k], want[k]) for k in INPUTS)
    # a served patient whose current visit lacks medications (or holds anything) reads the same
    served = [{**p, "visits": [*p["visits"][:-1], {k: v for k, v in p["visits"][-1].items() if k != "medications"}]}
              for p in dataset.patients]  # fmt: skip
    assert all(np.array_equal(rec.encode(served)[k], want[k]) for k in INPUTS)
    [out] = rec.recommend([{**dataset.patients[0], "profile": {"gender": "F", "ward": "Z"}}])
    assert out.ok and out.unknown_codes == ["profile:ward=Z"]
