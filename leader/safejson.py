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


class JSONError(ValueError):
    """Text that is not JSON, or JSON beyond the limits above. The message says what and where,
    phrased to follow "is" (``f"{path}: line {n} is {err}"``)."""


_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET_OR_QUOTE = bytes(c for c in range(256) if c not in b'[]{}"')
_QUOTED = re.compile(rb'"[^"]*"')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A \\u escape in the UTF-16 surrogate range (a pair is fine; a lone one is not)."""
_FEW_ESCAPES = 64
"""Escapes cut out one by one (each a memchr jump); beyond, at C speed over the whole text."""


def _without_escapes(data: bytes) -> tuple[bytes, bool]:
    """(`data` without its escape sequences' backslash and next character, cut as a JSON lexer reads
    them, so the quotes left are exactly the strings' delimiters; whether one is a \\u escape in the
    surrogate range). Text with no or few escapes, the usual case, costs a memchr per escape; with
    many, the two escapes that matter for quotes go at C speed: escaped backslashes, then quotes."""
    parts, start, surrogate = [], 0, False
    while (at := data.find(b"\\", start)) != -1:
        if len(parts) == _FEW_ESCAPES:
            return data.replace(b"\\\\", b"").replace(b'\\"', b""), _SURROGATE_ESCAPE.search(data) is not None
        parts.append(data[start:at])
        surrogate = surrogate or _SURROGATE_ESCAPE.match(data, at) is not None
        start = at + 2
    parts.append(data[start:])
    return b"".join(parts), surrogate


def _check_depth(data: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the recursive parser sees it, at C speed. `data`
    is the text without escapes: keep only brackets and quotes, reading { } as [ ] (valid JSON pairs
    them alike), drop adjacent quote pairs (every string without brackets; the quotes left still
    pair up), then the strings left, then the innermost bracket pairs once per level."""
    if len(data) <= 2 * MAX_DEPTH:  # too short to open MAX_DEPTH + 1 brackets
        return
    data = data.translate(_ONE_BRACKET, _NOT_BRACKET_OR_QUOTE)
    if data.count(b"[") <= MAX_DEPTH:
        return
    data = data.replace(b'""', b"")
    if b'"' in data:
        data = _QUOTED.sub(b"", data)
    for _ in range(MAX_DEPTH):
        shorter = data.replace(b"[]", b"")
        if len(shorter) == len(data):
            return  # empty, or unbalanced: the parser reports the syntax error
        data = shorter
    if b"[]" in data:
        raise JSONError(f"not valid JSON here (nested deeper than {MAX_DEPTH} levels)")


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


_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)
"""The C decoder, calling back to Python only for numbers: a patient line holds a few, a 46 kB CDS
Hooks request with a Synthea Bundle seven, so it runs as fast as the plain decoder, and faster than
scanning the text first for numbers that could need the checks."""


def loads(text: str | bytes) -> object:
    """Parse one JSON document within the limits above; raises JSONError otherwise. The checks cost
    little beside the C parser: on the 46 kB CDS Hooks request of benchmarks/serve_bench.py, 0.22 ms
    against 0.18 ms for json.loads (0.52 ms before the scans worked on the text without escapes)."""
    if isinstance(text, bytes):
        data = text
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise JSONError(f"not UTF-8 text (byte {err.start})") from None
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate character no UTF-8 file can hold
            raise JSONError(f"not UTF-8 text (a lone UTF-16 surrogate at character {err.start})") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content
    data, surrogates = _without_escapes(data)
    _check_depth(data)
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise JSONError(f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except RecursionError:  # only if MAX_DEPTH exceeds what this interpreter's stack allows
        raise JSONError(f"not valid JSON here (nested deeper than {MAX_DEPTH} levels)") from None
    if surrogates:  # "\ud800" alone decodes to a string no UTF-8 file can hold
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONError(
                "not valid JSON here (a string holds a lone UTF-16 surrogate escape \\ud800-\\udfff)"
            ) from None
    return value
