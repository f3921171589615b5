"""ATC-3 classes from drug names, with no map argument: the MIT name map and WHO ATC titles shipped in the package.

`leader/data/maps/` holds ETHOS's ``mimic_drug_to_atc.csv.gz`` (``drug,atc_code``: drug names as MIMIC
prescription tables spell them -> ATC level 5), ``atc_coding.csv.gz`` (``atc_code,atc_name``: the WHO name
of every ATC code at every level), ``aliases.csv`` (a reviewed table of brand names and abbreviations ->
generic names or ATC codes) and ``corrections.csv`` (a reviewed table of names the shipped map classes
wrongly: name, route, WHO ATC codes, reason); licence and attribution in ``maps/README.md``. A name maps to
every ATC-3 class (first 4 characters) its ATC codes fall in: a combination product, or a name the map lists
under two codes, has two. `AtcCoder` says in which order a name is looked up.
"""

from __future__ import annotations

import functools
import gzip
import re
from importlib import resources
from pathlib import Path

from leader.errors import LeaderError
from leader.io import csv_rows

_MAPS = "maps"
_ATC = re.compile(r"[A-Z]\d\d[A-Z][A-Z0-9]*")

# words dropped wherever they stand: salts and esters, dosage forms, routes, packaging, release types
_SALTS = frozenset(
    "hcl hydrochloride hydrobromide hbr tartrate succinate succ bisulfate maleate mesylate besylate fumarate hyclate "
    "bitartrate dihydrate monohydrate trihydrate anhydrous disodium dipropionate propionate acetonide decanoate "
    "pamoate na sod so".split()
)
# salts that are the drug when they follow a cation ("potassium chloride", "magnesium sulfate")
_ANIONS = frozenset(
    "sodium potassium calcium magnesium sulfate sulphate phosphate acetate citrate bromide gluconate carbonate "
    "chloride lactate".split()
)
_CATIONS = frozenset("sodium potassium calcium magnesium ferrous zinc aluminum lithium ammonium".split())
_FORMS = frozenset(
    "tab tabs tablet tablets tbec tbcr tbdp tb12 tb24 cp12 cp24 cpep cpdr cap caps capsule capsules inj injection "
    "injectable ij soln solution solr solp susp suspension oral liquid liq syrup elixir cream crea ointment oint "
    "gel lotion patch neb nebu nebulizer nebulization inhaler inh aerosol aero mdi hfa ec er xr xl sr cr la dr "
    "odt iv ivpb ivp po pr re sc subq sq im sl subl syringe syrg syr vial vl sdv mdv bag premix piggyback piggy "
    "back powder pwd rectal supp suppository ophth ophthalmic otic drops drop spray nasal chewable chew extended "
    "release rel del immediate delayed disintegrating disperse dispersible pca drip infusion flush pf ud unit "
    "dose conc concentrate kit pen prefilled cartridge carpuject tubex ampul ampule amp bottle btl cup pack packet "
    "pkt pwdpkt mini container cont flex plas glass tube crtrdg ndl package custom ndc excel plus lvp mbp sso pb bq "
    "abboject emul sterile locked repackage std prmx bolus rinse liqd mt half buffered inhl inhale inhalation aers "
    "act ex blist pwpk udpwd pgbk td pt24 rect sublingual intravenous recon ent coat external sa ir tr part "
    "dilution range orderable subcutaneous sub crys adv for lok peripheral bacteriostatic corrective dosing "
    "multidose ml mg mcg gram grams meq mmol mmole unit units bid tid qid prn daily q "
    # RxNorm dose forms and qualifiers (Synthea displays): "Metered Dose Inhaler", "Auto-Injector", ...
    "metered dry mucosal auto injector autoinjector abuse deterrent drug implant ring vaginal transdermal system "
    "intrauterine inhalant topical top per".split()
)
# diluents dropped from a mixture that names a drug ("NITROGLYCERIN 50MG/D5W" -> nitroglycerin)
_DILUENTS = frozenset("d5w d5 ns nss sw lr water d5ns".split())
_UNITS = r"(?:%|mg|mcg|microgram|micrograms|g|gm|gram|grams|ml|l|units?|u|meq|mmol|iu|hr|h|kg|each|ea|actuat|day)"
_STRENGTH = re.compile(rf"(?<![a-z0-9.])\d[\d.,]*\s*{_UNITS}?(?:\s*/\s*\d*[\d.,]*\s*{_UNITS})*(?![a-z0-9])")
_GLUED = re.compile(_UNITS + r"\d+")  # "mL15" in "3 mmol/mL15 mL"
_BRACKETS = re.compile(r"\(.*?\)|\[.*?\]|\*[^*]*\*|\{.*?\}")
_COMBINE = re.compile(r"\s*(?:/|-|\+|&|,|\band\b|\bwith\b|\bw/)\s*")
_APPLICATION = re.compile(r"(?:a?nda|bla)\d+")  # FDA application numbers in RxNorm names: "NDA020800 0.3 ML ..."
_VITAMIN = re.compile(r"\bvitamin\s+b[\s-]*(\d+)\b")  # "Vitamin B 12", "Vitamin B-12" -> "vitamin b12"
_BRACKETED = re.compile(r"\[(.*?)\]")  # "[Tylenol]": a brand name, used when nothing is outside the brackets


