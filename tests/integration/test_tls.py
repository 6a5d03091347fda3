"""TLS to IMAP: certificates verified by default; a private CA only when configured."""

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crawler.gmail import session
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_proxy(world: World, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS front for the fake Gmail, with a self-signed certificate for `localhost`."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                secure = context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()
                continue
            backend = socket.create_connection(("127.0.0.1", world.gmail.port))
            for a, b in ((secure, backend), (backend, secure)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], cert
    stop.set()
    thread.join()
    listener.close()


def test_a_self_signed_server_is_refused_by_default(
    world: World, tls_proxy: tuple[int, Path]
) -> None:
    port, _ = tls_proxy
    world.add_account("alice@example.com", "u1")
    world.settings = world.settings.model_copy(
        update={"imap_host": "localhost", "imap_port": port, "imap_tls": True}
    )

    assert world.iterate().outcomes == {"u1": "error"}
    message = world.status("u1")["last_error"]["message"]
    assert "SSLCertVerificationError" in message
    assert world.gmail.ledger.sessions_opened == 0  # not one byte of IMAP was exchanged


def test_a_configured_ca_is_trusted(world: World, tls_proxy: tuple[int, Path]) -> None:
    port, cert = tls_proxy
    world.add_account("alice@example.com", "u1")
    world.gmail.account("alice@example.com").add_message(build_message(attachments={"a": b"1"}))
    world.settings = world.settings.model_copy(
        update={"imap_host": "localhost", "imap_port": port, "imap_tls": True, "imap_ca_file": cert}
    )

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]
    assert len(world.stored("u1")) == 1


def test_a_configured_ca_adds_to_the_system_authorities(
    world: World, tls_proxy: tuple[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert = tls_proxy
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the server chains to a "system" authority
    (tmp_path / "extra").mkdir()
    extra, _ = self_signed(tmp_path / "extra")  # an unrelated private CA, configured on top
    world.add_account("alice@example.com", "u1")
    world.gmail.account("alice@example.com").add_message(build_message(attachments={"a": b"1"}))
    world.settings = world.settings.model_copy(
        update={
            "imap_host": "localhost",
            "imap_port": port,
            "imap_tls": True,
            "imap_ca_file": extra,
        }
    )

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]
    assert len(world.stored("u1")) == 1


def test_the_session_context_holds_the_system_and_the_configured_authorities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system_dir, extra_dir = tmp_path / "system", tmp_path / "extra"
    system_dir.mkdir()
    extra_dir.mkdir()
    system, _ = self_signed(system_dir)
    extra, _ = self_signed(extra_dir)
    monkeypatch.setenv("SSL_CERT_FILE", str(system))
    contexts: list[ssl.SSLContext] = []

    def connect(_tap: object, _host: str, _port: int, context: ssl.SSLContext, _t: float) -> None:
        contexts.append(context)

    monkeypatch.setattr(session, "TappedIMAPClient", connect)

    session.ImapSession("localhost", 993, tls=True, timeout=1, max_literal=1024, ca_file=str(extra))

    def serial(path: Path) -> str:
        return f"{x509.load_pem_x509_certificate(path.read_bytes()).serial_number:X}"

    held = {str(ca["serialNumber"]).lstrip("0") for ca in contexts[0].get_ca_certs()}
    assert {serial(system), serial(extra)} <= held
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
