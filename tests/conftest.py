"""Shared fixtures: a few hand-written patients, a small rule-based prepared dataset, the vendored
MIMIC-III demo extract and the way to the shared data folder.

Shared data (`shared_data`): tests that check figures of a whole data set read it from
$LEADER_SHARED_DATA, else from ../shared/data beside the clone (where CI has it). Without it
they skip with a reason that names the path; with LEADER_SHARED_DATA set they fail instead.
The header of every run says which folder was found.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from leader.cohort import load_dataset, write_dataset

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MIMIC3_SUBSET = FIXTURES / "mimic-iii-demo-subset"
"""Ten patients of the MIMIC-III demo with their NDC map entries (tests/fixtures/README.md)."""


def shared_data_dir() -> Path:
    """$LEADER_SHARED_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("LEADER_SHARED_DATA")
    return Path(env).expanduser().resolve() if env else REPO.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path inside the shared data folder. When it is missing the calling test skips with a
    reason naming it, or fails when LEADER_SHARED_DATA was set (a run that asked for the data)."""
    path = shared_data_dir().joinpath(*parts)
    if path.exists():
        return path
    message = (
        f"needs the shared data: {path} not found "
        "(put shared/data beside the clone, or set LEADER_SHARED_DATA to that folder)"
    )
    if os.environ.get("LEADER_SHARED_DATA"):
        pytest.fail(message)
    pytest.skip(message)


def pytest_report_header(config) -> str:
    folder = shared_data_dir()
    found = "found" if folder.is_dir() else "NOT FOUND: the tests that need it will skip"
    return f"shared data: {folder} ({found})"


def pytest_terminal_summary(terminalreporter) -> None:
    """Say it at the end too (-q hides the header): how many tests skipped for want of the shared data."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "needs the shared data" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: no shared data at {shared_data_dir()} "
            "(put shared/data beside the clone, or set LEADER_SHARED_DATA)",
            yellow=True,
            bold=True,
        )


MEDS = ["C07A", "C10A", "A10B", "N02B", "B01A", "J01C"]
TITLES = {
    "ICD9:4019": "Unspecified essential hypertension",
    "ICD9:25000": "Diabetes mellitus without mention of complication, type II",
    "ICD9:2724": "Other and unspecified hyperlipidemia",
    "ICD9:42731": "Atrial fibrillation",
    "ICD9:486": "Pneumonia, organism unspecified",
    "ICD9:7242": "Lumbago",
    "ICD10:I10": "Essential (primary) hypertension",
    "ICD9P:3893": "Venous catheterization, not elsewhere classified",
    "ICD9P:9904": "Transfusion of packed cells",
    "ICD10P:02HV33Z": "Insertion of infusion device into superior vena cava, percutaneous approach",
    "C07A": "beta blocking agents",
    "C10A": "lipid modifying agents, plain",
    "A10B": "blood glucose lowering drugs, excl. insulins",
    "N02B": "other analgesics and antipyretics",
    "B01A": "antithrombotic agents",
    "J01C": "beta-lactam antibacterials, penicillins",
}


