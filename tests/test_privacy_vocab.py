"""No free text in a deployable model: a token enters a vocabulary only when `--min-patients`
distinct patients carry it (`leader.encoding.MIN_PATIENTS`), rare profile values read as
``FIELD=OTHER``, codes must fit their system, and identifiers planted in one patient (also in the
words of a note) appear in no artefact of data jsonl -> baseline -> distill --no-teacher -> export
(the cohort folder excepted)."""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest

from leader.cli import main
from leader.cohort import load_dataset
from leader.encoding import MIN_PATIENTS, OTHER, Encoder
from leader.samples import Sample, split_samples

NEEDLES = ("jane doe", "janedoe", "jane-doe", "123450")
"""The planted identifiers, searched case-insensitively (long enough never to occur by chance)."""
PLANTED_ID = "JANE-DOE-MRN-123450"
RARE_SNOMED = "SNOMED:999999999001"
RULES = {  # condition -> medication labels, so the model has something to learn
    "ICD9:4019": ["C07A"],
    "ICD9:25000": ["A10B"],
    "ICD10:I10": ["C07A", "C03C"],
    "SNOMED:38341003": ["C09A"],
    "SNOMED:44054006": ["A10B", "C10A"],
    "CPT:99213": [],
}


def _cohort(n: int = 40, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    patients = []
    for p in range(n):
        visits = []
        for v in range(rng.choice([1, 2, 3])):
            dx = sorted(rng.sample(list(RULES), rng.randint(1, 3)))
            meds = sorted({m for c in dx for m in RULES[c]}) or ["N02B"]
            procedures = [c for c in dx if c.startswith("CPT:")]
            dx = [c for c in dx if not c.startswith("CPT:")] or ["ICD9:4019"]
            note = (  # not drawn from rng: the cohort's codes and profiles stay those of before
                {
                    "history_of_present_illness": ["chest pain", "cough and fever"][(p + v) % 2],
                    "allergies": ["no known allergies", "penicillin"][p % 3 % 2],
                }
                if p % 4
                else None
            )
            visits.append({"visit_id": f"{p}-{v}", "time": f"2020-0{v + 1}-01T00:00:00", "diagnoses": dx,
                           "procedures": procedures, "medications": meds, "note": note})  # fmt: skip
        profile = {
            "gender": rng.choice("MF"),
            "age": rng.randint(30, 80),
            "language": rng.choice(["ENGLISH", "SPANISH"]),
        }
        patients.append({"patient_id": f"p{p}", "profile": profile, "visits": visits})
    return patients


def _plant(patient: dict) -> None:
    """One patient carries identifiers in every field a careless export could put them."""
    patient["patient_id"] = PLANTED_ID
    patient["profile"]["language"] = "JANE DOE MRN 123450"
    first = patient["visits"][0]
    first["diagnoses"] += ["ICD9:JANEDOE0", RARE_SNOMED]  # a malformed ICD-9 code, a rare well-formed one
    first["procedures"] += ["CPT:JANEDOE1"]  # a system without a pattern: only the patient count stops it
    first["medications"] += ["JANE DOE CREAM"]
    for visit in patient["visits"]:  # a name in the note the model reads (every visit is a current one once)
        visit["note"] = {"history_of_present_illness": "Seen by Dr Janedoe, MRN 123450", "allergies": "penicillin"}


def _run(args: list[str], capsys) -> str:
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out + err


def _texts(path: Path) -> list[tuple[str, bytes]]:
    """Every file under `path` (or the file), with gzip and zip members opened too."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = []
    for file in files:
        raw = file.read_bytes()
        out.append((str(file), raw))
        if raw[:2] == b"\x1f\x8b":
            out.append((f"{file} (gunzipped)", gzip.decompress(raw)))
        if raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                out += [(f"{file}:{name}", archive.read(name)) for name in archive.namelist()]
    return out


def _leaks(items: list[tuple[str, bytes]]) -> list[str]:
    return [f"{name}: {needle}" for name, raw in items for needle in NEEDLES if needle.encode() in raw.lower()]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The planted cohort through data jsonl -> baseline -> distill --no-teacher -> export (tiny)."""
    tmp = tmp_path_factory.mktemp("privacy")
    patients = _cohort()
    _plant(patients[3])
    source = tmp / "export.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in patients), encoding="utf-8")
    titles = tmp / "titles.json"
    titles.write_text(json.dumps({"titles": {RARE_SNOMED: "Follow-up of Jane Doe, MRN 123450", "C07A": "beta"}}))
    return tmp, source, titles


def _train_seed(dataset, patient_id: str) -> int:
    """A split seed whose training split holds that patient: the rule, not the split, must keep it out."""
    index = next(i for i, p in enumerate(dataset.patients) if p["patient_id"] == patient_id)
    for seed in range(20):
        if any(s.sample_id.startswith(f"{index}:") for s in split_samples(dataset, seed=seed)["train"]):
            return seed
    raise AssertionError("no seed in 0..19 trains on the planted patient")


def _stages(tmp: Path, source: Path, titles: Path, capsys, min_patients: int, full: bool = True) -> dict:
    """data jsonl -> (baseline) -> distill --no-teacher -> (export), all with --min-patients k."""
    k = str(min_patients)
    paths = {name: tmp / f"{name}-k{k}" for name in ("data", "base", "student")}
    paths["model"] = tmp / f"model-k{k}.onnx"
    logs = _run(["data", "jsonl", "--input", str(source), "--out", str(paths["data"]), "--vocab", str(titles),
                 "--min-patients", k], capsys)  # fmt: skip
    seed = str(_train_seed(load_dataset(paths["data"]), PLANTED_ID))
    if full:
        logs += _run(["baseline", "--data", str(paths["data"]), "--out", str(paths["base"]), "--method", "logistic",
                      "--epochs", "3", "--bootstrap", "0", "--seed", seed, "--min-patients", k], capsys)  # fmt: skip
    logs += _run(["distill", "--data", str(paths["data"]), "--out", str(paths["student"]), "--no-teacher",
                  "--epochs", "1", "--dim", "8", "--hidden", "16", "--heads", "2", "--split-seed", seed,
                  "--no-progress", "--min-patients", k], capsys)  # fmt: skip
    if full:
        logs += _run(["export", "--student", str(paths["student"]), "--out", str(paths["model"]), "--onnx",
                      "--data", str(paths["data"])], capsys)  # fmt: skip
    return {**paths, "logs": logs}


def test_planted_identifiers_reach_no_artefact(pipeline, capsys):
    import onnx

    tmp, source, titles = pipeline
    run = _stages(tmp, source, titles, capsys, MIN_PATIENTS)
    # the search works: the cohort folder (excepted) does hold what was planted
    assert _leaks(_texts(run["data"]))
    artefacts = [item for key in ("base", "student", "model") for item in _texts(run[key])]
    artefacts += _texts(run["model"].with_suffix(".md"))  # the model card
    metadata = onnx.load(str(run["model"])).metadata_props
    artefacts += [(f"onnx metadata {p.key}", p.value.encode()) for p in metadata]
    artefacts += [("command output", run["logs"].encode())]
    assert len(artefacts) > 10
    assert _leaks(artefacts) == []

    encoder = json.loads((run["student"] / "encoder.json").read_text())
    assert f"language={OTHER}" in encoder["vocabs"]["profile"]  # the planted value reads as the closed category
    assert RARE_SNOMED not in encoder["vocabs"]["diagnoses"] and "SNOMED:38341003" in encoder["vocabs"]["diagnoses"]
    assert "allergies:penicillin" in encoder["vocabs"]["notes"]  # the student reads notes: common words only
    assert json.loads((run["student"] / "run.json").read_text())["config"]["min_patients"] == MIN_PATIENTS
    assert json.loads((run["base"] / "run.json").read_text())["config"]["min_patients"] == MIN_PATIENTS

    from leader.export.runtime import Recommender

    model = Recommender(run["model"])
    history = {"diagnoses": ["ICD9:4019"], "procedures": [], "medications": ["C07A"]}
    ask = [{"profile": {"language": "ENGLISH"}, "visits": [history, {"diagnoses": c, "procedures": []}]}
           for c in (["ICD9:4019", "SNOMED:38341003"], [" icd9:401.9", "snomed:38341003 "], ["4019"])]  # fmt: skip
    lower = {"diagnoses": ["ICD9:401.9"], "procedures": [], "medications": [" c07a"]}
    ask.append({"profile": {"language": "ENGLISH"}, "visits": [lower, {**ask[0]["visits"][1], "medications": 5}]})
    same, spelled, bad, labels = model.recommend(ask)
    assert spelled.ok and spelled.ranked == same.ranked and spelled.unknown_codes == same.unknown_codes == []
    assert "lacks a system prefix" in bad.error  # refused for that patient only
    assert labels.ok and labels.ranked == same.ranked  # " c07a" in the history is the C07A of training


def test_the_guard_is_the_patient_count(pipeline, capsys):
    """With --min-patients 1 the same run does carry the planted text: the rule is what stops it."""
    tmp, source, titles = pipeline
    run = _stages(tmp, source, titles, capsys, 1, full=False)
    encoder = (run["student"] / "encoder.json").read_text()
    assert "language=JANE DOE MRN 123450" in encoder and "CPT:JANEDOE1" in encoder and RARE_SNOMED in encoder
    assert "JANE DOE CREAM" in encoder  # a label one patient received
    assert "history_of_present_illness:janedoe" in encoder  # a word of one patient's note
    assert "ICD9:JANEDOE0" not in encoder  # malformed: dropped by data jsonl whatever k is


def _sample(patient: int, visit: int, codes: list[str], profile: dict) -> Sample:
    visits = [{"diagnoses": codes, "procedures": [], "medications": ["C07A"]}] * (visit + 1)
    return Sample(f"{patient}:{visit}", profile, visits, ["C07A"])


def test_vocabularies_count_patients_not_samples():
    # patient 0 has ten visits, so ten samples repeating its rare code; five patients share a common one
    samples = [_sample(0, v, ["ICD9:7242"], {"gender": "F", "language": "KLINGON"}) for v in range(10)]
    samples += [_sample(p, 0, ["ICD9:4019"], {"gender": "F", "language": "ENGLISH"}) for p in range(1, 6)]
    encoder = Encoder.fit(samples, ["C07A"])
    assert encoder.vocabs["diagnoses"].tokens == ["<pad>", "<unk>", "ICD9:4019"]
    assert encoder.vocabs["profile"].tokens == [
        "<pad>", "<unk>", "gender=F", f"gender={OTHER}", "language=ENGLISH", f"language={OTHER}",
    ]  # fmt: skip
    empty = [{"diagnoses": [], "procedures": [], "medications": []}]
    profile = encoder.encode([{"gender": "F", "language": "KLINGON"}, {"language": "Elvish"}], [empty, empty])[
        "profile"
    ]
    vocab = encoder.vocabs["profile"]
    assert [vocab.tokens[i] for i in profile[0]] == ["gender=F", f"language={OTHER}"]
    assert [vocab.tokens[i] for i in profile[1] if i] == [f"language={OTHER}"]
    assert Encoder.fit(samples, ["C07A"], min_patients=1).vocabs["diagnoses"].tokens[2:] == ["ICD9:4019", "ICD9:7242"]
    # an old encoder.json (no OTHER tokens) still reads unseen values as unknown
    old = Encoder.from_dict(
        {**encoder.to_dict(), "vocabs": {**encoder.to_dict()["vocabs"], "profile": ["<pad>", "<unk>"]}}
    )
    assert old.encode([{"language": "KLINGON"}], [empty])["profile"].tolist() == [[1]]
    assert np.array_equal(
        encoder.encode([{"language": "KLINGON"}], [empty])["profile"],
        encoder.encode([{"language": "X"}], [empty])["profile"],
    )
