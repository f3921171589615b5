"""Serve an exported student: onnxruntime + numpy + `leader.encoding`, never torch.

    from leader.export.runtime import Recommender
    rec = Recommender("model.onnx", threads=1)
    [out] = rec.recommend([{"profile": {"gender": "F", "age": 71},
                            "visits": [{"diagnoses": ["ICD9:4019"], "procedures": []}]}])
    out.recommended, out.ranked[:5], out.ddi_warnings, out.unknown_codes

A patient is a cohort-format record (DESIGN.md): a profile and visits, the last visit being the one
to prescribe for (its medications, if any, are ignored). Everything the model needs to read a
patient (vocabularies, limits, labels, thresholds, DDI pairs) is inside the ONNX file's
``metadata_props`` (keys below), so the file alone is the deployable model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from leader.encoding import CODE_TYPES, Encoder, profile_tokens
from leader.errors import LeaderError

FORMAT_VERSION = 1
"""Version of the metadata layout below; a runtime refuses files written by a newer one."""
PREFIX = "leader."
KEYS = ("format_version", "encoder", "medication_names", "thresholds", "ddi", "metrics", "dataset_sha256", "versions")
"""Required metadata keys (each stored as ``leader.<key>``, its value JSON text)."""
INPUTS = ("diagnoses", "procedures", "medications", "profile", "visit_mask")
OUTPUT = "probabilities"


def read_metadata(path: str | Path, meta: dict[str, str]) -> dict:
    """Decode and check the ``leader.*`` metadata of an ONNX file (`meta` is its metadata map)."""
    if PREFIX + "format_version" not in meta:
        raise LeaderError(f"{path} is an ONNX model without leader metadata; export it with `leader export --onnx`")
    out = {}
    for key in KEYS:
        if PREFIX + key not in meta:
            raise LeaderError(
                f"{path}: leader metadata lacks '{key}'; export the model again with `leader export --onnx`"
            )
        try:
            out[key] = json.loads(meta[PREFIX + key])
        except json.JSONDecodeError:
            raise LeaderError(f"{path}: leader metadata '{key}' is not valid JSON; export the model again") from None
    for key, text in meta.items():  # optional extras, e.g. leader.quantization
        if key.startswith(PREFIX) and key[len(PREFIX) :] not in out:
            try:
                out[key[len(PREFIX) :]] = json.loads(text)
            except json.JSONDecodeError:
                out[key[len(PREFIX) :]] = text
    version = out["format_version"]
    if not isinstance(version, int):
        raise LeaderError(f"{path}: leader format version '{version}' is not an integer; export the model again")
    if version > FORMAT_VERSION:
        raise LeaderError(
            f"{path} was written with leader model format version {version}, this leader reads up to "
            f"{FORMAT_VERSION}; upgrade leader (pip install -U leader) to serve it"
        )
    return out


@dataclass
class Recommendation:
    """What the model says about one patient (or why it could not)."""

    patient_id: str | int | None = None
    """Echoed from the input so results can be matched; never logged."""
    ranked: list[tuple[str, float]] = field(default_factory=list)
    """(medication label, probability), most probable first (the top-k asked for)."""
    recommended: list[str] = field(default_factory=list)
    """Labels whose probability reaches the model's threshold, most probable first."""
    ddi_warnings: list[tuple[str, str]] = field(default_factory=list)
    """Pairs of recommended medications known to interact."""
    unknown_codes: list[str] = field(default_factory=list)
    """Input codes (and ``profile:`` tokens) the vocabularies have never seen; they were read as UNK."""
    truncated: bool = False
    """True when visits or codes beyond the model's limits were dropped (the oldest visits go first)."""
    error: str | None = None
    """Set when the patient record is unusable; all other fields are then empty."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, names: dict[str, str] | None = None) -> dict:
        """JSON-ready form; `names` adds each medication's title."""
        names = names or {}
        if self.error is not None:
            return {"patient_id": self.patient_id, "error": self.error}
        return {
            "patient_id": self.patient_id,
            "recommended": self.recommended,
            "ranked": [{"medication": m, "name": names.get(m, m), "probability": round(p, 6)} for m, p in self.ranked],
            "ddi_warnings": [list(pair) for pair in self.ddi_warnings],
            "unknown_codes": self.unknown_codes,
            "truncated": self.truncated,
        }


def check_patient(patient) -> str | None:
    """Why a patient record cannot be served, or None when it can."""
    if not isinstance(patient, dict):
        return f"a patient must be a JSON object, got {type(patient).__name__}"
    profile = patient.get("profile", {})
    if not isinstance(profile, dict):
        return '\'profile\' must be a JSON object (e.g. {"gender": "F", "age": 70})'
    visits = patient.get("visits")
    if not isinstance(visits, list):
        return "missing 'visits': give a list of visits, the last being the one to prescribe for"
    if not visits:
        return "patient has no visits; give at least the visit to prescribe for"
    for v, visit in enumerate(visits, 1):
        if not isinstance(visit, dict):
            return f"visit {v} must be a JSON object"
        for kind in CODE_TYPES:
            codes = visit.get(kind, [])
            if kind == "medications" and v == len(visits):
                continue  # the visit prescribed for: its medications are what we predict
            if kind == "medications" and "medications" not in visit:
                return f"visit {v} lacks 'medications' (earlier visits need the drugs given then; [] if none)"
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                return f"visit {v}: '{kind}' must be a list of strings"
        if not visit.get("diagnoses") and not visit.get("procedures"):
            return f"visit {v} has no codes (no diagnoses and no procedures); drop it or add its codes"
    return None


