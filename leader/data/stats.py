"""What a prepared dataset holds (`leader data stats DIR [--json]`)."""

from __future__ import annotations

from pathlib import Path

from leader.cohort import load_dataset


def dataset_stats(path: str | Path) -> dict:
    """Counts and per-visit means of a prepared dataset, plus what its manifest says about mapping."""
    data = load_dataset(path)
    visits = [v for p in data.patients for v in p["visits"]]
    n_patients, n_visits = len(data.patients), len(visits)

    def mean(values) -> float:
        values = list(values)
        return round(sum(values) / len(values), 3) if values else 0.0

    manifest = data.manifest
    coverage = manifest.get("coverage", {})
    return {
        "source": manifest.get("source", ""),
        "patients": n_patients,
        "visits": n_visits,
        "single_visit_patients": sum(len(p["visits"]) == 1 for p in data.patients),
        "single_visit_share": round(sum(len(p["visits"]) == 1 for p in data.patients) / n_patients, 4),
        "visits_per_patient": mean(len(p["visits"]) for p in data.patients),
        "diagnoses_per_visit": mean(len(v["diagnoses"]) for v in visits),
        "procedures_per_visit": mean(len(v["procedures"]) for v in visits),
        "codes_per_visit": mean(len(v["diagnoses"]) + len(v["procedures"]) for v in visits),
        "medications_per_visit": mean(len(v["medications"]) for v in visits),
        "medication_labels": len(data.medications),
        "medication_coding": manifest.get("medication_coding", ""),
        "medication_mapping_coverage": coverage.get("mapped_share"),
        "medication_rows_mapped": coverage.get("mapped_rows"),
        "medication_rows": coverage.get("prescription_rows"),
        "unmapped_drug_names": {str(name): int(rows) for name, rows in coverage.get("unmapped_top", [])},
        "visits_with_note_share": round(sum(bool(v.get("note")) for v in visits) / n_visits, 4),
        "ddi_pairs": len(data.ddi),
        "dropped_visits": manifest.get("drops", {}).get("visits", {}),
        "dropped_patients": manifest.get("drops", {}).get("patients", {}),
    }


def format_stats(stats: dict) -> str:
    """A two-column markdown table of `dataset_stats`."""
    rows = []
    for key, value in stats.items():
        if isinstance(value, dict):  # counts by reason, or the most frequent unmapped drug names with their rows
            value = ", ".join(f"{k.replace('|', '/')} {v:,}" for k, v in value.items() if v) or "none"
        elif isinstance(value, float):
            value = f"{value:.1%}" if key.endswith(("share", "coverage")) else f"{value:.2f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        elif value is None:
            value = "n/a"
        rows.append(f"| {key.replace('_', ' ')} | {value} |")
    return "\n".join(["| statistic | value |", "|---|---|", *rows])