def hand_patients() -> list[dict]:
    """Four patients written by hand: two single-visit, one with three visits, one with a note."""
    note = {
        "history_of_present_illness": "72 year old man with cough and fever for three days.",
        "past_medical_history": "Hypertension. Hyperlipidemia.",
        "allergies": "Penicillins",
        "medications_on_admission": "metoprolol 25 mg daily; atorvastatin 40 mg",
    }
    return [
        {
            "patient_id": "p1",
            "profile": {"gender": "M", "age": 72, "insurance": "Medicare", "admission_type": "EMERGENCY"},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2150-01-03T10:00:00",
                    "diagnoses": ["ICD9:486", "ICD9:4019"],
                    "procedures": ["ICD9P:3893"],
                    "medications": ["J01C", "C07A"],
                    "note": note,
                },
            ],
        },
        {
            "patient_id": "p2",
            "profile": {"gender": "F", "age": 55, "insurance": "Private"},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2160-03-01T08:00:00",
                    "diagnoses": ["ICD9:25000"],
                    "procedures": [],
                    "medications": ["A10B"],
                    "note": None,
                },
                {
                    "visit_id": "v2",
                    "time": "2161-05-09T08:00:00",
                    "diagnoses": ["ICD9:25000", "ICD9:2724"],
                    "procedures": ["ICD9P:9904"],
                    "medications": ["A10B", "C10A"],
                    "note": None,
                },
                {
                    "visit_id": "v3",
                    "time": "2162-07-20T08:00:00",
                    "diagnoses": ["ICD9:42731"],
                    "procedures": [],
                    "medications": ["B01A", "C07A", "A10B"],
                    "note": None,
                },
            ],
        },
        {
            "patient_id": "p3",
            "profile": {"gender": "F", "age": 300, "insurance": "Medicare"},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2170-11-11T00:00:00",
                    "diagnoses": ["ICD9:7242"],
                    "procedures": [],
                    "medications": ["N02B"],
                },
            ],
        },
        {
            "patient_id": "p4",
            "profile": {"gender": "M", "age": 64},
            "visits": [
                {
                    "visit_id": "v1",
                    "time": "2155-02-02T00:00:00",
                    "diagnoses": ["ICD10:I10"],
                    "procedures": ["ICD10P:02HV33Z"],
                    "medications": ["C07A"],
                },
                {
                    "visit_id": "v2",
                    "time": "2156-02-02T00:00:00",
                    "diagnoses": ["ICD10:I10", "ICD9:4019"],
                    "procedures": [],
                    "medications": [],
                },
            ],
        },
    ]


# condition -> drugs it calls for: the rule behind `rule_patients`
RULES = {
    "ICD9:4019": ["C07A"],
    "ICD9:25000": ["A10B"],
    "ICD9:2724": ["C10A"],
    "ICD9:42731": ["B01A", "C07A"],
    "ICD9:486": ["J01C"],
    "ICD9:7242": ["N02B"],
}


def rule_patients(n: int = 60, seed: int = 0) -> list[dict]:
    """`n` random patients whose medications follow RULES (chronic conditions persist)."""
    rng = random.Random(seed)
    conditions = list(RULES)
    patients = []
    for p in range(n):
        chronic = rng.sample(conditions[:4], rng.randint(0, 2))
        visits = []
        for v in range(rng.choice([1, 1, 2, 3])):
            acute = rng.sample(conditions[4:], rng.randint(0, 1))
            dx = sorted(set(chronic + acute)) or ["ICD9:7242"]
            meds = sorted({m for c in dx for m in RULES[c]})
            procs = ["ICD9P:3893"] if "ICD9:486" in dx else []
            visits.append(
                {
                    "visit_id": f"v{v}",
                    "time": f"{2100 + p % 10 + v}-01-01T00:00:00",
                    "diagnoses": dx,
                    "procedures": procs,
                    "medications": meds,
                    "note": None,
                }
            )
        profile = {
            "gender": rng.choice("MF"),
            "age": rng.randint(20, 95),
            "insurance": rng.choice(["Medicare", "Private"]),
        }
        patients.append({"patient_id": f"r{p}", "profile": profile, "visits": visits})
    return patients


@pytest.fixture
def hand_dataset(tmp_path):
    """The hand-written patients as a prepared dataset (loaded)."""
    path = write_dataset(tmp_path / "hand", hand_patients(), MEDS, TITLES, [("C07A", "B01A")], source="test")
    return load_dataset(path)


@pytest.fixture(scope="session")
def rule_dataset_path(tmp_path_factory):
    """60 rule-based patients as a prepared dataset folder (shared by the session: do not modify)."""
    out = tmp_path_factory.mktemp("data") / "rule"
    return write_dataset(out, rule_patients(), MEDS, TITLES, [("C07A", "B01A"), ("N02B", "B01A")], source="test")


# ---------------------------------------------------------------------------------------------
# Expensive artefacts, built once per session. A test that uses one of them is marked
# `integration` (see pytest_collection_modifyitems): `make test-fast` leaves it out.

_CHAIN: dict = {}


