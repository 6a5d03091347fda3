"""The scrubber: tokens, keys and passwords filtered from text and from structures."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.fernet import Fernet

from crawler.scrub import FILTERED, scrub, scrub_text

pytestmark = pytest.mark.unit

EMAIL = "alice@example.com"
# An access token as the fake token endpoint issues it: standins.tokens.issue(EMAIL, 2_000_000_000).
ACCESS_TOKEN = (
    "ya29.fake.YWxpY2VAZXhhbXBsZS5jb20AMjAwMDAwMDAwMA.Pf53WzD88Hox-KLAarAkyDVaXMl0U7oOkPDvlbDKDsY"
)
REFRESH_TOKEN = "1//0gAliceRefreshToken-abc_DEF"
XOAUTH2 = f"user={EMAIL}\x01auth=Bearer {ACCESS_TOKEN}\x01\x01"
XOAUTH2_BASE64 = base64.b64encode(XOAUTH2.encode()).decode()
FERNET_TOKEN = Fernet(Fernet.generate_key()).encrypt(REFRESH_TOKEN.encode()).decode()
CLIENT_SECRET = "fake-oauth-client-secret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token ya29.a0AfB_byC-1x.y~z/+w== expired", f"token {FILTERED} expired"),
        (f"refused {ACCESS_TOKEN}", f"refused {FILTERED}"),
        (f"grant {REFRESH_TOKEN} revoked", f"grant {FILTERED} revoked"),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {FILTERED}"),
        ("authorization: bearer abc", f"authorization: bearer {FILTERED}"),
        (f"AUTHENTICATE {XOAUTH2}", f"AUTHENTICATE {FILTERED}"),
        (f"AUTHENTICATE {XOAUTH2!r}", f"AUTHENTICATE '{FILTERED}'"),
        (f"AUTHENTICATE {XOAUTH2.encode()!r}", f"AUTHENTICATE b'{FILTERED}'"),
        (f"A1 AUTHENTICATE XOAUTH2 {XOAUTH2_BASE64}", f"A1 AUTHENTICATE XOAUTH2 {FILTERED}"),
        (f"stored {FERNET_TOKEN}", f"stored {FILTERED}"),
        ("client GOCSPX-abc_DEF-123 refused", f"client {FILTERED} refused"),
        (
            "grant_type=refresh_token&refresh_token=opaque&client_secret=s3cr3t&client_id=app",
            f"grant_type=refresh_token&refresh_token={FILTERED}&client_secret={FILTERED}"
            "&client_id=app",
        ),
        (
            "https://x.test/cb?code=1&access_token=opaque#frag",
            f"https://x.test/cb?code=1&access_token={FILTERED}#frag",
        ),
        ("{'password': 'pw 1', 'user': 'a'}", f"{{'password': '{FILTERED}', 'user': 'a'}}"),
        ('{"api_key": "k-123", "n": 1}', f'{{"api_key": "{FILTERED}", "n": 1}}'),
        ("Account(secret='abc', id=3)", f"Account(secret='{FILTERED}', id=3)"),
        ('client_secret = "in-source"', f'client_secret = "{FILTERED}"'),
        # Ordinary text stays as it is.
        ("KeyError: 'user_uuid'", "KeyError: 'user_uuid'"),
        ("token: expired, refresh it", "token: expired, refresh it"),
        ("refresh_token = form.get(name)", "refresh_token = form.get(name)"),
        ("UID 1877 of alice@example.com failed", "UID 1877 of alice@example.com failed"),
        (
            "see https://mail.google.com/mail/u/0/#inbox",
            "see https://mail.google.com/mail/u/0/#inbox",
        ),
        (
            "/work/main/.venv/lib/python3.11/site-packages/imapclient/imapclient.py",
            "/work/main/.venv/lib/python3.11/site-packages/imapclient/imapclient.py",
        ),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


def test_scrub_text_filters_the_configured_secrets_and_ignores_short_ones() -> None:
    text = f"client {CLIENT_SECRET} and a"
    assert scrub_text(text, secrets=[CLIENT_SECRET, "a"]) == f"client {FILTERED} and a"


class _Account:
    def __repr__(self) -> str:
        return f"<Account {EMAIL} token={ACCESS_TOKEN}>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"user_uuid": "u", "password": "p", "Authorization": "x", "api_key": 3},
            {
                "user_uuid": "u",
                "password": FILTERED,
                "Authorization": FILTERED,
                "api_key": FILTERED,
            },
        ),
        (
            {"session": {"oauth": {"refresh_token": "r", "expires_at": 1.5}}},
            {"session": {"oauth": {"refresh_token": FILTERED, "expires_at": 1.5}}},
        ),
        (
            {"backtrace": [{"line": 3, "vars": {"tokens": ["a"], "n": None, "ok": True}}]},
            {"backtrace": [{"line": 3, "vars": {"tokens": FILTERED, "n": None, "ok": True}}]},
        ),
        ({"message": f"refused {ACCESS_TOKEN}"}, {"message": f"refused {FILTERED}"}),
        ({"raw": XOAUTH2.encode(), "set": {REFRESH_TOKEN}}, {"raw": FILTERED, "set": [FILTERED]}),
        ({ACCESS_TOKEN: "a key that is a token"}, {FILTERED: "a key that is a token"}),
        (
            {12: "code line", "account": _Account()},
            {"12": "code line", "account": f"<Account {EMAIL} token={FILTERED}>"},
        ),
        (("a", 1, 2.5), ["a", 1, 2.5]),
    ],
)
def test_scrub(value: object, expected: object) -> None:
    assert scrub(value) == expected


def test_scrub_ends_cycles() -> None:
    looped: list[object] = [ACCESS_TOKEN]
    looped.append(looped)
    assert ACCESS_TOKEN not in json.dumps(scrub(looped))
