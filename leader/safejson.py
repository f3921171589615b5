"""The one JSON parser for everything leader reads: bounded depth, bounded numbers, finite only.

    from leader.safejson import JSONError, loads
    record = loads(line)          # JSONError (a ValueError) says what is wrong and where

Python's `json` accepts ``NaN``/``Infinity``, turns ``1e400`` into ``inf``, raises ValueError on a
5,000-digit integer and RecursionError on deep nesting; any of those in one line of a patient file
used to crash a whole run. Every JSON reader of the project (cohort JSONL, run/manifest/vocab
files, model metadata, `leader predict` input lines) goes through `loads`, so the limits below are
one rule in one place. Callers turn a JSONError into a LeaderError naming the file and line.
Standard library only: the torch-free runtime imports it.
"""

from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 64
"""Deepest nesting of arrays/objects accepted (a patient record is 4 deep; a run.json about 6)."""
MAX_NUMBER_CHARS = 100
"""Longest number literal accepted, in characters (an age, a count or a float64 needs far fewer)."""

_NOT_BRACKET_OR_QUOTE = bytes(c for c in range(256) if c not in b'[]{}"')
_QUOTED = re.compile(rb'"[^"]*"')
_SHAPE = bytes(
    ord("0") if c in b"0123456789" else ord("e") if c in b"eE" else ord("+") if c in b"+-" else ord("x")
    for c in range(256)
)
"""bytes.translate table reducing text to the shape of its numbers: digits -> 0, e/E -> e, +/- -> +."""


def _suspect(text: str) -> bool:
    """Whether `text` could break a number limit, so the checked decoder must parse it. A number of
    over 100 characters has a run of 32+ digits; a float overflows only with a 3-digit exponent or
    309+ digits; NaN/Infinity and lone surrogates need their words or a \\u escape. Nearly every
    line has none of these and takes the plain C parser (the test costs ~1 us on a 370-char line)."""
    if "NaN" in text or "Infinity" in text or "\\u" in text:
        return True
    data = text.encode("utf-8", "surrogatepass")
    if not _risky_shape(data):
        return False
    # ids inside strings often look like numbers ("6e-456" in a UUID): look again outside strings;
    # an escaped quote could misalign the pairing, so such a line stays suspect
    return b'\\"' in data or _risky_shape(_QUOTED.sub(b'""', data))


def _risky_shape(data: bytes) -> bool:
    shape = data.translate(_SHAPE)
    return b"0" * 32 in shape or b"0e000" in shape or b"0e+000" in shape


class JSONError(ValueError):
    """Text that is not JSON, or JSON beyond the limits above. The message says what and where,
    phrased to follow "is" (``f"{path}: line {n} is {err}"``)."""


def _number(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONError(f"not valid JSON here (a number of {len(text)} characters; the limit is {MAX_NUMBER_CHARS})")


def _int(text: str) -> int:
    _number(text)
    return int(text)


def _float(text: str) -> float:
    _number(text)
    value = float(text)
    if not math.isfinite(value):
        raise JSONError(f"not valid JSON here (the number {text} overflows to infinity; give a finite number)")
    return value


def _constant(name: str):
    raise JSONError(f"not valid JSON ({name} is not a JSON number; give a finite number or null)")


_PLAIN = json.JSONDecoder()
_CHECKED = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the recursive parser sees it, at C speed: drop
    escaped backslashes and quotes, keep only brackets and quotes, drop adjacent quote pairs (every
    string without brackets; the quotes left still pair up), then the strings left, then the
    innermost bracket pairs once per level (~9 us on a 3 KB, 24-visit line)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    data = text.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = data.translate(None, _NOT_BRACKET_OR_QUOTE).replace(b'""', b"")
    if b'"' in data:
        data = _QUOTED.sub(b"", data)
    for _ in range(MAX_DEPTH):
        shorter = data.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(data):
            return  # empty, or unbalanced: the parser reports the syntax error
        data = shorter
    if b"[]" in data or b"{}" in data:
        raise JSONError(f"not valid JSON here (nested deeper than {MAX_DEPTH} levels)")


def loads(text: str | bytes) -> object:
    """Parse one JSON document within the limits above; raises JSONError otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise JSONError(f"not UTF-8 text (byte {err.start})") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content
    _check_depth(text)
    suspect = _suspect(text)
    try:
        value = (_CHECKED if suspect else _PLAIN).decode(text)
    except json.JSONDecodeError as err:
        raise JSONError(f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except RecursionError:  # only if MAX_DEPTH exceeds what this interpreter's stack allows
        raise JSONError(f"not valid JSON here (nested deeper than {MAX_DEPTH} levels)") from None
    if suspect and "\\u" in text:  # "\ud800" alone decodes to a string no UTF-8 file can hold
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONError(
                "not valid JSON here (a string holds a lone UTF-16 surrogate escape \\ud800-\\udfff)"
            ) from None
    return value
