"""Issue 16 item 2: every JSON reader bounds depth and numbers and refuses non-finite numbers,
with one line naming the file and line (leader.safejson and the readers that use it)."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from leader.cli import main
from leader.errors import LeaderError
from tests.conftest import MEDS, TITLES, rule_patients, shared_data

SYNTHEA_BUNDLE = "Adolph_Smith_0c6b1f3d-edb2-422b-a0af-a262fb90ed07.json"
DEEP = "[" * 100_000 + "]" * 100_000
BAD_VALUES = {
    "overflow": "1e400",
    "negative overflow": "-1e400",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "5000 digits": "9" * 5000,
    "deep": DEEP,
}


def _patient(age: str) -> str:
    """A valid cohort line whose age is the raw JSON text `age`."""
    visit = {
        "visit_id": "v1",
        "time": "2020-01-01",
        "diagnoses": ["ICD9:4019"],
        "procedures": [],
        "medications": ["C07A"],
    }
    return '{"patient_id": "p", "profile": {"gender": "F", "age": ' + age + '}, "visits": [' + json.dumps(visit) + "]}"


@pytest.mark.parametrize("name", BAD_VALUES)
def test_loads_refuses_what_python_json_accepts_or_crashes_on(name):
    from leader.safejson import JSONError, loads

    with pytest.raises(JSONError, match="not valid JSON"):
        loads(_patient(BAD_VALUES[name]))


def test_depth_limit_is_exact_and_strings_do_not_count():
    from leader.safejson import MAX_DEPTH, JSONError, loads

    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(JSONError, match="deeper than"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(JSONError, match="deeper than"):
        loads('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))
    half = MAX_DEPTH // 2  # arrays and objects alternating: each level counts once, whatever its bracket
    assert loads('[{"a": ' * half + "1" + "}]" * half) is not None
    with pytest.raises(JSONError, match="deeper than"):
        loads('[{"a": ' * half + "[1]" + "}]" * half)
    brackets = '"' + "[{" * 500 + '\\"'
    assert loads('{"note": ' + json.dumps(brackets) + ', "x": [[1]]}') == {"note": brackets, "x": [[1]]}
    tricky = ["]]]}", '\\"[', "", "\\", '"', "{[", "x"]  # closing brackets and escapes inside strings
    for copies in (1, 20):  # a few escapes (cut out one by one) and many (over _FEW_ESCAPES)
        for depth, ok in ((MAX_DEPTH, True), (MAX_DEPTH + 1, False)):
            inner = json.dumps(tricky * copies)
            text = "[" * (depth - 1) + inner + "]" * (depth - 1)
            if ok:
                assert loads(text) == json.loads(text)
            else:
                with pytest.raises(JSONError, match="deeper than"):
                    loads(text)


def test_depth_check_agrees_with_the_real_depth_on_random_documents():
    """Random documents 60-68 deep whose strings hold brackets, quotes, backslashes and escapes (a
    few or many, ASCII-escaped or not): accepted exactly when at most MAX_DEPTH deep."""
    from leader.safejson import MAX_DEPTH, JSONError, loads

    rng = random.Random(7)
    plain, escaped = ["[", "]", "{", "}", "a", " ", "é", "0e999"], ['"', "\\", "\n", "\u2028", "\U0001f600"]
    rate = 0.0  # share of characters JSON escapes: few escapes take one path of the check, many another

    def text() -> str:
        return "".join(rng.choice(escaped if rng.random() < rate else plain) for _ in range(rng.randrange(12)))

    def build(depth: int):
        if depth == 0:
            return rng.choice([text(), 1, None, 2.5])
        inner = [build(depth - 1)] + [text() for _ in range(rng.randrange(3))]
        return {text(): inner[0], "k": inner[1:]} if rng.random() < 0.5 else inner

    def real_depth(value) -> int:
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return (1 + max(map(real_depth, children), default=0)) if isinstance(value, (dict, list)) else 0

    outcomes = []
    for i in range(200):
        rate = (0.005, 0.3)[i % 2]
        doc, target = build(rng.randrange(1, 40)), rng.randrange(MAX_DEPTH - 4, MAX_DEPTH + 5)
        while real_depth(doc) < target:
            doc = [text(), doc] if rng.random() < 0.5 else {text(): doc}
        dumped = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        outcomes.append(real_depth(doc) <= MAX_DEPTH)
        if outcomes[-1]:
            assert loads(dumped) == json.loads(dumped)
        else:
            with pytest.raises(JSONError, match="deeper than"):
                loads(dumped)
    assert 50 < sum(outcomes) < 150  # both sides of the limit


def test_limits_keep_ordinary_numbers_and_refuse_lone_surrogates():
    from leader.safejson import JSONError, loads

    text = '[1e308, -1.7976931348623157e308, 1e-400, 12345678901234567890123456789012345, 0.5, -3, "E8800"]'
    assert loads(text) == json.loads(text)
    assert loads('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character
    with pytest.raises(JSONError, match="surrogate"):
        loads('{"patient_id": "\\ud800"}')  # would crash the UTF-8 writer of `leader predict` later
    with pytest.raises(JSONError, match="UTF-8"):
        loads(b'{"a": "\xff"}')
    with pytest.raises(JSONError, match="surrogate"):
        loads('{"patient_id": "\ud800"}')  # the character itself, in a str a caller built
    many = '"' + "\\n" * 100  # past the escapes cut out one by one
    assert loads(many + '\\ud83d\\ude00"') == "\n" * 100 + "\U0001f600"
    with pytest.raises(JSONError, match="surrogate"):
        loads(many + '\\udc00"')


def test_loads_equals_json_on_ordinary_documents():
    """The fast path (plain C parser) and the checked path give json.loads's result."""
    from leader.safejson import loads

    rng = random.Random(0)
    for patient in rule_patients(200, seed=3):
        patient["profile"]["weight"] = rng.uniform(-1e6, 1e6)
        patient["profile"]["big"] = rng.choice([1e200, 10**30, 2.5e-300, "NaN-like text", "Infinity ward"])
        text = json.dumps(patient)
        assert loads(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("name", BAD_VALUES)
def test_data_jsonl_refuses_the_line_with_its_number(tmp_path, capsys, name):
    source = tmp_path / "export.jsonl"
    good = _patient("71")
    source.write_text(good + "\n" + good.replace('"p"', '"q"') + "\n" + _patient(BAD_VALUES[name]) + "\n")
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{source}: line 3 is not valid JSON" in err, err[:300]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_vocab_and_stats_and_cohort_refuse_deep_or_infinite_json(tmp_path, capsys):
    from leader.cohort import iter_jsonl, write_dataset
    from leader.io import read_json

    source = tmp_path / "export.jsonl"
    source.write_text(_patient("71") + "\n" + _patient("70").replace('"p"', '"q"') + "\n")
    vocab = tmp_path / "vocab.json"
    vocab.write_text('{"medications": ["C07A"], "titles": ' + DEEP + "}")
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o"), "--vocab", str(vocab)]) == 2
    err = capsys.readouterr().err
    assert f"{vocab}: not valid JSON here (nested deeper than" in err and "Traceback" not in err

    data = write_dataset(tmp_path / "data", rule_patients(6), MEDS, TITLES, [], source="test")
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps(manifest)[:-1] + ', "x": Infinity}')
    assert main(["data", "stats", str(data)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: not valid JSON (Infinity is not a JSON number" in err and "Traceback" not in err

    cohort = tmp_path / "cohort.jsonl.gz"
    with gzip.open(cohort, "wt") as handle:
        handle.write(_patient("71") + "\n\n" + _patient("1e400") + "\n")
    with pytest.raises(LeaderError, match=r"cohort.jsonl.gz: line 3 is not valid JSON here \(the number 1e400"):
        list(iter_jsonl(cohort))
    (tmp_path / "run.json").write_text('{"a": ' + "9" * 5000 + "}")
    with pytest.raises(LeaderError, match="a number of 5000 characters"):
        read_json(tmp_path / "run.json")


def test_number_lookalikes_inside_strings_are_text():
    """The limits apply to numbers, not to strings that look like them (FHIR UUIDs hold "6e-456",
    a ward can be called "Infinity"), escaped quotes included."""
    from leader.safejson import loads

    text = json.dumps({"id": "b2f6e-456d", "ward": "Infinity, NaN", "n": "1e400", "big": "9" * 5000, "q": 'a"1e400'})
    assert loads(text) == json.loads(text)
    lines = [json.dumps({**p, "patient_id": "9" * 31}) for p in rule_patients(50, seed=5)]
    assert [loads(line) for line in lines] == [json.loads(line) for line in lines]


def test_a_cds_hooks_request_reads_as_json_does():
    """A patient-view request carrying a Synthea Bundle (the prefetch of benchmarks/serve_bench.py:
    narratives with escaped quotes, 800+ brackets, ids that look like numbers) passes the depth
    check, reads as json.loads reads it, and is refused once nested past the limit."""
    from leader.safejson import MAX_DEPTH, JSONError, loads

    bundle = json.loads(shared_data("fhir-r4-synthea", "bundles", SYNTHEA_BUNDLE).read_text())
    body = json.dumps({"hook": "patient-view", "context": {"patientId": "x"}, "prefetch": {"all": bundle}})
    assert '\\"' in body and body.count("{") > MAX_DEPTH
    assert loads(body.encode()) == json.loads(body)
    deep = body[:-1] + ', "x": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    assert loads(deep) == json.loads(deep)
    with pytest.raises(JSONError, match="deeper than"):
        loads(body[:-1] + ', "x": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}")


@pytest.mark.parametrize("age", ['"inf"', '"-Infinity"', '"nan"', "-3", '"1e400"', '"ninety"', "[71]"])
def test_data_jsonl_refuses_an_age_that_is_not_a_finite_number(tmp_path, capsys, age):
    """Valid JSON whose age no model can bucket: refused at the boundary with its line, not in training."""
    source = tmp_path / "export.jsonl"
    good = _patient("71")
    source.write_text(good + "\n" + _patient(age).replace('"p"', '"q"') + "\n")
    assert main(["data", "jsonl", "--input", str(source), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "profile" in err and "Traceback" not in err, err[:300]
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_profile_tokens_skip_ages_no_bucket_can_hold():
    from leader.encoding import profile_tokens

    for age in ("inf", "-inf", "nan", float("inf"), -4, "1e400"):
        assert profile_tokens({"age": age, "gender": "F"}) == ["gender=F"]
    assert profile_tokens({"age": "95"}) == ["age=90+"]
