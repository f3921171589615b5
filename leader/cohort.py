"""The prepared dataset: the one contract between pipeline stages (see ARCHITECTURE.md).

A prepared dataset is a folder holding

- ``cohort.jsonl.gz``: one patient per line (profile + visits, codes prefixed by their system),
- ``vocab.json``: code titles and the medication label list in output order,
- ``ddi.csv``: unordered pairs of interacting medication labels (``med_a,med_b``),
- ``manifest.json``: format version, source, options, counts and the cohort's sha256.

Every loader (MIMIC-III, MIMIC-IV, a hospital's JSONL, the synthetic generator) ends in
`write_dataset`; every later stage starts with `load_dataset`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import math
import platform
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leader import __version__
from leader.errors import LeaderError
from leader.io import atomic_dir, read_json, sha256_file
from leader.safejson import JSONError, loads

FORMAT_VERSION = 1
FILES = ("cohort.jsonl.gz", "vocab.json", "ddi.csv", "manifest.json")
CODE_KINDS = ("diagnoses", "procedures")
"""The visit fields that hold ``SYSTEM:VALUE`` codes (any system name; see `normalize_code`)."""
ICD_SYSTEMS = frozenset({"ICD9", "ICD10", "ICD9P", "ICD10P", "ICD9CM", "ICD10CM", "ICD10PCS"})
"""Systems whose values lose their dots and are upper-cased (``ICD9:401.9`` -> ``ICD9:4019``)."""
CODE_PATTERNS = {
    "ICD9": r"\d{3,5}|V\d{2,4}|E\d{3,4}",  # ICD-9-CM diagnoses: 401, 4019, 25000, V3001, E8497
    "ICD9CM": r"\d{3,5}|V\d{2,4}|E\d{3,4}",
    "ICD10": r"[A-Z]\d[0-9A-Z]{1,5}",  # ICD-10(-CM): a letter, a digit, then 1-5 more: I10, E119, C4A0, S72001A
    "ICD10CM": r"[A-Z]\d[0-9A-Z]{1,5}",
    "ICD9P": r"\d{2,4}",  # ICD-9-CM procedures: 38, 3893
    "ICD10P": r"[0-9A-Z]{7}",  # ICD-10-PCS: always 7 characters, 02HV33Z
    "ICD10PCS": r"[0-9A-Z]{7}",
    "SNOMED": r"\d{6,18}",  # SNOMED CT concept ids: 6 to 18 digits
}
"""The shape a value must have in its system; systems not listed accept any value."""
_PATTERNS = {system: re.compile(pattern) for system, pattern in CODE_PATTERNS.items()}
_SYSTEM = re.compile(r"[A-Z][A-Z0-9-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ATC = re.compile(r"[A-Za-z]\d\d(?:[A-Za-z](?:[A-Za-z](?:\d\d)?)?)?")
CODE_RULE = "write codes as SYSTEM:VALUE, e.g. ICD10:I10 or SNOMED:38341003"
NOTE_SECTIONS = (
    "history_of_present_illness",
    "past_medical_history",
    "allergies",
    "medications_on_admission",
)
PROFILE_FIELDS = (
    "gender",
    "age",
    "insurance",
    "language",
    "religion",
    "marital_status",
    "ethnicity",
    "admission_type",
)


@dataclass
class Dataset:
    """A prepared dataset in memory."""

    path: Path | None
    patients: list[dict]
    medications: list[str]
    """Medication labels in model output order."""
    titles: dict[str, str] = field(default_factory=dict)
    """Human title of every code (diagnoses, procedures, medication labels)."""
    ddi: list[tuple[str, str]] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return self.manifest.get("cohort_sha256", "")


def normalize_code(code: str) -> str:
    """The one normal form of a ``SYSTEM:VALUE`` code; every loader and the runtime call this.

    The system is upper-cased (letters, digits and '-', starting with a letter: ICD9, ICD10,
    ICD9P, ICD10P, SNOMED, CPT, OPS, LOINC, EICU-DX, ...). ICD values (`ICD_SYSTEMS`) lose their
    dots and spaces at the ends and are upper-cased (``icd9: 401.9`` -> ``ICD9:4019``); every
    other value is stripped and kept as given (SNOMED's digits are checked by `code_fits_system`).
    Raises LeaderError on a code without a system, an empty value or a control character (NUL).
    """
    if not isinstance(code, str):
        raise LeaderError(f"code {code!r} is not a string; {CODE_RULE}")
    return _normalize_text(code)


@functools.lru_cache(maxsize=1 << 16)
def _normalize_text(code: str) -> str:
    """`normalize_code` of a string, remembered: a cohort or a stream of served patients repeats
    a few thousand codes (a bounded cache; errors are not kept)."""
    if _CONTROL.search(code):
        raise LeaderError(f"code {code!r} holds a control character (e.g. NUL); remove it from the export")
    system, sep, value = code.partition(":")
    system, value = system.strip().upper(), value.strip()
    if not sep or not _SYSTEM.fullmatch(system):
        raise LeaderError(f"code '{code}' lacks a system prefix; {CODE_RULE}")
    if system in ICD_SYSTEMS:
        value = value.replace(".", "").upper()
    if not value:
        raise LeaderError(f"code '{code}' has an empty value; {CODE_RULE}")
    return f"{system}:{value}"


def code_fits_system(code: str) -> bool:
    """True when a normalised code's value has its system's shape (`CODE_PATTERNS`), so a name or
    a record number in a code column (``ICD9:JANEDOE0``) is caught; unlisted systems always fit."""
    system, _, value = code.partition(":")
    pattern = _PATTERNS.get(system)
    return pattern is None or pattern.fullmatch(value) is not None


def normalize_label(label: str) -> str:
    """A medication label in its one form: stripped, and upper-cased when it looks like an ATC
    code of level 2 or deeper (``c07a`` -> ``C07A``, ``a10ba02`` -> ``A10BA02``); names are kept
    as written. An empty result means the label is blank."""
    label = label.strip()
    return label.upper() if _ATC.fullmatch(label) else label


def normalize_patient(patient: dict) -> dict:
    """A copy of a patient record (visits holding lists of strings) whose codes and medication
    labels are in normal form, so a model reads ``ICD9:401.9`` as the ``ICD9:4019`` it was trained
    on; raises LeaderError naming the visit and the code that is not ``SYSTEM:VALUE``."""
    visits = []
    for v, visit in enumerate(patient["visits"], 1):
        visit = dict(visit)
        for kind in CODE_KINDS:
            try:
                visit[kind] = [normalize_code(code) for code in visit.get(kind) or []]
            except LeaderError as err:
                raise LeaderError(f"visit {v}, '{kind}': {err}") from None
        meds = visit.get("medications")
        if isinstance(meds, list) and all(isinstance(m, str) for m in meds):  # the current visit's may be anything
            visit["medications"] = [m for m in map(normalize_label, meds) if m]
        visits.append(visit)
    return {**patient, "visits": visits}


def _check_profile(profile: dict, where: str) -> None:
    """Profile values are strings, finite numbers, booleans or null; an age is a finite number >= 0
    (or a string holding one), so ``"age": "inf"`` stops here instead of crashing training."""
    for key, value in profile.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise LeaderError(f"{where}: profile field '{key}' is not a finite number; give a number or null")
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise LeaderError(f"{where}: profile field '{key}' must be a string, a number or null")
    age = profile.get("age")
    if age is None or age == "":
        return
    try:
        number = float(age)
    except (TypeError, ValueError, OverflowError):
        raise LeaderError(f"{where}: profile 'age' is {str(age)[:20]!r}; give the age in years or null") from None
    if not math.isfinite(number) or number < 0:
        raise LeaderError(f"{where}: profile 'age' must be a finite number of years >= 0 (or null)")


def _where(line: int | None, patient: dict | None) -> str:
    return f"line {line}" if line is not None else "patient record"


def validate_patient(
    patient: dict, line: int | None = None, labels: set[str] | None = None, normalized: bool = True
) -> dict:
    """Check one patient record against the cohort schema and return it.

    Raises LeaderError naming the line and the field. Every code must be ``SYSTEM:VALUE``
    (`normalize_code`) and, with `normalized` (a prepared cohort), already in normal form.
    `labels`, when given, is the set of medication labels every visit's medications must belong to.
    """
    where = _where(line, patient)
    if not isinstance(patient, dict):
        raise LeaderError(f"{where}: a patient must be a JSON object, got {type(patient).__name__}")
    for key, kind in (("patient_id", (str, int)), ("profile", dict), ("visits", list)):
        if key not in patient:
            raise LeaderError(f"{where}: missing field '{key}'; see the cohort format in README.md")
        if not isinstance(patient[key], kind):
            raise LeaderError(f"{where}: field '{key}' has the wrong type")
    if not patient["visits"]:
        raise LeaderError(f"{where}: patient has no visits; drop the patient or add a visit")
    _check_profile(patient["profile"], where)
    for v, visit in enumerate(patient["visits"]):
        vwhere = f"{where}, visit {v + 1}"
        if not isinstance(visit, dict):
            raise LeaderError(f"{vwhere}: a visit must be a JSON object")
        for key in ("visit_id", "diagnoses", "procedures", "medications"):
            if key not in visit:
                raise LeaderError(f"{vwhere}: missing field '{key}'")
        for kind in CODE_KINDS:
            codes = visit[kind]
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise LeaderError(f"{vwhere}: '{kind}' must be a list of strings")
            for code in codes:
                try:
                    normal = normalize_code(code)
                except LeaderError as err:
                    raise LeaderError(f"{vwhere}, '{kind}': {err}") from None
                if normalized and normal != code:
                    raise LeaderError(
                        f"{vwhere}: code '{code}' in '{kind}' is not in normal form ('{normal}'); prepare the "
                        "dataset again with this version's `leader data` (loaders call leader.cohort.normalize_code)"
                    )
        meds = visit["medications"]
        if not isinstance(meds, list) or not all(isinstance(m, str) for m in meds):
            raise LeaderError(f"{vwhere}: 'medications' must be a list of strings")
        if labels is not None:
            unknown = [m for m in meds if m not in labels]
            if unknown:
                raise LeaderError(f"{vwhere}: medication '{unknown[0]}' is not in vocab.json's medication list")
        if not visit["diagnoses"] and not visit["procedures"]:
            raise LeaderError(f"{vwhere}: empty visit (no diagnoses and no procedures); drop it")
        note = visit.get("note")
        if note is not None and not isinstance(note, dict):
            raise LeaderError(f"{vwhere}: 'note' must be an object with the four sections or null")
    return patient


def write_dataset(
    out: str | Path,
    patients: Iterable[dict],
    medications: list[str],
    titles: dict[str, str],
    ddi: Iterable[tuple[str, str]] = (),
    source: str = "",
    options: dict | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a prepared dataset folder atomically and return its path.

    Patients are validated; visits must already be cleaned (no empty visits). DDI pairs whose
    drugs are not both medication labels are dropped; the manifest counts what was kept.
    """
    out = Path(out)
    labels = set(medications)
    with atomic_dir(out, overwrite=overwrite, marker="manifest.json") as tmp:
        n_patients = n_visits = 0
        raw = tmp / "cohort.jsonl.gz"
        # mtime=0 and no file name in the gzip header: the same cohort always has the same sha256
        with (
            open(raw, "wb") as binary,
            gzip.GzipFile(fileobj=binary, mode="wb", compresslevel=6, mtime=0, filename="") as zipped,
            io.TextIOWrapper(zipped, encoding="utf-8") as handle,
        ):
            for patient in patients:
                validate_patient(patient, labels=labels)
                handle.write(json.dumps(patient, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n")
                n_patients += 1
                n_visits += len(patient["visits"])
        if n_patients == 0:
            raise LeaderError("no patient is left after cleaning; check the input tables")
        pairs = sorted({tuple(sorted(p)) for p in ddi if p[0] in labels and p[1] in labels and p[0] != p[1]})
        with open(tmp / "ddi.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["med_a", "med_b"])
            writer.writerows(pairs)
        vocab = {"format_version": FORMAT_VERSION, "medications": list(medications), "titles": titles}
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "source": source,
            "options": options or {},
            "counts": {
                "patients": n_patients,
                "visits": n_visits,
                "medications": len(medications),
                "ddi_pairs": len(pairs),
            },
            "cohort_sha256": sha256_file(raw),
            "leader_version": __version__,
            "python": platform.python_version(),
            **(extra or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def iter_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """Yield ``(line number, parsed JSON)`` of a .jsonl or .jsonl.gz file, skipping blank lines.

    A line that is not JSON, a byte that is not UTF-8 or a truncated gzip ends in a LeaderError
    naming the file (and the line).
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = loads(line)  # bounded depth and numbers, finite only
                except JSONError as err:
                    raise LeaderError(f"{path}: line {number} is {err}; fix or remove that line") from None
                yield number, record
    except UnicodeDecodeError:
        raise LeaderError(f"{path}: not UTF-8 text; re-export it as UTF-8") from None
    except (OSError, EOFError) as err:
        raise LeaderError(f"{path}: cannot read ({err}); is it a complete .jsonl or .jsonl.gz file?") from None


def read_cohort_lines(path: Path, labels: set[str] | None = None) -> list[dict]:
    """Read and validate a JSONL (optionally gzipped) file of patients."""
    return [validate_patient(record, number, labels) for number, record in iter_jsonl(path)]


def load_dataset(path: str | Path) -> Dataset:
    """Load and check a prepared dataset folder."""
    path = Path(path)
    if not path.is_dir():
        raise LeaderError(f"prepared dataset not found: {path}; make one with `leader data ...`")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise LeaderError(f"{path} is not a prepared dataset (missing {', '.join(missing)}); re-run `leader data`")
    manifest = read_json(path / "manifest.json", "manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise LeaderError(
            f"{path} has dataset format version {version}, this leader reads {FORMAT_VERSION}; "
            "prepare it again with this version's `leader data`"
        )
    vocab = read_json(path / "vocab.json", "vocab")
    medications = vocab.get("medications")
    if not isinstance(medications, list) or not medications:
        raise LeaderError(f"{path}/vocab.json has no medication list; re-run `leader data`")
    if sha256_file(path / "cohort.jsonl.gz") != manifest.get("cohort_sha256"):
        raise LeaderError(f"{path}/cohort.jsonl.gz does not match its manifest's sha256; prepare it again")
    patients = read_cohort_lines(path / "cohort.jsonl.gz", set(medications))
    ddi = read_ddi(path / "ddi.csv")
    return Dataset(path, patients, medications, vocab.get("titles", {}), ddi, manifest)


def read_ddi(path: Path) -> list[tuple[str, str]]:
    """Read a two-column CSV of interacting medication pairs (header row first)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LeaderError(f"{path}: not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    pairs = []
    for number, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != 2 or not all(cell.strip() for cell in row):
            raise LeaderError(f"{path}: line {number} must hold two medication labels separated by a comma")
        pairs.append((row[0].strip(), row[1].strip()))
    return pairs
