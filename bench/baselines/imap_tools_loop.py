"""imap-tools' documented attachment loop: `for msg in mailbox.fetch(): for att in
msg.attachments: save att.payload`, with `mark_seen=False` so the mailbox is left as it was."""

from __future__ import annotations

from imap_tools import MailBoxUnencrypted

from bench.child import Job, Saver, search_criteria


class Contender:
    """A script that remembers the last UID it saw."""

    external = False

    def __init__(self, job: Job) -> None:
        self.job = job
        self.saver = Saver(job.out)
        self.last_uid = 0

    def crawl(self) -> None:
        """Fetch the new messages one by one (the library's default) and save their attachments."""
        mailbox = MailBoxUnencrypted(self.job.host, self.job.port)
        with mailbox.login(self.job.user, self.job.password, initial_folder=self.job.folder):
            criteria = search_criteria(self.job, self.last_uid)
            for message in mailbox.fetch(criteria, mark_seen=False):
                uid = int(message.uid or 0)
                if uid <= self.last_uid:  # `n:*` always matches the highest UID
                    continue
                for attachment in message.attachments:
                    self.saver.save(attachment.payload)
                self.last_uid = max(self.last_uid, uid)
