"""`leader data fhir`: FHIR R4 Bulk Data NDJSON and Bundles -> prepared dataset.

The Synthea tests read ../shared/data/fhir-r4-synthea (`tests.conftest.shared_data`: without it they
skip naming the path, or fail when LEADER_SHARED_DATA is set). Their counts come from the shipped
name -> ATC map (leader/data/maps): a change of that map moves the label and coverage figures here,
on purpose. The hand-written exports use their own small --drug-atc map.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from leader.cli import main
from leader.cohort import load_dataset
from leader.data.fhir import find_files, load
from leader.data.fhir_facts import Store
from leader.data.fhir_map import MapOptions, build, patient_record
from leader.data.stats import dataset_stats
from leader.errors import LeaderError
from tests.conftest import shared_data

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DRUG_ATC = "drug,atc_code\nibuprofen,M01AE01\nmetoprolol,C07AB02\nwarfarin,B01AA03\namoxicillin,J01CA04\n"


# ---- hand-written resources -------------------------------------------------------------------
def patient(pid="p1", **extra):
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": "female",
        "birthDate": "1950-06-15",
        "extension": [
            {
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                "extension": [{"url": "text", "valueString": "Asian"}],
            },
            {
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                "extension": [
                    {"url": "ombCategory", "valueCoding": {"code": "2135-2", "display": "Hispanic or Latino"}}
                ],
            },
        ],
        "maritalStatus": {"coding": [{"code": "W"}], "text": "W"},
        "communication": [{"language": {"coding": [{"code": "es", "display": "Spanish"}]}}],
        **extra,
    }


def encounter(eid, start, cls="AMB", subject="Patient/p1"):
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": cls},
        "subject": {"reference": subject},
        "period": {"start": start},
    }


def condition(cid, code, title, enc=None, onset=None, abated=None, subject="Patient/p1", system=SNOMED):
    resource = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": system, "code": code, "display": title}]},
        "subject": {"reference": subject},
    }
    if enc:
        resource["encounter"] = {"reference": enc}
    if onset:
        resource["onsetDateTime"] = onset
    if abated:
        resource["abatementDateTime"] = abated
    return resource


def request(mid, name, enc, status="active", subject="Patient/p1", authored="2015-03-01T09:00:00Z", **extra):
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1", "display": name}]},
        "subject": {"reference": subject},
        "encounter": {"reference": enc},
        "authoredOn": authored,
        **extra,
    }


def procedure(pid_, code, title, enc, subject="Patient/p1"):
    return {
        "resourceType": "Procedure",
        "id": pid_,
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": code, "display": title}]},
        "subject": {"reference": subject},
        "encounter": {"reference": enc},
    }


def chart():
    """One patient over four encounters: the active-condition rule's edge cases, skipped orders, a note."""
    return [
        patient(),
        encounter("e1", "2010-01-01T08:00:00Z"),
        condition("c-htn", "38341003", "Hypertension", "Encounter/e1", onset="2010-01-01T08:00:00Z"),
        condition("c-sin", "36971009", "Sinusitis", "Encounter/e1", "2010-01-01T08:00:00Z", "2010-01-15T00:00:00Z"),
        request(
            "m1", "Ibuprofen 200 MG Oral Tablet", "Encounter/e1", status="stopped", authored="2010-01-01T08:00:00Z"
        ),
        encounter("e2", "2015-03-01T08:00:00Z", cls="IMP"),
        condition("c-cp", "29857009", "Chest pain", "Encounter/e2", onset="2015-03-01T08:00:00Z"),
        condition("c-dm", "44054006", "Diabetes", onset="2015-03-01T08:00:00Z"),  # onset == start: active
        condition("c-fx", "263102004", "Fracture", onset="2014-01-01", abated="2015-03-01T08:00:00Z"),  # ended
        condition("c-flu", "6142004", "Influenza", onset="2016-01-01"),  # later
        request("m2", "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet", "Encounter/e2"),
        request("m3", "Warfarin Sodium 5 MG Oral Tablet", "Encounter/e2", status="cancelled"),
        request("m4", "Warfarin Sodium 5 MG Oral Tablet", "Encounter/e2", status="entered-in-error"),
        request(
            "m5",
            "Amoxicillin 250 MG Oral Capsule",
            "Encounter/e2",
            status="stopped",
            dispenseRequest={"validityPeriod": {"start": "2015-03-02", "end": "2015-03-01"}},
        ),
        procedure("x1", "73761001", "Colonoscopy", "Encounter/e2"),
        {
            "resourceType": "MedicationStatement",
            "id": "s1",
            "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "display": "Metformin 500 MG Oral Tablet"}]},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2012-01-01"},
        },
        {
            "resourceType": "MedicationStatement",
            "id": "s2",
            "status": "completed",
            "medicationCodeableConcept": {"text": "Lisinopril 10 MG"},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2011-01-01", "end": "2013-01-01"},
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "a1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": "91936005", "display": "Penicillin allergy"}]},
            "patient": {"reference": "Patient/p1"},
            "recordedDate": "2012-05-01",
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "a2",
            "clinicalStatus": {"coding": [{"code": "inactive"}]},
            "code": {"text": "Latex allergy"},
            "patient": {"reference": "Patient/p1"},
        },
        {
            "resourceType": "Coverage",
            "id": "cov1",
            "status": "active",
            "type": {"text": "Medicare"},
            "beneficiary": {"reference": "Patient/p1"},
            "period": {"start": "2009-01-01", "end": "2012-01-01"},
        },
        {
            "resourceType": "Coverage",
            "id": "cov2",
            "status": "active",
            "beneficiary": {"reference": "Patient/p1"},
            "payor": [{"display": "Blue Cross"}],
            "period": {"start": "2012-01-01"},
        },
        encounter("e3", "2018-06-01T08:00:00Z"),  # no order: a visit only at the bedside
        encounter("e4", "2019-06-01T08:00:00Z"),
        request("m6", "Ibuprofen 200 MG Oral Tablet", "Encounter/e4", authored="2019-06-01T08:00:00Z"),
        *(
            {
                "resourceType": "MedicationAdministration",
                "id": f"ma-{status}",
                "status": status,
                "medicationCodeableConcept": {"text": name},
                "subject": {"reference": "Patient/p1"},
                "context": {"reference": "Encounter/e4"},
                "effectiveDateTime": "2019-06-01T09:00:00Z",
            }
            for status, name in (("completed", "Warfarin Sodium 5 MG Oral Tablet"), ("not-done", "Amoxicillin 250 MG"))
        ),
    ]


