"""Memory stays bounded whatever an IMAP server sends: a worker process against floods and lies.

`crawler worker --once` runs in a process of its own, and its peak RSS is read when it ends.
A hostile front (`standins.imapfront`) floods one account's answers with what nobody asked for,
or the fake Gmail describes parts far smaller than it serves them. Each attack costs that
account's crawl, in bounded memory; the account beside it is crawled as usual.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail, FakeMessage
from standins.fakeoauth import FakeTokenEndpoint
from standins.imapfront import ImapProxy
from tests.plugins.fakes import build_message
from tests.plugins.workers import run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

VICTIM, BYSTANDER = "victim@example.com", "bystander@example.com"
MAX_RSS = 300 * 2**20  # the bound the worker must stay under, whatever the server sends
MB = 2**20


class Deployment:
    """The fake Gmail behind a hostile front, a token endpoint, the embedded MongoDB."""

    def __init__(
        self,
        mongo: EmbeddedMongo,
        gmail: FakeGmail,
        oauth: FakeTokenEndpoint,
        front: ImapProxy,
        *,
        prefix: str,
        tmp: Path,
    ) -> None:
        self.gmail, self.front = gmail, front
        name = f"peer_{os.getpid()}_{int(time.time() * 1000)}"
        self.client: MongoClient[Any] = MongoClient(mongo.uri)
        self.db: Any = self.client[name]
        key = Fernet.generate_key().decode()
        self.cipher = TokenCipher(key)
        self.oauth = oauth
        self.env = worker_env(
            mongodb_url=f"{mongo.uri}/{name}",
            redis_prefix=prefix,
            imap_port=front.port,
            token_url=oauth.url,
            secret_key=key,
            blob_dir=tmp / "blobs",
            CRAWLER_IMAP_TIMEOUT="5",
            CRAWLER_RETRY_ATTEMPTS="1",
            CRAWLER_RETRY_WAIT="0.1",
            CRAWLER_MAX_ATTACHMENT_SIZE=str(MB),
        )

    def add_account(self, email: str, user_uuid: str) -> Any:
        account = self.gmail.add_account(email)
        self.db.accounts.insert_one(
            tokens.gmail_account(self.cipher, user_uuid, email, "r", time.time() + 3600)
        )
        self.db.rules.insert_one({"user_uuid": user_uuid})
        return account

    def crawl(self) -> int:
        """One pass of a worker process; its peak RSS in bytes."""
        done, peak = run_worker_once(self.env)
        assert done.returncode in {0, 1}, done.stderr.decode()[-2000:]  # 1: a crawl failed
        return peak

    def close(self) -> None:
        self.client.close()

    def status(self, user_uuid: str) -> Any:
        return self.db.crawl_status.find_one({"user_uuid": user_uuid})

    def stored(self, user_uuid: str) -> list[Any]:
        return list(self.db.attachments.find({"user_uuid": user_uuid}))


@pytest.fixture
def deployment(fake_gmail: FakeGmail, redis_prefix: str, tmp_path: Path) -> Iterator[Deployment]:
    with EmbeddedMongo() as mongo, FakeTokenEndpoint() as oauth:
        front = ImapProxy(fake_gmail.port).start()
        world = Deployment(mongo, fake_gmail, oauth, front, prefix=redis_prefix, tmp=tmp_path)
        try:
            bystander = world.add_account(BYSTANDER, "bystander")
            bystander.add_message(build_message(attachments={"b.pdf": b"%PDF-bystander"}))
            yield world
        finally:
            world.close()
            front.stop()


def assert_bystander_crawled(deployment: Deployment) -> None:
    assert deployment.status("bystander")["state"] == "idle"
    assert [doc["filename"] for doc in deployment.stored("bystander")] == ["b.pdf"]


@pytest.mark.parametrize("kind", ["lines", "literals"])
def test_a_flood_of_untagged_answers_costs_one_crawl_in_bounded_memory(
    deployment: Deployment, kind: str
) -> None:
    victim = deployment.add_account(VICTIM, "victim")
    victim.add_message(build_message(attachments={"v.pdf": b"%PDF-victim"}))
    flood = deployment.front.flood(VICTIM, kind, 2**30)  # 1 GiB, made as it is sent

    peak = deployment.crawl()

    assert flood.done.wait(10)
    assert flood.sent < 200 * MB  # the worker hung up long before the flood's end
    assert peak < MAX_RSS, f"peak RSS {peak / MB:.0f} MB"
    status = deployment.status("victim")
    assert status["state"] == "error"
    assert "over the" in status["last_error"]["message"]
    assert deployment.stored("victim") == []
    assert_bystander_crawled(deployment)
    print(f"\n{kind} flood: worker peak RSS {peak / MB:.0f} MB, {flood.sent / MB:.0f} MB sent")


def lying(raw: bytes, claimed: int) -> bytes:
    """The message's BODYSTRUCTURE with the size of part 2 written as `claimed`."""
    structure = FakeMessage(raw).bodystructure()
    marker = b'"BASE64" '
    at = structure.rindex(marker) + len(marker)
    end = structure.index(b" ", at)
    return structure[:at] + str(claimed).encode() + structure[end:]


def test_parts_served_far_bigger_than_claimed_are_refused_in_bounded_memory(
    deployment: Deployment,
) -> None:
    victim = deployment.add_account(VICTIM, "victim")
    for n in range(8):  # each part claims 20 bytes and is served as 16 MiB (encoded)
        raw = build_message(f"m{n}", attachments={f"{n}.bin": os.urandom(12 * MB)})
        victim.add_message(raw, described_as=lying(raw, 20))

    peak = deployment.crawl()

    assert peak < MAX_RSS, f"peak RSS {peak / MB:.0f} MB"
    status = deployment.status("victim")
    assert status["state"] == "error" and "over the" in status["last_error"]["message"]
    assert deployment.stored("victim") == []
    assert_bystander_crawled(deployment)
    print(f"\nlying sizes: worker peak RSS {peak / MB:.0f} MB")


def test_a_part_over_the_size_cap_when_it_arrives_is_skipped_and_recorded(
    deployment: Deployment,
) -> None:
    victim = deployment.add_account(VICTIM, "victim")
    big = os.urandom(MB + MB // 2)  # over the 1 MiB cap; claimed under it
    for n in range(3):
        raw = build_message(f"m{n}", attachments={f"{n}.bin": big + bytes([n])})
        victim.add_message(raw, described_as=lying(raw, MB))
    victim.add_message(build_message("small", attachments={"small.pdf": b"%PDF-small"}))

    peak = deployment.crawl()

    assert peak < MAX_RSS
    assert deployment.status("victim")["state"] == "idle"
    records = {doc["filename"]: doc for doc in deployment.stored("victim")}
    assert records["small.pdf"]["sha256"] == hashlib.sha256(b"%PDF-small").hexdigest()
    skipped = [doc for name, doc in records.items() if name.endswith(".bin")]
    assert len(skipped) == 3
    assert all(doc["blob"] is None and "when it arrived" in doc["skipped"] for doc in skipped)
    assert all(doc["size"] > MB for doc in skipped)  # the size that arrived, not the claim
    assert not list((Path(deployment.env["CRAWLER_BLOB_DIR"])).rglob("*")) or all(
        path.is_dir() or path.stat().st_size < MB
        for path in Path(deployment.env["CRAWLER_BLOB_DIR"]).rglob("*")
    )
    assert_bystander_crawled(deployment)