def _parts(segment: str) -> list[str]:
    """The drug names of one ':'-separated segment of a lower-case order string, in order."""
    text = _BRACKETS.sub(" ", _VITAMIN.sub(r"vitamin b\1", segment))
    head = re.split(r",(?!\d)", text, maxsplit=1)[0]  # "HEPARIN, PORCINE", "INSULIN LISPRO, RECOMBINANT": a qualifier
    text = head if re.search("[a-z]{3}", head) else text
    head = re.split(r"\bin\b", text, maxsplit=1)[0]  # "VANCOMYCIN 1 GM in NS 250 mL" -> the drug before "in"
    text = _STRENGTH.sub(" ", head if re.search("[a-z]{3}", head) else text)
    parts = []
    for part in _COMBINE.split(text):
        words = [w.lstrip("0123456789") if w[0].isdigit() else w for w in re.split(r"[^a-z0-9]+", part) if w]
        # "1/2NS" -> "ns"; "mL15" -> nothing; "NDA020800" -> nothing
        words = [w for w in words if w and not _GLUED.fullmatch(w) and not _APPLICATION.fullmatch(w)]
        words = [w for w in words if w not in _FORMS and w not in _SALTS]
        while len(words) > 1 and words[-1] in _ANIONS and words[-2] not in _CATIONS:
            words.pop()
        if words and " ".join(words) not in parts:
            parts.append(" ".join(words))
    drugs = [p for p in parts if p not in _DILUENTS and len(p) > 2]  # "Sub-Q", "Senokot-S": no drug in 1-2 letters
    return drugs or parts


_PACKAGE = re.compile(r"\s*[\d.]+\s*(?:ml|l|g|gm|mg|each|ea)\b")


def normalize_drug_name(name: str) -> str:
    """Lower-case generic name of a raw drug name: salts, strengths, forms, "5 ML VIAL : " prefixes removed.

    The components of a combination are joined by " / " in their order ("Hydrocodone-Acetaminophen
    5-325 MG TABS" -> "hydrocodone / acetaminophen"); "" when nothing is left.
    """
    segments = (name or "").lower().replace("\u00a0", " ").split(":")
    # "5 ML VIAL : X" and "X : 10 ML SYRINGE": a segment opening with a quantity describes the package
    segments = [s for s in segments if not _PACKAGE.match(s)] + [s for s in segments if _PACKAGE.match(s)]
    for segment in segments:
        parts = _parts(segment)
        if parts:
            return " / ".join(parts)
    bracketed = " ".join(_BRACKETED.findall(name or ""))  # "[Tylenol]" alone: the brand name is all there is
    return normalize_drug_name(bracketed) if bracketed.strip() else ""