@pytest.fixture
def options(tmp_path):
    (tmp_path / "drug_atc.csv").write_text(DRUG_ATC)
    return MapOptions(drug_atc=tmp_path / "drug_atc.csv")


def test_visits_codes_labels_profile_and_note(options):
    record = patient_record(chart(), options=options)
    assert record["patient_id"] == "p1"
    assert [v["visit_id"] for v in record["visits"]] == ["e1", "e2", "e4"]  # e3 has no order
    e1, e2, e4 = record["visits"]
    assert e1["medications"] == ["M01A"] and e4["medications"] == ["B01A", "M01A"]  # order + administration
    assert e2["medications"] == ["C07A"]  # cancelled, entered-in-error and stopped-before-start orders skipped
    assert e2["procedures"] == ["SNOMED:73761001"] and e2["time"] == "2015-03-01T08:00:00Z"
    assert record["profile"] == {
        "gender": "F",
        "age": 59,  # at the first visit (2010-01-01), born 1950-06-15
        "insurance": "Medicare",  # the Coverage in force at the first visit
        "language": "SPANISH",
        "religion": None,
        "marital_status": "WIDOWED",
        "ethnicity": "ASIAN, HISPANIC OR LATINO",
        "admission_type": "AMBULATORY",
    }
    assert e1["note"] is None  # no allergy recorded yet, no home medication
    assert e2["note"] == {
        "history_of_present_illness": "",
        "past_medical_history": "",
        "allergies": "Penicillin allergy",  # the inactive latex allergy is left out
        "medications_on_admission": "Metformin 500 MG Oral Tablet",  # lisinopril ended in 2013
    }


