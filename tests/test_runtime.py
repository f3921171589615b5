"""`leader.export.runtime.Recommender`: torch-free serving, outputs, bad files and bad patients."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from leader.errors import LeaderError
from leader.export.onnx_export import set_metadata, torch_probs
from leader.export.runtime import FORMAT_VERSION, PREFIX, Recommender, balanced_groups
from tests.conftest import hand_patients, rule_patients


def with_meta(src, dst, drop=(), **values):
    """A copy of `src` with leader metadata keys dropped or replaced (values are JSON-encoded)."""
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    for key in drop:
        meta.pop(PREFIX + key, None)
    meta.update({PREFIX + k: json.dumps(v) for k, v in values.items()})
    set_metadata(proto, meta)
    onnx.save(proto, str(dst))
    return dst


def _fresh_python(code: str, *args) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_runtime_never_imports_torch(exported):
    code = (
        "import json, sys\n"
        "from leader.export.runtime import Recommender\n"
        "import leader.export.predict\n"
        "rec = Recommender(sys.argv[1], threads=2)\n"
        "out = rec.recommend([{'profile': {'gender': 'F', 'age': 70}, 'visits': [{'diagnoses': ['ICD9:4019'], 'procedures': []}]}])\n"
        "print(json.dumps({'ok': out[0].ok, 'n': len(out[0].ranked), 'torch': 'torch' in sys.modules}))\n"
    )
    assert _fresh_python(code, exported) == {"ok": True, "n": 6, "torch": False}


def test_cli_help_does_not_import_torch():
    code = (
        "import contextlib, io, json, sys\n"
        "from leader.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--help']), main(['export', '--help']), main(['predict', '--help']), main(['bench', '--help'])]\n"
        "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))\n"
    )
    assert _fresh_python(code) == {"codes": [0, 0, 0, 0], "torch": False}


def test_recommendations_match_torch_rank_and_threshold(exported, student_dir):
    from leader.student import load_student

    model, encoder, _ = load_student(student_dir)
    rec = Recommender(exported)
    patients = hand_patients()
    results = rec.recommend(patients)
    want = torch_probs(model, rec.encode(patients))
    for result, probs in zip(results, want, strict=True):
        assert result.ok
        got = dict(result.ranked)
        assert np.allclose([got[m] for m in rec.medications], probs, atol=1e-5)
        values = [p for _, p in result.ranked]
        assert values == sorted(values, reverse=True) and len(values) == len(rec.medications)
        assert result.recommended == [m for m, p in result.ranked if p >= rec.thresholds[rec.medications.index(m)]]
    assert [r.patient_id for r in results] == ["p1", "p2", "p3", "p4"]
    # ICD-10 codes never occur in the rule dataset: reported, not fatal
    assert "ICD10:I10" in results[3].unknown_codes and "ICD9:4019" not in results[3].unknown_codes
    assert len(rec.recommend(patients, top_k=2)[0].ranked) == 2


def test_current_visit_medications_are_ignored_and_batching_does_not_matter(exported):
    rec = Recommender(exported)
    patients = rule_patients(12, seed=4)
    alone = [rec.recommend([p])[0] for p in patients]
    together = rec.recommend(patients)
    for a, b in zip(alone, together, strict=True):
        assert a.recommended == b.recommended
        assert np.allclose([p for _, p in a.ranked], [p for _, p in b.ranked], atol=1e-6)
    changed = json.loads(json.dumps(patients[0]))
    changed["visits"][-1]["medications"] = ["J01C", "XXXX"]
    assert rec.recommend([changed])[0].ranked == alone[0].ranked
    assert "XXXX" not in rec.recommend([changed])[0].unknown_codes


def test_balanced_groups_cut_each_history_length_into_pieces_for_the_threads():
    lengths = [1, 1, 1, 1, 1, 1, 2, 2, 9, 12]  # 12 and 9 are capped at max_visits 8: one group
    assert balanced_groups(lengths, 1, 8) == [[8, 9], [0, 1, 2, 3, 4, 5], [6, 7]]  # a piece per length
    pieces = balanced_groups(lengths, 2, 8)
    assert sorted(i for rows in pieces for i in rows) == list(range(10))  # every row once
    assert max(len(rows) for rows in pieces) == 5  # ceil(10 / 2)
    assert pieces == [[8, 9], [0, 1, 2, 3, 4], [6, 7], [5]]  # rows x visits: 16, 5, 4, 1
    for rows in pieces:
        assert len({min(lengths[i], 8) for i in rows}) == 1


def test_threads_run_pieces_side_by_side_with_the_same_probabilities(exported):
    patients = rule_patients(40, seed=7)
    one, two = Recommender(exported, threads=1), Recommender(exported, threads=2)
    assert two.session.get_session_options().intra_op_num_threads == 1  # the pieces use the threads
    np.testing.assert_array_equal(one.predict(patients), two.predict(patients))
    assert [r.recommended for r in one.recommend(patients)] == [r.recommended for r in two.recommend(patients)]


def test_truncation_to_the_model_limits_is_reported(exported):
    rec = Recommender(exported)
    visit = {"diagnoses": ["ICD9:4019"], "procedures": [], "medications": ["C07A"]}
    long = {"profile": {}, "visits": [dict(visit) for _ in range(rec.encoder.max_visits + 4)]}
    wide = {"profile": {}, "visits": [{**visit, "diagnoses": [f"ICD9:{i}" for i in range(rec.encoder.max_codes + 5)]}]}
    short = {"profile": {}, "visits": [visit]}
    out = rec.recommend([long, wide, short])
    assert [r.ok for r in out] == [True] * 3
    assert [r.truncated for r in out] == [True, True, False]
    assert rec.encode([long])["visit_mask"].shape[1] == rec.encoder.max_visits


def test_ddi_warnings_among_recommended_drugs(exported, tmp_path):
    everything = Recommender(with_meta(exported, tmp_path / "all.onnx", thresholds=0.0))
    [out] = everything.recommend([rule_patients(1)[0]])
    assert len(out.recommended) == len(everything.medications)
    assert {frozenset(p) for p in out.ddi_warnings} == {frozenset(("B01A", "C07A")), frozenset(("B01A", "N02B"))}
    per_med = [0.0 if m in ("C07A", "J01C") else 1.5 for m in everything.medications]
    two = Recommender(with_meta(exported, tmp_path / "two.onnx", thresholds=per_med))
    [out] = two.recommend([rule_patients(1)[0]])
    assert sorted(out.recommended) == ["C07A", "J01C"] and out.ddi_warnings == []
    assert out.to_dict({"C07A": "beta blockers"})["ranked"][0]["name"] in ("beta blockers", "J01C")


def test_bad_model_files_are_clear_errors(exported, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model")
    with pytest.raises(LeaderError, match="not a loadable ONNX model"):
        Recommender(text)
    with pytest.raises(LeaderError, match="model file not found"):
        Recommender(tmp_path / "missing.onnx")
    plain = with_meta(
        exported,
        tmp_path / "plain.onnx",
        drop=[p.key[len(PREFIX) :] for p in onnx.load(str(exported)).metadata_props if p.key.startswith(PREFIX)],
    )
    with pytest.raises(LeaderError, match="without leader metadata"):
        Recommender(plain)
    with pytest.raises(LeaderError, match="upgrade leader"):
        Recommender(with_meta(exported, tmp_path / "new.onnx", format_version=FORMAT_VERSION + 1))
    with pytest.raises(LeaderError, match="lacks 'thresholds'"):
        Recommender(with_meta(exported, tmp_path / "nothr.onnx", drop=["thresholds"]))
    with pytest.raises(LeaderError, match="inconsistent"):  # 2 thresholds for 6 medications
        Recommender(with_meta(exported, tmp_path / "thr.onnx", thresholds=[0.5, 0.5]))
    other = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(LeaderError, match="without leader metadata"):
        Recommender(tmp_path / "other.onnx")
    with pytest.raises(LeaderError, match="at least 1"):
        Recommender(exported, threads=0)


def test_bad_patients_get_an_error_each_and_the_rest_is_served(exported):
    rec = Recommender(exported)
    good = rule_patients(2, seed=1)
    no_history_meds = {
        "profile": {},
        "visits": [{"diagnoses": ["ICD9:4019"], "procedures": []}, {"diagnoses": ["ICD9:486"], "procedures": []}],
    }
    batch = [
        good[0],
        {"visits": []},
        {"visits": [{"diagnoses": [], "procedures": []}]},
        "a string",
        {"profile": {}},
        {"visits": [{"diagnoses": "ICD9:4019"}]},
        {"profile": [], "visits": []},
        no_history_meds,
        good[1],
    ]
    out = rec.recommend(batch)
    errors = [r.error for r in out]
    assert errors[0] is None and errors[-1] is None
    assert "no visits" in errors[1]
    assert "visit 1 has no codes" in errors[2]
    assert "JSON object" in errors[3]
    assert "missing 'visits'" in errors[4]
    assert "'diagnoses' must be a list" in errors[5]
    assert "'profile'" in errors[6]
    assert "visit 1 lacks 'medications'" in errors[7]
    assert out[1].to_dict() == {"patient_id": None, "error": errors[1]}
    assert out[0].ranked == rec.recommend([good[0]])[0].ranked
    assert all(not r.ok for r in rec.recommend([{"visits": []}]))  # a batch with nothing to serve
