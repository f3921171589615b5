"""Atomic outputs: write under a temporary name, rename when complete; claim and guard output folders.

A crash or a user error in the middle of a command never leaves a half-written file or folder
behind under the final name. Every command that writes an output folder follows one rule
(`claim_out`, `atomic_dir`): the folder is checked before any work (its parent must be a writable
folder; it must not be a symbolic link), locked for the run (a second run to the same --out is
refused), and an existing folder is replaced only with --overwrite, only if leader wrote it (its
marker file, `MARKERS`), and never when it is the working directory, holds it, or is, holds or
lies inside an input. Temporary names carry the writer's pid and start time; the next writer of
the same output removes those of a killed run and says so.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from leader.errors import LeaderError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


MARKERS: dict[str, tuple[str, ...] | str] = {
    "manifest.json": ("format_version", "leader_version", "cohort_sha256"),  # a prepared dataset (leader.cohort)
    "run.json": ("kind", "versions"),  # a baseline, teacher or student run (leader.runinfo)
    "state.json": ("step", "total_steps"),  # a teacher's resume checkpoint (leader.teacher.checkpoint)
    "index.json": ("teacher_sha256", "dataset_sha256"),  # a teacher's feature cache (leader.teacher.features)
    "synth.json": ("patients", "seed", "format"),  # raw synthetic tables (leader.data.synth_raw)
    "SOURCE": "by leader",  # a GGUF converted to safetensors (leader.teacher.backbone)
}
"""The file that tells a folder this project wrote: JSON holding these keys, or text holding this phrase.