# words of a raw name that say its route; the first route in this order that a word names wins
# ("Gentamicin Ophth. Ointment" is ophthalmic, "Hydrocortisone (Rectal) Cream" rectal)
ROUTES = {
    "ophthalmic": "ophth ophthalmic opht eye",
    "otic": "otic ear",
    "nasal": "nasal intranasal",
    "inhaled": "inh inhl inhale inhalation inhaler inhalant neb nebu nebulizer nebulization hfa mdi respule respules",
    "intrauterine": "intrauterine iud",
    "vaginal": "vaginal vag",
    "rectal": "rectal rect pr re supp suppository enema",
    "topical": "topical top cream crea ointment oint lotion gel jelly external",
    "parenteral": "iv ivpb ivp inj injection injectable ij im sc subq sq intravenous subcutaneous syringe syrg vial",
    "oral": "po oral tab tabs tablet tablets cap caps capsule capsules chew chewable odt syrup elixir",
}
_ROUTE_OF = {word: route for route, words in reversed(ROUTES.items()) for word in words.split()}
_ROUTE_ORDER = {route: i for i, route in enumerate(ROUTES)}


def drug_route(name: str) -> str:
    """The route a raw drug name states ("Hydrocortisone 1% Cream" -> "topical"; a key of `ROUTES`), else ""."""
    found = {_ROUTE_OF[w] for w in re.split(r"[^a-z]+", (name or "").lower()) if w in _ROUTE_OF}
    return min(found, key=_ROUTE_ORDER.__getitem__) if found else ""


def _key(normal: str) -> str:
    """Lookup key of a normalised name: combination components sorted."""
    return " / ".join(sorted(normal.split(" / "))) if normal else ""


def _open_text(data: bytes, path: str, flag: str) -> str:
    """Text of a csv or csv.gz file's bytes; LeaderError naming `flag` when it is neither."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            raise LeaderError(f"{path} is a damaged gzip file; {flag} takes a UTF-8 csv or csv.gz") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LeaderError(f"{path} is not UTF-8 text; {flag} takes a UTF-8 csv or csv.gz") from None


def _read_pairs(text: str, path: str, columns: tuple[str, str], flag: str) -> list[tuple[str, str]]:
    """Rows of a two-named-column CSV (other columns ignored); LeaderError on a wrong header or code."""
    rows = csv_rows(text, path, flag)
    header = [h.strip().lower() for h in next(rows, [])]
    if not set(columns) <= set(header):
        raise LeaderError(
            f"{path} must be a CSV with columns {','.join(columns)} (header found: {','.join(header)[:80] or 'none'}); "
            f"check {flag}"
        )
    i_name, i_code = header.index(columns[0]), header.index(columns[1])
    out = []
    for number, row in enumerate(rows, 2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise LeaderError(
                f"{path}: line {number} has {len(row)} fields, the header has {len(header)}; check {flag}"
            )
        name, code = row[i_name].strip(), row[i_code].strip()
        if not name or not code:
            continue
        out.append((name, code))
    if not out:
        raise LeaderError(f"{path} has no {columns[0]} -> {columns[1]} rows; check {flag}")
    return out


def _shipped(name: str) -> str:
    return _open_text(resources.files("leader.data").joinpath(_MAPS, name).read_bytes(), name, "the package")


@functools.lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """The reviewed alias table: normalised brand name or abbreviation -> normalised generic name."""
    pairs = _read_pairs(_shipped("aliases.csv"), "aliases.csv", ("alias", "generic"), "leader/data/maps/aliases.csv")
    return {
        _key(normalize_drug_name(a)): g.upper() if _ATC.fullmatch(g.upper()) else normalize_drug_name(g)
        for a, g in pairs
    }


def _codes(code: str) -> set[str]:
    return {code.upper()[:4]}


@functools.lru_cache(maxsize=1)
def corrections() -> dict[str, dict[str, frozenset[str]]]:
    """The reviewed corrections of the shipped map: normalised name -> route ("" = any) -> ATC-3 classes.

    ``maps/corrections.csv`` rows are ``name,route,atc_codes,reason``: WHO ATC level-5 codes separated by
    ";", each one the WHO name table holds, or ``none`` for a name that is no drug (no class); a route is a
    key of `ROUTES` or empty.
    """
    text = _shipped("corrections.csv")
    rows = list(csv_rows(text, "corrections.csv", "leader/data/maps/corrections.csv"))
    if not rows or rows[0] != ["name", "route", "atc_codes", "reason"]:
        raise LeaderError("leader/data/maps/corrections.csv must have the header name,route,atc_codes,reason")
    out: dict[str, dict[str, frozenset[str]]] = {}
    for number, row in enumerate(rows[1:], 2):
        name, route, codes, reason = (cell.strip() for cell in row) if len(row) == 4 else ("", "", "", "")
        codes = [c.strip().upper() for c in codes.split(";") if c.strip()]
        codes = [] if codes == ["NONE"] else codes or ["?"]
        bad = [c for c in codes if len(c) != 7 or not _ATC.fullmatch(c) or c not in _titles()]
        if not (name and reason) or bad or (route and route not in ROUTES):
            raise LeaderError(
                f"leader/data/maps/corrections.csv line {number} ({';'.join(bad) or row}): each row needs a name, "
                f"a route ({'|'.join(ROUTES)}) or none, WHO level-5 ATC codes joined by ';' or 'none', and a reason"
            )
        key = _key(normalize_drug_name(name))
        if route in out.get(key, {}):
            raise LeaderError(f"leader/data/maps/corrections.csv line {number}: '{name}' {route} is listed twice")
        out.setdefault(key, {})[route] = frozenset(c[:4] for c in codes)
    return out


@functools.lru_cache(maxsize=1)
def _titles() -> dict[str, str]:
    pairs = _read_pairs(_shipped("atc_coding.csv.gz"), "atc_coding.csv.gz", ("atc_code", "atc_name"), "the package")
    return {code.upper(): title for code, title in pairs}


def atc_titles() -> dict[str, str]:
    """Every shipped ATC code (all levels, upper case) -> its WHO name."""
    return dict(_titles())


def atc_title(code: str) -> str:
    """WHO name of an ATC code at any level ("C07A" -> "beta blocking agents"); "" if unknown."""
    return _titles().get((code or "").strip().upper(), "")


def label_title(label: str, titles: dict[str, str]) -> str:
    """Title of a medication label: the dataset's (vocab.json), else the WHO name of an ATC code, else the label."""
    return str(titles.get(label) or atc_title(label) or label).strip()


