"""`--split site` (held-out hospitals) and `--split temporal` with two periods, on the eICU demo and by hand.

The eICU tests need ../shared/data beside the repository; they fail, not skip, when it is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from leader.cli import main
from leader.cohort import Dataset, load_dataset
from leader.errors import LeaderError
from leader.samples import split_samples

EICU = Path(__file__).resolve().parents[2] / "shared" / "data" / "eicu-crd-demo-2.0.1"


@pytest.fixture(scope="module")
def eicu(tmp_path_factory):
    if not EICU.is_dir():
        pytest.fail(f"the eICU demo is missing at {EICU}: these tests need ../shared/data beside the repository")
    out = tmp_path_factory.mktemp("eicu") / "prepared"
    assert main(["data", "eicu", "--root", str(EICU), "--out", str(out)]) == 0
    return load_dataset(out)


def _patient(sample) -> str:
    return sample.sample_id.split(":")[0]


def test_site_split_holds_out_hospitals(eicu):
    parts = split_samples(eicu, "site", seed=0)
    sites = {name: {s.current["site"] for s in part} for name, part in parts.items()}
    assert not sites["train"] & sites["test"] and not sites["train"] & sites["val"] and not sites["val"] & sites["test"]
    patients = {name: {_patient(s) for s in part} for name, part in parts.items()}
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["val"]
    total = sum(len(p) for p in parts.values())
    assert total == 1639
    for name in ("val", "test"):  # about 8:1:1 of the samples
        assert 0.08 <= len(parts[name]) / total <= 0.14, (name, len(parts[name]))
    # no test sample has a training hospital anywhere in its history either
    seen = {v["site"] for s in parts["train"] for v in s.visits}
    assert not seen & {v["site"] for s in parts["test"] for v in s.visits}


def test_site_split_is_seeded(eicu):
    a = [s.sample_id for s in split_samples(eicu, "site", seed=0)["test"]]
    b = [s.sample_id for s in split_samples(eicu, "site", seed=0)["test"]]
    c = [s.sample_id for s in split_samples(eicu, "site", seed=1)["test"]]
    assert a == b and a != c


def test_temporal_on_eicu_two_years(eicu):
    parts = split_samples(eicu, "temporal", seed=0)
    years = {name: {s.current["time"] for s in part} for name, part in parts.items()}
    assert years == {"train": {"2014"}, "val": {"2015"}, "test": {"2015"}}
    assert not {_patient(s) for s in parts["val"]} & {_patient(s) for s in parts["test"]}
    assert abs(len(parts["val"]) - len(parts["test"])) <= 0.2 * len(parts["test"])


def _hand(sites: list[str | None]) -> Dataset:
    patients = []
    for i, site in enumerate(sites):
        visit = {"visit_id": str(i), "time": "2015", "diagnoses": ["ICD9:4019"], "procedures": [], "medications": ["A"]}
        if site is not None:
            visit["site"] = site
        patients.append({"patient_id": str(i), "profile": {}, "visits": [visit]})
    return Dataset(None, patients, ["A"])


def test_site_split_needs_sites():
    with pytest.raises(LeaderError, match="needs every visit's 'site'"):
        split_samples(_hand(["h1", None, "h2"]), "site")
    with pytest.raises(LeaderError, match="at least 3 hospitals"):
        split_samples(_hand(["h1", "h2", "h1"]), "site")


def test_patient_moving_between_hospitals_joins_them():
    data = _hand([f"h{i}" for i in range(20)])
    moved = data.patients[0]
    moved["visits"].append({**moved["visits"][0], "visit_id": "x", "site": "h7"})
    for seed in range(10):
        parts = split_samples(data, "site", seed=seed)
        where = {name for name, part in parts.items() for s in part if s.current["site"] in ("h0", "h7")}
        assert len(where) == 1


def test_cli_accepts_site(eicu, tmp_path):
    out = tmp_path / "freq"
    args = ["baseline", "--data", str(eicu.path), "--method", "frequency", "--split", "site", "--out", str(out)]
    assert main(args) == 0
    assert (out / "metrics.json").is_file()