`--overwrite` replaces a folder only if it carries the marker of the kind being written, so it
can never delete raw data, an input or an unrelated folder.
"""
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-(?P<time>\d+)-")
_CLAIMS: dict[Path, _Claim] = {}


@dataclass
class _Claim:
    """This process's lock on an output path (re-entrant: a stage's run() claims, its writer re-uses)."""

    overwrite: bool
    inputs: tuple[Path, ...]
    existed: bool
    """Whether the output existed when the run claimed it (a folder appearing later is someone else's)."""
    what: str
    """The option that named it, for messages ("--out", "--raw")."""


def out_path(path: str | Path) -> Path:
    """`path` made absolute with its parent's symlinks resolved; the last part is kept as given."""
    absolute = Path(os.path.abspath(path))
    if absolute.parent == absolute:
        raise LeaderError(f"--out {path} is the file system root; choose a folder below it")
    return absolute.parent.resolve() / absolute.name


def has_marker(folder: Path, marker: str) -> bool:
    """True if `folder` is a real folder holding `marker` as this project writes it (see MARKERS)."""
    path = folder / marker
    if folder.is_symlink() or not folder.is_dir() or path.is_symlink() or not path.is_file():
        return False
    if path.stat().st_size > 16 << 20:
        return False
    try:
        text = path.read_text(encoding="utf-8")
        want = MARKERS[marker]
        if isinstance(want, str):
            return want in text
        record = json.loads(text)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and all(key in record for key in want)


def _check_parent(final: Path, shown, what: str = "--out") -> None:
    """The nearest existing ancestor of `final` must be a folder this process can write in."""
    ancestor = final.parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise LeaderError(f"{what} {shown}: {ancestor} is a file, not a folder; choose another {what}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise LeaderError(f"{what} {shown}: cannot write in {ancestor} (permission denied); choose a writable {what}")


def _check_replace(
    final: Path, shown, overwrite: bool, inputs: tuple[Path, ...], marker: str | None, what: str = "--out"
) -> None:
    """Refuse to write `final` unless it is new, or replaceable under the --overwrite rule."""
    if final.is_symlink():
        raise LeaderError(f"{what} {shown} is a symbolic link; give the real path (nothing is written through a link)")
    if not final.exists():
        return
    if not overwrite:
        raise LeaderError(f"{what} {shown} already exists: choose another {what}, or pass --overwrite to replace it")
    cwd = Path.cwd().resolve()
    if final == cwd or final in cwd.parents:
        raise LeaderError(
            f"{what} {shown} is the working directory or holds it; --overwrite would delete it: choose another {what}"
        )
    for item in inputs:
        if final == item or final in item.parents or item in final.parents:
            relation = "is" if final == item else "holds" if final in item.parents else "is inside"
            raise LeaderError(
                f"{what} {shown} {relation} the input {item}; --overwrite would delete input data: choose another {what}"
            )
    if marker is None or not has_marker(final, marker):
        raise LeaderError(
            f"{what} {shown} exists and is not a folder leader wrote (no valid {marker}); --overwrite replaces only "
            f"leader's own output: remove it yourself or choose another {what}"
        )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file, link or folder; never follows a symbolic link."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(final: Path, stale_lock: str = "") -> list[Path]:
    """Remove the temporary files/folders killed writers of `final` left; say so in one line on stderr.

    `stale_lock` describes the lock file of a killed run that `lock_out` just took over (for that line).
    """
    removed, said = [], []
    for entry in final.parent.iterdir() if final.parent.is_dir() else ():
        found = _LEFTOVER.match(entry.name)
        if found and found["name"] == final.name and not _alive(int(found["pid"])):
            _remove(entry)
            removed.append(entry)
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(int(found["time"])))
            said.append(f"{entry} (pid {found['pid']}, {when})")
    if stale_lock:
        said.append(f"its lock {final.with_name(f'.{final.name}.lock')} ({stale_lock})")
    if said:
        print(f"note: removed leftovers of an interrupted run: {'; '.join(said)}", file=sys.stderr)
    return removed


def _temp_prefix(final: Path, kind: str = "tmp") -> str:
    """Temporary names carry the writer's pid and start time so a later run can tell stale leftovers."""
    return f".{final.name}.{kind}-{os.getpid()}-{int(time.time())}-"


def _lock(final: Path, shown, what: str) -> tuple[int, Path, str]:
    """Take the exclusive lock `.NAME.lock` beside `final` (flock: a killed holder releases it)."""
    lock = final.with_name(f".{final.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise LeaderError(
                f"{what} {shown}: cannot create the lock {lock} ({err.strerror}); choose another {what}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise LeaderError(
                f"{what} {shown} is being written by another leader run ({holder}); wait for it or choose another {what}"
            ) from None
        try:
            same = os.stat(lock, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the lock file between our open and flock: take a fresh one
    previous = os.read(fd, 4096).decode("utf-8", "replace").strip()  # a killed holder's pid, host, start
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
    return fd, lock, previous


@contextlib.contextmanager
def lock_out(out: str | Path, what: str = "--out") -> Iterator[Path]:
    """Lock an output path for this process and clean stale leftovers; yield it resolved.

    The lock is ``.NAME.lock`` beside it (pid, host and start time inside, for the message a second
    run gets). A stage that resumes into its own folder (the teacher) uses this alone; others use
    `claim_out`, which adds the --overwrite rule.
    """
    final = out_path(out)
    _check_parent(final, out, what)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LeaderError(
            f"{what} {out}: cannot create {final.parent} ({err.strerror}); choose another {what}"
        ) from None
    fd, lock, previous = _lock(final, out, what)
    try:
        clean_leftovers(final, previous)
        yield final
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def claim_out(
    out: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable = (),
    marker: str | None = None,
    what: str = "--out",
) -> Iterator[Path]:
    """Claim an output folder for the whole run: check it before any work, lock it, clean stale leftovers.

    Refused (LeaderError) when --out is a link, its parent is a file or not writable, another run
    holds it, or it exists and may not be replaced (see `_check_replace`). Yields the resolved path;
    `atomic_dir` on that path inside the block re-checks at the final rename.
    """
    final = out_path(out)
    if final in _CLAIMS:  # this process claimed it already (a stage's run() around its writer)
        yield final
        return
    inputs = tuple(out_path(p).resolve() for p in inputs if p is not None and str(p) != "-")
    _check_parent(final, out, what)
    _check_replace(final, out, overwrite, inputs, marker, what)
    with lock_out(out, what):
        _CLAIMS[final] = _Claim(overwrite, inputs, final.exists() or final.is_symlink(), what)
        try:
            _check_replace(final, out, overwrite, inputs, marker, what)  # again, now that nobody else can start
            yield final
        finally:
            del _CLAIMS[final]


@contextlib.contextmanager
def scratch_dir(final: str | Path) -> Iterator[Path]:
    """A private work folder beside `final`, deleted afterwards (a killed run's is cleaned by the next)."""
    final = out_path(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), dir=final.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False, *, marker: str, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; it becomes `final` only if the block succeeds.

    `final` is claimed (see `claim_out`) unless this process holds it already. At the rename the
    --overwrite rule is checked again: a folder that appeared at `final` meanwhile is never deleted
    unless it is replaceable. The written folder must carry `marker` (one of MARKERS).
    """
    with claim_out(final, overwrite=overwrite, inputs=inputs, marker=marker) as path:
        claim = _CLAIMS[path]
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        try:
            yield tmp
            if not has_marker(tmp, marker):
                raise RuntimeError(f"bug: the folder written for {final} lacks its marker {marker}")
            allowed = claim.overwrite or overwrite
            if not claim.existed and (path.exists() or path.is_symlink()) and not allowed:
                raise LeaderError(
                    f"{final} appeared while this run was writing it; it was left alone and this run's output "
                    f"discarded: remove it or choose another {claim.what}, then run again"
                )
            _check_replace(path, final, allowed, claim.inputs, marker, claim.what)
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path, "old"), dir=path.parent))
                os.replace(path, old / "x")  # out of the way first: a kill now leaves a stale .old- leftover only
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside `final`; it is renamed to `final` if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out_path(final))
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(final), dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)


def check_out_file(out: str | Path, *, overwrite: bool = False, inputs: Iterable = (), what: str = "--out") -> Path:
    """Check an output file before any work: not a folder, not an input, not replaced without --overwrite."""
    final = out_path(out)
    _check_parent(final, out, what)
    if final.is_dir():
        raise LeaderError(f"{what} {out} is a folder; give a file name for {what}")
    for item in inputs:
        if item is not None and str(item) != "-" and final.resolve() == out_path(item).resolve():
            raise LeaderError(
                f"{what} {out} is the input {item}; writing there would destroy it: choose another {what}"
            )
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise LeaderError(f"{what} {out} already exists: choose another {what}, or pass --overwrite to replace it")
    return final


def csv_rows(text: str, path: str | Path, flag: str) -> Iterator[list[str]]:
    """Rows of a small CSV file's text; a row csv cannot parse (a field over its 128 KiB limit) is one LeaderError."""
    reader = csv.reader(io.StringIO(text))
    try:
        yield from reader
    except csv.Error as err:
        raise LeaderError(f"{path}: line {reader.line_num} is not a CSV row ({err}); check {flag}") from None


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    """Write a JSON file atomically, indented and with sorted-as-given keys."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path, what: str = "file") -> dict:
    """Read a JSON file, turning a missing or malformed file into a LeaderError."""
    path = Path(path)
    if not path.is_file():
        raise LeaderError(f"{what} not found: {path}")
    from leader.safejson import JSONError, loads

    try:
        return loads(path.read_bytes())
    except JSONError as err:  # bounded depth and numbers, finite only (leader.safejson)
        raise LeaderError(f"{path}: {err}; regenerate it") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
