"""`leader export --onnx --int8`: onnxruntime dynamic quantization, checked on the validation split.

Dynamic quantization stores the weights of MatMul/Gather (the embeddings, attention and head) as
int8 and quantizes activations on the fly, so no calibration data is needed. The int8 file gets
the fp32 file's metadata again (quantization drops it) plus a ``leader.quantization`` entry with
the validation Jaccard of both models. It is refused when the drop exceeds `max_drop` (0.01
Jaccard) unless forced.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from leader.encoding import INPUTS
from leader.errors import LeaderError
from leader.io import atomic_path
from leader.safejson import loads

from .onnxfile import save_checked, set_metadata
from .runtime import OUTPUT, PREFIX

BATCH = 256


def validation_samples(record: dict, data_path: Path):
    """The student's validation samples, rebuilt from its dataset and recorded split."""
    from leader.cohort import load_dataset
    from leader.samples import rebuild_split

    val = rebuild_split(record, load_dataset(data_path), "val", data_path)
    if not val:
        raise LeaderError(
            f"{data_path}: the validation split is empty, so int8 accuracy cannot be checked; use a larger dataset or export without --int8"
        )
    return val


def onnx_probabilities(path: str | Path, encoder, samples, threads: int = 2) -> np.ndarray:
    """Probabilities [N, M] of an ONNX student on `samples`, in batches (metadata not needed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rows = []
    for start in range(0, len(samples), BATCH):
        arrays = encoder.encode_samples(samples[start : start + BATCH])
        rows.append(session.run([OUTPUT], {k: arrays[k] for k in INPUTS})[0])
    return np.concatenate(rows)


def quantize_checked(
    fp32: Path,
    out: Path,
    meta: dict[str, str],
    record: dict,
    data_path: Path,
    max_drop: float = 0.01,
    force: bool = False,
) -> dict:
    """Write the int8 twin of `fp32` to `out` atomically; returns the check's figures.

    Jaccard is `leader.metrics.jaccard_samples` (|T∩P| / |T∪P| per sample, averaged) at the
    student's thresholds on its validation split.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from leader.encoding import Encoder
    from leader.metrics import jaccard_samples, labels_matrix, predict

    samples = validation_samples(record, data_path)
    encoder = Encoder.from_dict(loads(meta[PREFIX + "encoder"]))
    y_true = labels_matrix(samples, encoder.medications)
    thresholds = record["thresholds"]
    with atomic_path(out) as tmp:
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # quantize_dynamic advises pre-processing on the root logger
        try:
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        jac_fp32 = jaccard_samples(y_true, predict(onnx_probabilities(fp32, encoder, samples), thresholds))
        jac_int8 = jaccard_samples(y_true, predict(onnx_probabilities(tmp, encoder, samples), thresholds))
        check = {
            "method": "onnxruntime dynamic quantization, int8 weights",
            "val_samples": len(samples),
            "val_jaccard_fp32": round(float(jac_fp32), 6),
            "val_jaccard_int8": round(float(jac_int8), 6),
            "jaccard_drop": round(float(jac_fp32 - jac_int8), 6),
            "max_drop": max_drop,
            "forced": bool(force and jac_fp32 - jac_int8 > max_drop),
        }
        if jac_fp32 - jac_int8 > max_drop and not force:
            raise LeaderError(
                f"int8 model loses {jac_fp32 - jac_int8:.4f} validation Jaccard (> {max_drop}); "
                f"{fp32} is written, the int8 file is not; pass --force to keep it anyway"
            )
        proto = onnx.load_model(str(tmp))
        model_info = {**loads(meta[PREFIX + "model"]), "precision": "int8"}
        set_metadata(
            proto, {**meta, PREFIX + "model": json.dumps(model_info), PREFIX + "quantization": json.dumps(check)}
        )
        save_checked(proto, tmp)
    check.update(path=str(out), bytes=out.stat().st_size, fp32_bytes=Path(fp32).stat().st_size)
    return check
