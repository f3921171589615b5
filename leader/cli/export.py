"""`leader export`, `leader predict`, `leader bench` (registered on the shared app).

    leader export --onnx --student runs/student --out model.onnx --int8
    leader predict --model model.onnx --input patients.jsonl --out recs.jsonl --top-k 10
    leader bench --model model.onnx --student runs/student --teacher runs/teacher --out bench.json

Library code lives in leader.export; this module only turns options into configs and calls run().
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from leader.cli.app import app


@app.command()
def export(
    student: Annotated[Path, typer.Option(help="Student folder (from `leader distill --out DIR`).")],
    out: Annotated[Path, typer.Option(help="The .onnx file to write; --int8 adds NAME.int8.onnx beside it.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the one format; the flag says so).")] = True,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write an int8 (dynamic quantization) twin, checked on validation.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Keep the int8 file even if it loses more than --max-drop validation Jaccard."),
    ] = False,
    max_drop: Annotated[
        float, typer.Option(help="Largest accepted validation-Jaccard drop of the int8 model against the fp32 one.")
    ] = 0.01,
    data: Annotated[
        Path | None, typer.Option(help="The student's prepared dataset (default: the path in its run.json).")
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out and its .int8.onnx twin and .md card.")
    ] = False,
) -> None:
    """Export a student as one self-describing ONNX file (vocabularies, thresholds, DDI pairs inside)."""
    from leader.export.onnx_export import ExportConfig, run

    del onnx  # ONNX is the one format; the flag only keeps the command line explicit
    cfg = ExportConfig(
        student=student, out=out, int8=int8, force=force, max_drop=max_drop, data=data, opset=opset, overwrite=overwrite
    )
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
    model: Annotated[Path, typer.Option(help="The .onnx file from `leader export --onnx`.")],
    input_: Annotated[Path, typer.Option("--input", help="Patients as JSONL (.jsonl or .jsonl.gz; '-' = stdin).")],
    out: Annotated[Path | None, typer.Option(help="Recommendations as JSONL (default: stdout).")] = None,
    top_k: Annotated[int, typer.Option(help="Ranked medications per patient (0 = all).")] = 10,
    batch: Annotated[int, typer.Option(help="Patients per onnxruntime call.")] = 256,
    threads: Annotated[int, typer.Option(help="onnxruntime threads.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file (never --input or --model).")
    ] = False,
) -> None:
    """Recommend medications for each patient line (profile + visits; the last visit is the one prescribed for).

    Each output line holds the input line number, patient_id, the recommended set, the top-k ranked medications with probabilities, DDI warnings among the recommended drugs and the unknown codes.

    A line that is not JSON or not a usable patient is reported on stderr with its number and skipped; the others are still served.

    Exit code: 0 when every line was served; 2 when some line was skipped, or --model / --input is unusable.
    """
    from leader.export.predict import PredictConfig, run

    cfg = PredictConfig(
        model=model, input=input_, out=out, top_k=top_k, batch=batch, threads=threads, overwrite=overwrite
    )
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
    model: Annotated[Path, typer.Option(help="The fp32 .onnx file (NAME.int8.onnx beside it is measured too).")],
    student: Annotated[Path | None, typer.Option(help="Student folder: adds the torch student.")] = None,
    teacher: Annotated[Path | None, typer.Option(help="Teacher run folder: adds its per-visit latency.")] = None,
    data: Annotated[Path | None, typer.Option(help="Prepared dataset for inputs (default: the student's).")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON report (default: NAME.bench.json beside the model).")] = None,
    samples: Annotated[int, typer.Option(help="Samples the timings cycle through.")] = 1024,
    latency_calls: Annotated[
        int, typer.Option("--latency-calls", "--calls", help="Timed batch-1 calls per engine.")
    ] = 2000,
    batch_calls: Annotated[int, typer.Option(help="Timed batch-256 calls per engine.")] = 20,
    teacher_samples: Annotated[
        int, typer.Option(help="Visits the teacher is timed on one by one (twice as many batched).")
    ] = 8,
) -> None:
    """Latency, throughput, file sizes and runtime memory of the exported student vs torch and the teacher."""
    options = dict(locals())  # every parameter is a BenchConfig field of the same name (taken before any import)
    from leader.export.bench import BenchConfig, format_report, run

    report = run(BenchConfig(**options))
    typer.echo(format_report(report), nl=False)
    typer.echo(f"wrote {report['out']}", err=True)