def test_active_condition_rule(options):
    """onset <= start < abatement: diabetes (onset == start) and hypertension (no abatement) are active at
    e2; the fracture ending at e2's start, the sinusitis ended in 2010 and the later influenza are not."""
    e2 = patient_record(chart(), options=options)["visits"][1]
    assert e2["diagnoses"] == ["SNOMED:29857009", "SNOMED:38341003", "SNOMED:44054006"]
    e1 = patient_record(chart(), options=options)["visits"][0]
    assert e1["diagnoses"] == ["SNOMED:38341003", "SNOMED:36971009"]
    own = MapOptions(drug_atc=options.drug_atc, active_conditions=False)
    record = patient_record(chart(), options=own)
    assert [v["diagnoses"] for v in record["visits"][:2]] == [
        ["SNOMED:38341003", "SNOMED:36971009"],
        ["SNOMED:29857009"],
    ]
    assert [v["visit_id"] for v in record["visits"]] == ["e1", "e2"]  # e4 has no code of its own


def test_bedside_record_ends_at_the_current_encounter(options):
    record = patient_record(chart(), at_encounter="Encounter/e3", options=options)
    assert [v["visit_id"] for v in record["visits"]] == ["e1", "e2", "e3"]
    current = record["visits"][-1]
    assert current["medications"] == [] and current["procedures"] == []
    # no condition of its own: the ones active in 2018, by onset (chest pain and diabetes share one)
    assert current["diagnoses"] == ["SNOMED:38341003", "SNOMED:29857009", "SNOMED:44054006", "SNOMED:6142004"]
    with pytest.raises(LeaderError, match="not among the patient's encounters"):
        patient_record(chart(), at_encounter="nope", options=options)
    with pytest.raises(LeaderError, match="one patient; found 2"):
        patient_record([*chart(), patient("p2")], options=options)


def test_inpatient_visits_only(options):
    inpatient = MapOptions(drug_atc=options.drug_atc, visits="inpatient")
    record = patient_record(chart(), options=inpatient)
    assert [v["visit_id"] for v in record["visits"]] == ["e2"]
    assert record["profile"]["admission_type"] == "INPATIENT" and record["profile"]["age"] == 64
    assert record["profile"]["insurance"] == "Blue Cross"  # from 2012 on


