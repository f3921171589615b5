"""`leader predict`: stream patients (JSONL) through an exported model, one recommendation per line.

    leader predict --model model.onnx --input patients.jsonl --out recs.jsonl --top-k 10

Each input line is a cohort-format patient (profile + visits, the last visit prescribed for). Each
output line is ``{"line": n, "patient_id", "recommended", "ranked": [{"medication", "name",
"probability"}], "ddi_warnings", "unknown_codes", "truncated"}``. A line that is not JSON or not a
usable patient is reported on stderr with its number and skipped; the rest is still served.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO

from leader.errors import LeaderError
from leader.io import atomic_path, check_out_file
from leader.safejson import JSONError, loads

from .config import PredictConfig
from .runtime import Recommender

MAX_REPORTED = 20
"""Bad lines reported one by one on stderr; beyond that only their count."""


def read_lines(path: Path) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed record or None, error or None) for every non-blank line."""
    if str(path) == "-":
        handle: IO[bytes] = sys.stdin.buffer
    elif not path.is_file():
        raise LeaderError(f"input not found: {path}; give a JSONL file of patients (one JSON object per line)")
    else:
        handle = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    with handle if str(path) != "-" else nullcontext(handle):
        try:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    record = loads(raw)  # bounded depth and numbers, finite only (leader.safejson)
                except JSONError as err:
                    yield number, None, str(err)
                    continue
                yield number, record, None
        except (OSError, EOFError) as err:
            raise LeaderError(f"{path}: cannot read ({err}); is it a complete .jsonl or .jsonl.gz file?") from None


def run(cfg: PredictConfig) -> dict:
    """Serve every line; returns counts ``{"lines", "served", "bad", "unknown_codes"}``."""
    from tqdm import tqdm

    if cfg.out:
        check_out_file(cfg.out, overwrite=cfg.overwrite, inputs=[cfg.input, cfg.model])
    recommender = Recommender(cfg.model, threads=cfg.threads)
    top_k = None if cfg.top_k == 0 else cfg.top_k
    counts = {"lines": 0, "served": 0, "bad": 0, "unknown_codes": 0}
    bar = tqdm(unit=" patients", file=sys.stderr, disable=None, desc="predict")

    def bad(number: int, message: str) -> None:
        counts["bad"] += 1
        if counts["bad"] <= MAX_REPORTED:
            tqdm.write(f"line {number}: {message}; skipped", file=sys.stderr)

    def flush(pending: list[tuple[int, object]], sink: IO[str]) -> None:
        results = recommender.recommend([record for _, record in pending], top_k=top_k)
        for (number, _), result in zip(pending, results, strict=True):
            if not result.ok:
                bad(number, result.error)
                continue
            counts["served"] += 1
            counts["unknown_codes"] += len(result.unknown_codes)
            sink.write(json.dumps({"line": number, **result.to_dict(recommender.names)}, ensure_ascii=False) + "\n")
        bar.update(len(pending))
        pending.clear()

    with atomic_path(cfg.out) if cfg.out else nullcontext(None) as tmp:
        sink = open(tmp, "w", encoding="utf-8") if tmp else sys.stdout
        try:
            pending: list[tuple[int, object]] = []
            for number, record, error in read_lines(cfg.input):
                counts["lines"] += 1
                if error:
                    bad(number, error)
                    bar.update(1)
                    continue
                pending.append((number, record))
                if len(pending) >= cfg.batch:
                    flush(pending, sink)
            if pending:
                flush(pending, sink)
        finally:
            if tmp:
                sink.close()
            bar.close()
    if counts["bad"] > MAX_REPORTED:
        print(f"... and {counts['bad'] - MAX_REPORTED} more bad lines", file=sys.stderr)
    return counts
