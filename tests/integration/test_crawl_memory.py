"""Memory does not follow the attachment's size: a 25 MB attachment, crawled in its own process.

The part is bigger than the stream size, so its literal (35 MB of base64) goes to the blob
store a piece at a time as it comes off the wire: at most the piece being read and the one
being decoded are held, and the crawl grows by a few megabytes (3 MB when measured).
"""

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from crawler.oauth import TokenCipher
from standins import tokens
from standins.fakegmail import FakeGmail

pytestmark = pytest.mark.integration

SIZE = 25 * 2**20
GROWTH_BOUND = 6 * 2**20  # twice the 3 MB measured; a sixth of the part's 35 MB of base64
CRAWL = r"""
import json, re, sys, mongomock, redis
from crawler.iterate import CrawlIterator

def kb(field):
    status = open("/proc/self/status").read()
    return int(re.search(field + r":\s+(\d+) kB", status).group(1))

account = json.loads(sys.argv[1])
db = mongomock.MongoClient().crawler
db.accounts.insert_one(account)
db.rules.insert_one({"user_uuid": account["user_uuid"]})
iterator = CrawlIterator(db)
before = kb("VmRSS")  # resident now; VmHWM below is the peak during the crawl
outcome = iterator.iterate().outcomes
after = kb("VmHWM")
stored = db.attachments.find_one()
print(json.dumps({"outcome": outcome, "growth_kb": after - before, "sha256": stored["sha256"]}))
"""


@pytest.mark.timeout(120)
def test_a_25_mb_attachment_grows_rss_by_a_few_megabytes(
    fake_gmail: FakeGmail, redis_prefix: str, tmp_path: Path
) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "x@example.com", "big@example.com", "big"
    message.set_content("a big one")
    content = random.Random(1).randbytes(SIZE)
    message.add_attachment(content, "application", "octet-stream", filename="big.bin")
    fake_gmail.add_account("big@example.com").add_message(message.as_bytes())
    key = Fernet.generate_key().decode()
    cipher = TokenCipher(key)
    account = tokens.gmail_account(cipher, "big", "big@example.com", "r", time.time() + 3600)
    env = {
        **os.environ,
        "CRAWLER_IMAP_HOST": "127.0.0.1",
        "CRAWLER_IMAP_PORT": str(fake_gmail.port),
        "CRAWLER_IMAP_TLS": "false",
        "CRAWLER_SECRET_KEY": key,
        "CRAWLER_BLOB_DIR": str(tmp_path),
        "CRAWLER_REDIS_PREFIX": redis_prefix,
    }

    done = subprocess.run(
        [sys.executable, "-c", CRAWL, json.dumps(account)],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )

    report = json.loads(done.stdout.splitlines()[-1])
    assert report["outcome"] == {"big": "idle"}
    assert report["sha256"] == hashlib.sha256(content).hexdigest()
    assert 0 < report["growth_kb"] * 1024 < GROWTH_BOUND, report
