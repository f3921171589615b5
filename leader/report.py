"""`leader report`: one self-contained HTML page (images embedded) about a set of runs.

It shows the training curves of teacher and student runs (their ``metrics.jsonl``), the results
table and bars comparing the models on Jaccard / PR-AUC / DDI rate for overall, single- and
multi-visit samples (their ``metrics.json``), a histogram of predicted vs true medication counts
(the students' and baselines' test predictions, recomputed; a teacher's only with
``with_teacher``), and a speed and size comparison (a ``leader bench`` JSON).

matplotlib is an optional extra (``pip install leader[report]``); it is imported here only.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leader import __version__
from leader.config import ReportConfig
from leader.errors import LeaderError
from leader.io import check_out_file, read_json, write_text
from leader.metrics import GROUPS
from leader.runinfo import read_run
from leader.safejson import JSONError, loads

PLOTTED = (("jaccard_samples", "Jaccard"), ("pr_auc_samples", "PR-AUC"), ("ddi_score", "DDI rate"))


@dataclass
class _Run:
    folder: Path
    record: dict
    metrics: dict
    log: list[dict] = field(default_factory=list)
    strongest: bool = False
    """The strongest baseline of the report (`leader.baseline.strongest_baseline`): first, marked."""

    @property
    def name(self) -> str:
        return self.record.get("name") or self.folder.name

    @property
    def label(self) -> str:
        """The name in legends: the strongest baseline carries its mark."""
        from leader.baseline import STRONGEST

        return f"{self.name} · {STRONGEST}" if self.strongest else self.name


def _load(folder: Path) -> _Run:
    record = read_run(folder)
    metrics = read_json(folder / "metrics.json", f"{folder}: metrics.json")
    log = []
    if (folder / "metrics.jsonl").is_file():
        for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    entry = loads(line)
                except JSONError as err:
                    raise LeaderError(f"{folder}/metrics.jsonl: a line is {err}; re-run that stage") from None
                # flatten one level: {"train": {"bce": ..}} -> {"train_bce": ..}
                for key, value in list(entry.items()):
                    if isinstance(value, dict):
                        entry.update({f"{key}_{k}": v for k, v in entry.pop(key).items()})
                log.append(entry)
    return _Run(folder, record, metrics, log)


def _strongest_first(runs: list[_Run]) -> list[_Run]:
    """The runs in table order: the strongest baseline (`leader.baseline.strongest_baseline`) first, marked."""
    from leader.baseline import strongest_baseline

    best = strongest_baseline([(r.record, r.metrics) for r in runs])
    if best is None:
        return runs
    runs[best].strongest = True
    return [runs[best]] + [r for i, r in enumerate(runs) if i != best]


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _curves(plt, runs: list[_Run]) -> str | None:
    """Training loss and validation PR-AUC / Jaccard against the step, one panel row per run."""
    logged = [r for r in runs if r.log and r.record.get("kind") in ("teacher", "student")]
    if not logged:
        return None
    fig, axes = plt.subplots(len(logged), 2, figsize=(10, 2.8 * len(logged)), squeeze=False)
    for row, run in zip(axes, logged):
        x_key = next((k for k in ("step", "epoch") if k in run.log[0]), None)
        for ax, pick, label in (
            (row[0], lambda k: "loss" in k or k.startswith("train_") and k != "train_seconds", "losses"),
            (row[1], lambda k: k.startswith("val") and ("pr_auc" in k or "jaccard" in k), "validation"),
        ):
            keys = sorted({k for entry in run.log for k, v in entry.items() if pick(k) and isinstance(v, (int, float))})
            for key in keys:
                points = [
                    (e.get(x_key, i), e[key]) for i, e in enumerate(run.log) if isinstance(e.get(key), (int, float))
                ]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, marker="." if len(points) < 40 else None, label=key)
            ax.set_title(f"{run.name}: {label}", fontsize=9)
            ax.set_xlabel(x_key or "log line")
            if keys:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _value(table: dict, metric: str) -> tuple[float, float]:
    cell = table.get(metric) or {}
    mean = cell.get("mean")
    return (np.nan, 0.0) if mean is None else (mean, cell.get("std") or 0.0)


def _bars(plt, runs: list[_Run], split: str) -> str:
    """One panel per metric, groups overall / single / multi, one point per model with its
    bootstrap std as an error bar. Points, not bars from zero: the models differ by a few
    thousandths, which bars of 0.5 hide, and an axis that does not start at zero must not carry
    bars. The legend sits under the panels, where it covers no point."""
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.2))
    width = 0.8 / max(1, len(runs))
    for ax, (metric, label) in zip(axes, PLOTTED):
        for i, run in enumerate(runs):
            tables = run.metrics.get(split, {})
            stats = [_value(tables.get(g, {}), metric) for g in GROUPS]
            xs = np.arange(len(GROUPS)) + (i - (len(runs) - 1) / 2) * width
            ax.errorbar(
                xs, [s[0] for s in stats], yerr=[s[1] for s in stats], fmt="o", ms=5, capsize=3, label=run.label
            )
        ax.set_xticks(np.arange(len(GROUPS)), GROUPS)
        ax.set_xlim(-0.5, len(GROUPS) - 0.5)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(runs)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * ((len(runs) + 2) // 3), 1, 1))
    return _png(fig)


def _counts(plt, runs: list[_Run], cfg: ReportConfig) -> tuple[str, str] | None:
    """Histogram of predicted vs true medication counts per test sample, and the table of the most
    frequent labels with their titles (`_labels_html`)."""
    from leader.cohort import load_dataset
    from leader.evaluate import predict_run
    from leader.metrics import labels_matrix, predict
    from leader.samples import rebuild_split

    chosen = [r for r in runs if r.record.get("kind") != "teacher" or cfg.with_teacher]
    if not chosen:
        return None
    datasets: dict[str, object] = {}
    series: list[tuple[str, np.ndarray]] = []
    same: list[tuple[str, np.ndarray]] = []  # runs on the first run's dataset: the label table's columns
    truth = labels = first = None
    for run in chosen:
        split = run.record.get("split") or {}
        tested_elsewhere = split.get("how") == "external" and cfg.split == "test"  # on the dataset it names
        if tested_elsewhere and not (cfg.data or split.get("external")):
            print(
                f"note: {run.name} is left out of the count histogram: pass its test dataset as --data", file=sys.stderr
            )
            continue
        path = str(cfg.data or (split["external"] if tested_elsewhere else run.record["dataset"]["path"]))
        if path not in datasets:
            if not Path(path).is_dir():
                return None
            datasets[path] = load_dataset(path)
        dataset = datasets[path]
        samples = rebuild_split(run.record, dataset, cfg.split, run.folder)
        probs = predict_run(run.folder, samples, dataset)
        series.append((run.label, predict(probs, run.record["thresholds"])))
        if truth is None:
            labels, first = labels_matrix(samples, dataset.medications), path
            truth = labels.sum(1)
        if path == first:
            same.append(series[-1])
    if truth is None:
        return None
    table = _labels_html(labels, same, datasets[first])
    series = [(name, picked.sum(1)) for name, picked in series]
    top = int(max([truth.max(), *(s.max() for _, s in series)])) + 1
    bins = np.arange(top + 1) - 0.5
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.hist(truth, bins=bins, histtype="stepfilled", alpha=0.25, color="black", label=f"true (mean {truth.mean():.1f})")
    for name, counts in series:
        ax.hist(counts, bins=bins, histtype="step", linewidth=1.6, label=f"{name} (mean {counts.mean():.1f})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"medications per visit ({cfg.split} split)")
    ax.set_ylabel("visits")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig), table


def _labels_html(labels: np.ndarray, series: list[tuple[str, np.ndarray]], dataset, top: int = 15) -> str:
    """The `top` most frequent true labels with their titles (ATC labels: WHO names) and, per model, how
    many visits it predicts the label for and in how many of the true ones."""
    from leader.data.atc import label_title

    labels = np.asarray(labels) > 0
    order = np.argsort(-labels.sum(0), kind="stable")[:top]
    head = "<tr><th>label</th><th>title</th><th>true</th>" + "".join(
        f"<th>{html.escape(name)} predicted / hit</th>" for name, _ in series
    )
    rows = []
    for j in order:
        label = dataset.medications[j]
        cells = "".join(
            f"<td>{int(picked[:, j].sum())} / {int((picked[:, j] & labels[:, j]).sum())}</td>" for _, picked in series
        )
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(label_title(label, dataset.titles))}</td>"
            f"<td>{int(labels[:, j].sum())}</td>{cells}</tr>"
        )
    return f"<table>{head}</tr>{''.join(rows)}</table>"


def _speed_rows(bench: dict) -> list[dict]:
    """Engines of a `leader bench` JSON (torch student, ONNX fp32, ONNX int8, ...) plus the teacher."""
    rows = [
        {
            "engine": name,
            "p50_ms": e.get("batch1_p50_ms"),
            "p99_ms": e.get("batch1_p99_ms"),
            "throughput": e.get("batch256_grouped_visits_per_s"),
            "size_bytes": e.get("bytes"),
        }
        for name, e in bench.get("engines", {}).items()
    ]
    teacher = bench.get("teacher", {})
    if "per_visit_ms" in teacher:
        rows.append(
            {
                "engine": "teacher (LLM)",
                "p50_ms": teacher["per_visit_ms"],
                "p99_ms": None,
                "throughput": 1000.0 / teacher["per_visit_ms"],
                "size_bytes": teacher.get("bytes"),
            }
        )
    return rows


def read_bench(path: Path) -> dict:
    """A `leader bench --out` JSON, or the median of several (`python -m benchmarks.run --only
    runtime` writes ``{"median": ..., "runs": [...]}``); one clear error for a JSON that is neither,
    rather than a speed section with nothing in it."""
    bench = read_json(path, "bench JSON")
    if isinstance(bench, dict) and "engines" not in bench and isinstance(bench.get("median"), dict):
        bench = bench["median"]
    if not isinstance(bench, dict) or not isinstance(bench.get("engines"), dict) or not bench["engines"]:
        raise LeaderError(
            f"{path}: not a `leader bench` JSON (no engines); pass --bench the file `leader bench --out` wrote"
        )
    return bench


def _speed(plt, bench: dict) -> tuple[str, str]:
    """Per-visit latency and file size per engine as labelled points on log axes (engines differ by
    orders of magnitude, and a bar on a log axis has no true zero to stand on), plus the same
    figures as a table."""
    from matplotlib import ticker

    rows = _speed_rows(bench)
    names = [r["engine"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.9 + 0.45 * len(rows)))
    panels = (
        (
            [r.get("p50_ms") or np.nan for r in rows],
            "per-visit latency, batch 1 (ms, log scale)",
            "tab:blue",
            "{:.3g} ms",
        ),
        (
            [(r.get("size_bytes") or np.nan) / 1e6 for r in rows],
            "model size (MB, log scale)",
            "tab:orange",
            "{:.3g} MB",
        ),
    )
    for ax, (values, title, color, text) in zip(axes, panels):
        ys = np.arange(len(rows))[::-1]
        ax.plot(values, ys, "o", color=color)
        for value, y in zip(values, ys):
            if np.isfinite(value):
                ax.annotate(text.format(value), (value, y), xytext=(6, 4), textcoords="offset points", fontsize=8)
        ax.set_yticks(ys, names, fontsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        if np.isfinite(values).any():
            ax.set_xscale("log")
            low, high = np.nanmin(values), np.nanmax(values)
            ax.set_xlim(low / 2, high * 3)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())  # labelled minor ticks overlap within a decade
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    head = (
        "<tr><th>engine</th><th>p50 ms (batch 1)</th><th>p99 ms</th><th>visits/s (batch 256)</th><th>size MB</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(r['engine'])}</td><td>{_fmt(r.get('p50_ms'), 3)}</td><td>{_fmt(r.get('p99_ms'), 3)}</td>"
        f"<td>{_fmt(r.get('throughput'), 0)}</td><td>{_fmt(r['size_bytes'] / 1e6 if r.get('size_bytes') else None, 2)}</td></tr>"
        for r in rows
    )
    return _png(fig), f"<table>{head}{body}</table>"


def _fmt(value, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:,.{digits}f}"


COLUMNS = (
    ("jaccard_samples", "Jaccard"),
    ("f1_samples", "F1"),
    ("pr_auc_samples", "PR-AUC"),
    ("ddi_score", "DDI rate"),
)


def _row_name(run: _Run) -> str:
    """A results table's first cell: the strongest baseline in bold with its mark."""
    from leader.baseline import STRONGEST

    if run.strongest:
        return f"<b>{html.escape(run.name)}</b> <small>· {STRONGEST}</small>"
    return html.escape(run.name)


