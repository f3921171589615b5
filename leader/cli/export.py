"""`leader export`, `leader predict`, `leader bench` (registered on the shared app).

    leader export --onnx --student runs/student --out model.onnx --int8
    leader predict --model model.onnx --input patients.jsonl --out recs.jsonl --top-k 10
    leader bench --model model.onnx --student runs/student --teacher runs/teacher --out bench.json

Each option is a field of the command's config in `leader.export.config` (`ExportConfig`,
`PredictConfig`, `BenchConfig`): its default and help come from there (`leader.cli.options`).
Library code lives in leader.export; this module only builds the configs and calls run().
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from leader.cli.app import app
from leader.cli.options import option
from leader.export.config import BenchConfig, ExportConfig, PredictConfig


@app.command()
def export(
    student: Path = option(ExportConfig, "student"),
    out: Path = option(ExportConfig, "out"),
    onnx: bool = typer.Option(True, "--onnx", help="Export to ONNX (the one format; the flag only says so)."),
    int8: bool = option(ExportConfig, "int8", "--int8"),
    force: bool = option(ExportConfig, "force", "--force"),
    max_drop: float = option(ExportConfig, "max_drop"),
    data: Path | None = option(ExportConfig, "data"),
    opset: int | None = option(ExportConfig, "opset"),
    overwrite: bool = option(ExportConfig, "overwrite", "--overwrite"),
) -> None:
    """Export a student as one self-describing ONNX file (vocabularies, thresholds, DDI pairs inside)."""
    options = dict(locals())  # besides --onnx, every parameter is an ExportConfig field of the same name
    del options["onnx"]  # ONNX is the one format; the flag only keeps the command line explicit
    from leader.export.onnx_export import run

    cfg = ExportConfig(**options)
    summary = run(cfg)
    typer.echo(
        f"wrote {out} ({summary['bytes'] / 1e6:.2f} MB; |onnx - torch| <= {summary['parity_max_abs_error']:.1e})"
    )
    if "int8" in summary:
        q = summary["int8"]
        typer.echo(
            f"wrote {q['path']} ({q['bytes'] / 1e6:.2f} MB, {q['bytes'] / q['fp32_bytes']:.2f}x fp32); validation "
            f"Jaccard {q['val_jaccard_fp32']:.4f} -> {q['val_jaccard_int8']:.4f} (drop {q['jaccard_drop']:.4f})"
            + (" [kept with --force]" if q["forced"] else "")
        )
    typer.echo(f"wrote {summary['card']} (model card)")


@app.command()
def predict(
    model: Path = option(PredictConfig, "model"),
    input: Path = option(PredictConfig, "input", "--input"),
    out: Path | None = option(PredictConfig, "out"),
    top_k: int = option(PredictConfig, "top_k"),
    batch: int = option(PredictConfig, "batch"),
    threads: int = option(PredictConfig, "threads"),
    overwrite: bool = option(PredictConfig, "overwrite", "--overwrite"),
) -> None:
    """Recommend medications for each patient line (profile + visits; the last visit is the one prescribed for).

    Each output line holds the input line number, patient_id, the recommended set, the top-k ranked medications with probabilities, DDI warnings among the recommended drugs and the unknown codes.

    A line that is not JSON or not a usable patient is reported on stderr with its number and skipped; the others are still served.

    Exit code: 0 when every line was served; 2 when some line was skipped, or --model / --input is unusable.
    """
    cfg = PredictConfig(**locals())  # every parameter is a PredictConfig field of the same name
    from leader.export.predict import run

    counts = run(cfg)
    where = f" to {out}" if out else ""
    print(
        f"served {counts['served']} of {counts['lines']} patients{where}; {counts['bad']} bad lines; "
        f"{counts['unknown_codes']} unknown codes (read as UNK)",
        file=sys.stderr,
    )
    if counts["bad"]:
        raise SystemExit(2)


@app.command()
def bench(
    model: Path = option(BenchConfig, "model"),
    student: Path | None = option(BenchConfig, "student"),
    teacher: Path | None = option(BenchConfig, "teacher"),
    data: Path | None = option(BenchConfig, "data"),
    out: Path | None = option(BenchConfig, "out"),
    samples: int = option(BenchConfig, "samples"),
    latency_calls: int = option(BenchConfig, "latency_calls", "--latency-calls", "--calls"),
    batch_calls: int = option(BenchConfig, "batch_calls"),
    teacher_samples: int = option(BenchConfig, "teacher_samples"),
) -> None:
    """Latency, throughput, file sizes and runtime memory of the exported student vs torch and the teacher."""
    cfg = BenchConfig(**locals())  # every parameter is a BenchConfig field of the same name
    from leader.export.bench import format_report, run

    report = run(cfg)
    typer.echo(format_report(report), nl=False)
    typer.echo(f"wrote {report['out']}", err=True)
