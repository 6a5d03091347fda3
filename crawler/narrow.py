"""One command for many UIDs, and what to do when it fails for some: each UID alone.

When Gmail could not FETCH some messages of a command (`PartialFetch`), or an answer cannot be
read (`ProtocolError` on a connection still in step; a `ServerFault` is raised at once), the
command is sent again for each UID alone (a lone UID gets a second try): what comes back is
kept, and a UID that fails even alone is reported, not retried. But when no answer for any of
the UIDs could be read, the server may be at fault rather than the messages: while
`server_at_fault` says so, the error is raised and every UID is retried later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from crawler.errors import CrawlerError, PartialFetch, ProtocolError, ServerFault

T = TypeVar("T")
Attempt = Callable[[list[int]], Iterator[T]]
Failed = Callable[[int, CrawlerError], None]
ServerAtFault = Callable[[Sequence[int]], bool]


def one_at_a_time(
    uids: list[int],
    attempt: Attempt[T],
    *,
    broken: Callable[[], bool],
    failed: Failed,
    server_at_fault: ServerAtFault,
) -> Iterator[T]:
    """What `attempt(uids)` yields; if it fails for some of them, what each UID alone yields.

    `broken` tells whether the connection is out of step (then nothing more is sent on it, and
    the error is raised); what an attempt yielded before it failed is passed on all the same.
    """
    try:
        yield from attempt(uids)
        return
    except ServerFault:
        raise
    except (PartialFetch, ProtocolError):
        if broken():
            raise
    failures: list[tuple[int, CrawlerError]] = []
    for uid in uids:
        try:
            yield from attempt([uid])
        except ServerFault:
            raise
        except (PartialFetch, ProtocolError) as error:
            if broken():
                raise
            failures.append((uid, error))
    unreadable = [failure for _, failure in failures if not isinstance(failure, PartialFetch)]
    if len(unreadable) == len(uids) and server_at_fault(uids):
        raise unreadable[0]
    for uid, failure in failures:
        failed(uid, failure)