def _results_html(runs: list[_Run], split: str) -> str:
    """One table per group (overall / single / multi): models as rows, mean ± std cells."""
    parts = []
    for group in GROUPS:
        head = "<tr><th>model</th>" + "".join(f"<th>{label}</th>" for _, label in COLUMNS)
        head += "<th>meds predicted / true</th><th>visits</th></tr>"
        rows = []
        for run in runs:
            table = (run.metrics.get(split) or {}).get(group) or {"n": 0}
            cells = [_row_name(run)]
            for key, _ in COLUMNS:
                mean, std = _value(table, key) if table.get("n") else (np.nan, 0.0)
                cells.append("—" if np.isnan(mean) else f"{mean:.4f} ± {std:.4f}")
            if table.get("n"):
                cells.append(f"{table['pred_count']['value']:.2f} / {table['true_count']['value']:.2f}")
            else:
                cells.append("—")
            cells.append(str(table.get("n", 0)))
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(f"<h3>{group}</h3><table>{head}{''.join(rows)}</table>")
    return "".join(parts)


def _standings_html(runs: list[_Run], split: str) -> str:
    """Each model's place against the strongest baseline (`leader.baseline.standings`), as a list."""
    from leader.baseline import standings

    lines = standings([(run.label, run.record, run.metrics) for run in runs], split)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in lines[1:])
    return f"<p>{html.escape(lines[0])}</p><ul>{items}</ul>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;padding:0 1rem;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:.95rem;margin:.8rem 0 .2rem}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .45rem;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}.meta{color:#666;font-size:.85rem}
