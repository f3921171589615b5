"""`leader export --onnx`: a student folder -> one self-describing ONNX file (+ an int8 twin).

    leader export --onnx --student runs/student --out model.onnx [--int8] [--data DIR]

The graph is the student followed by a sigmoid (output ``probabilities`` [B, M]), exported with
``torch.onnx.export(dynamo=True)``; its inputs are `leader.encoding.INPUTS` (a student without a
note encoder ignores ``notes``); batch, visit, the three code axes, the profile and the note axis
are dynamic (each array has its own axis), so any `Encoder.encode` batch runs. The file is checked with
``onnx.checker`` (full check) and against torch on shapes unlike the export example before it is
renamed into place. Vocabularies, limits, labels and their names, thresholds, DDI pairs, test
metrics, the training data's sha256 and the versions go into ``metadata_props`` (see runtime.KEYS).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from leader.data.atc import label_title
from leader.encoding import INPUTS
from leader.errors import LeaderError
from leader.io import atomic_path, check_out_file

from .config import ExportConfig
from .onnxfile import save_checked, set_metadata
from .runtime import FORMAT_VERSION, OUTPUT, PREFIX, open_session

PARITY_TOL = 1e-5
"""Largest |p_onnx - p_torch| accepted on probabilities."""
EXAMPLE = {"batch": 3, "visits": 4, "codes": (5, 6, 7), "profile": 8, "notes": 9}
"""Shape of the export example: all sizes distinct and > 1 so torch.export keeps every axis symbolic."""


def random_batch(
    encoder,
    batch: int,
    visits: int,
    codes: tuple[int, int, int],
    profile: int,
    seed: int = 0,
    empty: float = 0.0,
    notes: int = 1,
) -> dict[str, np.ndarray]:
    """Arrays shaped like `Encoder.encode` output, filled with random in-vocabulary ids.

    Each row has 1..`visits` real visits (left-aligned) and each code list a random length up to its
    width; with `empty` > 0, that share of visits has no codes of a type and that share of rows no
    note. Slot 0's medications are empty, as `Encoder.encode` makes them. The note array is `notes`
    wide (all padding when the encoder has no note vocabulary). For parity checks and benchmarks,
    not for training.
    """
    rng = np.random.default_rng(seed)
    n_visits = rng.integers(1, visits + 1, size=batch)
    n_visits[0] = visits  # the widest row always exists, so every axis is used to its full size
    mask = (np.arange(visits)[None, :] < n_visits[:, None]).astype(np.float32)
    out = {}
    for kind, width in zip(("diagnoses", "procedures", "medications"), codes, strict=True):
        size = len(encoder.vocabs[kind])
        ids = rng.integers(2, max(3, size), size=(batch, visits, width)).clip(max=size - 1)
        lengths = rng.integers(1, width + 1, size=(batch, visits))
        lengths[0, 0] = width
        lengths[rng.random((batch, visits)) < empty] = 0
        if kind == "medications":
            lengths[:, 0] = 0
        ids[np.arange(width)[None, None, :] >= lengths[..., None]] = 0
        out[kind] = ids * mask[..., None].astype(np.int64)
    size = len(encoder.vocabs["profile"])
    prof = rng.integers(2, max(3, size), size=(batch, profile)).clip(max=size - 1)
    prof[np.arange(profile)[None, :] >= rng.integers(1, profile + 1, size=(batch, 1))] = 0
    out["profile"] = prof
    out["visit_mask"] = mask
    out["notes"] = np.zeros((batch, notes), dtype=np.int64)
    if encoder.reads_notes:
        size = len(encoder.vocabs["notes"])
        ids = rng.integers(2, max(3, size), size=(batch, notes)).clip(max=size - 1)
        lengths = rng.integers(1, notes + 1, size=batch)
        lengths[0] = notes
        lengths[rng.random(batch) < empty] = 0
        out["notes"] = np.where(np.arange(notes)[None, :] < lengths[:, None], ids, 0)
    return out


def torch_probs(model, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The student's probabilities in torch, float32 [B, M]."""
    import torch

    with torch.inference_mode():
        logits = model(*(torch.as_tensor(arrays[k]) for k in INPUTS))
        return torch.sigmoid(logits).numpy()


