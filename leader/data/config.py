"""The configs of the `leader data` commands (one dataclass each, a docstring under every field).

They live apart from the loaders so the CLI reads their defaults and help (`leader.cli.options`)
without importing polars or a loader: this module needs only the standard library,
`leader.errors` and `leader.encoding` (for `MIN_PATIENTS`); what a check needs beyond that is
imported when a config is built. Each loader re-exports its config (`leader.data.fhir.FhirConfig`,
...). The checks every loader shares are `_check` (one place for the source path, --top-meds and
--min-patients); the manifest's copy of the options is `_Options.options`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from leader.errors import LeaderError
from leader.limits import MIN_PATIENTS

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""A plain SQL schema name (what --schema may be: it is written into the OMOP queries)."""


def _check(cfg, source: str | None = None, exists: Callable[[Path], bool] = Path.exists, problem: str = "") -> None:
    """The checks of every loader's config: `out` and the `source` path field become Paths; the
    source must pass `exists` (else one error: "--SOURCE PATH `problem`"); --top-meds and, where
    the config has it, --min-patients must be at least 1."""
    cfg.out = Path(cfg.out)
    if source is not None:
        path = Path(getattr(cfg, source))
        if not exists(path):
            raise LeaderError(f"--{source} {path} {problem}")
        setattr(cfg, source, path)
    for name in ("top_meds", "min_patients"):
        value = getattr(cfg, name, 1)
        if value < 1:
            raise LeaderError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


