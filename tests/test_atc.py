"""ATC-3 classes from drug names out of the box (`leader.data.atc`), ATC titles, and the streamed NDC map.

The coverage targets are measured on the shared demos (MIMIC-III demo, eICU demo): those tests
need shared/data (see tests/conftest.py `shared_data`: they skip with the path named, or fail
when LEADER_SHARED_DATA is set).
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import random
import re
import tracemalloc
from collections import Counter
from importlib import resources

import pytest

from leader.cli import main
from leader.data.atc import ROUTES, AtcCoder, atc_title, corrections, drug_route, normalize_drug_name
from leader.data.meds import label_titles, read_ndc_map
from leader.errors import LeaderError
from tests.conftest import MIMIC3_SUBSET, shared_data


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("WARFARIN SODIUM 5 MG PO TABS", "warfarin"),
        ("5 ML VIAL : DILTIAZEM HCL 25 MG/5ML IV SOLN", "diltiazem"),
        ("MORPHINE 5 MG/ML INJECTION : 1 ML VIAL", "morphine"),
        ("1 ML  -  HYDROMORPHONE HCL 1 MG/ML IJ SOLN", "hydromorphone"),
        ("PANTOPRAZOLE SODIUM 40 MG PO TBEC", "pantoprazole"),
        ("POTASSIUM CHLORIDE CRYS ER 20 MEQ PO TBCR", "potassium chloride"),
        ("Magnesium Sulfate", "magnesium sulfate"),
        ("Heparin Sodium", "heparin"),
        ("VANCOmycin 1 GM in NS 250 mL IVPB", "vancomycin"),
        ("NITROGLYCERIN 50MG/D5W 250ML BTL", "nitroglycerin"),
        ("Solu-MEDROL (PF)", "solu / medrol"),
        ("HEPARIN, PORCINE (PF) 5000 UNIT/0.5 ML INJ SYRINGE", "heparin"),
        ("potassium phosphate 3 mmol/mL15 mL Inj", "potassium phosphate"),
        ("ISOSORBIDE MONONITRATE ER 30 MG PO TB24", "isosorbide mononitrate"),
        ("Hydrocodone-Acetaminophen 5-325 MG TABS", "hydrocodone / acetaminophen"),
        ("DEXT 5%-NACL 0.45%-KCL 20MEQ LVP", "dext / nacl / kcl"),
        ("Clopidogrel Bisulfate", "clopidogrel"),
        ("D5 1/2NS", "d5 / ns"),
        ("*NF* Moxifloxacin 0.5% Ophth", "moxifloxacin"),
        ("500 mg", ""),
        ("", ""),
    ],
)
def test_normalize_drug_name(raw, normal):
    assert normalize_drug_name(raw) == normal


def write_map(path, rows, header="drug,atc_code"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_combination_products_get_every_class(tmp_path):
    coder = AtcCoder.from_file(
        write_map(tmp_path / "m.csv", ["Oxycodone,N02AA05", "Acetaminophen,N02BE01", "Furosemide,C03CA01"])
    )
    assert coder.atc3("OXYCODONE-ACETAMINOPHEN 5-325 MG PO TABS") == ("N02A", "N02B")
    assert coder.atc3("acetaminophen/oxycodone") == ("N02A", "N02B")
    # a combination with a component the map does not know stays unmapped (no half label)
    assert coder.atc3("FUROSEMIDE-UNOBTANIUM 20 MG") == ()
    # a name listed with two ATC codes gets both classes
    coder = AtcCoder.from_file(write_map(tmp_path / "m2.csv", ["Aspirin,N02BA01", "Aspirin,A01AD05"]))
    assert coder.atc3("ASPIRIN 81 MG PO CHEW") == ("A01A", "N02B")


def test_leading_words_fall_back_but_never_to_a_lone_salt(tmp_path):
    coder = AtcCoder.from_file(write_map(tmp_path / "m.csv", ["Insulin,A10AB01", "Sodium,A12CA01"]))
    assert coder.atc3("INSULIN REGULAR HUMAN 100 UNIT/ML IJ SOLN") == ("A10A",)
    assert coder.atc3("SODIUM BICARBONATE 8.4 % IV SOLN") == ()


@pytest.mark.parametrize(
    "raw, classes",
    [
        ("ZOSYN", ("J01C",)),
        ("ZOSYN 3.375 GRAM in NS 100 mL IVPB", ("J01C",)),
        ("Lopressor", ("C07A",)),
        ("TORADOL", ("M01A",)),
        ("VERSED", ("N05C",)),
        ("NaCl 0.9% MBP", ("A12C", "B05X")),
        ("DEXT 5%-NACL 0.45% 1000 ML LVP", ("A12C", "B05C", "B05X")),
        ("Nitro-Bid", ("C01D",)),
        ("100 ML GLASS CONT : IOPAMIDOL 76 % IV SOLN", ("V08A",)),
        ("Furosemide", ("C03C",)),
        ("UNOBTANIUM 5 MG PO TABS", ()),
    ],
)
def test_shipped_map_and_aliases(raw, classes):
    assert AtcCoder.default().atc3(raw) == classes


def test_every_alias_is_reviewed_and_resolves():
    """Each alias row names its kind and reaches at least one class through the shipped map."""
    text = resources.files("leader.data").joinpath("maps", "aliases.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) >= 20 and {"alias", "generic", "kind"} <= set(rows[0])
    coder = AtcCoder.default()
    aliases = [normalize_drug_name(row["alias"]) for row in rows]
    assert len(set(aliases)) == len(aliases), "an alias is listed twice"
    for row in rows:
        assert row["kind"].strip(), row
        assert coder.atc3(row["alias"]), f"alias {row['alias']} -> {row['generic']} reaches no ATC class"


def test_atc_titles():
    assert atc_title("C07A") == "beta blocking agents"
    assert atc_title("c03c") == "high-ceiling diuretics"
    assert atc_title("C03CA01") == "furosemide" and atc_title("C") == "cardiovascular system"
    assert atc_title("Z99Z") == "" and atc_title("") == ""
    assert label_titles(["C07A", "Z99Z"], "atc3") == {"C07A": "beta blocking agents", "Z99Z": "Z99Z"}


@pytest.mark.parametrize(
    "content, expect",
    [
        (b"name,code\nFurosemide,C03CA01\n", "columns drug,atc_code"),
        (b"drug,atc_code\nFurosemide,furosemide\n", "is not an ATC code"),
        (b"drug,atc_code\nFurosemide,C03CA01,extra\n", "line 2 has 3 fields"),
        (b"drug,atc_code\n", "no drug -> atc_code rows"),
        (b"drug,atc_code\nFuros\xe9mide,C03CA01\n", "not UTF-8"),
        (b"\x1f\x8b\x08\x00broken", "damaged gzip"),
        (b"{'Furosemide': 'C03CA01'}", "columns drug,atc_code"),
    ],
)
def test_bad_name_map_is_one_leader_error(tmp_path, content, expect):
    path = tmp_path / "map.csv"
    path.write_bytes(content)
    with pytest.raises(LeaderError, match=expect) as error:
        AtcCoder.from_file(path)
    assert "\n" not in str(error.value) and "--drug-atc" in str(error.value)
    with pytest.raises(LeaderError, match="not found"):
        AtcCoder.from_file(tmp_path / "missing.csv")


def test_name_map_csv_gz_overrides(tmp_path):
    path = tmp_path / "map.csv.gz"
    path.write_bytes(gzip.compress(b"drug,atc_code,source\nFurosemide,c03ca01,x\n"))
    coder = AtcCoder.from_file(path)
    assert coder.atc3("FUROSEMIDE 40 MG PO TABS") == ("C03C",) and coder.atc3("Heparin") == ()


def run_cli(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.strip().splitlines() if line.startswith("error:")], captured


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--coding", "atc4"], "--coding must be one of atc3, name, got 'atc4'"),
        (["--coding", "name", "--drug-atc", "MAP"], "--drug-atc codes drug names with --coding atc3"),
        (["--coding", "atc3", "--drug-atc", "BAD"], "columns drug,atc_code"),
    ],
)
def test_cli_bad_coding_or_map_is_one_line_exit_2(capsys, tmp_path, extra, expect):
    write_map(tmp_path / "map.csv", ["Furosemide,C03CA01"])
    write_map(tmp_path / "bad.csv", ["Furosemide,C03CA01"], header="name,atc")
    extra = [str(tmp_path / "map.csv") if a == "MAP" else str(tmp_path / "bad.csv") if a == "BAD" else a for a in extra]
    out = tmp_path / "out"
    code, errors, captured = run_cli(
        capsys, ["data", "mimic3", "--root", str(MIMIC3_SUBSET), "--out", str(out), *extra]
    )
    assert code == 2 and len(errors) == 1 and expect in errors[0], captured.err
    assert "Traceback" not in captured.err and not out.exists()


def test_drug_atc_overrides_the_shipped_map(capsys, tmp_path):
    small = write_map(tmp_path / "map.csv", ["Furosemide,C03CA01", "Heparin,B01AB01"])
    out = tmp_path / "out"
    args = ["data", "mimic3", "--root", str(MIMIC3_SUBSET), "--out", str(out), "--coding", "atc3", "--drug-atc"]
    code, errors, captured = run_cli(capsys, [*args, str(small)])
    assert code == 0, captured.err
    vocab = json.loads((out / "vocab.json").read_text())
    assert sorted(vocab["medications"]) == ["B01A", "C03C"]
    assert vocab["titles"]["C03C"] == "high-ceiling diuretics"
    coverage = json.loads((out / "manifest.json").read_text())["coverage"]
    assert coverage["drug_map"] == str(small) and coverage["mapped_share"] < 0.3


def test_mimic3_demo_atc3_with_no_map_argument(capsys, tmp_path):
    root = shared_data("mimic-iii-demo-1.4")
    out = tmp_path / "m3"
    code, errors, captured = run_cli(
        capsys, ["data", "mimic3", "--root", str(root), "--out", str(out), "--coding", "atc3"]
    )
    assert code == 0, captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    vocab = json.loads((out / "vocab.json").read_text())
    coverage = manifest["coverage"]
    assert manifest["medication_coding"] == "atc3" and coverage["prescription_rows"] == 10398
    assert coverage["mapped_share"] >= 0.90  # issue 10 target (exact lower-case names alone: 92.7%)
    assert coverage["mapped_rows"] == 9918 and manifest["counts"]["medications"] == 137
    assert len(coverage["unmapped_top"]) <= 30 and coverage["unmapped_top"][0] == ["Iso-Osmotic Dextrose", 265]
    assert all(
        len(label) == 4 and vocab["titles"][label] == (atc_title(label) or label) for label in vocab["medications"]
    )
    untitled = [label for label in vocab["medications"] if not atc_title(label)]
    assert untitled == ["L01F"]  # monoclonal antibodies: an ATC-3 group newer than the shipped WHO names
    assert vocab["titles"]["C07A"] == "beta blocking agents"

    assert main(["data", "stats", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| medication mapping coverage | 95.4% |" in table
    assert "| unmapped drug names | Iso-Osmotic Dextrose 265, Vial 75," in table


def test_mimic4_atc3_from_names(capsys, tmp_path):
    """MIMIC-IV with --coding atc3 and no map: labels from the drug names (the tiny tables of test_data_mimic4)."""
    from tests.test_data_mimic4 import TABLES, _gz

    for name, lines in TABLES.items():
        _gz(tmp_path / "mimiciv" / f"{name}.csv.gz", lines)
    out = tmp_path / "m4"
    code, errors, captured = run_cli(
        capsys, ["data", "mimic4", "--root", str(tmp_path / "mimiciv"), "--out", str(out), "--coding", "atc3"]
    )
    assert code == 0, captured.err
    coverage = json.loads((out / "manifest.json").read_text())["coverage"]
    # Ceftriaxone, Metoprolol Tartrate x3, NS, Aspirin x3, Heparin Sodium are named in the map; Mystery Cream is not
    assert coverage["prescription_rows"] == 10 and coverage["mapped_rows"] == 9
    assert coverage["unmapped_top"] == [["Mystery Cream", 1]]
    vocab = json.loads((out / "vocab.json").read_text())
    # Aspirin: the map says N02BA01 and A01AD05; the reviewed correction says B01AC06 (antiplatelet)
    assert {"J01D", "C07A", "B01A"} <= set(vocab["medications"]) and not {"N02B", "A01A"} & set(vocab["medications"])
    assert vocab["titles"]["J01D"] == "other beta-lactam antibacterials"


def eicu_order_names() -> list[str | None]:
    """Non-cancelled eICU demo medication orders, an empty drugname filled from the most frequent name of
    the same drughiclseqno (ties: the first name in sort order)."""
    import polars as pl

    path = shared_data("eicu-crd-demo-2.0.1", "medication.csv.gz")
    orders = pl.read_csv(path, infer_schema=False, columns=["drugordercancelled", "drugname", "drughiclseqno"])
    orders = orders.filter(pl.col("drugordercancelled").fill_null("").str.to_lowercase() != "yes").with_columns(
        pl.col("drugname").str.strip_chars().replace("", None)
    )
    by_hicl: dict[str, Counter] = {}
    for name, hicl in orders.select("drugname", "drughiclseqno").drop_nulls().iter_rows():
        by_hicl.setdefault(hicl, Counter())[name] += 1
    best = {hicl: min(names.items(), key=lambda kv: (-kv[1], kv[0]))[0] for hicl, names in by_hicl.items()}
    return [name if name is not None else best.get(hicl) for _, name, hicl in orders.iter_rows()]


def test_eicu_demo_names_coverage():
    names = eicu_order_names()
    coder = AtcCoder.default()
    counts = Counter(names)
    coded = sum(n for name, n in counts.items() if name and coder.atc3(name))
    assert len(names) == 72968  # non-cancelled orders of the demo
    named = sum(n for name, n in counts.items() if name)
    assert named / len(names) > 0.87  # the README: 88% have a name once HICL codes fill the gaps
    assert coded / len(names) >= 0.80, f"{coded / len(names):.1%} of eICU demo orders coded"
    unmapped = Counter({name: n for name, n in counts.items() if name and not coder.atc3(name)})
    assert sum(unmapped.values()) < 0.005 * len(names), unmapped.most_common(10)


def ndc_literal(n: int, seed: int = 0) -> tuple[str, dict[str, str]]:
    rng = random.Random(seed)
    rxcuis = [str(rng.randint(100000, 2000000)) for _ in range(500)]
    pairs = {f"{rng.randint(1, 99999999999):011d}": rng.choice(rxcuis) for _ in range(n)}
    shapes = ["'{k}': u'{v}'", "'{k}': '{v}'", '"{k}": "{v}"', "'{k}': {v}", "'{k}':u'{v}'"]
    items = [shapes[i % len(shapes)].format(k=k, v=v) for i, (k, v) in enumerate(pairs.items())]
    return "{" + ",\n ".join(items) + "}", pairs


def test_ndc_map_is_streamed_like_the_literal(tmp_path):
    text, pairs = ndc_literal(60000)
    path = tmp_path / "ndc2RXCUI.txt"
    path.write_text(text, encoding="utf-8")
    assert {k: str(v) for k, v in ast.literal_eval(text).items()} == pairs  # the test's own literal is valid
    tracemalloc.start()
    try:
        parsed = read_ndc_map(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed == pairs
    # the dict itself takes ~10x the file; ast.literal_eval peaked near 85x (4.4 GB on a 48 MB map)
    assert peak < 20 * len(text), f"peak {peak / 1e6:.0f} MB for a {len(text) / 1e6:.1f} MB map"


@pytest.mark.parametrize(
    "text",
    [
        "{'1': __import__('os').getcwd()}",
        "{'1': '2'} + {'3': '4'}",
        "{'1': '2'",
        "{'1' '2'}",
        "{'1': ('2',)}",
        "{**x}",
        "{}",
        "['1', '2']",
    ],
)
def test_ndc_map_accepts_only_the_dict_shape(tmp_path, text):
    path = tmp_path / "ndc.txt"
    path.write_text(text)
    with pytest.raises(LeaderError, match="is not a Python dict literal") as error:
        read_ndc_map(path)
    assert "\n" not in str(error.value)


def test_ndc_map_across_chunk_boundaries(tmp_path, monkeypatch):
    from leader.data import meds

    monkeypatch.setattr(meds, "_CHUNK", 4099)
    text, pairs = ndc_literal(3000, seed=1)
    path = tmp_path / "ndc.txt"
    path.write_text(text[:-1] + ",\n}\n", encoding="utf-8")  # a trailing comma and newline are fine
    assert read_ndc_map(path) == pairs


def test_prompt_titles_previous_medications_even_without_vocab_titles(hand_dataset):
    from leader.samples import make_samples
    from leader.teacher.prompt import render

    samples = {s.sample_id: s for s in make_samples(hand_dataset)}
    sample = samples["1:2"]  # earlier visits: [A10B], [A10B, C10A]
    no_med_titles = {k: v for k, v in hand_dataset.titles.items() if ":" in k}
    text = render(sample, no_med_titles)
    history = [line for line in text.splitlines() if line.startswith("Visit ")]
    assert history[0].endswith("medications: blood glucose lowering drugs, excl. insulins.")
    assert history[1].endswith(
        "medications: blood glucose lowering drugs, excl. insulins; lipid modifying agents, plain."
    )
    assert "A10B" not in text and "C10A" not in text
    # a title in vocab.json wins over the WHO name
    assert "medications: my own title." in render(sample, no_med_titles | {"A10B": "my own title"})


def test_report_lists_labels_with_their_atc_titles(tmp_path):
    from leader.baseline import BaselineConfig
    from leader.baseline import run as run_baseline
    from leader.cohort import write_dataset
    from leader.report import ReportConfig
    from leader.report import run as run_report
    from tests.conftest import MEDS, TITLES, rule_patients

    titles = {k: v for k, v in TITLES.items() if ":" in k}  # no medication titles: the WHO names fill in
    data = write_dataset(tmp_path / "data", rule_patients(), MEDS, titles, [("C07A", "B01A")], source="test")
    runs = [run_baseline(BaselineConfig(data, tmp_path / "freq", method="frequency"))]
    page = run_report(ReportConfig(runs, tmp_path / "report.html")).read_text()
    table = page[page.index("<h2>Most frequent medications</h2>") :]
    assert "<td>C07A</td><td>beta blocking agents</td>" in table
    assert "<td>B01A</td><td>antithrombotic agents</td>" in table
    assert re.search(r"<th>frequency[^<]* predicted / hit</th>", table)  # the run's column, however it is titled


def test_model_card_lists_classes_with_atc_titles(tmp_path):
    from leader.export.modelcard import model_card

    card = model_card(tmp_path / "m.onnx", {"medications": ["C07A", "B01A", "warfarin"]}, {}, {}, {"B01A": "mine"}, {})
    section = card[card.index("## Drug classes") : card.index("## Quality")]
    assert "| `C07A` | beta blocking agents |" in section  # no title in the dataset: the WHO name
    assert "| `B01A` | mine |" in section and "| `warfarin` | warfarin |" in section


# ---- reviewed corrections of the shipped map, RxNorm display forms, coverage floors (issue 10 follow-up) ----

# raw name as orders spell it -> classes after the corrections table (the map alone gives the comment's classes)
CORRECTED = [
    ("Ibuprofen", ("M01A",)),  # map: C01E (neonatal ductus arteriosus)
    ("Ibuprofen 200 MG Oral Tablet", ("M01A",)),
    ("Motrin", ("M01A",)),  # alias -> ibuprofen, then the correction
    ("Naproxen sodium 220 MG Oral Tablet", ("M01A",)),  # map: G02C
    ("DiphenhydrAMINE", ("R06A",)),  # map: D04A
    ("BENADRYL", ("R06A",)),  # the map's own brand row: D04A
    ("Diphenhydramine 2% Cream", ("D04A",)),  # topical form keeps the topical class
    ("Diltiazem", ("C08D",)),  # map: C05A (anal fissure ointment)
    ("DILTIAZEM HCL", ("C08D",)),
    ("Nitro", ("C01D",)),  # map: C01D and J01X (nitrofurantoin)
    ("Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray", ("C01D",)),
    ("METHYLPREDNISOLONE SODIUM SUCC 125 MG IJ SOLR", ("H02A",)),  # map: D07A H02A
    ("Methylprednisolone Acetate", ("H02A",)),  # map: D07A (aceponate, a topical ester)
    ("SOLU-MEDROL", ("H02A",)),
    ("Vitamin B 12 5 MG/ML Injectable Solution", ("B03B",)),  # normaliser lost the 12: A11D A11H B03B
    ("Aspirin 81 MG Oral Tablet", ("B01A",)),  # map: A01A N02B
    ("ASPIRIN 81 MG PO CHEW", ("B01A",)),
    ("Hydrocortisone 10 MG/ML Topical Cream", ("D07A",)),  # map: A01A H02A
    ("HYDROCORTISONE 1 % TOP CREA", ("D07A",)),
    ("Hydrocortisone Na Succ.", ("H02A",)),
    ("Hydrocortisone (Rectal) 2.5% Cream", ("C05A",)),  # the route word wins over "cream"
    ("heparin", ("B01A",)),  # map: B01A C05B S01X
    ("Fentanyl Patch", ("N02A",)),  # map: N01A only
    ("morphine", ("N02A",)),  # map: A07D N02A
    ("NARCAN", ("V03A",)),  # map: A06A
    ("vancomycin", ("J01X",)),  # map: A07A J01X
    ("Vancomycin Oral Liquid", ("A07A",)),
    ("FLAGYL", ("J01X",)),  # map: A01A (dental gel)
    ("Metronidazole Gel 0.75%", ("D06B",)),
    ("Gentamicin Sulfate", ("J01G",)),  # map: D06A (skin ointment)
    ("Gentamicin 0.3% Ophth. Soln", ("S01A",)),
    ("Ciprofloxacin HCl", ("J01M",)),
    ("Tacrolimus Suspension", ("L04A",)),  # map: D11A
    ("MAGNESIUM SULFATE 2 GM/50 ML IVPB", ("A12C",)),  # map: A06A A12C
    ("sodium phosphate 3 mmol/mL 15 mL Inj", ("B05X",)),  # map: A06A (bowel preparation)
    ("NS", ("A12C", "B05X")),  # map: A12C S01X
    ("LR", ("B05B",)),  # map: A12A
    ("Ipratropium Bromide Neb", ("R03B",)),  # map: R01A (nasal)
    ("1 ML Epinephrine 1 MG/ML Injection", ("C01C",)),  # map: A01A R03A
    ("Mirena 52 MG Intrauterine System", ("G02B",)),  # map: G03A (oral levonorgestrel)
    ("Trinessa 28 Day Pack", ("G03A",)),  # map's TriNessa: G03C (estrogen replacement)
    ("TriNessa (28)", ("G03A",)),
    ("120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", ("R03B",)),  # map: D07A
    ("Orthopedic Solution", ()),  # map: D06A; not a drug name
    ("ORTHOPEDIC KNEE BRACE", ()),  # a device reached D06A through its first word
]


@pytest.mark.parametrize("raw, classes", CORRECTED)
def test_corrections_give_the_main_class_for_the_route_the_name_states(raw, classes):
    assert AtcCoder.default().atc3(raw) == classes


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", "fluticasone"),
        ("200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "albuterol"),
        (
            "60 ACTUAT Fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler",
            "fluticasone / salmeterol",
        ),
        ("Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray", "nitroglycerin"),
        ("NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector", "epinephrine"),
        ("Etonogestrel 68 MG Drug Implant", "etonogestrel"),
        ("NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring", "nuvaring"),
        (
            "168 HR Ethinyl Estradiol 0.00146 MG/HR / norelgestromin 0.00625 MG/HR Transdermal System",
            "ethinyl estradiol / norelgestromin",
        ),
        ("12 HR Cefaclor 500 MG Extended Release Oral Tablet", "cefaclor"),
        ("Abuse-Deterrent 12 HR Oxycodone Hydrochloride 15 MG Extended Release Oral Tablet", "oxycodone"),
        ("Jolivette 28 Day Pack", "jolivette"),
        ("Seasonique 91 Day Pack", "seasonique"),
        ("Mirena 52 MG Intrauterine System", "mirena"),
        ("Hydrocortisone 10 MG/ML Topical Cream", "hydrocortisone"),
        ("Isoflurane 999 MG/ML Inhalant Solution", "isoflurane"),
        ("Vitamin B 12 5 MG/ML Injectable Solution", "vitamin b12"),
        ("Vitamin B-12", "vitamin b12"),
        ("[Tylenol]", "tylenol"),
        ("Carbamazepine[Tegretol]", "carbamazepine"),
        ("Acetaminophen 300 MG / HYDROcodone Bitartrate 5 MG [Vicodin]", "acetaminophen / hydrocodone"),
    ],
)
def test_normalize_rxnorm_display_forms(raw, normal):
    assert normalize_drug_name(raw) == normal


@pytest.mark.parametrize(
    "raw, classes",
    [
        ("Simvistatin 10 MG", ("C10A",)),  # Synthea's misspelling
        ("Alendronic acid 10 MG Oral Tablet", ("M05B",)),  # the WHO name; the map says alendronate
        ("[Tylenol]", ("N02B",)),
        ("Etonogestrel 68 MG Drug Implant", ("G03A",)),
        ("NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring", ("G02B",)),
        ("200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", ("R03A",)),
        ("NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector", ("C01C",)),
    ],
)
def test_synthea_displays_reach_a_class(raw, classes):
    assert AtcCoder.default().atc3(raw) == classes


@pytest.mark.parametrize(
    "raw, route",
    [
        ("Gentamicin 0.3% Ophth. Ointment", "ophthalmic"),
        ("Hydrocortisone (Rectal) 2.5% Cream", "rectal"),
        ("MUPIROCIN 2 % TOP OINT", "topical"),
        ("Fluticasone Propionate NASAL", "nasal"),
        ("ALBUTEROL 2.5 MG/3 ML UD INH SOLN", "inhaled"),
        ("VANCOmycin 1 GM in NS 250 mL IVPB", "parenteral"),
        ("Nystatin Oral Suspension", "oral"),
        ("Heparin Sodium", ""),
    ],
)
def test_drug_route(raw, route):
    assert drug_route(raw) == route


def test_corrections_table_is_short_reviewed_and_who_coded():
    """Each row: a name the shipped map resolves, a known route or none, WHO level-5 codes, one short reason;
    each (name, route) once; tens of rows, not a re-map."""
    text = resources.files("leader.data").joinpath("maps", "corrections.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == ["name", "route", "atc_codes", "reason"] and 20 <= len(rows) <= 100
    seen = set()
    for row in rows:
        codes = row["atc_codes"].split(";")
        assert codes == ["none"] or all(len(c) == 7 and atc_title(c) for c in codes), row  # WHO level-5 codes
        assert row["route"] in ("", *ROUTES) and 5 <= len(row["reason"]) <= 200, row
        assert (row["name"], row["route"]) not in seen, row
        seen.add((row["name"], row["route"]))
    table = corrections()
    assert sum(len(routes) for routes in table.values()) == len(rows)
    assert table["ibuprofen"][""] == {"M01A"} and table["hydrocortisone"]["topical"] == {"D07A"}


def test_a_drug_atc_map_is_used_as_written(tmp_path):
    """Corrections fix the shipped map only: a --drug-atc map keeps its author's classes."""
    coder = AtcCoder.from_file(write_map(tmp_path / "m.csv", ["Ibuprofen,C01EB16", "Aspirin,N02BA01"]))
    assert coder.atc3("Ibuprofen 200 MG Oral Tablet") == ("C01E",) and coder.atc3("ASPIRIN") == ("N02B",)