def to_onnx(model, encoder, opset: int | None = None):
    """Export `model` (a Student, eval mode) with a sigmoid on top; returns the onnx.ModelProto."""
    import torch
    from torch.export import Dim

    class Probabilities(torch.nn.Module):
        def __init__(self, student):
            super().__init__()
            self.student = student

        def forward(self, diagnoses, procedures, medications, profile, visit_mask, notes):
            # a student without a note encoder ignores `notes`: every export has the same inputs
            return torch.sigmoid(self.student(diagnoses, procedures, medications, profile, visit_mask, notes))

    sizes = (EXAMPLE[k] for k in ("batch", "visits", "codes", "profile"))
    example = random_batch(encoder, *sizes, seed=1, notes=EXAMPLE["notes"])
    batch, visits = Dim("batch"), Dim("visits")
    dims = {
        "diagnoses": {0: batch, 1: visits, 2: Dim("diagnosis_codes")},
        "procedures": {0: batch, 1: visits, 2: Dim("procedure_codes")},
        "medications": {0: batch, 1: visits, 2: Dim("medication_codes")},
        "profile": {0: batch, 1: Dim("profile_tokens")},
        "visit_mask": {0: batch, 1: visits},
        "notes": {0: batch, 1: Dim("note_tokens")},
    }
    model.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" etc.
    with warnings.catch_warnings():  # the exporter's own deprecation chatter is not the user's concern
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            Probabilities(model).eval(),
            tuple(torch.as_tensor(example[k]) for k in INPUTS),
            dynamo=True,
            dynamic_shapes=dims,
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    for node in proto.graph.node:  # stack traces and source paths of this machine: 80% of a small file
        del node.metadata_props[:]
        node.doc_string = ""
    return proto


def parity_cases(encoder) -> list[dict[str, np.ndarray]]:
    """Shapes unlike the export example: batch 1/7/256, 1 and 40 visits, code lists of 1 and 50,
    visits with no codes of a type, notes of 1 to 300 words and patients without a note."""
    return [
        random_batch(encoder, 1, 1, (1, 1, 1), 1, seed=11),
        random_batch(encoder, 7, 40, (50, 1, 50), 3, seed=12, empty=0.3, notes=300),
        random_batch(encoder, 256, 2, (1, 50, 3), 5, seed=13, empty=0.5, notes=20),
    ]


def max_parity_error(model, onnx_path: str | Path, cases: list[dict[str, np.ndarray]]) -> float:
    """Largest |onnxruntime - torch| over the probabilities of all `cases` (NaN counts as infinite),
    in a session opened as the runtime opens it (`open_session`: the graph rewrites it serves with)."""
    session = open_session(onnx_path)
    worst = 0.0
    for arrays in cases:
        got = session.run([OUTPUT], {k: arrays[k] for k in INPUTS})[0]
        want = torch_probs(model, arrays)
        if got.shape != want.shape or not np.isfinite(got).all():
            return float("inf")
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def build_metadata(
    run: dict, encoder, names: dict[str, str], ddi: list[tuple[str, str]], metrics: dict, **extra
) -> dict[str, str]:
    """The ``leader.*`` metadata_props (values are JSON text). Nothing here identifies a patient:
    code and note-word vocabularies (each token carried by at least min-patients training patients),
    labels, thresholds, aggregate metrics, a hash and versions only."""
    from leader.runinfo import versions

    meta = {
        "format_version": FORMAT_VERSION,
        "encoder": encoder.to_dict(),
        "medication_names": {m: label_title(m, names) for m in encoder.medications},  # ATC: WHO name if untitled
        "thresholds": run["thresholds"],
        "ddi": [list(p) for p in ddi],
        "metrics": metrics.get("test", {}),
        "dataset_sha256": run.get("dataset", {}).get("sha256", ""),
        "versions": {"export": versions(), "training": run.get("versions", {})},
        "model": {"name": run.get("name", "student"), "split": run.get("split", {}), "precision": "fp32"},
        **extra,
    }
    return {PREFIX + k: json.dumps(v, ensure_ascii=False, sort_keys=False) for k, v in meta.items()}


