"""`crawler attachments`: list the stored attachments, and export an account's to a directory.

An export never overwrites and never leaves the directory: each file gets a safe name derived
from the stored one (`admin_filenames`), is created exclusively (a file, or a symlink planted
under that name, already there is never written through) and takes ` (2)`, ` (3)` ... when the
name is taken. Exported files are their owner's alone (0600), like the blobs, and so are the
directories the export makes (0700), whatever the umask.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from crawler.errors import BadInput
from crawler.store import Document
from workers.admin_context import (
    JsonOption,
    MongoUrlOption,
    Operator,
    fail,
    operator,
    operator_command,
)
from workers.admin_filenames import numbered, safe_filename
from workers.admin_output import console, print_json, relative, table, timestamp
from workers.admin_users import require_known

SHA256_SHOWN = 12  # hex digits of a sha256 in a table
FILE_MODE = 0o600  # an exported file: its owner reads it, as the blobs
DIRECTORY_MODE = 0o700  # a directory the export makes

app = typer.Typer(
    help="List the stored attachments, and export an account's to a directory.",
    no_args_is_help=True,
)


@app.command("list")
@operator_command
def list_attachments(
    user_uuid: Annotated[str | None, typer.Option(help="Only this account's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows at most.")] = 50,
    as_json: JsonOption = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """List stored attachments, newest first."""
    with operator(mongodb_url) as ops:
        if user_uuid is not None:
            require_known(ops, user_uuid, ops.store.has_attachments)
        rows = [_row(document) for document in ops.store.recent_attachments(user_uuid, limit)]
    if as_json:
        print_json(rows)
        return
    now = time.time()
    columns = ("user", "filename", "size", "content type", "sha256", "subject", "from", "saved")
    cells = [
        (
            row["user_uuid"],
            row["filename"],
            row["size"],
            row["content_type"],
            row["sha256"][:SHA256_SHOWN] if row["sha256"] else f"skipped: {row['skipped']}",
            row["subject"],
            f"{row['from_name']} <{row['from']}>" if row["from_name"] else row["from"],
            f"{timestamp(row['saved_at'])} ({relative(row['saved_at'], now)})",
        )
        for row in rows
    ]
    console().print(table("Attachments", columns, cells))


def _row(document: Document) -> dict[str, Any]:
    message = document.get("message")
    if not isinstance(message, dict):
        message = {}
    return {
        "user_uuid": document.get("user_uuid"),
        "filename": document.get("filename"),
        "size": document.get("size"),
        "content_type": document.get("content_type"),
        "sha256": document.get("sha256"),
        "skipped": document.get("skipped"),
        "subject": message.get("subject"),
        "from": message.get("from"),
        "from_name": message.get("from_name"),
        "date": message.get("date"),
        "gm_msgid": document.get("gm_msgid"),
        "part": document.get("part"),
        "saved_at": document.get("saved_at"),
    }


@app.command("export")
@operator_command
def export(
    *,
    user_uuid: Annotated[str, typer.Option(help="The account whose attachments to copy.")],
    to: Annotated[
        Path, typer.Option("--to", help="Directory to copy them into (made if missing).")
    ],
    as_json: JsonOption = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Copy an account's stored attachments into a directory, under safe file names.

    Exit code 1 if a blob is missing from the store (each is named on stderr), or if the
    account is unknown (and nothing is made). The attachments of a removed account are
    exported all the same.
    """
    with operator(mongodb_url) as ops:
        require_known(ops, user_uuid, ops.store.has_attachments)
        written, missing = export_attachments(ops, user_uuid, to)
    for document in missing:
        typer.echo(f"missing blob {document.get('blob')} ({document.get('filename')!r})", err=True)
    if as_json:
        print_json(written)
    else:
        typer.echo(f"exported {len(written)} attachments of {user_uuid} to {to}")
    if missing:
        fail(f"{len(missing)} attachments of {user_uuid} have no blob in the store")


def export_attachments(
    ops: Operator, user_uuid: str, directory: Path
) -> tuple[list[dict[str, Any]], list[Document]]:
    """Copy each stored blob of the account into `directory`; (files written, blobs missing).

    Attachments that were never stored (too large, say) have no blob and are left out.
    """
    make_private_dirs(directory)
    blobs = ops.blobs()
    written, missing = [], []
    for document in ops.store.attachments_of(user_uuid):
        if not document.get("blob"):
            continue
        try:
            source = blobs.open(str(document["blob"]))
        except (FileNotFoundError, BadInput):
            missing.append(document)
            continue
        with source:
            name = safe_filename(document.get("filename"), document.get("sha256"))
            path = write_new(directory, name, source)
        written.append({"filename": document.get("filename"), "file": str(path)})
    return written, missing


def write_new(directory: Path, name: str, source: BinaryIO) -> Path:
    """Copy `source` into a new file `name` in `directory`, or `name (2)` ... when taken."""
    counter = 1
    while True:
        path = directory / numbered(name, counter)
        counter += 1
        try:
            # O_EXCL: never overwrite, never follow a symlink
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "wb") as target:
            try:
                os.fchmod(descriptor, FILE_MODE)  # exactly 0600, whatever the umask
                shutil.copyfileobj(source, target)
            except BaseException:
                path.unlink(missing_ok=True)  # whatever stopped the copy, no half file stays
                raise
        return path


def make_private_dirs(directory: Path) -> None:
    """Make `directory` and its missing parents, each 0700 whatever the umask; existing ones
    are left as they are."""
    missing: list[Path] = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            path.mkdir(DIRECTORY_MODE)
        except FileExistsError:
            if path.is_dir():  # made meanwhile (by another export, say): not ours to change
                continue
            raise
        os.chmod(path, DIRECTORY_MODE)
