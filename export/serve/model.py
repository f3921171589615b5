"""The served model: a `Recommender` plus what the endpoints say about it, swapped whole on reload."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from leader.data.atc import atc_title
from leader.data.fhir_map import MapOptions
from leader.export.runtime import Recommender
from leader.export.serve.cds import ModelInfo

DEFAULT_LIMITATIONS = (
    "Decision support only, never autonomous prescribing: the model does not see doses, renal or hepatic "
    "function, pregnancy or laboratory values; it knows only the drug classes and population it was trained on; "
    "interaction warnings cover only its DDI list."
)


def card_limitations(card: str) -> str:
    """The 'Limitations' section of a model card (model.md) as one paragraph; '' if it has none."""
    match = re.search(r"^## Limitations\s*$(.*?)(?=^## |\Z)", card, flags=re.M | re.S)
    if not match:
        return ""
    items = [line.strip().removeprefix("- ").strip() for line in match.group(1).splitlines() if line.strip()]
    return " ".join(items)


@dataclass
class Loaded:
    """One loaded ONNX file and everything derived from it (immutable once built)."""

    recommender: Recommender
    info: ModelInfo
    ddi: set[frozenset]
    card: str
    sha256: str
    mapping: MapOptions
    """The FHIR mapping's options, one object per loaded model so its drug name -> ATC-3 cache
    lives across requests (a fresh MapOptions per call would look every drug up again)."""

    @property
    def labeler(self):
        return self.mapping.labeler

    @classmethod
    def load(cls, path: Path, threads: int, card_url: str) -> Loaded:
        rec = Recommender(path, threads=threads)
        card_path = path.with_suffix(".md")
        card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
        versions = rec.meta.get("versions") or {}
        export = versions.get("export") if isinstance(versions, dict) else None
        leader_version = export.get("leader", "?") if isinstance(export, dict) else "?"
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        info = ModelInfo(
            name=f"leader student {path.stem}",
            version=f"v{leader_version} ({sha[:12]})",
            card_url=card_url,
            limitations=card_limitations(card) or DEFAULT_LIMITATIONS,
        )
        mapping = MapOptions()
        mapping.labeler("aspirin")  # load the drug name -> ATC map now, not on the first hook
        ddi = {frozenset(pair) for pair in rec.meta["ddi"]}
        return cls(rec, info, ddi, card, sha, mapping)

    def metadata(self) -> dict:
        """GET /metadata: the model card fields, labels and metrics (no patient data is in the file)."""
        rec = self.recommender
        return {
            "name": self.info.name,
            "version": self.info.version,
            "file": rec.path.name,
            "sha256": self.sha256,
            "format_version": rec.meta["format_version"],
            "dataset_sha256": rec.meta["dataset_sha256"],
            "versions": rec.meta["versions"],
            "labels": [
                {"code": m, "title": atc_title(m) or rec.names.get(m, m), "threshold": float(t)}
                for m, t in zip(rec.medications, rec.thresholds.tolist(), strict=True)
            ],
            "ddi_pairs": len(self.ddi),
            "max_visits": rec.encoder.max_visits,
            "max_codes": rec.encoder.max_codes,
            "metrics": rec.meta["metrics"],
            "limitations": self.info.limitations,
            "model_card": self.info.card_url,
        }