class Recommender:
    """An exported student loaded in onnxruntime; see the module docstring."""

    def __init__(self, path: str | Path, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise LeaderError(f"model file not found: {path}; export one with `leader export --onnx`")
        if threads < 1:
            raise LeaderError(f"--threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
        # idle worker threads sleep instead of spinning: on a CPU shared with other work, spinning
        # threads steal the cores they wait for (measured: 2-thread batch-256 throughput +30% here)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LeaderError(
                f"{path} is not a loadable ONNX model ({first[:200]}); pass the .onnx file from `leader export --onnx`"
            ) from None
        self.path = path
        self.meta = read_metadata(path, self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        if names != list(INPUTS) or [o.name for o in self.session.get_outputs()] != [OUTPUT]:
            raise LeaderError(
                f"{path}: inputs {names} are not those of a leader student; export it with `leader export --onnx`"
            )
        try:
            self.encoder = Encoder.from_dict(self.meta["encoder"])
            self.medications = list(self.encoder.medications)
            self.names: dict[str, str] = dict(self.meta["medication_names"])
            # float64 like leader.metrics.predict, so borderline probabilities fall the same way
            thresholds = np.asarray(self.meta["thresholds"], dtype=np.float64)
            self.thresholds = np.broadcast_to(thresholds, (len(self.medications),)).copy()
        except (KeyError, TypeError, ValueError) as err:
            raise LeaderError(f"{path}: leader metadata is inconsistent ({err}); export the model again") from None
        index = {m: i for i, m in enumerate(self.medications)}
        self.ddi = np.zeros((len(self.medications),) * 2, dtype=bool)
        for a, b in self.meta["ddi"]:
            if a in index and b in index:
                self.ddi[index[a], index[b]] = self.ddi[index[b], index[a]] = True

    def predict_arrays(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities float32 [B, n_medications] for arrays from `Encoder.encode`."""
        return self.session.run([OUTPUT], {k: arrays[k] for k in INPUTS})[0]

    def encode(self, patients: list[dict]) -> dict[str, np.ndarray]:
        """Arrays for valid patients; the current visit's medications never reach the model."""
        visit_lists = [[*p["visits"][:-1], {**p["visits"][-1], "medications": []}] for p in patients]
        return self.encoder.encode([p.get("profile") or {} for p in patients], visit_lists)

    def predict(self, patients: list[dict]) -> np.ndarray:
        """Probabilities [N, M] of valid patients. Patients are run in groups of equal history
        length, so a batch is not padded to its longest history (3x faster on typical cohorts);
        the model masks padding, so the grouping does not change any probability."""
        probs = np.empty((len(patients), len(self.medications)), dtype=np.float32)
        groups: dict[int, list[int]] = {}
        for i, patient in enumerate(patients):
            groups.setdefault(min(len(patient["visits"]), self.encoder.max_visits), []).append(i)
        for rows in groups.values():
            probs[rows] = self.predict_arrays(self.encode([patients[i] for i in rows]))
        return probs

    def recommend(self, patients: list[dict], top_k: int | None = None) -> list[Recommendation]:
        """One `Recommendation` per patient, in order; bad records get `error` set, the rest are served."""
        results = [Recommendation(patient_id=_patient_id(p), error=check_patient(p)) for p in patients]
        good = [i for i, r in enumerate(results) if r.ok]
        if not good:
            return results
        batch = [patients[i] for i in good]
        probs = self.predict(batch)
        k = len(self.medications) if top_k is None else max(0, min(top_k, len(self.medications)))
        order = np.argsort(-probs, axis=1, kind="stable")
        ranked_probs = np.take_along_axis(probs, order, axis=1).tolist()
        above = np.take_along_axis(probs >= self.thresholds, order, axis=1)
        labels = self.medications
        for row, (i, patient) in enumerate(zip(good, batch, strict=True)):
            ranks = order[row]
            chosen = ranks[above[row]]  # recommended, most probable first
            pairs = np.argwhere(np.triu(self.ddi[np.ix_(chosen, chosen)], 1)).tolist()
            res = results[i]
            res.ranked = list(zip([labels[j] for j in ranks[:k].tolist()], ranked_probs[row][:k], strict=True))
            res.recommended = [labels[j] for j in chosen.tolist()]
            res.ddi_warnings = [(labels[chosen[a]], labels[chosen[b]]) for a, b in pairs]
            res.unknown_codes, res.truncated = self._unknown_and_truncated(patient)
        return results

    def _unknown_and_truncated(self, patient: dict) -> tuple[list[str], bool]:
        """Codes the vocabularies lack (the current visit's medications aside), and whether the
        patient exceeds the model's visit or code limits."""
        visits, limit = patient["visits"], self.encoder.max_codes
        unknown: set[str] = set()
        truncated = len(visits) > self.encoder.max_visits
        for j, visit in enumerate(visits):
            for kind in CODE_TYPES if j < len(visits) - 1 else CODE_TYPES[:2]:
                codes = visit.get(kind) or []
                truncated = truncated or len(codes) > limit
                index = self.encoder.vocabs[kind].index
                unknown.update(c for c in codes if c not in index)
        profile_vocab = self.encoder.vocabs["profile"].index
        profile = [f"profile:{t}" for t in profile_tokens(patient.get("profile") or {}) if t not in profile_vocab]
        return sorted(unknown) + profile, truncated


def _patient_id(patient) -> str | int | None:
    value = patient.get("patient_id") if isinstance(patient, dict) else None
    return value if isinstance(value, (str, int)) else None
