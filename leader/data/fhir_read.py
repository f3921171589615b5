"""Reading FHIR files into a `Store` (`leader data fhir`): in this process, or in worker processes.

    store = Store()
    load(find_files(Path("export/")), store, workers=2)

Reading (gzip, JSON parsing, `Store.add`) is about 80% of an import's CPU time on the Synthea
benchmark, so with ``workers`` > 1 worker processes each read whole files into a Store of their
own and send back only its compact facts, as plain tuples. This process merges them file by file
in the order of `find_files`, so the result is the Store one process would have read: the same
patients, every list in the same order, the first title of a code, the last Patient or Medication
of an id. The patients are then built in this process alone (`fhir_map.build`).

One file is read by one process: an export of a single large file gains nothing (Bulk Data
servers split large types into several files). Files are handed out largest first, and a file's
facts wait in this process until the files before it are merged, so at worst the facts are held
twice for a moment (peak memory of all processes 0.58 GB with two workers, 0.46 GB with one, on
the 1M-resource benchmark). Workers are started with "spawn" (a fresh interpreter: no inherited
threads or locks), so a script that calls `load` or `leader.data.fhir.run` with workers needs
the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import fields
from functools import partial
from pathlib import Path

from leader.cohort import iter_jsonl
from leader.data.fhir_facts import Chart, Store, iter_resources
from leader.errors import LeaderError
from leader.io import read_json

FIRST_TYPES = ("Patient", "Encounter", "Medication")
"""NDJSON files of these types come first (small, and what the others point to)."""
_LISTS = tuple(f.name for f in fields(Chart) if f.name not in ("person", "encounters"))
"""The Chart fields that are lists of facts (conditions, procedures, drugs, ...)."""
MAX_WORKERS = 4
"""Default ceiling of --workers. About a fifth of an import (merging, building the patients,
writing) runs in the main process alone, so more workers gain little (Amdahl), while each holds a
file's facts in memory. Measured on 2 cores only."""


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off inside: reading an export makes millions of small objects
    that live to the end, and the collector would scan them again and again (about 20% of the
    import's CPU time on the Synthea benchmark). Parsed JSON and facts hold no reference cycles:
    reference counting frees what is dropped."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def default_workers() -> int:
    """The CPU cores this process may use, at most MAX_WORKERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_WORKERS))


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".ndjson", ".ndjson.gz")):
        return "ndjson"
    if name.endswith(".json"):
        return "bundle"
    return None


def find_files(path: Path) -> list[Path]:
    """FHIR files at `path`: NDJSON first (Patient, Encounter, Medication, then by name), then Bundles."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and _kind(p))
    if path.is_file() and _kind(path) is None:
        raise LeaderError(f"--input {path}: not a .ndjson, .ndjson.gz or .json file; give FHIR NDJSON or a Bundle")
    if not files:
        raise LeaderError(f"--input {path} holds no .ndjson, .ndjson.gz or .json file; give a FHIR Bulk Data export")

    def order(p: Path) -> tuple:
        rtype = p.name.split(".", 1)[0]
        first = FIRST_TYPES.index(rtype) if rtype in FIRST_TYPES else len(FIRST_TYPES)
        return (_kind(p) != "ndjson", first, p.name)

    return sorted(files, key=order)


def load(files: list[Path], store: Store, workers: int = 1) -> None:
    """Add every resource of `files` to `store`, one NDJSON line or one Bundle at a time.

    `workers` > 1 reads the files in that many processes (at most one per file); the Store is the
    same either way.
    """
    workers = min(workers, len(files))
    if workers <= 1:
        for path in files:
            if not _read(path, store):
                _log_manifest(path)
        return
    # largest files first, so that the last one to finish is small and no worker idles long
    by_size = sorted(range(len(files)), key=lambda i: -files[i].stat().st_size)
    # a worker only reads: its cyclic garbage collector stays off (see paused_gc)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=gc.disable)
    try:
        pending = {i: pool.submit(_read_part, files[i]) for i in by_size}
        for i, path in enumerate(files):  # merged in file order: a bad file's error is the first one's
            try:
                part = pending.pop(i).result()
            except BrokenProcessPool:
                raise LeaderError(
                    f"a process reading the FHIR files died (out of memory?) before {path.name} was read; "
                    "run with fewer --workers (1: no extra process)"
                ) from None
            if part is None:
                _log_manifest(path)
            else:
                _merge(store, part)
    finally:  # after an error: files not started are dropped, the ones being read are finished
        pool.shutdown(cancel_futures=True)


def _log_manifest(path: Path) -> None:
    from leader.data.tables import log  # here: it imports polars, which the workers do not need

    log(f"{path.name}: the Bulk Data export manifest, not resources: skipped")


def _read(path: Path, store: Store) -> bool:
    """Add the resources of one file to `store`; False when it is the export's manifest (no resources)."""
    if _kind(path) == "ndjson":
        add = store.add
        for number, resource in iter_jsonl(path):
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if not isinstance(rtype, str):
                raise LeaderError(
                    f"{path}: line {number} is not a FHIR resource (no resourceType); "
                    "each line of a Bulk Data NDJSON file must be one resource"
                )
            if rtype == "Bundle":
                _add_bundle(store, resource, f"{path}: line {number}")
            else:
                add(resource)
        return True
    document = read_json(path, "FHIR Bundle")
    if isinstance(document, dict) and {"transactionTime", "output"} <= document.keys():
        return False
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise LeaderError(f"{path} is not a FHIR Bundle or resource (no resourceType); give a FHIR R4 Bundle")
    _add_bundle(store, document, str(path))
    return True


def _add_bundle(store: Store, document: dict, where: str) -> None:
    """Add a Bundle's (or one resource's) resources; an entry that is not a resource names `where`."""
    try:
        for resource, aliases in iter_resources(document):
            store.add(resource, aliases)
    except LeaderError as err:
        raise LeaderError(f"{where}: an entry is {err}") from None


def _read_part(path: Path) -> tuple | None:
    """In a worker: the facts of one file, packed (None: the export's manifest). Facts travel as
    plain tuples: pickling NamedTuples and dataclasses calls Python code per object, about 10x slower."""
    part = Store()
    if not _read(path, part):
        return None
    charts = [
        (
            pid,
            c.person,
            list(c.encounters),
            _plain(list(c.encounters.values())),
            [_plain(getattr(c, n)) for n in _LISTS],
        )
        for pid, c in part.charts.items()
    ]
    counters = {name: dict(tally) for name, tally in vars(part).items() if isinstance(tally, Counter)}
    return charts, part.medications, part.titles, counters


def _plain(facts: list) -> tuple[type, list[tuple]] | None:
    return (type(facts[0]), [tuple(f) for f in facts]) if facts else None


def _typed(packed: tuple[type, list[tuple]]) -> Iterator:
    cls, rows = packed
    return map(partial(tuple.__new__, cls), rows)  # the NamedTuple again, without a Python call per fact


def _merge(store: Store, packed: tuple) -> None:
    """Add the facts read from one file to `store`, as `store.add` would have added them."""
    charts, medications, titles, counters = packed
    for pid, person, eids, encounters, facts in charts:
        chart = store.charts.get(pid)
        if chart is None:
            chart = store.charts[pid] = Chart()
        if person is not None:  # the last Patient resource of an id wins
            chart.person = person
        if encounters:
            chart.encounters.update(zip(eids, _typed(encounters), strict=True))
        for name, packed_facts in zip(_LISTS, facts, strict=True):
            if packed_facts:
                getattr(chart, name).extend(_typed(packed_facts))
    store.medications.update(medications)  # the last Medication resource of an id wins
    for code, title in titles.items():  # the first title of a code wins
        store.titles.setdefault(code, title)
    for name, tally in counters.items():
        getattr(store, name).update(tally)
