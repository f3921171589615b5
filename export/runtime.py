"""Serve an exported student: onnxruntime + numpy + `leader.encoding`, never torch.

    from leader.export.runtime import Recommender
    rec = Recommender("model.onnx", threads=1)
    [out] = rec.recommend([{"profile": {"gender": "F", "age": 71},
                            "visits": [{"diagnoses": ["ICD9:4019"], "procedures": [],
                                        "note": {"allergies": "penicillin"}}]}])
    out.recommended, out.ranked[:5], out.ddi_warnings, out.unknown_codes

A patient is a cohort-format record (ARCHITECTURE.md): a profile and visits, the last visit being the one
to prescribe for (its medications, if any, are ignored; its ``note``, the four admission sections
of `leader.cohort.NOTE_SECTIONS`, is optional and read when the model has a note encoder, with the
tokenizer of training, `leader.encoding.note_tokens`). Everything the model needs to read a
patient (vocabularies, limits, labels, thresholds, DDI pairs) is inside the ONNX file's
``metadata_props`` (keys below), so the file alone is the deployable model.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort  # after leader.export/__init__.py switched its telemetry off

from leader.cohort import NOTE_SECTIONS, normalize_patient
from leader.encoding import CODE_TYPES, INPUTS, Encoder, Vocab
from leader.errors import LeaderError
from leader.safejson import JSONError, loads
from leader.samples import visit_sample

FORMAT_VERSION = 2
"""Version of the metadata layout below; a runtime refuses files written by a newer one.
2: the ``notes`` input and, for a student with a note encoder, the note vocabulary and
``max_note_tokens`` in ``encoder``; files of version 1 (five inputs, no notes) are still served."""
LEGACY_INPUTS = INPUTS[:5]
"""The inputs of a version-1 file: `INPUTS` without ``notes``."""
PREFIX = "leader."
KEYS = ("format_version", "encoder", "medication_names", "thresholds", "ddi", "metrics", "dataset_sha256", "versions")
"""Required metadata keys (each stored as ``leader.<key>``, its value JSON text)."""
OUTPUT = "probabilities"
"""The graph's one output, [B, M]; its inputs are `leader.encoding.INPUTS`."""


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
            out[key] = loads(meta[PREFIX + key])  # bounded depth and numbers, finite only
        except JSONError as err:
            raise LeaderError(f"{path}: leader metadata '{key}' is {err}; export the model again") from None
    for key, text in meta.items():  # optional extras, e.g. leader.quantization
        if key.startswith(PREFIX) and key[len(PREFIX) :] not in out:
            try:
                out[key[len(PREFIX) :]] = loads(text)
            except JSONError:
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


MAX_LIMIT = 100_000
"""Largest max_visits / max_codes a runtime accepts from metadata (exports use tens)."""


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_metadata(path: str | Path, meta: dict) -> None:
    """Refuse metadata a runtime cannot serve faithfully (a tampered or damaged file): one line
    naming the field. Thresholds must be finite numbers: a NaN or null one would silently
    recommend nothing."""

    def bad(what: str) -> LeaderError:
        return LeaderError(
            f"{path}: leader metadata is inconsistent: {what}; re-export the model with `leader export --onnx`"
        )

    encoder = meta["encoder"]
    vocabs = encoder.get("vocabs") if isinstance(encoder, dict) else None
    kinds = sorted([*CODE_TYPES, "profile"])
    if not isinstance(vocabs, dict) or sorted(vocabs) not in (kinds, sorted([*kinds, "notes"])):
        raise bad("'encoder' lacks the diagnoses, procedures, medications and profile vocabularies")
    for kind, tokens in vocabs.items():
        if not _strings(tokens) or tokens[:2] != Vocab().tokens or len(set(tokens)) != len(tokens):
            raise bad(f"vocabulary '{kind}' is not a list of distinct strings, padding and unknown first")
    medications = encoder.get("medications")
    if not _strings(medications) or not medications or len(set(medications)) != len(medications):
        raise bad("'encoder.medications' is not a non-empty list of distinct labels")
    for key in ("max_visits", "max_codes", *(["max_note_tokens"] if "notes" in vocabs else [])):
        value = encoder.get(key)
        if type(value) is not int or not 1 <= value <= MAX_LIMIT:
            raise bad(f"'encoder.{key}' is {value!r}, not an integer from 1 to {MAX_LIMIT}")
    if "notes" not in vocabs and encoder.get("max_note_tokens", 0) != 0:
        raise bad("'encoder.max_note_tokens' is set but there is no note vocabulary")
    names = meta["medication_names"]
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise bad("'medication_names' is not an object of medication titles")
    thresholds = meta["thresholds"]
    values = thresholds if isinstance(thresholds, list) else [thresholds]
    if isinstance(thresholds, list) and len(thresholds) != len(medications):
        raise bad(f"'thresholds' has {len(thresholds)} values for {len(medications)} medications")
    if not all(type(t) in (int, float) and math.isfinite(t) for t in values):  # > 1 means never: allowed
        raise bad("'thresholds' must be finite numbers (a NaN or null threshold would recommend nothing)")
    ddi = meta["ddi"]
    if not isinstance(ddi, list) or not all(_strings(pair) and len(pair) == 2 for pair in ddi):
        raise bad("'ddi' is not a list of [medication, medication] pairs")


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
    return read_patient(patient)[1]