def chain(tmp_path_factory, rule_dataset_path):
    """(student folder, model.onnx): `leader distill --no-teacher` (a real, tiny student) then
    `leader export --onnx --int8 --force`; built once per session whoever asks first."""
    from leader.cli import main

    if not _CHAIN:
        student = tmp_path_factory.mktemp("student") / "student"
        argv = [
            "distill",
            "--data",
            str(rule_dataset_path),
            "--out",
            str(student),
            "--no-teacher",
            "--epochs",
            "30",
            "--dim",
            "16",
            "--hidden",
            "32",
            "--heads",
            "2",
            "--no-progress",
            "--min-patients",  # 60 patients: keep every token, as the golden probabilities expect
            "1",
        ]
        assert main(argv) == 0
        path = tmp_path_factory.mktemp("onnx") / "model.onnx"
        assert main(["export", "--onnx", "--student", str(student), "--out", str(path), "--int8", "--force"]) == 0
        _CHAIN.update(student=student, onnx=path)
    return _CHAIN["student"], _CHAIN["onnx"]


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory, rule_dataset_path):
    """The tiny student of `chain` (read-only)."""
    return chain(tmp_path_factory, rule_dataset_path)[0]


@pytest.fixture(scope="session")
def exported(tmp_path_factory, rule_dataset_path):
    """model.onnx of `chain`, with model.int8.onnx and model.md beside it (read-only)."""
    return chain(tmp_path_factory, rule_dataset_path)[1]


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """`leader demo --quick` on 120 synthetic patients: every stage once (read-only)."""
    from leader.cli import main

    out = tmp_path_factory.mktemp("demo") / "quick"
    assert main(["demo", "--quick", "--patients", "120", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, rule_dataset_path):
    """A 1-layer, hidden-16 Llama with a word-level tokenizer fitted on the rule dataset's prompts."""
    from leader.cohort import load_dataset
    from leader.teacher.tiny import make_tiny_backbone, tiny_texts

    return make_tiny_backbone(tmp_path_factory.mktemp("tiny") / "llama", tiny_texts([load_dataset(rule_dataset_path)]))


def teach_args(data, out, model, *extra) -> list[str]:
    """`leader teach` on the tiny model: 4 fp32 steps in batches of 4, validation every 2, the head
    as training left it (--no-refit-head: tests/test_teacher_refit.py tests the refit), blocks not
    compiled (--no-compile: a compile costs more than 4 steps save; tests/test_teacher_compile.py)."""
    return [
        "teach",
        "--data",
        str(data),
        "--out",
        str(out),
        "--base-model",
        str(model),
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--batch-size",
        "4",
        "--precision",
        "fp32",
        "--no-progress",
        "--no-refit-head",
        "--no-compile",
        *extra,
    ]


def _no_bf16() -> bool:
    return False


@pytest.fixture
def fp32_teacher_inference(monkeypatch):
    """Teacher inference in fp32 on every CPU (`--precision auto` picks bf16 where the CPU has fast
    bf16, whose sums round differently on AMX, AVX512-BF16 and GPUs). For tests of the algorithm;
    tests/test_teacher_real.py checks the bf16 path against bounds bf16 can keep."""
    import leader.teacher.backbone

    monkeypatch.setattr(leader.teacher.backbone, "bf16_supported", _no_bf16)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, rule_dataset_path, tiny_model):
    """`leader teach` (teach_args) on the tiny model with fp32 inference, read-only. The head as the
    calibration probe left it, before the first training step, is kept for `tiny_teacher_probe`."""
    import leader.teacher.backbone
    import leader.teacher.train as train

    out = tmp_path_factory.mktemp("teach") / "teacher"
    real = train.calibrate_head

    def calibrate_and_keep(model, *args, **kwargs):
        loss = real(model, *args, **kwargs)
        _PROBE_HEAD.update({k: v.clone() for k, v in model.head_state().items()})  # views of the live head
        return loss

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(leader.teacher.backbone, "bf16_supported", _no_bf16)
        patch.setattr(train, "calibrate_head", calibrate_and_keep)
        from leader.cli import main

        assert main(teach_args(rule_dataset_path, out, tiny_model)) == 0
    return out