"""


def run(cfg: ReportConfig) -> Path:
    """Build the report and write it atomically to ``cfg.out``."""
    check_out_file(cfg.out, overwrite=True)  # a folder or an unwritable place fails now, not after the work
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LeaderError("leader report needs matplotlib: pip install 'leader[report]'") from None
    if not cfg.runs:
        raise LeaderError("give at least one run folder to report on")
    runs = _strongest_first([_load(Path(folder)) for folder in cfg.runs])
    bench = read_bench(cfg.bench) if cfg.bench else None
    sections = [f"<h1>{html.escape(cfg.title)}</h1>"]
    hashes = sorted({r.record.get("dataset", {}).get("sha256", "")[:12] for r in runs})
    sections.append(
        f"<p class=meta>leader {__version__} · {datetime.date.today().isoformat()} · "
        f"dataset sha256 {', '.join(hashes)} · metrics on the {cfg.split} split, mean ± std over 10 bootstrap rounds of 80%</p>"
    )
    bar = (
        "<p>First row: the strongest baseline (the best validation Jaccard among the baselines), the bar the "
        "other models have to clear.</p>"
        if any(r.strongest for r in runs)
        else ""
    )
    sections.append("<h2>Results</h2>" + bar + _results_html(runs, cfg.split) + _standings_html(runs, cfg.split))
    sections.append(f"<h2>Models compared</h2><img alt='model comparison' src='{_bars(plt, runs, cfg.split)}'>")
    counts = _counts(plt, runs, cfg)
    if counts:
        sections.append(
            "<h2>Predicted vs true medication count</h2><p>Overprescription shows as mass to the right of the true "
            f"counts.</p><img alt='medication counts' src='{counts[0]}'>"
            f"<h2>Most frequent medications</h2><p>Visits of the {cfg.split} split.</p>{counts[1]}"
        )
    curves = _curves(plt, runs)
    if curves:
        sections.append(f"<h2>Training curves</h2><img alt='training curves' src='{curves}'>")
    if bench is not None:
        image, table = _speed(plt, bench)
        sections.append(f"<h2>Speed and size</h2>{table}<img alt='speed and size' src='{image}'>")
    page = f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(cfg.title)}</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    write_text(cfg.out, page)
    return Path(cfg.out)