def read_patient(patient) -> tuple[dict | None, str | None]:
    """(the record as the model reads it, None), or (None, why it cannot be served): `check_patient`
    and the codes in normal form (``ICD9:401.9`` reads as the ``ICD9:4019`` of training) in one pass."""
    error = _shape_error(patient)
    if error:
        return None, error
    try:
        return normalize_patient(patient), None  # codes are SYSTEM:VALUE (any system), as in training
    except LeaderError as err:
        return None, str(err)


def _shape_error(patient) -> str | None:
    """What is wrong with the structure of a patient record (types, missing fields), or None."""
    if not isinstance(patient, dict):
        return f"a patient must be a JSON object, got {type(patient).__name__}"
    profile = patient.get("profile", {})
    if not isinstance(profile, dict):
        return '\'profile\' must be a JSON object (e.g. {"gender": "F", "age": 70})'
    for key, value in profile.items():
        if value is None or isinstance(value, str) and key != "age":
            continue
        if not isinstance(value, (str, int, float)):
            return f"profile '{key}' must be a string or a number, got {type(value).__name__}"
        try:
            number = float(value)
        except ValueError:
            continue  # an age that is not a number is left out, as in training (profile_tokens)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            return f"profile '{key}' must be a finite number"
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
        note = visit.get("note")
        if note is not None and not (isinstance(note, dict) and all(isinstance(t, str | None) for t in note.values())):
            return f"visit {v}: 'note' must be null or an object of text sections ({', '.join(NOTE_SECTIONS)})"
    return None


def balanced_groups(lengths: list[int], parts: int, max_visits: int) -> list[list[int]]:
    """Indices of a batch grouped by history length (capped at `max_visits`), so no group is padded
    to a longer history, and each group cut into pieces of at most ceil(n / parts) rows, so `parts`
    threads get about equal work; the costliest piece (rows x visits) first.

    Why pieces and not onnxruntime's intra-op threads: the student is a few hundred small nodes, which one
    thread runs as fast as two (2-core AMD EPYC, batch 256: 11,759 visits/s on one thread, 6,268 on
    two intra-op threads, 16,478 with two pieces run side by side on one-thread sessions)."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(min(n, max_visits), []).append(i)
    size = max(1, math.ceil(len(lengths) / max(1, parts)))
    pieces = [(n, rows[i : i + size]) for n, rows in groups.items() for i in range(0, len(rows), size)]
    pieces.sort(key=lambda piece: -piece[0] * len(piece[1]))
    return [rows for _, rows in pieces]


SLOW_FUSIONS = ("SkipLayerNormFusion",)
"""onnxruntime graph rewrites left off: fusing the student's residual adds and layer norms into
SkipLayerNormalization made the fp32 and int8 files slower (CPU time per grouped batch-256 call
+20% on a 2-core AMD EPYC; left off, ORT_ENABLE_BASIC was no faster). The other ORT_ENABLE_ALL
rewrites are kept: the int8 file's quantized MatMuls are fused by them."""


