"""The configs of `leader export`, `leader predict` and `leader bench` (one dataclass each, a
docstring under every field).

They live apart from the stages so the CLI reads their defaults and help (`leader.cli.options`)
without importing numpy, onnx or onnxruntime: this module needs only the standard library and
`leader.errors`. `leader.export.onnx_export`, `.predict` and `.bench` re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leader.errors import LeaderError


@dataclass
class ExportConfig:
    """What `leader export --onnx` does."""

    student: Path
    """Student folder written by `leader distill --out DIR`."""
    out: Path
    """The .onnx file to write (the int8 twin goes next to it as NAME.int8.onnx)."""
    int8: bool = False
    """Also write the onnxruntime dynamic-quantization (int8 weights) variant."""
    force: bool = False
    """Keep the int8 file even when it loses more than --max-drop validation Jaccard."""
    max_drop: float = 0.01
    """Largest accepted validation-Jaccard drop of the int8 model against the fp32 one."""
    data: Path | None = None
    """Prepared dataset the student was trained on (default: the path in the student's run.json);
    needed for --int8 (validation split) and for the medication names."""
    opset: int | None = None
    """ONNX opset; None = the exporter's default."""
    overwrite: bool = False
    """Replace an existing --out (and its NAME.int8.onnx and NAME.md); without it they are never touched."""


@dataclass
class PredictConfig:
    """What `leader predict` does."""

    model: Path
    """The .onnx file from `leader export --onnx`."""
    input: Path
    """Patients, one JSON object per line (.jsonl or .jsonl.gz); '-' reads stdin."""
    out: Path | None = None
    """Where to write the recommendations (JSONL, written atomically); None = stdout."""
    top_k: int = 10
    """Ranked medications listed per patient (0 = all); the recommended set is always complete."""
    batch: int = 256
    """Patients per onnxruntime call."""
    threads: int = 1
    """Threads that run pieces of a batch side by side (each on a one-thread onnxruntime session)."""
    overwrite: bool = False
    """Replace an existing --out file (never --input or --model, never a folder)."""

    def __post_init__(self):
        if self.top_k < 0:
            raise LeaderError(f"--top-k must be 0 (all) or positive, got {self.top_k}")
        if self.batch < 1:
            raise LeaderError(f"--batch must be positive, got {self.batch}")


@dataclass
class BenchConfig:
    """What `leader bench` measures."""

    model: Path
    """The fp32 .onnx file; NAME.int8.onnx beside it is measured too when present."""
    student: Path | None = None
    """Student folder: adds the torch student, and gives the dataset and split when --data is absent."""
    teacher: Path | None = None
    """Teacher run folder: adds the teacher's per-visit latency (skipped when absent)."""
    data: Path | None = None
    """Prepared dataset for realistic inputs (default: the student's); else random patients."""
    out: Path | None = None
    """JSON report (default: NAME.bench.json beside the model)."""
    samples: int = 1024
    """Size of the pool of samples the timings cycle through."""
    latency_calls: int = 2000
    """Timed batch-1 calls per engine (after a warm-up)."""
    batch_calls: int = 20
    """Timed batch-256 calls per engine."""
    teacher_samples: int = 8
    """Visits the teacher is timed on one by one (twice as many batched)."""