_PROBE_HEAD: dict = {}


@pytest.fixture(scope="session")
def tiny_teacher_probe(tiny_teacher) -> dict:
    """The head of `tiny_teacher` (weight, bias, center, scale) right after calibration, before training."""
    assert set(_PROBE_HEAD) == {"weight", "bias", "center", "scale"}, "the calibration probe did not run"
    return {k: v.numpy() for k, v in _PROBE_HEAD.items()}


INTEGRATION_FIXTURES = {"student_dir", "exported", "quick_demo", "tiny_model", "tiny_teacher", "postgres"}
"""Session artefacts (and a real PostgreSQL server, tests/test_data_omop.py) that make a test an integration test."""
EXPENSIVE_CALLS = {"chain", "make_tiny_backbone"}
"""Functions whose call inside a fixture makes the tests using it integration tests."""


def _is_integration(item) -> bool:
    """Uses an integration fixture, directly or through other fixtures, or a fixture that calls
    one of EXPENSIVE_CALLS or asks for an integration fixture by name (request.getfixturevalue)."""
    if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info else ():
        for fixturedef in defs:
            code = getattr(fixturedef.func, "__code__", None)
            if code and (EXPENSIVE_CALLS & set(code.co_names) or INTEGRATION_FIXTURES & set(code.co_consts)):
                return True
    return False


# Unit tests over ~2 s in files other engineers were writing when the tiers came in (measured with
# `pytest --durations`); in a file of your own, prefer @pytest.mark.slow on the test.
SLOW_TESTS = {
    "test_privacy_vocab.py::test_planted_identifiers_reach_no_artefact",
    "test_safety_outputs.py::test_two_concurrent_runs_to_one_out",
    "test_safety_outputs.py::test_killed_synth_with_raw_does_not_block_the_rerun",
    "test_safety_outputs.py::test_a_folder_created_at_out_during_the_run_is_not_deleted",
    "test_safety_outputs.py::test_a_teacher_run_is_refused_while_another_holds_its_out",
    "test_safety_outputs.py::test_killed_synth_leaves_no_final_output_and_the_next_run_cleans_up",
    "test_data_omop.py::test_baseline_trains_on_the_omop_dataset",
    "test_data_eicu.py::test_leak_test_catches_a_kept_drug_treatment",
    "test_data_eicu.py::test_no_input_names_a_drug_of_its_visit",
    "test_data_fhir.py::test_chain_fhir_baseline_distill",
    "test_data_fhir.py::test_synthea_name_coding_and_inpatient_visits",
    "test_split_site.py::test_site_split_holds_out_hospitals",
    "test_atc.py::test_ndc_map_is_streamed_like_the_literal",
    "test_atc.py::test_coverage_floors_on_the_three_demos",
    "test_atc.py::test_report_lists_labels_with_their_atc_titles",
    "test_contracts.py::test_evaluate_and_report_work_on_site_and_external_runs",
    "test_privacy_vocab.py::test_the_guard_is_the_patient_count",
    "test_baseline_strong.py::test_the_demo_table_lists_the_strongest_baseline_first",
    "test_data_eicu.py::test_name_coding",
    "test_data_eicu.py::test_age_rules",
    "test_data_fhir.py::test_synthea_bundles_match_the_bulk_export",
}


def pytest_collection_modifyitems(config, items):
    """Mark the integration tests (see _is_integration) and SLOW_TESTS; `make test-fast` deselects both."""
    for item in items:
        if _is_integration(item):
            item.add_marker(pytest.mark.integration)
        if f"{item.path.name}::{item.originalname}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def crash_teacher_after_step(monkeypatch, step: int = 2):
    """Make `leader teach` raise RuntimeError("simulated crash") right after it saved the
    checkpoint of `step`; returns the real `save_checkpoint` (to put back before a resume)."""
    import leader.teacher.train as train

    real_save = train.save_checkpoint

    def crash(out, state, *args):
        real_save(out, state, *args)
        if state.step == step:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(train, "save_checkpoint", crash)
    return real_save
