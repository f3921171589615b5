"""What the MIMIC-III and MIMIC-IV loaders share: their config and the prescription coding pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from leader.cohort import normalize_code
from leader.data import meds
from leader.data.atc import AtcCoder
from leader.data.config import MimicConfig
from leader.data.tables import collect, log

PROFILE_TEXT = ("gender", "insurance", "language", "religion", "marital_status", "ethnicity", "admission_type")


@dataclass
class Coded:
    """The prescription table after coding."""

    medications: pl.DataFrame
    """hadm_id, label (one row per mapped (admission, drug) group)."""
    prescribed: pl.Series
    """hadm_id of admissions with any prescription row."""
    coverage: dict
    """Row counts and the share of prescription rows mapped to a label."""


def load_maps(cfg: MimicConfig) -> tuple[dict | None, dict | None, list[tuple[str, str]]]:
    """Read the NDC and ATC maps and the DDI pairs named in the config (before any table)."""
    ndc_map = meds.read_ndc_map(cfg.ndc_map) if cfg.ndc_map is not None else None
    atc_map = meds.read_atc_map(cfg.atc_map) if cfg.atc_map is not None else None
    ddi = meds.read_ddi_pairs(cfg.ddi) if cfg.ddi is not None else []
    return ndc_map, atc_map, ddi


def load_coder(cfg: MimicConfig) -> AtcCoder | None:
    """The drug name -> ATC-3 coder when labels are ATC-3 classes of names (--coding atc3 without --atc-map)."""
    if cfg.coding != "atc3" or cfg.atc_map is not None:
        return None
    return AtcCoder.from_file(cfg.drug_atc) if cfg.drug_atc is not None else AtcCoder.default()


def code_prescriptions(
    frame: pl.LazyFrame,
    path: Path,
    coding: str,
    ndc_map: dict | None,
    atc_map: dict | None,
    coder: AtcCoder | None = None,
) -> Coded:
    """Map prescription rows (hadm_id, ndc, name) to medication labels with one streaming pass.

    The table is first reduced to (admission, NDC, name) groups with row counts; NDCs and names are
    then cleaned and mapped once per distinct value (a few thousand), not once per row (MIMIC-IV has
    ~17M rows). ATC-3 labels come from the NDC (with `atc_map`) or from the name (with `coder`: every
    ATC-3 class of the name, so one row can give two labels).
    """
    grouped = collect(
        frame.filter(pl.col("hadm_id").is_not_null()).group_by(["hadm_id", "ndc", "name"]).agg(pl.len().alias("rows")),
        path,
        f"{path.name} (grouped by admission and drug)",
    )
    ndcs = grouped["ndc"].unique().drop_nulls().to_list()
    rxcui = {n: ndc_map.get(c) for n in ndcs if (c := meds.clean_ndc(n))} if ndc_map is not None else {}
    known = pl.col("ndc").is_in(pl.Series([n for n, rx in rxcui.items() if rx], dtype=pl.String).implode())
    as_list = pl.List(pl.String)
    if coding == "atc3" and atc_map is not None:
        labels = {n: [atc[:4]] for n, rx in rxcui.items() if rx and (atc := atc_map.get(rx))}
        label = pl.col("ndc").replace_strict(labels, default=None, return_dtype=as_list)
    else:
        names = grouped["name"].unique().drop_nulls().to_list()
        if coding == "atc3":
            table = {n: list(classes) for n in names if (classes := coder.atc3(n))}
        else:
            table = {n: [normal] for n in names if (normal := meds.normalise_name(n))}
        label = pl.col("name").replace_strict(table, default=None, return_dtype=as_list)
        if ndc_map is not None:  # as GAMENet: only rows whose NDC the map knows are drugs (drops NDC-0 IV fluids)
            label = pl.when(known).then(label)
    coded = grouped.with_columns(label.alias("label"), known.fill_null(False).alias("known"))
    is_mapped = pl.col("label").is_not_null()
    total = int(coded["rows"].sum())
    mapped = int(coded.filter(is_mapped)["rows"].sum())
    unmapped = coded.filter(~is_mapped).group_by("name").agg(pl.col("rows").sum())
    coverage = {
        "prescription_rows": total,
        "mapped_rows": mapped,
        "mapped_share": round(mapped / total, 4) if total else 0.0,
        "unmapped_top": meds.unmapped_top(dict(unmapped.iter_rows())),
    }
    if coder is not None:
        coverage["drug_map"] = coder.source
    if ndc_map is not None:
        in_map = int(coded.filter(pl.col("known"))["rows"].sum())
        coverage["ndc_rxcui_share"] = round(in_map / total, 4) if total else 0.0
    log(
        f"medication coding '{coding}': {mapped:,} of {total:,} prescription rows mapped ({coverage['mapped_share']:.1%})"
    )
    medications = coded.filter(is_mapped).select(["hadm_id", "label"]).explode("label").unique()
    return Coded(medications, coded["hadm_id"].unique(), coverage)


def ordered_codes(frame: pl.DataFrame, prefix: pl.Expr) -> pl.DataFrame:
    """(hadm_id, code) with the system prefix, in normal form (`leader.cohort.normalize_code`) and in
    seq_num order within each admission."""
    frame = (
        frame.with_row_index("_row")
        .with_columns(pl.col("seq_num").cast(pl.Int64, strict=False).alias("_seq"))
        .filter(pl.col("code").is_not_null() & prefix.is_not_null())
        .sort(["hadm_id", "_seq", "_row"], nulls_last=True)
        .select(["hadm_id", (prefix + pl.lit(":") + pl.col("code")).alias("code")])
    )
    normal = {code: normalize_code(code) for code in frame["code"].unique().to_list()}  # once per distinct code
    return frame.with_columns(pl.col("code").replace_strict(normal, return_dtype=pl.String))


def cap_age(age: pl.Expr) -> pl.Expr:
    """Age in whole years, capped at 90 (MIMIC shifts the ages of patients over 89: 90 means 90 or older)."""
    return pl.min_horizontal(age, pl.lit(90)).clip(lower_bound=0).cast(pl.Int64)
