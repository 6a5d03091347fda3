"""`crawler attachments export` with the blobs in S3 (CRAWLER_BLOB_STORE=s3): the command
reads them from the bucket, on moto's server, as it reads them from the file store."""

import hashlib
import json
import random
from pathlib import Path

import pytest

from crawler.blobs import S3BlobStore
from standins.s3 import S3Server
from tests.plugins.admin import Admin

pytestmark = pytest.mark.integration

BUCKET = "crawler-attachments"
PREFIX = "blobs/"


def test_attachments_export_copies_the_blobs_out_of_s3(
    admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)  # the dummy credentials below, no profile
    content = random.Random(6).randbytes(6 * 2**20)  # over one part: a multipart upload
    lost = "f" * 64
    with S3Server() as s3:
        s3.create_bucket(BUCKET)
        store = S3BlobStore(s3.client(), BUCKET, PREFIX)
        with store.writer(content_type="application/pdf") as blob:
            blob.write(content)
            key = store.commit(blob)
        for number, (name, stored) in enumerate([("report.pdf", key), ("lost.pdf", lost)]):
            admin.db.attachments.insert_one(
                {
                    "user_uuid": "u1",
                    "gm_msgid": number,
                    "part": "2",
                    "filename": name,
                    "content_type": "application/pdf",
                    "size": len(content),
                    "sha256": stored,
                    "blob": stored,
                    "saved_at": 1_700_000_000 + number,
                    "message": {"from": "m@example.com", "subject": "s", "date": None},
                }
            )
        target = tmp_path / "out"

        result = admin.run(
            "attachments export --user-uuid u1 --json --to",
            str(target),
            CRAWLER_BLOB_STORE="s3",
            CRAWLER_S3_BUCKET=BUCKET,
            CRAWLER_S3_PREFIX=PREFIX,
            CRAWLER_S3_ENDPOINT_URL=s3.endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        )
        store.client.close()

    assert result.exit_code == 1  # a blob missing from the bucket is named, the rest copied
    assert f"missing blob {lost} ('lost.pdf')" in result.stderr
    [written] = json.loads(result.stdout)
    assert written["file"] == str(target / "report.pdf")
    assert hashlib.sha256((target / "report.pdf").read_bytes()).hexdigest() == key
    assert key == hashlib.sha256(content).hexdigest()
    assert not admin.blob_dir.exists()  # nothing went through the file store
