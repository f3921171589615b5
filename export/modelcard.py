"""The model card (`model.md`) written next to every export.

It says what the model is for (clinical decision support, never autonomous prescribing), what it
was trained on (source, counts, the cohort's sha256), how good it is (test metrics with their
bootstrap spread, overall and for single- and multi-visit patients, predicted vs true counts),
which thresholds decide the recommended set, what it cannot know, and how to run it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leader.io import write_text
from leader.metrics import GROUPS

_ROWS = (
    ("jaccard_samples", "Jaccard"),
    ("f1_samples", "F1"),
    ("pr_auc_samples", "PR-AUC"),
    ("ddi_score", "DDI rate"),
)


def _cell(table: dict, key: str) -> str:
    value = table.get(key) or {}
    if value.get("mean") is None:
        return "—"
    return f"{value['mean']:.4f} ± {value.get('std') or 0.0:.4f}"


def _metrics_table(metrics: dict) -> str:
    lines = ["| group | visits | " + " | ".join(label for _, label in _ROWS) + " | medications predicted / true |"]
    lines.append("|---" * (len(_ROWS) + 3) + "|")
    for group in GROUPS:
        table = metrics.get(group) or {"n": 0}
        if not table.get("n"):
            lines.append(f"| {group} | 0 | " + " | ".join("—" for _ in _ROWS) + " | — |")
            continue
        counts = f"{table['pred_count']['value']:.2f} / {table['true_count']['value']:.2f}"
        lines.append(f"| {group} | {table['n']} | " + " | ".join(_cell(table, k) for k, _ in _ROWS) + f" | {counts} |")
    return "\n".join(lines)


def _thresholds(thresholds) -> str:
    array = np.asarray(thresholds, dtype=float)
    if array.ndim == 0:
        return f"one threshold for every medication: **{float(array):.3f}**"
    return (
        f"one threshold per medication (median {np.median(array):.3f}, range {array.min():.3f}–{array.max():.3f}); "
        "the exact values are in the file's metadata (`leader.thresholds`)"
    )


def _classes(medications: list[str], names: dict[str, str]) -> list[str]:
    """The drug classes the model can recommend, each with its name (ATC labels: their WHO titles)."""
    from leader.data.atc import label_title

    rows = [f"| `{m}` | {label_title(m, names).replace('|', '/')} |" for m in medications]
    return [
        "## Drug classes",
        "",
        f"The {len(medications)} labels it can recommend:",
        "",
        "| label | name |",
        "|---|---|",
        *rows,
        "",
    ]


def model_card(onnx_path: Path, run: dict, metrics: dict, manifest: dict, names: dict[str, str], extra: dict) -> str:
    """Markdown text of the card. `run` is the student's run.json, `metrics` its metrics.json,
    `manifest` the training dataset's manifest (may be empty), `extra` export facts (sizes, parity,
    int8 drop)."""
    counts = manifest.get("counts", {})
    medications = run.get("medications", [])
    split = run.get("split", {})
    test = metrics.get("test", {})
    int8 = onnx_path.with_name(onnx_path.stem + ".int8.onnx")
    note_tokens = extra.get("max_note_tokens") or 0
    lines = [
        f"# Model card: {onnx_path.name}",
        "",
        f"A `leader` student ({run.get('name', 'student')}): a small multi-encoder network that recommends "
        f"medications (one probability for each of {len(medications)} drug classes) for a hospital visit, "
        "from the visit's diagnoses and procedures"
        + (", its admission note" if note_tokens else "")
        + ", the patient's earlier visits and prescriptions and the patient profile. Distilled from a LoRA-tuned language model following LEADER (arXiv 2402.02803), "
        "with thresholds tuned against overprescription as LAMO (arXiv 2503.03687) recommends."
        + (
            " Its logits include those of a logistic regression fitted on the same training split (the "
            "strongest cheap baseline, its weights inside this file): the network learned what that "
            "regression gets wrong."
            if run.get("prior")
            else ""
        ),
        "",
        "## Intended use",
        "",
        "- Clinical decision support: a ranked list of drug classes for a clinician to review, with "
        "interaction warnings among the recommended drugs.",
        "- **Never autonomous prescribing.** The model does not see doses, allergies as structured data, "
        "renal or hepatic function, pregnancy, laboratory values or the clinician's reasoning; every "
        "recommendation needs a clinician's decision.",
        "- Research and benchmarking of medication recommendation.",
        "",
        "## Training data",
        "",
        f"- Source: `{manifest.get('source', 'unknown')}`; {counts.get('patients', '?')} patients, "
        f"{counts.get('visits', '?')} visits, {counts.get('medications', len(medications))} medication labels "
        f"({manifest.get('options', {}).get('coding', manifest.get('medication_coding', 'see manifest'))} coding), "
        f"{counts.get('ddi_pairs', '?')} drug–drug interaction pairs.",
        f"- Cohort sha256: `{run.get('dataset', {}).get('sha256', '')}`.",
        f"- Split: {split.get('how', '?')} (seed {split.get('seed', '?')}, target {split.get('target', '?')}); "
        "vocabularies were fitted on the training split only.",
        "",
        *_classes(medications, names),
        "## Quality (test split)",
        "",
        "Mean ± std over 10 bootstrap rounds of 80% of the test visits. *single* = visits with no earlier "
        "visit (first admissions), *multi* = visits with history. DDI rate = share of recommended drug pairs "
        "that are known to interact.",
        "",
        _metrics_table(test),
        "",
        f"Decision rule: a medication is recommended when its probability reaches its threshold; "
        f"{_thresholds(run.get('thresholds', 0.5))}. Thresholds were chosen on the validation split so that "
        "the mean number of recommended drugs tracks the true number (no overprescription) while Jaccard is kept.",
        "",
        "## Files",
        "",
        f"- `{onnx_path.name}` (fp32, {extra.get('bytes', 0) / 1e6:.2f} MB): probabilities match the torch "
        f"student within {extra.get('parity_max_abs_error', float('nan')):.1e}.",
    ]
    if int8.exists():
        drop = extra.get("int8_jaccard_drop")
        drop_text = (
            f"validation Jaccard drop {drop:+.4f} against fp32" if drop is not None else "accuracy drop not measured"
        )
        lines.append(f"- `{int8.name}` (int8 dynamic quantization, {int8.stat().st_size / 1e6:.2f} MB): {drop_text}.")
    lines += [
        "- Inside each file's metadata: vocabularies, medication labels and names, thresholds, DDI pairs, "
        "these metrics, the training data's sha256 and the software versions. No patient identifier.",
        "",
        "## Limitations",
        "",
        f"- Population: only patients like those of `{manifest.get('source', 'the training data')}`; "
        "a synthetic cohort is a demonstration, not evidence of clinical quality. Validate on your own "
        "population (`leader evaluate`) before any use.",
        f"- Drug coverage: only these {len(medications)} classes can be recommended; anything else is never "
        "suggested. Prescriptions that could not be mapped to a class were left out of training.",
        "- Unseen codes: diagnoses, procedures or profile values absent from the training split are read as "
        "*unknown*; the runtime reports them for every patient. Many unknown codes mean the model is guessing.",
        f"- History: at most the last {extra.get('max_visits', '?')} visits and {extra.get('max_codes', '?')} codes "
        "of each kind per visit are read; older or further codes are dropped (reported as `truncated`).",
        *(
            [
                f"- Notes: the current visit's admission note is read as a bag of at most {note_tokens} words "
                "(allergies and admission medications first); words that fewer than the minimum number of "
                "training patients used are ignored, so a note in other words than the training notes' says "
                "little. The note is optional."
            ]
            if note_tokens
            else []
        ),
        "- Interaction warnings cover only the pairs in the training dataset's DDI list.",
        "",
        "## How to run it",
        "",
        "```python",
        "from leader.export.runtime import Recommender  # needs only onnxruntime + numpy",
        "",
        f'model = Recommender("{onnx_path.name}")',
        'patient = {"profile": {"gender": "F", "age": 70}, "visits": [{"diagnoses": ["ICD9:4019"], "procedures": []}]}',
        "(rec,) = model.recommend([patient])",
        "print(rec.recommended, rec.ddi_warnings, rec.unknown_codes)",
        "```",
        "",
        f"or `leader predict --model {onnx_path.name} --input patients.jsonl --out recommendations.jsonl`.",
        "",
        "No network: `leader.export` switches onnxruntime's built-in telemetry off (`ORT_DISABLE_TELEMETRY=1`, "
        "set before onnxruntime loads), so serving opens no network connection (checked under strace in CI).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(
    onnx_path: str | Path, run: dict, metrics: dict, manifest: dict, names: dict[str, str], extra: dict
) -> Path:
    """Write ``<name>.md`` next to the ONNX file (atomically) and return its path."""
    onnx_path = Path(onnx_path)
    card = onnx_path.with_suffix(".md")
    write_text(card, model_card(onnx_path, run, metrics, manifest, names, extra))
    return card
