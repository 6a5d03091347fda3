"""Secrets found and filtered: tokens, keys and passwords made `[Filtered]` in text and structures.

`scrub_text(text)` filters every secret that `text` shows by its shape (Google access and refresh
tokens, XOAUTH2 strings, Fernet tokens, OAuth client secrets, `Bearer` values, `name=value`
secrets, base64 that decodes to any of these) and each configured secret passed with it.
`scrub(value)` makes a JSON-ready copy of a structure (an Airbrake notice, a context) in which a
value under a secret's name (SECRET_NAME) goes whole and every text goes through `scrub_text`.
Log lines and Airbrake notices both pass through here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from typing import TypeAlias

__all__ = ["FILTERED", "MIN_KNOWN_SECRET", "SECRET_NAME", "Json", "scrub", "scrub_text"]

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None

FILTERED = "[Filtered]"
MIN_KNOWN_SECRET = 8  # shorter configured secrets would filter ordinary words
_MAX_DEPTH = 32  # deeper structures are reported as their text (and cycles end)

# Names whose values are secrets, wherever they stand: context, params, session, frame vars.
SECRET_NAME = re.compile(r"passw|secret|token|key|authoriz|credential|cookie|^auth$", re.I)
_SECRET_TEXT = re.compile(
    r"""
    user=[^\s\x01\\]*(?:\x01|\\x01)auth=[^\x01\n'"]*(?:\x01|\\x01)*  # XOAUTH2, raw or repr()'d
    | \bya29\.[\w.~+/-]+=*       # Google access tokens (the fakes' ya29.fake. ones too)
    | \b1//[\w.~+/-]+=*          # Google refresh tokens
    | \bgAAAAA[\w-]+=*           # Fernet tokens: the crawler's tokens encrypted at rest
    | \bGOCSPX-[\w-]+            # Google OAuth client secrets
    """,
    re.VERBOSE,
)
_BEARER = re.compile(r"\b(Bearer\s+)(?!\[Filtered\])[^\s\"',;]+", re.I)
# `name=value` (forms, URLs, reprs) and `name: 'value'` (dicts, JSON) under a secret's name;
# an unquoted value only right after `=`, so that prose such as "token: expired" stays.
_ASSIGNMENT = re.compile(
    r"""
    (?P<name>\b(?!\w*error\b)\w*(?:passw|secret|token|key|authoriz|credential)\w*['"]?\s*[:=]\s*)
    (?P<value>'[^']*'|"[^"]*"|(?<==)(?!\[Filtered\])[^\s"'&,;#)}\]]+)
    """,
    re.VERBOSE | re.I,
)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")


def scrub_text(text: str, secrets: Collection[str] = ()) -> str:
    """`text` with every token, key and password in it, and each of `secrets`, made FILTERED."""
    for secret in secrets:
        if len(secret) >= MIN_KNOWN_SECRET:
            text = text.replace(secret, FILTERED)
    text = _SECRET_TEXT.sub(FILTERED, text)
    text = _BEARER.sub(rf"\g<1>{FILTERED}", text)
    text = _ASSIGNMENT.sub(_filter_assignment, text)
    return _BASE64_RUN.sub(_filter_encoded, text)


def _filter_assignment(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "'\"" else ""
    return f"{match['name']}{quote}{FILTERED}{quote}"


def _filter_encoded(match: re.Match[str]) -> str:
    """A base64 run whose decoding holds a secret (an XOAUTH2 string, an encoded token)."""
    run = match[0]
    try:
        decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("latin-1")
    except binascii.Error:
        return run
    return FILTERED if _SECRET_TEXT.search(decoded) or _BEARER.search(decoded) else run


def scrub(value: object, secrets: Collection[str] = ()) -> Json:
    """A JSON-ready copy of `value` with every secret in it made FILTERED.

    A value under a secret's name (SECRET_NAME) goes whole; every text, key or value, loses the
    tokens, XOAUTH2 strings and `name=value` secrets that `scrub_text` finds in it.
    """
    return _scrub(value, secrets, 0)


def _scrub(value: object, secrets: Collection[str], depth: int) -> Json:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth < _MAX_DEPTH and isinstance(value, Mapping):
        return {
            scrub_text(str(key), secrets): _scrub_named(str(key), item, secrets, depth + 1)
            for key, item in value.items()
        }
    if depth < _MAX_DEPTH and isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item, secrets, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"), secrets)
    return scrub_text(str(value), secrets)


def _scrub_named(name: str, value: object, secrets: Collection[str], depth: int) -> Json:
    return FILTERED if SECRET_NAME.search(name) else _scrub(value, secrets, depth)