def _names_and_dataset_path(cfg: ExportConfig, run: dict) -> tuple[dict[str, str], Path | None]:
    path = cfg.data or (Path(run["dataset"]["path"]) if run.get("dataset", {}).get("path") else None)
    if path is None or not (path / "vocab.json").is_file():
        return {}, None
    from leader.io import read_json

    return read_json(path / "vocab.json", "vocab").get("titles", {}), path


def int8_path(path: Path) -> Path:
    """model.onnx -> model.int8.onnx (where `leader bench` and `leader predict` users look)."""
    return path.with_name(path.stem + ".int8" + (path.suffix or ".onnx"))


def run(cfg: ExportConfig) -> dict:
    """Export the student and write its model card (NAME.md, see modelcard.py); returns a summary
    (paths, sizes, parity error, int8 check)."""
    from leader.cohort import read_ddi
    from leader.io import read_json
    from leader.student import load_student

    from .modelcard import write_model_card

    if cfg.out.suffix != ".onnx":
        raise LeaderError(f"--out must end in .onnx, got {cfg.out}")
    for path in (cfg.out, int8_path(cfg.out), cfg.out.with_suffix(".md")):  # the model, its int8 twin, its card
        check_out_file(path, overwrite=cfg.overwrite)
    model, encoder, record = load_student(cfg.student)
    if list(record.get("medications", encoder.medications)) != list(encoder.medications):
        raise LeaderError(
            f"{cfg.student}: run.json and encoder.json disagree on the medication labels; re-run `leader distill`"
        )
    metrics = (
        read_json(cfg.student / "metrics.json", "student metrics") if (cfg.student / "metrics.json").is_file() else {}
    )
    ddi = read_ddi(cfg.student / "ddi.csv") if (cfg.student / "ddi.csv").is_file() else []
    names, data_path = _names_and_dataset_path(cfg, record)
    if data_path is None:
        print(
            "note: dataset not found (pass --data DIR): medication names default to the WHO names of ATC labels, else the labels",
            file=sys.stderr,
        )
    if cfg.int8 and data_path is None:
        raise LeaderError("--int8 checks accuracy on the validation split: pass --data DIR (the student's dataset)")
    meta = build_metadata(record, encoder, names, ddi, metrics)
    summary: dict = {
        "onnx": str(cfg.out),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
    }
    with atomic_path(cfg.out) as tmp:
        proto = to_onnx(model, encoder, cfg.opset)
        set_metadata(proto, meta)
        save_checked(proto, tmp)
        error = max_parity_error(model, tmp, parity_cases(encoder))
        if not error <= PARITY_TOL:
            raise RuntimeError(
                f"ONNX output differs from torch by {error:.2e} (> {PARITY_TOL}); please report this bug"
            )
        summary.update(parity_max_abs_error=error, bytes=tmp.stat().st_size)
    twin = int8_path(cfg.out)
    if twin.exists():  # it belonged to the model just replaced; a stale twin would be served and benched
        twin.unlink()
        print(f"note: removed {twin}, the int8 twin of the previous export", file=sys.stderr)
    manifest = read_json(data_path / "manifest.json", "dataset manifest") if data_path else {}
    card = {
        "bytes": summary["bytes"],
        "parity_max_abs_error": error,
        "max_visits": encoder.max_visits,
        "max_codes": encoder.max_codes,
        "max_note_tokens": encoder.max_note_tokens,
    }
    summary["card"] = str(write_model_card(cfg.out, record, metrics, manifest, names, card))
    if cfg.int8:  # after the fp32 file is in place: a refused int8 model leaves the fp32 one valid
        from .quantize import quantize_checked

        summary["int8"] = quantize_checked(cfg.out, twin, meta, record, data_path, cfg.max_drop, cfg.force)
        card["int8_jaccard_drop"] = summary["int8"]["jaccard_drop"]
        write_model_card(cfg.out, record, metrics, manifest, names, card)
    return summary