def test_coverage_floors_on_the_three_demos(capsys, tmp_path):
    """MIMIC-III demo rows, eICU demo orders and Synthea MedicationRequests coded by the shipped map."""
    import polars as pl

    coder = AtcCoder.default()
    rows = pl.read_csv(shared_data("mimic-iii-demo-1.4", "PRESCRIPTIONS.csv"), infer_schema=False, columns=["drug"])
    mimic = Counter(rows["drug"].to_list())
    assert sum(n for name, n in mimic.items() if name and coder.atc3(name)) / sum(mimic.values()) >= 0.95
    eicu = Counter(eicu_order_names())
    assert sum(n for name, n in eicu.items() if name and coder.atc3(name)) / sum(eicu.values()) >= 0.87

    out = tmp_path / "fhir"
    code = main(["data", "fhir", "--input", str(shared_data("fhir-r4-synthea")), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    coverage = json.loads((out / "manifest.json").read_text())["coverage"]
    assert coverage["medication_orders"] == 4475 and coverage["drug_names"] == 124
    assert coverage["mapped_share"] >= 0.99 and coverage["mapped_drug_names"] >= 122  # before: 62.1%, 98 names


@pytest.mark.parametrize(
    "row",
    [
        "ibuprofen,,M01A,a level-4 code",  # not level 5
        "ibuprofen,,M01AE99,a code WHO does not list",
        "ibuprofen,buccal,M01AE01,an unknown route",
        "ibuprofen,,M01AE01,",  # no reason
        "ibuprofen,,,no code",
    ],
)
def test_a_bad_corrections_row_is_one_leader_error(monkeypatch, row):
    from leader.data import atc

    shipped = atc._shipped
    table = f"name,route,atc_codes,reason\nnaproxen,,M01AE02,fine\n{row}\n"
    monkeypatch.setattr(atc, "_shipped", lambda name: table if name == "corrections.csv" else shipped(name))
    atc.corrections.cache_clear()
    try:
        with pytest.raises(LeaderError, match="corrections.csv line 3") as error:
            atc.corrections()
        assert "\n" not in str(error.value)
    finally:
        atc.corrections.cache_clear()
