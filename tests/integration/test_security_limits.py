"""Limits that a hostile mailbox or server cannot push past: attachment size, connections per
account, and TLS certificates checked against the host name. (Literal and line sizes: see
test_hostile_server.py; retries in attempts and time: test_crawl_faults.py and test_retry.py.)
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.errors import ProtocolError
from crawler.gmail.session import ImapSession
from crawler.iterate import PassResult
from tests.integration.test_tls import self_signed
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"


def test_an_attachment_over_the_cap_is_recorded_and_never_downloaded(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).add_message(
        build_message(attachments={"small.pdf": b"s" * 1000, "huge.iso": b"h" * 60_000})
    )
    settings = world.settings.model_copy(update={"max_attachment_size": 10_000})

    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}

    stored = {doc["filename"]: doc for doc in world.stored("u1").values()}
    assert stored["small.pdf"]["size"] == 1000 and stored["small.pdf"]["blob"]
    huge = stored["huge.iso"]
    assert huge["skipped"] == "larger than CRAWLER_MAX_ATTACHMENT_SIZE"
    assert (huge["blob"], huge["sha256"]) == (None, None)
    assert not any(b"BODY.PEEK[3" in line for line in world.gmail.ledger.lines)
    assert world.gmail.ledger.bytes_out < 60_000  # its 80 KB of base64 never crossed the wire


def test_two_workers_never_open_two_sessions_to_one_account(world: World) -> None:
    account = world.add_account(EMAIL, "u1")
    for n in range(3):
        account.add_message(build_message(f"m{n}", attachments={f"{n}.pdf": b"%PDF"}))
    account.faults.latency = 0.15  # a slow Gmail, so that the two passes overlap
    start = threading.Barrier(2)
    results: list[PassResult] = []

    def worker(worker_id: str) -> None:
        iterator = world.iterator(worker_id=worker_id)
        start.wait()
        results.append(iterator.iterate(concurrency=4))

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(result.outcomes["u1"] for result in results) == ["idle", "skipped"]
    assert account.ledger.peak_connected == 1
    assert len(world.stored("u1")) == 3


# -- TLS: the certificate must name the host we asked for ----------------------------------------


@pytest.fixture
def tls_greeter(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server with a self-signed certificate for `localhost` that greets like Gmail."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer(client: socket.socket) -> None:
        try:
            secure = context.wrap_socket(client, server_side=True)
            held.append(secure)
            secure.sendall(b"* OK [CAPABILITY IMAP4rev1] Gimap ready for requests\r\n")
            for line in secure.makefile("rb"):  # OK to anything; LOGOUT ends the session
                tag, _, command = line.partition(b" ")
                bye = b"* BYE LOGOUT Requested\r\n" if command.startswith(b"LOGOUT") else b""
                secure.sendall(bye + tag + b" OK Success\r\n")
        except (ssl.SSLError, OSError):  # the client refused our certificate
            client.close()

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], cert
    for sock in [listener, *held]:
        sock.close()


@pytest.mark.parametrize(
    ("host", "trust", "refused"),
    [
        ("localhost", False, "certificate verify failed: self-signed certificate"),
        ("127.0.0.1", True, "certificate verify failed: IP address mismatch"),
        ("localhost", True, None),
    ],
    ids=["untrusted", "trusted-but-another-name", "trusted-and-named"],
)
def test_a_certificate_is_checked_against_the_host_name(
    tls_greeter: tuple[int, Path], host: str, trust: bool, refused: str | None
) -> None:
    port, cert = tls_greeter
    ca_file = str(cert) if trust else None

    if refused is None:
        session = ImapSession(host, port, tls=True, timeout=5, max_literal=2**20, ca_file=ca_file)
        session.logout()
        return
    with pytest.raises(ProtocolError, match="SSLCertVerificationError") as caught:
        ImapSession(host, port, tls=True, timeout=5, max_literal=2**20, ca_file=ca_file)
    assert refused in str(caught.value)