class _Options:
    """The manifest's copy of a config: every field, paths as given (no data)."""

    def options(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class MimicConfig(_Options):
    """Options of `leader data mimic3` / `leader data mimic4`."""

    root: Path
    """The MIMIC folder as PhysioNet ships it (MIMIC-III: the CSVs; MIMIC-IV: the folder holding hosp/)."""
    out: Path
    """Where the prepared dataset goes (must not exist unless overwrite)."""
    ndc_map: Path | None = None
    """GAMENet's ndc2RXCUI.txt (a Python dict literal NDC -> RXCUI). Without --atc-map (name coding) it
    keeps only prescription rows whose NDC it knows, as GAMENet does (drops NDC-0 IV fluids)."""
    atc_map: Path | None = None
    """GAMENet's RXCUI2atc4.csv; with --ndc-map, ATC-3 labels come from NDCs (implies --coding atc3)."""
    coding: str = ""
    """Medication labels: atc3 (ATC-3 classes) or name (normalised generic names). Empty: atc3 with
    --atc-map, else name. atc3 without --atc-map codes drug names through the shipped MIT name map."""
    drug_atc: Path | None = None
    """With --coding atc3: a drug name map (csv or csv.gz, columns drug,atc_code) instead of the shipped one."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs (e.g. SafeDrug's ddi_atc3_pairs_safedrug.csv)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (by visits)."""
    notes: Path | None = None
    """MIMIC-IV only: the MIMIC-IV-Note folder (holding note/discharge.csv.gz). MIMIC-III reads NOTEEVENTS
    from --root when it is there."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        from leader.data.meds import check_coding

        _check(self, "root", Path.is_dir, "is not a folder; point it at the unpacked MIMIC tables")
        if self.atc_map is not None and self.ndc_map is None:
            raise LeaderError("--atc-map needs --ndc-map too (NDC -> RXCUI -> ATC)")
        self.coding = check_coding(self.coding or ("atc3" if self.atc_map is not None else "name"))
        if self.atc_map is not None and self.coding != "atc3":
            raise LeaderError("--atc-map gives ATC-3 labels: drop it or use --coding atc3")
        if self.drug_atc is not None and (self.coding != "atc3" or self.atc_map is not None):
            raise LeaderError("--drug-atc codes drug names with --coding atc3 and no --atc-map; drop one of them")

    def inputs(self) -> list[Path | None]:
        """The paths this run reads (an --overwrite of --out may not touch them)."""
        return [self.root, self.ndc_map, self.atc_map, self.drug_atc, self.ddi, self.notes]


@dataclass
class EicuConfig(_Options):
    """Options of `leader data eicu`."""

    root: Path
    """The eICU folder: patient.csv.gz, diagnosis.csv.gz, ... as PhysioNet ships them (.csv or .csv.gz; the demo works)."""
    out: Path
    """Where the prepared dataset goes (must not exist unless overwrite)."""
    coding: str = "atc3"
    """atc3 (drug names -> ATC-3 classes through the shipped name map) or name (normalised generic names)."""
    drug_atc: Path | None = None
    """A name map (csv: drug,atc_code) used instead of the shipped one."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs (e.g. SafeDrug's ddi_atc3_pairs_safedrug.csv)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (by visits)."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        from leader.data.meds import check_coding

        check_coding(self.coding)
        _check(self, "root", Path.is_dir, "is not a folder; point it at the unpacked eICU tables")

    def inputs(self) -> list[Path | None]:
        """The paths this run reads (an --overwrite of --out may not touch them)."""
        return [self.root, self.drug_atc, self.ddi]


@dataclass
class OmopConfig(_Options):
    """Options of `leader data omop`."""

    db: str
    """A DuckDB file (path or duckdb:///path; opened read-only) or a SQLAlchemy URL (postgresql://...)."""
    out: Path
    """Where the prepared dataset goes."""
    schema: str | None = None
    """The schema holding the CDM tables; default the connection's current schema (DuckDB: main,
    PostgreSQL: public)."""
    coding: str = "atc3"
    """Medication labels: atc3 (the vocabulary's ATC classes, else ingredient names through the ATC
    name map) or name (normalised ingredient names)."""
    drug_atc: Path | None = None
    """A drug name -> ATC map (csv: drug,atc_code) replacing the shipped one (atc3 coding only)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (by visits)."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs (e.g. ddi_atc3_pairs_safedrug.csv)."""
    dangling_visits: str = "drop"
    """What to do with a visit_occurrence_id that events carry but visit_occurrence lacks: drop
    (CDM rule: such events are placed by date in a recorded visit, else dropped) or keep (each
    such id becomes a visit dated by its earliest event; for ETLs that kept only some visit rows)."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        if self.coding not in ("atc3", "name"):
            raise LeaderError(f"--coding must be atc3 or name, got '{self.coding}'")
        if self.drug_atc is not None and self.coding != "atc3":
            raise LeaderError("--drug-atc maps names to ATC: use it with --coding atc3, or leave it out")
        _check(self)
        if self.schema is not None and not _IDENTIFIER.fullmatch(self.schema):
            raise LeaderError(f"--schema '{self.schema}' is not a plain schema name (letters, digits, _)")
        if self.dangling_visits not in ("drop", "keep"):
            raise LeaderError(f"--dangling-visits must be drop or keep, got '{self.dangling_visits}'")

    def inputs(self) -> list[Path | None]:
        """The files this run reads (an --overwrite of --out may not touch them)."""
        from leader.data.omop_db import Database

        return [Database.local_path(self.db), self.drug_atc, self.ddi]

    def options(self) -> dict:
        """The resolved options for the manifest (a URL's password hidden)."""
        from leader.data.omop_db import Database

        return super().options() | {"db": Database.redact(self.db)}


@dataclass
class FhirConfig(_Options):
    """Options of `leader data fhir`."""

    input: Path
    """A Bulk Data export folder (Type.ndjson[.gz]), one NDJSON file, a Bundle .json or a folder of Bundles."""
    out: Path
    """Where the prepared dataset goes."""
    coding: str = "atc3"
    """atc3 (RxNorm drug name -> ATC-3 classes through leader.data.atc) or name (normalised generic name)."""
    drug_atc: Path | None = None
    """With atc3: a CSV drug,atc_code used instead of the shipped drug name -> ATC map."""
    visits: str = "encounters-with-medication"
    """encounters-with-medication (every encounter with a medication order) or inpatient (IMP/ACUTE/NONAC only)."""
    active_conditions: bool = True
    """Add conditions active at an encounter's start to its diagnoses (Synthea records chronic ones once)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (by visits)."""
    min_patients: int = MIN_PATIENTS
    """A label is kept only when this many distinct patients received it (a rare label could single one out)."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs with a header (e.g. ddi_atc3_pairs_safedrug.csv)."""
    overwrite: bool = False
    """Replace --out if it exists."""
    workers: int | None = None
    """Processes reading the files, one file each at a time (1: this process alone). Default: the CPU
    cores, at most 4. The dataset is the same for any number, so the manifest does not record it."""

    def __post_init__(self) -> None:
        _check(self, "input", Path.exists, "not found; give a FHIR Bulk Data export folder, NDJSON or Bundle")
        if self.workers is not None and self.workers < 1:
            raise LeaderError(f"--workers must be at least 1, got {self.workers}")
        self.mapping()  # checks --coding, --visits, --drug-atc

    def options(self) -> dict:
        """The manifest's options: all but --workers (the output does not depend on it)."""
        return {k: v for k, v in super().options().items() if k != "workers"}

    def mapping(self):
        """The `leader.data.fhir_map.MapOptions` of these options."""
        from leader.data.fhir_map import MapOptions

        return MapOptions(self.coding, self.drug_atc, self.visits, self.active_conditions)


@dataclass
class JsonlConfig(_Options):
    """Options of `leader data jsonl`."""

    input: Path
    """The export: JSON Lines, one patient per line (.jsonl or .jsonl.gz)."""
    out: Path
    """Where the prepared dataset goes."""
    vocab: Path | None = None
    """JSON with optional "titles" {code: title} and "medications" [label, ...] (fixes the label list)."""
    ddi: Path | None = None
    """CSV of interacting medication-label pairs (header, then two labels per row)."""
    top_meds: int = 300
    """Keep the N most frequent medication labels (ignored when --vocab lists the medications)."""
    min_patients: int = MIN_PATIENTS
    """A label is kept only when this many distinct patients received it (ignored with a --vocab list)."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        _check(self, "input", Path.is_file, "not found; give the cohort JSONL export")

    def inputs(self) -> list[Path | None]:
        """The files this run reads (an --overwrite of --out may not touch them)."""
        return [self.input, self.vocab, self.ddi]


@dataclass
class SynthConfig:
    """Options of `leader data synth` (checked by `leader.data.synth.synthesize`)."""

    out: Path
    """Where the prepared dataset goes (must not exist unless overwrite)."""
    patients: int = 2000
    """Number of synthetic patients."""
    seed: int = 0
    """Random seed (same seed, same cohort)."""
    format: str = "mimic3"
    """Raw layout to write and load: mimic3 or mimic4."""
    raw: Path | None = None
    """Keep the raw MIMIC tables and maps here (default: a temporary folder)."""
    overwrite: bool = False
    """Replace --out (and --raw) if it exists."""


@dataclass
class StatsConfig:
    """Options of `leader data stats`."""

    data: Path
    """A prepared dataset folder."""
    as_json: bool = False
    """Print JSON instead of a table."""
