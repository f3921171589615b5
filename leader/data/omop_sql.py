"""The SQL of `leader data omop`: portable text that DuckDB and PostgreSQL run unchanged.

Joins, visit assignment and grouping happen in the database; Python receives compact rows (one
per visit and concept) and the vocabulary rows of the drug concepts used. No bind parameters and
no ``::`` casts (SQLAlchemy's `text` reads ``:name`` as a parameter); the schema is a checked
identifier, interpolated unquoted so both engines fold its case the same way.

Visit assignment (the rule every event table follows): an event belongs to the visit its
``visit_occurrence_id`` names when that visit is in ``visit_occurrence``; otherwise (the id is
null or names no row) to the same person's visit whose start..end dates (end missing: the start
day) cover the event's start date, the lowest visit id if several do; otherwise it is dropped and
counted. With ``dangling="keep"`` an id that events carry but ``visit_occurrence`` lacks becomes a
visit of its own (start = its earliest event date), for CDMs whose ETL kept only some visit rows.
"""

from __future__ import annotations

TABLES = (
    "person",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "concept",
    "concept_ancestor",
    "concept_relationship",
)
"""The CDM tables the import reads."""

# table kind -> (table, primary key, start date, concept column)
EVENTS = {
    "conditions": ("condition_occurrence", "condition_occurrence_id", "condition_start_date", "condition_concept_id"),
    "procedures": ("procedure_occurrence", "procedure_occurrence_id", "procedure_date", "procedure_concept_id"),
    "drugs": ("drug_exposure", "drug_exposure_id", "drug_exposure_start_date", "drug_concept_id"),
}


def _visits(s: str, dangling: str) -> str:
    """The visits CTE body: visit_id, person_id, visit_concept_id, start_day, end_day, origin."""
    sql = f"""
        SELECT visit_occurrence_id AS visit_id, person_id, visit_concept_id,
               visit_start_date AS start_day, COALESCE(visit_end_date, visit_start_date) AS end_day,
               'in_table' AS origin
        FROM {s}visit_occurrence"""
    if dangling == "keep":
        refs = " UNION ALL ".join(
            f"SELECT visit_occurrence_id, person_id, {day} AS day FROM {s}{table}"
            for table, _, day, _ in EVENTS.values()
        )
        sql += f"""
        UNION ALL
        SELECT r.visit_occurrence_id, MIN(r.person_id), 0, MIN(r.day), MAX(r.day), 'from_dangling_ids'
        FROM ({refs}) r
        WHERE r.visit_occurrence_id IS NOT NULL AND r.day IS NOT NULL AND NOT EXISTS
            (SELECT 1 FROM {s}visit_occurrence o WHERE o.visit_occurrence_id = r.visit_occurrence_id)
        GROUP BY r.visit_occurrence_id"""
    return sql


def _placed(s: str, kind: str, dangling: str) -> str:
    """WITH clause ending in `placed`: every event of a kind with its visit (or null) and how it was placed."""
    table, key, day, concept = EVENTS[kind]
    return f"""
    WITH visits AS ({_visits(s, dangling)}),
    placed AS (
        SELECT e.{key} AS event_id, e.{concept} AS concept_id, e.{day} AS day,
               COALESCE(v.visit_id, MIN(w.visit_id)) AS visit_id,
               CASE WHEN v.visit_id IS NOT NULL THEN 'by_id'
                    WHEN MIN(w.visit_id) IS NOT NULL THEN 'by_date' ELSE 'no_visit' END AS how
        FROM {s}{table} e
        LEFT JOIN visits v ON v.visit_id = e.visit_occurrence_id
        LEFT JOIN visits w ON v.visit_id IS NULL AND w.person_id = e.person_id
            AND e.{day} BETWEEN w.start_day AND w.end_day
        GROUP BY e.{key}, e.{concept}, e.{day}, v.visit_id
    )"""


def visits(s: str, dangling: str) -> str:
    """One row per visit: ids, start date, visit concept name, and the person's profile columns.

    Names come from the concept table; where it lacks the concept (or the id is 0) the source value
    stands in (Eunomia's 442-concept vocabulary has no gender or race concepts)."""
    return f"""
    WITH visits AS ({_visits(s, dangling)})
    SELECT v.person_id, v.visit_id, v.start_day, vc.concept_name, p.year_of_birth,
           COALESCE(gc.concept_name, p.gender_source_value),
           COALESCE(rc.concept_name, p.race_source_value),
           COALESCE(ec.concept_name, p.ethnicity_source_value)
    FROM visits v
    JOIN {s}person p ON p.person_id = v.person_id
    LEFT JOIN {s}concept vc ON vc.concept_id = v.visit_concept_id AND vc.concept_id <> 0
    LEFT JOIN {s}concept gc ON gc.concept_id = p.gender_concept_id AND gc.concept_id <> 0
    LEFT JOIN {s}concept rc ON rc.concept_id = p.race_concept_id AND rc.concept_id <> 0
    LEFT JOIN {s}concept ec ON ec.concept_id = p.ethnicity_concept_id AND ec.concept_id <> 0
    ORDER BY v.person_id, v.visit_id"""