class AtcCoder:
    """Raw drug name -> sorted ATC-3 classes.

    Lookup order: a reviewed correction of the name or of its alias's generic name (`corrections`, for the
    route the raw name states, else for any route); the name as written (lower-case, as the map spells it);
    then its normalised name (`normalize_drug_name`, combination components in any order), through the
    correction and alias tables first, else the map; for a combination, its components run together
    ("insulin / lispro" -> "insulin lispro"), then each component (all must map: no half label); for one
    name, its leading words ("insulin regular human" -> "insulin regular" -> "insulin"), never a lone salt
    word such as "sodium". An alias's generic name is looked up the same way, without a second alias step.
    Corrections fix the shipped map only: a ``--drug-atc`` map is used as its author wrote it.
    """

    def __init__(self, pairs: list[tuple[str, str]], source: str, fixes: dict | None = None) -> None:
        self.source = source
        self._fixes: dict[str, dict[str, frozenset[str]]] = fixes or {}
        self._exact: dict[str, set[str]] = {}
        self._normal: dict[str, set[str]] = {}
        for name, code in pairs:
            if len(code) < 4:
                continue
            self._exact.setdefault(name.lower().strip(), set()).add(code[:4])
            key = _key(normalize_drug_name(name))
            if key:
                self._normal.setdefault(key, set()).add(code[:4])

    @classmethod
    @functools.lru_cache(maxsize=1)
    def default(cls) -> AtcCoder:
        """The MIT name map shipped in the package (cached)."""
        pairs = _read_pairs(
            _shipped("mimic_drug_to_atc.csv.gz"), "mimic_drug_to_atc.csv.gz", ("drug", "atc_code"), "the package"
        )
        pairs = [(name, code.upper()) for name, code in pairs]
        return cls(pairs, "leader/data/maps/mimic_drug_to_atc.csv.gz", corrections())

    @classmethod
    def from_file(cls, path: str | Path) -> AtcCoder:
        """A name map given with --drug-atc: csv or csv.gz with columns drug,atc_code; LeaderError on a bad file."""
        path = Path(path)
        if not path.is_file():
            raise LeaderError(f"drug name map not found: {path}; check --drug-atc")
        pairs = _read_pairs(
            _open_text(path.read_bytes(), str(path), "--drug-atc"), str(path), ("drug", "atc_code"), "--drug-atc"
        )
        pairs = [(name, code.upper()) for name, code in pairs]
        for number, (name, code) in enumerate(pairs, 1):
            if not _ATC.fullmatch(code):
                raise LeaderError(
                    f"{path}: '{code[:20]}' (drug '{name[:40]}', data row {number}) is not an ATC code like C03CA01; "
                    "check --drug-atc"
                )
        return cls(pairs, str(path))

    def _fixed(self, key: str, route: str) -> frozenset[str] | None:
        """The corrected classes of a normalised name for `route`, else for any route; None if not corrected."""
        rows = self._fixes.get(key)
        return None if rows is None else rows.get(route, rows.get(""))

    def _known(self, key: str, aliased: bool, route: str = "") -> set[str]:
        """Classes of one normalised name: a correction, else the alias table (both reviewed), else the map."""
        fixed = self._fixed(key, route)
        if fixed is not None:
            return set(fixed)
        target = None if aliased else _aliases().get(key)
        if target is None:
            return self._normal.get(key, set())
        return _codes(target) if _ATC.fullmatch(target.upper()) else self._resolve(target, True, route)

    def _single(self, normal: str, aliased: bool, route: str = "") -> set[str]:
        """One name, else its leading words ("insulin regular human" -> "insulin regular"), never a lone salt."""
        words = normal.split()
        for end in range(len(words), 0, -1):
            alone = words[0] in _CATIONS or words[0] in _ANIONS or len(words[0]) < 3
            if end == 1 and alone and (aliased or words[0] not in _aliases()):
                break
            found = self._known(" ".join(words[:end]), aliased, route)
            if found:
                return found
        return set()

    def _resolve(self, normal: str, aliased: bool = False, route: str = "") -> set[str]:
        """Classes of a normalised name; `aliased`: reached through an alias (no second alias step)."""
        found = self._known(_key(normal), aliased, route)
        parts = normal.split(" / ")
        if found or len(parts) == 1:
            return found or self._single(normal, aliased, route)
        found = self._known(" ".join(parts), aliased, route)  # "insulin-lispro" -> "insulin lispro"
        each = [self._single(part, aliased, route) for part in parts]
        return found or (set().union(*each) if all(each) else set())

    def _corrected(self, normal: str) -> str | None:
        """The corrected name a normalised name falls under: itself, its alias's generic name, or (one drug) its
        longest corrected leading words ("methylprednisolone suc" -> "methylprednisolone"); None if none."""
        key = _key(normal)
        target = _aliases().get(key)
        if key in self._fixes or (target is not None and _key(target) in self._fixes):
            return normal
        words = normal.split() if " / " not in normal else []
        return next(
            (" ".join(words[:n]) for n in range(len(words) - 1, 0, -1) if " ".join(words[:n]) in self._fixes), None
        )

    def atc3(self, name: str) -> tuple[str, ...]:
        """Sorted ATC-3 classes (4 characters, e.g. "C03C") of a raw drug name; () if unmapped."""
        normal = normalize_drug_name(name)
        fixed = self._corrected(normal) if normal and self._fixes else None
        if fixed is not None:  # a reviewed correction outranks the map's own spellings
            return tuple(sorted(self._resolve(fixed, route=drug_route(name))))
        found = self._exact.get((name or "").lower().strip())
        if not found:
            found = self._resolve(normal, route=drug_route(name)) if normal else set()
        return tuple(sorted(found))
