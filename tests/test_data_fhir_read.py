"""`leader data fhir --workers`: reading files in worker processes gives the Store, and the dataset,
of one process (`leader.data.fhir_read`).

The export below is split so that reading order matters: a Patient, an Encounter and a
Medication given twice in different files (the last wins), one code with two displays in two
files (the first title wins), one patient's conditions spread over files (their order is the
order of its diagnoses), a Bundle with urn:uuid references and the $export manifest.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import re
import shutil

import pytest

from leader.cli import main
from leader.data.fhir_facts import Store
from leader.data.fhir_read import default_workers, find_files, load, paused_gc
from tests.conftest import shared_data
from tests.test_data_fhir import DRUG_ATC, _write_ndjson, condition, encounter, patient, procedure, request

MEDICATION = {
    "resourceType": "Medication",
    "id": "med-1",
    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "display": "Warfarin 5 MG"}]},
}


def _export(root):
    """A Bulk Data folder of nine files (and the manifest) whose reading order matters."""
    root.mkdir()
    male = {**patient("p2"), "gender": "male"}
    _write_ndjson(root / "Patient.000.ndjson", [patient("p1"), {**patient("p2"), "gender": "female"}])
    _write_ndjson(root / "Patient.001.ndjson.gz", [male])  # p2 again: the last Patient of an id wins
    _write_ndjson(
        root / "Encounter.000.ndjson",
        [encounter("e1", "2015-01-01T08:00:00Z"), encounter("e2", "2015-02-01T08:00:00Z", subject="Patient/p2")],
    )
    _write_ndjson(root / "Encounter.001.ndjson", [encounter("e1", "2016-01-01T08:00:00Z", cls="IMP")])
    _write_ndjson(root / "Medication.000.ndjson", [{**MEDICATION, "code": {"text": "Metoprolol 50 MG"}}])
    _write_ndjson(root / "Medication.001.ndjson", [MEDICATION])  # med-1 again: warfarin wins
    _write_ndjson(
        root / "Condition.000.ndjson",
        [
            condition("c1", "38341003", "Hypertension", "Encounter/e1"),
            condition("c2", "44054006", "Diabetes", "Encounter/e2", subject="Patient/p2"),
            {"resourceType": "Observation", "id": "o1"},
        ],
    )
    _write_ndjson(
        root / "Condition.001.ndjson.gz",
        [
            condition("c3", "38341003", "High blood pressure", "Encounter/e2", subject="Patient/p2"),
            condition("c4", "36971009", "Sinusitis", "Encounter/e1"),
            condition("c5", "29857009", "Chest pain", "Encounter/e1"),
        ],
    )
    _write_ndjson(
        root / "MedicationRequest.000.ndjson",
        [
            request("m1", "Ibuprofen 200 MG Oral Tablet", "Encounter/e1"),
            {
                **request("m2", "", "Encounter/e2", subject="Patient/p2"),
                "medicationReference": {"reference": "Medication/med-1"},
            },
            request("m3", "Amoxicillin 250 MG", "Encounter/e9", subject="Patient/ghost"),
        ],
    )
    _write_ndjson(root / "Procedure.000.ndjson", [procedure("x1", "73761001", "Colonoscopy", "Encounter/e1")])
    entries = {  # transaction entries without ids: urn:uuid fullUrls name them
        "urn:uuid:p3": patient("p3") | {"id": None},
        "urn:uuid:e3": encounter(None, "2017-01-01T08:00:00Z", subject="urn:uuid:p3"),
        "urn:uuid:c6": condition("c6", "38341003", "HTN", "urn:uuid:e3", subject="urn:uuid:p3"),
        "urn:uuid:m4": request("m4", "Metoprolol 50 MG", "urn:uuid:e3", subject="urn:uuid:p3"),
    }
    bundle = {"resourceType": "Bundle", "entry": [{"fullUrl": k, "resource": v} for k, v in entries.items()]}
    (root / "bundle.json").write_text(json.dumps(bundle))
    manifest = {"transactionTime": "2024-01-01T00:00:00Z", "request": "x/$export", "output": []}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _state(store: Store) -> dict:
    """Everything a Store holds, with dict order, and the class of every fact (a plain tuple equals
    a NamedTuple with the same fields, so the classes are compared too)."""

    def facts(value):
        if isinstance(value, dict):
            return [(k, type(v).__name__, v) for k, v in value.items()]
        if isinstance(value, list):
            return [(type(v).__name__, v) for v in value]
        return value

    charts = [(pid, {k: facts(v) for k, v in vars(c).items()}) for pid, c in store.charts.items()]
    return {"charts": charts} | {k: facts(v) for k, v in vars(store).items() if k != "charts"}


def test_workers_read_the_store_of_one_process(tmp_path):
    files = find_files(_export(tmp_path / "export"))
    assert len(files) == 12
    one = Store()
    load(files, one, workers=1)
    assert one.charts["p2"].person["gender"] == "M" and one.medications["med-1"][0] == "Warfarin 5 MG"
    assert one.titles["SNOMED:38341003"] == "Hypertension" and one.charts["p1"].encounters["e1"].cls == "IMP"
    assert [c.code for c in one.charts["p1"].conditions] == ["SNOMED:38341003", "SNOMED:36971009", "SNOMED:29857009"]
    for workers in (2, 3):
        many = Store()
        load(files, many, workers=workers)
        assert _state(many) == _state(one)


def _dataset_bytes(out) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_workers_write_the_same_dataset(tmp_path):
    export = _export(tmp_path / "export")
    (tmp_path / "drug_atc.csv").write_text(DRUG_ATC)
    out = tmp_path / "out"
    argv = ["data", "fhir", "--input", str(export), "--out", str(out), "--drug-atc", str(tmp_path / "drug_atc.csv")]
    datasets = []
    for workers in ("1", "2"):
        assert main([*argv, "--min-patients", "1", "--workers", workers]) == 0
        datasets.append(_dataset_bytes(out))
        shutil.rmtree(out)
    assert datasets[0] == datasets[1]
    assert set(datasets[0]) == {"cohort.jsonl.gz", "vocab.json", "ddi.csv", "manifest.json"}
    manifest = json.loads(datasets[0]["manifest.json"])
    assert "workers" not in manifest["options"]  # the dataset does not depend on it
    assert manifest["counts"]["patients"] == 3 and manifest["resources"]["missing_patient"] == {"MedicationRequest": 1}


def test_workers_on_the_synthea_export(tmp_path):
    """The Synthea sample (six files) gives the same sha256 for every file with 1 and 2 workers."""
    root = shared_data("fhir-r4-synthea")
    out = tmp_path / "synthea"
    digests = []
    for workers in ("1", "2"):
        assert main(["data", "fhir", "--input", str(root), "--out", str(out), "--workers", workers]) == 0
        digests.append({name: hashlib.sha256(data).hexdigest() for name, data in _dataset_bytes(out).items()})
        shutil.rmtree(out)
    assert digests[0] == digests[1]


def test_a_bad_line_in_a_worker_is_one_error_naming_the_first_bad_file(tmp_path, capsys):
    """Two bad files: the error is the first one's in reading order (Patient), although the larger
    Procedure file is read first; one line, exit 2, nothing written."""
    export = _export(tmp_path / "export")
    with (export / "Patient.001.ndjson.gz").open("ab") as handle:  # a second gzip member: gzip reads on
        handle.write(gzip.compress(b"{oops\n"))
    lines = [json.dumps(procedure(f"x{i}", "73761001", "Colonoscopy", "Encounter/e1")) for i in range(200)]
    (export / "Procedure.000.ndjson").write_text("\n".join([*lines, '{"id": "no type"}']) + "\n")
    out = tmp_path / "out"
    assert main(["data", "fhir", "--input", str(export), "--out", str(out), "--workers", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.search(r"Patient\.001\.ndjson\.gz: line 2 is not valid JSON", err[0]), err
    assert not out.exists()
    (export / "Patient.001.ndjson.gz").unlink()
    assert main(["data", "fhir", "--input", str(export), "--out", str(out), "--workers", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.search(r"Procedure\.000\.ndjson: line 201 is not a FHIR resource", err[0]), err
    assert not out.exists()


def test_workers_option(tmp_path, capsys):
    export = _export(tmp_path / "export")
    assert main(["data", "fhir", "--input", str(export), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert 1 <= default_workers() <= 4


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_gc_restores_the_collector(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with paused_gc():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(KeyError), paused_gc():
            raise KeyError("x")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def _die(path):
    """A worker that dies as one killed by the kernel would (no exception, no cleanup)."""
    import os

    os._exit(9)


def test_a_worker_that_dies_is_one_error_naming_the_fix(tmp_path, monkeypatch):
    import leader.data.fhir_read as fhir_read
    from leader.errors import LeaderError

    files = find_files(_export(tmp_path / "export"))
    monkeypatch.setattr(fhir_read, "_read_part", _die)  # workers import it from this module
    with pytest.raises(LeaderError, match=r"died \(out of memory\?\).*fewer --workers"):
        load(files, Store(), workers=2)
    load(files, Store(), workers=1)  # one process never meets it
