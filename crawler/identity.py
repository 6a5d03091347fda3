"""A message's identity: what names it across folders, UIDVALIDITY changes and re-crawls.

On Gmail it is X-GM-MSGID. Other servers have none, and a Message-ID alone is not enough:
mailboxes hold different messages with one Message-ID (resent, re-delivered or badly generated
mail). So there it is the Message-ID with a digest of what the server says of the message's
content (size, envelope, structure), all of which survive a UIDVALIDITY change, unlike the UID.
The envelope's date is left out: IMAPClient gives it in the worker's local time zone, and two
workers must name a message alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from imapclient.response_types import Envelope

from crawler.gmail.session import MessageMeta
from crawler.store import storable_msgid

DIGEST_LENGTH = 16  # hex digits: 64 bits tell apart the messages that share one Message-ID


def message_identity(meta: MessageMeta) -> Any:
    """The `gm_msgid` that attachment records of this message carry."""
    if meta.gm_msgid is not None:
        return storable_msgid(meta.gm_msgid)
    described = repr((meta.size, _envelope(meta.envelope), meta.bodystructure))
    digest = hashlib.sha256(described.encode("utf-8", "surrogatepass")).hexdigest()
    message_id = meta.envelope.message_id if meta.envelope else None
    if not message_id:
        return f"sha256:{digest[:DIGEST_LENGTH]}"
    if isinstance(message_id, bytes):
        message_id = message_id.decode("utf-8", "replace")
    return f"{message_id} {digest[:DIGEST_LENGTH]}"


def _envelope(envelope: Envelope | None) -> tuple[Any, ...]:
    if envelope is None:
        return ()
    return dataclasses.astuple(dataclasses.replace(envelope, date=None))
