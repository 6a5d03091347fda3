"""The naive design as first described: search, push the UIDs on a Redis list, then one RPOP and
one whole-message FETCH per UID, each message parsed with the `email` package."""

from __future__ import annotations

import email
import imaplib
from typing import cast

import redis

from bench.child import Job, Saver, quoted, search_criteria


class Contender:
    """A script that remembers the last UID it saw."""

    external = False

    def __init__(self, job: Job) -> None:
        self.job = job
        self.saver = Saver(job.out)
        self.queue = f"{job.redis_prefix}naive:uids"
        self.redis = redis.Redis()
        self.last_uid = 0

    def crawl(self) -> None:
        """Search for new UIDs, queue them, then fetch and parse them one by one."""
        imap = imaplib.IMAP4(self.job.host, self.job.port)
        imap.login(self.job.user, self.job.password)
        imap.select(quoted(self.job.folder), readonly=True)
        _, found = imap.uid("SEARCH", search_criteria(self.job, self.last_uid))
        uids = [uid for uid in map(int, found[0].split()) if uid > self.last_uid]
        if uids:
            self.redis.rpush(self.queue, *uids)
        while (popped := self.redis.rpop(self.queue)) is not None:
            uid = int(cast(bytes, popped))
            _, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
            self.save_attachments(email.message_from_bytes(data[0][1]))
            self.last_uid = max(self.last_uid, uid)
        imap.logout()

    def save_attachments(self, message: email.message.Message) -> None:
        """Every part with a file name or an attachment disposition."""
        for part in message.walk():
            if part.is_multipart():
                continue
            if part.get_filename() or part.get_content_disposition() == "attachment":
                payload = part.get_payload(decode=True)
                self.saver.save(payload if isinstance(payload, bytes) else b"")
