"""Output folders and files: nothing lost (issue 16, items 1, 3, 8, 9, 10).

`--overwrite` replaces only a folder leader wrote, never the working directory, an input or a
folder holding one; a symbolic link is never written through; two runs never share an --out; a
folder that appears at --out during a run is left alone; predict/export never replace a file they
were not told to; a bad --out is refused before any work; a SIGKILLed run's leftovers are removed
by the next run, which says so. Real processes are started and killed where the behaviour is
about processes.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leader.cli import main
from tests.conftest import rule_patients
from tests.test_export import chain

REPO = Path(__file__).resolve().parents[1]
BIG = "3000"
"""Patients of a synthetic run slow enough (several seconds) to be caught mid-run."""


def leader(*args: str, cwd: Path | None = None, env: dict | None = None, **kw) -> subprocess.Popen:
    """Start `python -m leader ARGS` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "leader", *args],
        cwd=cwd or REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def one_error(capsys, code: int, expect: str) -> str:
    """Exit 2 and exactly one stderr line, an error naming `expect`."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert expect.lower() in lines[0].lower(), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (to show nothing was touched)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def raw_and_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """(raw MIMIC-III tables, a prepared dataset) from `leader data synth --raw` (read-only: copy before use)."""
    base = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--patients", "40", "--out", str(base / "data"), "--raw", str(base / "raw")]) == 0
    return base / "raw", base / "data"


def write_cohort(path: Path, n: int = 12) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in rule_patients(n)), encoding="utf-8")
    return path


# --- item 1: --overwrite never deletes the working directory, an input, or a folder leader did not write


def test_overwrite_refuses_the_working_directory_and_its_parents(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    write_cohort(work / "ok.jsonl")
    (work / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    for out in (".", "..", str(work)):
        code = main(["data", "jsonl", "--input", "ok.jsonl", "--out", out, "--overwrite"])
        one_error(capsys, code, "working directory")
    assert snapshot(tmp_path) == before and hidden(work) == []


def test_overwrite_refuses_an_input_or_a_folder_holding_or_inside_one(raw_and_dataset, tmp_path, capsys):
    raw, dataset = raw_and_dataset
    parent = tmp_path / "P"
    root = parent / "mimic"
    shutil.copytree(raw, root)
    shutil.copytree(dataset, root / "prepared")  # a leader folder, but inside the input
    (parent / "unrelated.txt").write_text("keep me")
    before = snapshot(tmp_path)
    cases = [(root, "is the input"), (parent, "holds the input"), (root / "prepared", "is inside the input")]
    for out, expect in cases:
        code = main(["data", "mimic3", "--root", str(root), "--out", str(out), "--overwrite"])
        one_error(capsys, code, expect)
    cohort = tmp_path / "c.jsonl"
    write_cohort(cohort)
    code = main(["data", "jsonl", "--input", str(cohort), "--out", str(cohort), "--overwrite"])
    one_error(capsys, code, "is the input")
    assert snapshot(tmp_path) == before | {"c.jsonl": cohort.read_bytes()}


def test_baseline_overwrite_refuses_its_own_dataset(raw_and_dataset, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(raw_and_dataset[1], data)
    before = snapshot(data)
    code = main(["baseline", "--data", str(data), "--out", str(data), "--method", "frequency", "--overwrite"])
    one_error(capsys, code, "is the input")
    assert snapshot(data) == before


def test_overwrite_refuses_a_folder_leader_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "run.json").write_text('{"not": "a leader run"}')  # a look-alike marker is not enough
    before = snapshot(tmp_path)
    code = main(["data", "synth", "--patients", "5", "--out", str(out), "--overwrite"])
    one_error(capsys, code, "not a folder leader wrote")
    assert snapshot(tmp_path) == before and hidden(tmp_path) == []


def test_overwrite_replaces_a_folder_leader_wrote(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "synth", "--patients", "10", "--out", str(out)]) == 0
    assert main(["data", "synth", "--patients", "12", "--out", str(out)]) == 2  # no --overwrite: refused
    assert main(["data", "synth", "--patients", "12", "--out", str(out), "--overwrite"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synth"]["patients"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary, lock or old copy left


def test_symlinked_out_is_never_written_through(raw_and_dataset, tmp_path, capsys):
    target = tmp_path / "target"
    shutil.copytree(raw_and_dataset[1], target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    before = snapshot(target)
    code = main(["data", "synth", "--patients", "5", "--out", str(link), "--overwrite"])
    one_error(capsys, code, "symbolic link")
    assert snapshot(target) == before and link.is_symlink()
    assert hidden(tmp_path) == []  # no output left in a hidden temporary folder


def test_a_link_planted_at_the_distill_work_folder_is_refused(rule_dataset_path, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "s.partial").symlink_to(elsewhere, target_is_directory=True)
    args = ["distill", "--data", str(rule_dataset_path), "--out", str(tmp_path / "s"), "--no-teacher"]
    code = main([*args, "--epochs", "1", "--dim", "8", "--hidden", "16", "--heads", "2", "--no-progress"])
    one_error(capsys, code, "symbolic link")
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "s").exists()


# --- item 3: one run per --out; a folder appearing at --out mid-run is left alone


def test_two_concurrent_runs_to_one_out(tmp_path):
    out = tmp_path / "same"
    first = leader("data", "synth", "--patients", BIG, "--out", str(out))
    lock = tmp_path / ".same.lock"
    try:
        wait_for(lock.exists, 1.0, "the first run's lock")
    except AssertionError:
        pass  # a version without locks: start the second run anyway, the first is still busy
    assert first.poll() is None, "the first run ended too soon to overlap; raise BIG"
    second = leader("data", "synth", "--patients", "20", "--out", str(out))
    err2 = second.communicate(timeout=300)[1]
    err1 = first.communicate(timeout=300)[1]
    assert first.returncode == 0, err1
    assert second.returncode == 2, err2
    lines = err2.strip().splitlines()
    assert len(lines) == 1 and "being written by another leader run" in lines[0], err2
    assert f"pid {first.pid}" in lines[0]
    assert json.loads((out / "manifest.json").read_text())["synth"]["patients"] == int(BIG)
    assert hidden(tmp_path) == []


def test_a_folder_created_at_out_during_the_run_is_not_deleted(tmp_path):
    out = tmp_path / "out"
    run = leader("data", "synth", "--patients", BIG, "--out", str(out))
    # past its start-up checks: a temporary folder beside --out (raw tables, or the dataset being written)
    wait_for(lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")], 120, "the run to start writing")
    assert run.poll() is None, "the run ended too soon; raise BIG"
    out.mkdir()
    (out / "mine.txt").write_text("created by someone else mid-run")
    err = run.communicate(timeout=300)[1]
    assert run.returncode == 2, err
    lines = err.strip().splitlines()
    assert "appeared while this run was writing it" in lines[-1] and "Traceback" not in err, err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert hidden(tmp_path) == []


# --- item 8: predict and export never replace a file they were not told to


@pytest.fixture(scope="module")
def exported(tmp_path_factory, rule_dataset_path) -> tuple[Path, Path]:
    return chain(tmp_path_factory, rule_dataset_path)


def test_predict_out_never_replaces_its_input_or_model(exported, tmp_path, capsys):
    _, model = exported
    local = tmp_path / "model.onnx"
    shutil.copy(model, local)
    patients = write_cohort(tmp_path / "patients.jsonl", 3)
    before = snapshot(tmp_path)
    base = ["predict", "--model", str(local), "--input", str(patients)]
    for out in (patients, local):
        for flag in ([], ["--overwrite"]):
            one_error(capsys, main([*base, "--out", str(out), *flag]), "is the input")
    old = tmp_path / "recs.jsonl"
    old.write_text("yesterday's results\n")
    one_error(capsys, main([*base, "--out", str(old)]), "already exists")
    assert snapshot(tmp_path) == before | {"recs.jsonl": b"yesterday's results\n"}
    assert main([*base, "--out", str(old), "--overwrite"]) == 0
    assert [json.loads(line)["line"] for line in old.read_text().splitlines()] == [1, 2, 3]


def test_predict_out_a_folder_is_refused_before_any_work(exported, tmp_path, capsys):
    folder = tmp_path / "recs"
    folder.mkdir()
    patients = write_cohort(tmp_path / "patients.jsonl", 2)
    code = main(["predict", "--model", str(exported[1]), "--input", str(patients), "--out", str(folder)])
    one_error(capsys, code, "is a folder")
    assert list(folder.iterdir()) == [] and hidden(tmp_path) == []


def test_export_keeps_an_existing_model_and_its_int8_twin_without_overwrite(exported, tmp_path, capsys):
    student, model = exported
    out = tmp_path / "model.onnx"
    twin = tmp_path / "model.int8.onnx"
    out.write_bytes(b"the model in production")
    twin.write_bytes(b"its int8 twin")
    code = main(["export", "--onnx", "--student", str(student), "--out", str(out)])
    one_error(capsys, code, "already exists")
    assert out.read_bytes() == b"the model in production" and twin.read_bytes() == b"its int8 twin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx", "model.onnx"]
    assert main(["export", "--onnx", "--student", str(student), "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes()[:4] != b"the " and not twin.exists()  # the stale twin goes with the old model


# --- item 9: a bad --out is refused before any work, in one line


def test_out_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["data", "synth", "--patients", "30", "--out", str(tmp_path / "file" / "sub")])
    one_error(capsys, code, "is a file, not a folder")  # one line: no loader progress was printed


def test_out_under_an_unwritable_folder_is_refused_before_any_work(tmp_path):
    # run as another user when root (root may write anywhere): under /tmp, which that user can reach
    base = Path("/tmp") / f"leader-ro-{os.getpid()}" if os.geteuid() == 0 else tmp_path / "base"
    shutil.rmtree(base, ignore_errors=True)
    (base / "ro").mkdir(parents=True)
    try:
        os.chmod(base, 0o755)
        os.chmod(base / "ro", 0o555)
        prefix = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.fail("running as root: this test needs setpriv (util-linux) to run leader as another user")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        argv = [*prefix, sys.executable, "-m", "leader", "data", "synth", "--patients", "30", "--out", "ro/x"]
        run = subprocess.Popen(argv, cwd=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err = run.communicate(timeout=120)[1]
        lines = err.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, err
        assert "cannot write in" in lines[0] and "permission denied" in lines[0], err
        assert os.listdir(base / "ro") == []
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base, ignore_errors=True)


# --- item 10: a SIGKILLed run's leftovers are removed by the next run; never output under the final name


def test_killed_synth_leaves_no_final_output_and_the_next_run_cleans_up(tmp_path):
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    run = leader("data", "synth", "--patients", BIG, "--out", str(tmp_path / "s"), env=env)
    wait_for(lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".s.tmp-")], 120, "a temporary folder")
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (tmp_path / "s").exists()  # never half-written under the final name
    assert hidden(tmp_path) or list(scratch.iterdir())  # the kill left something to clean
    again = leader("data", "synth", "--patients", "20", "--out", str(tmp_path / "s"), env=env)
    err = again.communicate(timeout=300)[1]
    assert again.returncode == 0, err
    assert "leftovers of an interrupted run" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "tmpdir"] and list(scratch.iterdir()) == []


def test_killed_synth_with_raw_does_not_block_the_rerun(tmp_path):
    args = ["data", "synth", "--out", str(tmp_path / "s"), "--raw", str(tmp_path / "r")]
    run = leader(*args, "--patients", BIG, env={"TMPDIR": str(tmp_path)})
    wait_for(lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".s.tmp-")], 120, "the dataset being written")
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (tmp_path / "s").exists()
    again = leader(*args, "--patients", "20", env={"TMPDIR": str(tmp_path)})
    err = again.communicate(timeout=300)[1]
    assert again.returncode == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "s"]
    assert json.loads((tmp_path / "r" / "synth.json").read_text())["patients"] == 20


def test_predict_removes_the_stale_temporary_of_a_killed_run(exported, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free: whatever it left is stale
    stale = tmp_path / f".recs.jsonl.tmp-{dead.pid}-{int(time.time())}-abc123"
    stale.write_text('{"patient_id": "from a killed run"}\n')
    alive = tmp_path / f".recs.jsonl.tmp-{os.getpid()}-{int(time.time())}-def456"  # a live writer's: kept
    alive.write_text("in progress\n")
    patients = tmp_path / "p.jsonl.gz"
    with gzip.open(patients, "wt") as handle:
        handle.write("".join(json.dumps(p) + "\n" for p in rule_patients(2)))
    run = leader(
        "predict", "--model", str(exported[1]), "--input", str(patients), "--out", str(tmp_path / "recs.jsonl")
    )
    err = run.communicate(timeout=120)[1]
    assert run.returncode == 0, err
    assert not stale.exists() and alive.exists()
    assert "removed leftovers of an interrupted run" in err and f"{stale} (pid {dead.pid}, " in err, err


def test_links_planted_at_temporary_or_lock_names_never_redirect_a_write_or_delete(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    planted = tmp_path / f".s.tmp-{dead.pid}-{int(time.time())}-zzz"  # looks like a killed run's leftover
    planted.symlink_to(victim, target_is_directory=True)
    assert main(["data", "synth", "--patients", "10", "--out", str(tmp_path / "s")]) == 0
    assert not planted.is_symlink() and (victim / "precious.txt").read_text() == "keep"  # the link went, not its target
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert "leftovers of an interrupted run" in capsys.readouterr().err
    (tmp_path / ".t.lock").symlink_to(victim / "precious.txt")
    one_error(
        capsys, main(["data", "synth", "--patients", "10", "--out", str(tmp_path / "t")]), "cannot create the lock"
    )
    assert (victim / "precious.txt").read_text() == "keep" and not (tmp_path / "t").exists()


def test_a_teacher_run_is_refused_while_another_holds_its_out(raw_and_dataset, tmp_path):
    from leader.io import lock_out

    out = tmp_path / "teacher"
    with lock_out(out):  # this process plays the first run
        run = leader("teach", "--data", str(raw_and_dataset[1]), "--out", str(out))
        err = run.communicate(timeout=300)[1]
    assert run.returncode == 2, err
    assert f"being written by another leader run (pid {os.getpid()}" in err.strip().splitlines()[-1], err
    assert not out.exists()


def test_report_and_bench_check_out_before_any_work(tmp_path, capsys):
    """`leader report --out` a folder, and `leader bench --out` its own model: one line, exit 2, before any work."""
    assert main(["report", str(tmp_path / "no-such-run"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and len(err.strip().splitlines()) == 1, err
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model; the --out check comes first")
    assert main(["bench", "--model", str(model), "--out", str(model)]) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and len(err.strip().splitlines()) == 1, err
    assert model.read_bytes().startswith(b"not a model")