def visit_counts(s: str, dangling: str) -> str:
    """Visits per origin (table row or dangling id) and whether their person exists."""
    return f"""
    WITH visits AS ({_visits(s, dangling)})
    SELECT v.origin, CASE WHEN p.person_id IS NULL THEN 0 ELSE 1 END, COUNT(*)
    FROM visits v LEFT JOIN {s}person p ON p.person_id = v.person_id
    GROUP BY 1, 2 ORDER BY 1, 2"""


def persons(s: str) -> str:
    """Every person id (the patients table of the cleaning rules)."""
    return f"SELECT person_id FROM {s}person ORDER BY person_id"


def codes(s: str, kind: str, dangling: str) -> str:
    """conditions / procedures: (visit_id, vocabulary_id, concept_code, concept_name, first day), by visit."""
    return f"""{_placed(s, kind, dangling)}
    SELECT p.visit_id, c.vocabulary_id, c.concept_code, c.concept_name, MIN(p.day) AS first_day
    FROM placed p JOIN {s}concept c ON c.concept_id = p.concept_id AND c.concept_id <> 0
    WHERE p.visit_id IS NOT NULL
    GROUP BY p.visit_id, c.vocabulary_id, c.concept_code, c.concept_name
    ORDER BY p.visit_id, first_day, c.vocabulary_id, c.concept_code"""


def drugs(s: str, dangling: str) -> str:
    """(visit_id, drug_concept_id, exposure rows), by visit."""
    return f"""{_placed(s, "drugs", dangling)}
    SELECT p.visit_id, p.concept_id, COUNT(*)
    FROM placed p WHERE p.visit_id IS NOT NULL
    GROUP BY p.visit_id, p.concept_id
    ORDER BY p.visit_id, p.concept_id"""


def placement(s: str, kind: str, dangling: str) -> str:
    """Events of a kind per placement (by_id, by_date, no_visit) and concept (1 = known concept)."""
    return f"""{_placed(s, kind, dangling)}
    SELECT p.how, CASE WHEN c.concept_id IS NULL THEN 0 ELSE 1 END, COUNT(*)
    FROM placed p LEFT JOIN {s}concept c ON c.concept_id = p.concept_id AND c.concept_id <> 0
    GROUP BY 1, 2 ORDER BY 1, 2"""


def drug_concepts(s: str) -> str:
    """Per drug concept used: itself ('self'), its ATC classes and its ingredients, with code and name.

    ATC classes come through concept_ancestor (the standard ATC hierarchy over RxNorm) and through
    concept_relationship (e.g. 'RxNorm - ATC', 'Maps to'); ingredients through concept_ancestor."""
    used = f"SELECT DISTINCT drug_concept_id AS drug_id FROM {s}drug_exposure"
    return f"""
    WITH used AS ({used})
    SELECT u.drug_id, 'self', c.vocabulary_id, c.concept_code, c.concept_name
    FROM used u JOIN {s}concept c ON c.concept_id = u.drug_id
    UNION
    SELECT u.drug_id, 'ancestor', a.vocabulary_id, a.concept_code, a.concept_name
    FROM used u JOIN {s}concept_ancestor ca ON ca.descendant_concept_id = u.drug_id
    JOIN {s}concept a ON a.concept_id = ca.ancestor_concept_id
    WHERE a.vocabulary_id = 'ATC' OR a.concept_class_id = 'Ingredient'
    UNION
    SELECT u.drug_id, 'related', a.vocabulary_id, a.concept_code, a.concept_name
    FROM used u JOIN {s}concept_relationship r ON r.concept_id_1 = u.drug_id
    JOIN {s}concept a ON a.concept_id = r.concept_id_2
    WHERE a.vocabulary_id = 'ATC'
    ORDER BY 1, 2, 3, 4"""


def tables_in_schema() -> str:
    """(schema, table) of every table and view the connection sees."""
    return "SELECT table_schema, table_name FROM information_schema.tables"