def test_references_resolve_through_urn_uuid_and_type_id(options):
    """A transaction Bundle: fullUrls are urn:uuid, one resource has no id, one id differs from its uuid;
    references come as urn:uuid, Type/id and an absolute URL with _history."""
    pat, enc, med = (
        "urn:uuid:11111111-0000-0000-0000-000000000001",
        "urn:uuid:22222222-0000-0000-0000-000000000002",
        "urn:uuid:3",
    )
    p = patient()
    del p["id"]
    e = encounter("enc-1", "2020-02-02T10:00:00Z", subject=pat)
    c = condition("c1", "38341003", "Hypertension", enc, onset="2020-02-02", subject=pat)
    x = procedure("x1", "73761001", "Colonoscopy", "https://ehr.example/fhir/Encounter/enc-1/_history/3", subject=pat)
    r = request("m1", "unused", "Encounter/enc-1", subject=pat)
    del r["medicationCodeableConcept"]
    r["medicationReference"] = {"reference": med}
    m = {  # the product name is unknown to the map: its ingredient names the class
        "resourceType": "Medication",
        "id": "med-1",
        "code": {"coding": [{"system": RXNORM, "display": "Toprol XL"}]},
        "ingredient": [{"itemCodeableConcept": {"coding": [{"display": "Metoprolol succinate"}]}}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": url, "resource": res} for url, res in ((pat, p), (enc, e), (med, m), ("urn:uuid:4", c))]
        + [{"fullUrl": "urn:uuid:5", "resource": x}, {"resource": r}],
    }
    record = patient_record(bundle, options=options)
    assert record["patient_id"] == "11111111-0000-0000-0000-000000000001"
    assert record["visits"] == [
        {
            "visit_id": "enc-1",
            "time": "2020-02-02T10:00:00Z",
            "diagnoses": ["SNOMED:38341003"],
            "procedures": ["SNOMED:73761001"],
            "medications": ["C07A"],
            "note": None,
        }
    ]


def _write_ndjson(path, resources):
    text = "".join(json.dumps(r) + "\n" for r in resources)
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    return path


def test_bulk_folder_counts_what_it_cannot_use(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    resources = chart()
    by_type: dict[str, list] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    for rtype, group in by_type.items():  # several files per type, gzip or not
        _write_ndjson(export / f"{rtype}.000.ndjson.gz", group[: len(group) // 2 + 1])
        _write_ndjson(export / f"{rtype}.001.ndjson", group[len(group) // 2 + 1 :])
    _write_ndjson(
        export / "Other.ndjson",
        [
            {"resourceType": "Observation", "id": "o1"},
            {"resourceType": "Condition", "id": "c9", "subject": {"reference": "Patient/p1"}, "code": {"text": "x"}},
            condition("c10", "I10", "Hypertension", "Encounter/e2", system="http://loinc.org"),
            condition("c11", "12345", "Too short for SNOMED", "Encounter/e2"),
            condition("c12", "38341003", "Hypertension", "Encounter/gone"),
            request("m9", "Ibuprofen 200 MG Oral Tablet", "Encounter/e2", subject="Patient/ghost"),
            encounter("e9", "2015-01-01", subject="Patient/ghost"),
        ],
    )
    manifest = {"transactionTime": "2024-01-01T00:00:00Z", "request": "x/$export", "output": []}
    (export / "manifest.json").write_text(json.dumps(manifest))  # the $export manifest: skipped
    (tmp_path / "drug_atc.csv").write_text(DRUG_ATC)
    out = tmp_path / "out"
    argv = ["data", "fhir", "--input", str(export), "--out", str(out), "--drug-atc", str(tmp_path / "drug_atc.csv")]
    assert main([*argv, "--min-patients", "1"]) == 0
    data = load_dataset(out)
    assert [v["visit_id"] for p in data.patients for v in p["visits"]] == ["e1", "e2", "e4"]
    assert data.medications == ["M01A", "B01A", "C07A"]
    assert data.titles["SNOMED:29857009"] == "Chest pain" and data.titles["C07A"] == "beta blocking agents"
    m = data.manifest
    assert m["source"] == "fhir" and m["visits_with_note"] == 2
    assert m["drops"] == {
        "visits": {
            "no_start": 0,
            "not_inpatient": 0,
            "no_medication": 1,
            "no_mapped_medication": 0,
            "no_codes": 0,
            "no_top_medication": 0,
        },
        "patients": {"no_encounter": 0, "no_visit_left": 0},
    }
    assert m["resources"]["skipped"] == {
        "AllergyIntolerance: inactive": 1,
        "Condition: code system not used": 1,
        "Condition: malformed code": 1,
        "Condition: no code": 1,
        "MedicationAdministration: status not-done": 1,
        "MedicationRequest: status cancelled": 1,
        "MedicationRequest: status entered-in-error": 1,
        "MedicationRequest: stopped before start": 1,
        "Observation: unexpected type": 1,
    }
    assert m["resources"]["missing_patient"] == {"Encounter": 1, "MedicationRequest": 1}
    assert m["resources"]["missing_encounter"] == {"Condition": 1}
    assert m["resources"]["read"]["Condition"] == 10 and m["resources"]["read"]["Patient"] == 1
    assert m["coverage"]["medication_orders"] == 4 and m["coverage"]["mapped_share"] == 1.0
    # the default --min-patients 5: no label is received by 5 patients in a one-patient export
    assert main([*argv[:5], str(tmp_path / "out5"), *argv[6:]]) == 2
    assert "no medication label is received by 5 or more patients" in capsys.readouterr().err
    assert not (tmp_path / "out5").exists()


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bundle.json", '{"resourceType": "Bundle", "entry": [', r"bundle\.json.*not valid JSON.*line 1 column 38"),
        ("bundle.json", "[1, 2]", r"bundle\.json is not a FHIR Bundle or resource"),
        (
            "bundle.json",
            '{"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}',
            r"bundle\.json: an entry is not a FHIR resource",
        ),
        ("Patient.ndjson", json.dumps(patient()) + "\n{oops\n", r"Patient\.ndjson: line 2 is not valid JSON"),
        (
            "Patient.ndjson",
            json.dumps(patient()) + '\n{"id": "x"}\n',
            r"Patient\.ndjson: line 2 is not a FHIR resource",
        ),
        ("Patient.ndjson", json.dumps(patient()) + "\n[]\n", r"Patient\.ndjson: line 2 is not a FHIR resource"),
        ("notes.txt", "hello", "not a .ndjson, .ndjson.gz or .json file"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, name, text, message):
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / "out"
    assert main(["data", "fhir", "--input", str(source), "--out", str(out), "--coding", "name"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no out folder, no leftovers


def test_bad_options(tmp_path, capsys):
    base = ["data", "fhir", "--input", str(tmp_path), "--out", str(tmp_path / "o")]
    for extra, message in (
        ([], "holds no .ndjson"),
        (["--coding", "ndc"], "--coding must be one of atc3, name"),
        (["--visits", "all"], "--visits must be one of"),
        (["--coding", "name", "--drug-atc", str(tmp_path / "x.csv")], "use it with --coding atc3"),
        (["--top-meds", "0"], "--top-meds must be at least 1"),
    ):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err


# ---- the Synthea export ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthea(tmp_path_factory):
    out = tmp_path_factory.mktemp("fhir") / "synthea"
    assert main(["data", "fhir", "--input", str(shared_data("fhir-r4-synthea")), "--out", str(out)]) == 0
    return out


def test_synthea_export(synthea):
    data = load_dataset(synthea)
    m = data.manifest
    assert m["counts"] == {"patients": 550, "visits": 3655, "medications": 44, "ddi_pairs": 0}
    assert m["resources"] == {
        "read": {
            "AllergyIntolerance": 365,
            "Condition": 4332,
            "Encounter": 17276,
            "MedicationRequest": 4475,
            "Patient": 585,
            "Procedure": 13382,
        },
        "skipped": {"AllergyIntolerance: inactive": 25, "Procedure: malformed code": 71},  # LOINC 34552-0 as SNOMED
        "missing_patient": {},
        "missing_encounter": {},
    }
    assert m["drops"] == {
        "visits": {
            "no_start": 0,
            "not_inpatient": 0,
            "no_medication": 13439,  # 17,276 encounters, 3,837 with an order
            "no_mapped_medication": 8,
            "no_codes": 172,
            "no_top_medication": 2,
        },
        "patients": {"no_encounter": 0, "no_visit_left": 35},
    }
    coverage = m["coverage"]
    assert (coverage["medication_orders"], coverage["mapped_orders"], coverage["mapped_share"]) == (4475, 4467, 0.9982)
    assert (coverage["drug_names"], coverage["mapped_drug_names"]) == (124, 122)
    assert "Simvistatin 10 MG" not in dict(coverage["unmapped_top"])  # Synthea's own misspelling: an alias now
    assert m["medication_labels_before_top"] == 54 and m["medication_labels_below_min_patients"] == 10
    assert m["visits_with_note"] == 425 and m["codes_without_title"] == 0
    codes = {c for p in data.patients for v in p["visits"] for c in v["diagnoses"] + v["procedures"]}
    assert len(codes) == 172 and all(c.startswith("SNOMED:") for c in codes)
    assert data.titles["SNOMED:38341003"] == "Hypertension"
    assert sum(len(v["medications"]) for p in data.patients for v in p["visits"]) == 4488
    stats = dataset_stats(synthea)  # what `leader data stats` prints
    assert (stats["patients"], stats["visits"], stats["medication_labels"]) == (550, 3655, 44)
    assert stats["medication_mapping_coverage"] == 0.9982 and stats["dropped_visits"]["no_codes"] == 172


def test_synthea_bundles_match_the_bulk_export():
    """The three transaction Bundles (urn:uuid references) hold patients of the Bulk export: each reads
    identically through `patient_record` and through the streaming importer."""
    root = shared_data("fhir-r4-synthea")
    store, options = Store(), MapOptions()
    load(find_files(root), store)
    bundles = sorted((root / "bundles").glob("*.json"))
    assert len(bundles) == 3
    for path in bundles:
        record = patient_record(json.loads(path.read_text()), options=options)
        pid = record["patient_id"]
        assert record == build(store, pid, options)


def test_synthea_bundle_folder(tmp_path):
    out = tmp_path / "bundles"
    argv = ["data", "fhir", "--input", str(shared_data("fhir-r4-synthea", "bundles")), "--out", str(out)]
    assert main([*argv, "--min-patients", "1"]) == 0
    m = load_dataset(out).manifest
    assert m["counts"] == {"patients": 3, "visits": 8, "medications": 3, "ddi_pairs": 0}
    assert m["resources"]["read"] == {
        "Condition": 23,
        "Encounter": 52,
        "MedicationRequest": 8,
        "Patient": 3,
        "Procedure": 15,
    }
    assert m["drops"]["visits"]["no_medication"] == 44 and m["coverage"]["mapped_share"] == 1.0


def test_synthea_name_coding_and_inpatient_visits(tmp_path):
    root = str(shared_data("fhir-r4-synthea"))
    assert main(["data", "fhir", "--input", root, "--out", str(tmp_path / "n"), "--coding", "name"]) == 0
    names = load_dataset(tmp_path / "n")
    assert names.manifest["counts"]["visits"] == 3466 and len(names.medications) == 77
    assert "acetaminophen" in names.medications and names.titles["acetaminophen"] == "acetaminophen"
    assert main(["data", "fhir", "--input", root, "--out", str(tmp_path / "i"), "--visits", "inpatient"]) == 0
    inpatient = load_dataset(tmp_path / "i").manifest
    assert inpatient["counts"]["visits"] == 207 and inpatient["drops"]["visits"]["not_inpatient"] == 16663


def test_chain_fhir_baseline_distill(synthea, tmp_path):
    """The FHIR dataset goes through the later stages: a logistic baseline and a tiny student."""
    assert main(["baseline", "--data", str(synthea), "--method", "logistic", "--out", str(tmp_path / "lr")]) == 0
    metrics = json.loads((tmp_path / "lr" / "metrics.json").read_text())
    assert metrics["test"]["overall"]["jaccard_samples"]["value"] > 0.3
    argv = ["distill", "--data", str(synthea), "--out", str(tmp_path / "st"), "--no-teacher", "--epochs", "2"]
    assert main([*argv, "--dim", "16", "--hidden", "32", "--heads", "2", "--no-progress"]) == 0
    assert (tmp_path / "st" / "metrics.json").is_file()