def open_session(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime session as the runtime (and `leader bench`, and the export's parity check)
    runs a student: one intra-op thread (`Recommender` runs pieces of a batch side by side
    instead: see `balanced_groups`), one sequential stream, all graph optimisations but
    `SLOW_FUSIONS`, errors-only logging. Raises onnxruntime's own exceptions for a file it cannot
    load."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(SLOW_FUSIONS)
    )


class _ServingEncoder(Encoder):
    """`Encoder` that, while `note_memo` is a dict (during one `Recommender.recommend` call), keeps
    the note ids of each current visit it reads: `encode` and `truncated` both read them
    (`note_ids`), and a note is tokenized once. Visits are matched by identity (the memo holds
    them, so an id is never reused); outside a call `note_memo` is None and nothing is kept."""

    def __post_init__(self):
        super().__post_init__()
        self.note_memo: dict[int, tuple[dict, list[int]]] | None = None

    def note_ids(self, visits: list[dict]) -> list[int]:
        memo, visit = self.note_memo, visits[-1]
        if memo is None:
            return super().note_ids(visits)
        hit = memo.get(id(visit))
        if hit is None or hit[0] is not visit:
            hit = memo[id(visit)] = (visit, super().note_ids(visits))
        return hit[1]


class Recommender:
    """An exported student loaded in onnxruntime; see the module docstring."""

    def __init__(self, path: str | Path, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise LeaderError(f"model file not found: {path}; export one with `leader export --onnx`")
        if threads < 1:
            raise LeaderError(f"--threads must be at least 1, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="leader-onnx") if threads > 1 else None
        try:
            self.session = open_session(path)
        except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LeaderError(
                f"{path} is not a loadable ONNX model ({first[:200]}); pass the .onnx file from `leader export --onnx`"
            ) from None
        self.path = path
        self.meta = read_metadata(path, self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        if names not in (list(INPUTS), list(LEGACY_INPUTS)) or [o.name for o in self.session.get_outputs()] != [OUTPUT]:
            raise LeaderError(
                f"{path}: inputs {names} are not those of a leader student; export it with `leader export --onnx`"
            )
        self.inputs = names
        """The arrays this file reads (`INPUTS`, or `LEGACY_INPUTS` for a version-1 file)."""
        check_metadata(path, self.meta)
        try:
            self.encoder = _ServingEncoder.from_dict(self.meta["encoder"])
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
        self._partners = {a: set(np.flatnonzero(row).tolist()) for a, row in enumerate(self.ddi) if row.any()}
        """`ddi` as sets: medication index -> indices it interacts with (a lookup per recommended pair)."""
        self._probe(path)

    def _probe(self, path: Path) -> None:
        """Run the model once on the largest id of every vocabulary: metadata whose vocabularies
        outgrow the model's embeddings, or whose labels do not match its outputs, is refused here
        rather than failing (or misreading) on a patient later."""
        arrays = {kind: np.full((1, 1, 1), len(self.encoder.vocabs[kind]) - 1, np.int64) for kind in CODE_TYPES}
        for kind in ("profile", "notes"):
            largest = len(self.encoder.vocabs[kind]) - 1 if kind in self.encoder.vocabs else 0
            arrays[kind] = np.full((1, 1), largest, np.int64)
        arrays["visit_mask"] = np.ones((1, 1), np.float32)
        try:
            shape = self.predict_arrays(arrays).shape
        except Exception as err:  # onnxruntime's own types; e.g. an index beyond an embedding table
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise LeaderError(
                f"{path}: the model does not accept its own vocabularies ({first[:160]}); "
                "re-export the model with `leader export --onnx`"
            ) from None
        if shape != (1, len(self.medications)):
            raise LeaderError(
                f"{path}: the model has {shape[-1]} outputs but its metadata names {len(self.medications)} "
                "medications; re-export the model with `leader export --onnx`"
            )

    def predict_arrays(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities float32 [B, n_medications] for arrays from `Encoder.encode`."""
        return self.session.run([OUTPUT], {k: arrays[k] for k in self.inputs})[0]

    def encode(self, patients: list[dict]) -> dict[str, np.ndarray]:
        """Arrays for valid patients: each is the sample of its last visit, built and encoded as in
        training (`leader.samples.visit_sample`, `Encoder.encode`: the current visit's medications
        are never input, its note is read as in training)."""
        samples = [visit_sample(f"serve:{i}", p, len(p["visits"]) - 1, labelled=False) for i, p in enumerate(patients)]
        return self.encoder.encode_samples(samples)

    def predict_many(self, arrays: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """`predict_arrays` of each array set, run side by side on the `threads` threads (in order)."""
        if self._pool is None or len(arrays) < 2:
            return [self.predict_arrays(a) for a in arrays]
        return list(self._pool.map(self.predict_arrays, arrays))

    def predict(self, patients: list[dict]) -> np.ndarray:
        """Probabilities [N, M] of valid patients. Patients are run in groups of equal history
        length, so a batch is not padded to its longest history (3x faster on typical cohorts), cut
        into pieces for the threads (`balanced_groups`); the model masks padding, so neither the
        grouping nor the pieces change any probability."""
        probs = np.empty((len(patients), len(self.medications)), dtype=np.float32)
        pieces = balanced_groups([len(p["visits"]) for p in patients], self.threads, self.encoder.max_visits)
        arrays = [self.encode([patients[i] for i in rows]) for rows in pieces]
        for rows, out in zip(pieces, self.predict_many(arrays), strict=True):
            probs[rows] = out
        return probs

    def recommend(self, patients: list[dict], top_k: int | None = None) -> list[Recommendation]:
        """One `Recommendation` per patient, in order; bad records get `error` set, the rest are served."""
        results = [Recommendation(patient_id=_patient_id(p)) for p in patients]
        prepared = [self._prepare(p) for p in patients]
        for res, (_, error) in zip(results, prepared, strict=True):
            res.error = error
        good = [i for i, r in enumerate(results) if r.ok]
        if not good:
            return results
        batch = [prepared[i][0] for i in good]
        self.encoder.note_memo = {}  # each note is tokenized once, for `predict` and `truncated`
        try:
            self._serve(batch, [results[i] for i in good], top_k)
        finally:
            self.encoder.note_memo = None
        return results

    def _serve(self, batch: list[dict], results: list[Recommendation], top_k: int | None) -> None:
        """Fill in `results` for the valid records of `batch` (see `recommend`)."""
        try:
            probs = self.predict(batch)
        except Exception:  # a record no check foresaw: find it alone, so the batch is still served
            probs = self._predict_one_by_one(batch, results)
        k = len(self.medications) if top_k is None else max(0, min(top_k, len(self.medications)))
        order = np.argsort(-probs, axis=1, kind="stable")
        rows = np.arange(len(batch))[:, None]
        ranked_probs = probs[rows, order].tolist()
        above = (probs >= self.thresholds)[rows, order]
        labels = self.medications
        finite = np.isfinite(probs).all(axis=1)
        for row, (patient, res) in enumerate(zip(batch, results, strict=True)):
            if not res.ok:
                continue
            if not finite[row]:  # never an empty recommendation that looks like an answer
                res.error = "the model gave non-finite probabilities for this patient; re-export the model"
                continue
            ranks = order[row]
            chosen = ranks[above[row]].tolist()  # recommended, most probable first
            res.ranked = list(zip([labels[j] for j in ranks[:k].tolist()], ranked_probs[row][:k], strict=True))
            res.recommended = [labels[j] for j in chosen]
            partners = self._partners
            res.ddi_warnings = [
                (labels[a], labels[b])
                for n, a in enumerate(chosen)
                if a in partners
                for b in chosen[n + 1 :]
                if b in partners[a]
            ]
            res.unknown_codes = self.encoder.unknown_codes(patient.get("profile") or {}, patient["visits"])
            res.truncated = self.encoder.truncated(patient["visits"])

    @staticmethod
    def _prepare(patient) -> tuple[dict | None, str | None]:
        """(the record as the model reads it, None), or (None, why it cannot be served)."""
        try:
            return read_patient(patient)
        except Exception as err:  # e.g. RecursionError, OverflowError: one record never stops the batch
            return None, f"unusable patient record ({type(err).__name__})"

    def _predict_one_by_one(self, batch: list[dict], results: list[Recommendation]) -> np.ndarray:
        """`predict` patient by patient; one that fails gets `error` set and a row of NaN."""
        probs = np.full((len(batch), len(self.medications)), np.nan, dtype=np.float32)
        for row, (patient, res) in enumerate(zip(batch, results, strict=True)):
            try:
                probs[row] = self.predict([patient])[0]
            except Exception as err:
                res.error = f"unusable patient record ({type(err).__name__})"
        return probs


def _patient_id(patient) -> str | int | None:
    value = patient.get("patient_id") if isinstance(patient, dict) else None
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        return None  # not an id a JSON reader (or leader.safejson) would pass on
    return value if isinstance(value, (str, int)) else None
