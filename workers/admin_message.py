"""The attachment parts of a message file, as the crawler would see them on Gmail.

`crawler rules test` reads an .eml instead of a mailbox. The email package parses it, and this
module writes the parsed tree in the shape of a parsed BODYSTRUCTURE (RFC 3501 part numbers, raw
parameter values, RFC 2231 sections joined into ``NAME*`` as IMAP servers send them), so that
`crawler.mime.attachment_parts` decides what is an attachment, and decodes its name, exactly as
it does for Gmail's answer. Sizes are exact: the decoded bodies are at hand.
"""

from __future__ import annotations

import email
import email.policy
import re
import urllib.parse
from dataclasses import replace
from email.message import Message
from typing import Any

from crawler.mime import AttachmentPart, attachment_parts

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def eml_parts(raw: bytes) -> list[AttachmentPart]:
    """The attachment parts (and inline images) of a raw message, with exact decoded sizes."""
    # compat32 joins RFC 2231 sections in any order and keeps raw 8-bit bytes recoverable.
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    leaves: dict[str, Message] = {}
    structure = _node(message, "", leaves)
    return [
        replace(part, decoded_size=_decoded_size(leaves[part.part]))
        if part.part in leaves
        else part  # an attached message: its size is the structure's
        for part in attachment_parts(structure).parts
    ]


def _node(message: Message, number: str, leaves: dict[str, Message]) -> tuple[Any, ...]:
    """The BODYSTRUCTURE of `message` at part `number`; its leaves recorded by number."""
    if _is_multipart(message):
        children = [
            _node(child, f"{number}.{index}" if number else str(index), leaves)
            for index, child in enumerate(message.get_payload(), start=1)
        ]
        return (children, message.get_content_subtype())
    here = number or "1"
    inner = _enclosed(message)
    if inner is not None:
        # A forwarded message: its parts are here.1, here.2 ... (here.1 when single part).
        body = _node(inner, here if _is_multipart(inner) else f"{here}.1", leaves)
        envelope = (None, _header(inner, "subject"))  # the subject names the attached message
        return _leaf(message, [envelope, body, 0])
    leaves[here] = message
    return _leaf(message, [0] if message.get_content_maintype() == "text" else [])


def _enclosed(message: Message) -> Message | None:
    """The message inside a message/rfc822 part, when the parser found one."""
    payload = message.get_payload()
    if message.get_content_type() != "message/rfc822" or not isinstance(payload, list):
        return None
    return payload[0] if payload and isinstance(payload[0], Message) else None


def _is_multipart(message: Message) -> bool:
    # compat32 keeps a message/rfc822 body as a list too: only a multipart type has children.
    return message.get_content_maintype() == "multipart" and isinstance(message.get_payload(), list)


def _leaf(message: Message, between: list[Any]) -> tuple[Any, ...]:
    """A single part: the basic fields, then `between` (text lines; envelope, body, lines), then
    MD5 and disposition, as RFC 3501 orders them."""
    encoding = _header(message, "content-transfer-encoding")
    return (
        message.get_content_maintype(),
        message.get_content_subtype(),
        _params(message, "content-type"),
        _header(message, "content-id"),
        None,
        encoding.lower() if encoding else None,
        _encoded_size(message),
        *between,
        None,
        _disposition(message),
    )


def _disposition(message: Message) -> tuple[str, list[Any] | None] | None:
    text = _header(message, "content-disposition")
    if text is None:
        return None
    return text.split(";", 1)[0].strip(), _params(message, "content-disposition")


def _params(message: Message, name: str) -> list[Any] | None:
    """The parameters of header `name` as BODYSTRUCTURE lists them: key, raw value, ..."""
    text = _header(message, name)
    if text is None:
        return None
    probe = Message()  # compat32 splits a decoded header; it would mangle raw 8-bit bytes
    probe[name] = text
    flat: list[Any] = []
    for key, value in (probe.get_params(header=name) or [])[1:]:  # the first is the type
        if isinstance(value, tuple):  # RFC 2231: give it back percent-encoded under NAME*
            charset, language, octets = value
            encoded = urllib.parse.quote_from_bytes(_octets(octets))
            flat += [f"{key}*", f"{charset or ''}'{language or ''}'{encoded}".encode()]
        else:
            flat += [key, value.encode()]
    return flat


def _octets(text: str) -> bytes:
    # compat32 holds percent-decoded octets as latin-1 characters; raw text past it is UTF-8.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def _header(message: Message, name: str) -> str | None:
    """A header's unfolded value, raw 8-bit bytes read as UTF-8 or else latin-1; None if empty."""
    for key, value in message.raw_items():
        if key.lower() == name:
            # The parser keeps bytes that are not ASCII as surrogates: get the bytes back.
            data = str(value).encode("ascii", "surrogateescape")
            try:
                text = data.decode()
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            return _FOLD.sub("", text).strip() or None
    return None


def _encoded_size(message: Message) -> int:
    payload = message.get_payload()
    return len(payload.encode("utf-8", "surrogateescape")) if isinstance(payload, str) else 0


def _decoded_size(message: Message) -> int:
    data = message.get_payload(decode=True)
    return len(data) if isinstance(data, bytes) else 0
