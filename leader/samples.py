"""Samples and splits over a prepared dataset.

A sample is one visit to prescribe for, with everything before it: PyHealth's convention
(`target="all"`, one sample per visit, so first visits are the single-visit cases) or LEADER's
(`target="last"`, each patient's last visit only).

Splits:
- ``random``: by patient, 8:1:1, seeded; no patient is in two splits.
- ``temporal``: by the year of the visit prescribed for (a visit's ``year_group`` when the loader
  kept one, e.g. MIMIC-IV's anchor_year_group, else the year of ``time``); the earliest years
  make ~80% train, then ~10% validation, the latest years test. With exactly two periods (eICU:
  2014, 2015) the earlier one is train and the later one's patients are split 1:1 (seeded) into
  validation and test.
- ``site``: by hospital (a visit's ``site``, e.g. eICU's ``eicu-hospital-73``), so test samples
  come from hospitals never seen in training. Hospitals that share a patient form one group (a
  patient is never in two splits); groups are shuffled (seeded) and filled into test, then
  validation, until each holds ~10% of the samples; the rest is train. A sample goes with the
  hospital of its current visit.
- ``external``: train and validation from this dataset (by patient, 9:1), test is every sample of
  another prepared dataset; its medications outside this dataset's label list are ignored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from leader.cohort import Dataset
from leader.errors import LeaderError
from leader.runinfo import check_same_dataset

SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    """One visit to prescribe for. `visits` ends with the current visit; earlier ones are history."""

    sample_id: str
    """``"<patient index>:<visit index>"`` within its dataset: stable, and no patient identifier."""
    profile: dict
    visits: list[dict]
    labels: list[str]
    """The current visit's medications (the targets)."""

    @property
    def current(self) -> dict:
        return self.visits[-1]

    @property
    def history(self) -> list[dict]:
        return self.visits[:-1]

    @property
    def single_visit(self) -> bool:
        """True when there is no earlier visit (the single-visit case in LEADER/LAMO tables)."""
        return len(self.visits) == 1


def visit_sample(sample_id: str, patient: dict, visit: int, labelled: bool = True) -> Sample:
    """The sample of visit `visit` of a cohort patient record (its profile and visits up to that
    one): the one sample constructor of training (`make_samples`) and serving
    (`leader.export.runtime`). Its labels are that visit's medications; at serving time they are
    unknown (`labelled=False`: no labels). What the model reads of a sample, and that the current
    visit's medications are never input, is `leader.encoding.Encoder.input_codes`."""
    visits = patient["visits"][: visit + 1]
    labels = list(visits[-1]["medications"]) if labelled else []
    return Sample(sample_id, patient.get("profile") or {}, visits, labels)


def make_samples(dataset: Dataset, target: str = "all") -> list[Sample]:
    """Turn a dataset's patients into samples (`target` is "all" or "last")."""
    if target not in ("all", "last"):
        raise LeaderError(f"--target must be 'all' or 'last', got '{target}'")
    samples = []
    for p, patient in enumerate(dataset.patients):
        visits = patient["visits"]
        first = len(visits) - 1 if target == "last" else 0
        samples.extend(visit_sample(f"{p}:{v}", patient, v) for v in range(first, len(visits)))
    return samples


def external_test(external: Dataset, labels, target: str = "all") -> list[Sample]:
    """Every sample of another dataset as an external test set: medications outside `labels` (the
    training dataset's) are ignored, sample ids get an ``ext:`` prefix."""
    labels = set(labels)
    test = make_samples(external, target)
    for s in test:
        s.labels = [m for m in s.labels if m in labels]
        s.sample_id = "ext:" + s.sample_id
    return test


def _patient_of(sample: Sample) -> int:
    return int(sample.sample_id.split(":", 1)[0])


def _year(visit: dict) -> str:
    group = visit.get("year_group")
    if group:
        return str(group)
    time = str(visit.get("time") or "")
    if len(time) < 4 or not time[:4].isdigit():
        raise LeaderError("--split temporal needs every visit's 'time' (ISO date) or 'year_group'")
    return time[:4]


def split_samples(
    dataset: Dataset,
    how: str = "random",
    seed: int = 0,
    target: str = "all",
    external: Dataset | None = None,
) -> dict[str, list[Sample]]:
    """Split a dataset's samples into train / val / test as the module docstring describes."""
    samples = make_samples(dataset, target)
    if how == "random":
        patients = sorted({_patient_of(s) for s in samples})
        random.Random(seed).shuffle(patients)
        n = len(patients)
        n_val = n_test = max(1, n // 10) if n >= 3 else 0
        role = {p: "test" for p in patients[:n_test]}
        role.update({p: "val" for p in patients[n_test : n_test + n_val]})
        out = {name: [] for name in SPLITS}
        for s in samples:
            out[role.get(_patient_of(s), "train")].append(s)
        return out
    if how == "temporal":
        years = sorted({_year(s.current) for s in samples})
        counts = {y: 0 for y in years}
        for s in samples:
            counts[_year(s.current)] += 1
        cum, role = 0, {}
        for y in years:
            share = cum / len(samples)
            role[y] = "train" if share < 0.8 else "val" if share < 0.9 else "test"
            cum += counts[y]
        if len(years) == 2:
            later = sorted({_patient_of(s) for s in samples if _year(s.current) == years[1]})
            random.Random(seed).shuffle(later)
            test = set(later[: len(later) // 2])
            out = {name: [] for name in SPLITS}
            for s in samples:
                if _year(s.current) == years[0]:
                    out["train"].append(s)
                else:
                    out["test" if _patient_of(s) in test else "val"].append(s)
            return out
        out = {name: [s for s in samples if role[_year(s.current)] == name] for name in SPLITS}
        if not out["test"] or not out["train"]:
            raise LeaderError(
                f"--split temporal cannot leave earlier periods for training and later ones for testing "
                f"(periods: {', '.join(years)}); it needs 2 periods, or 3+ with the earliest under 80% of the samples"
            )
        return out
    if how == "site":
        return _site_split(samples, seed)
    if how == "external":
        if external is None:
            raise LeaderError("--split external needs --external-data DIR (another prepared dataset)")
        patients = sorted({_patient_of(s) for s in samples})
        random.Random(seed).shuffle(patients)
        val = set(patients[: max(1, len(patients) // 10)])
        test = external_test(external, dataset.medications, target)
        return {
            "train": [s for s in samples if _patient_of(s) not in val],
            "val": [s for s in samples if _patient_of(s) in val],
            "test": test,
        }
    raise LeaderError(f"--split must be random, temporal, site or external, got '{how}'")


def rebuild_split(record: dict, dataset: Dataset, split: str, where="the run") -> list[Sample]:
    """The samples of `split` ("train", "val" or "test") of a finished run, re-created from its
    ``run.json`` record (`split`: how, seed, target) on `dataset`: the one way every reader
    (evaluate, report, export's int8 check, bench) rebuilds a run's split.

    `dataset` must be the one the run was trained on (same labels and cohort sha256, else a
    LeaderError naming `where`), except for a ``--split external`` run's test split: any dataset
    given for it is that test set, whole (`external_test`); the training dataset holds only its
    train and val parts.
    """
    if split not in SPLITS:
        raise LeaderError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    info = record.get("split") or {}
    how, seed, target = info.get("how", "random"), int(info.get("seed", 0)), info.get("target", "all")
    if how == "external" and record.get("dataset", {}).get("sha256") != dataset.sha256:
        if split != "test":
            raise LeaderError(f"--split {split} of an external run needs the dataset it was trained on as --data")
        return external_test(dataset, record.get("medications", []), target)
    check_same_dataset(record, dataset, where)
    if how == "external":
        if split == "test":
            raise LeaderError(f"{where} was tested on an external dataset: pass that dataset as --data")
        return split_samples(dataset, how, seed, target, external=dataset)[split]
    return split_samples(dataset, how, seed, target)[split]


def _site_split(samples: list[Sample], seed: int) -> dict[str, list[Sample]]:
    """Hold out hospitals: see ``site`` in the module docstring."""
    missing = sum(1 for s in samples if not s.current.get("site"))
    if missing:
        raise LeaderError(
            f"--split site needs every visit's 'site' (its hospital); {missing} sample(s) have none: "
            'prepare the data with `leader data eicu` or add "site" to the visits of your JSONL'
        )
    parent: dict[str, str] = {}

    def find(site: str) -> str:
        while parent.setdefault(site, site) != site:
            parent[site] = parent[parent[site]]
            site = parent[site]
        return site

    first_site: dict[int, str] = {}
    for s in samples:  # hospitals of one patient join one group
        for visit in s.visits:
            site = str(visit.get("site") or s.current["site"])
            patient = _patient_of(s)
            parent[find(site)] = find(first_site.setdefault(patient, site))
    counts: dict[str, int] = {}
    for s in samples:
        group = find(str(s.current["site"]))
        counts[group] = counts.get(group, 0) + 1
    groups = sorted(counts)
    if len(groups) < 3:
        raise LeaderError(f"--split site needs visits from at least 3 hospitals; found {len(groups)}")
    random.Random(seed).shuffle(groups)
    role, filled, target = {}, {"test": 0, "val": 0}, max(1, len(samples) // 10)
    for group in groups:
        part = next((p for p in ("test", "val") if filled[p] < target), "train")
        if part != "train" and len(role) == len(groups) - 1:
            part = "train"  # keep at least one hospital group for training
        role[group] = part
        filled[part] = filled.get(part, 0) + counts[group]
    out = {name: [] for name in SPLITS}
    for s in samples:
        out[role[find(str(s.current["site"]))]].append(s)
    return out
