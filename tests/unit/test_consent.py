"""The consent flow's request and its guards, before any network traffic."""

import urllib.parse

import pytest
import requests

from config import Settings
from crawler.errors import AuthFailed, ConfigError
from crawler.oauth import IMAP_SCOPE, Consent

pytestmark = pytest.mark.unit

REDIRECT = "http://127.0.0.1:8765/x"


class NoNetwork(requests.Session):
    def request(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        raise AssertionError("the consent flow sent a request it should not have")


def consent(**fields: str) -> Consent:
    settings = Settings(oauth_client_id="app.example", **fields)
    return Consent(settings, REDIRECT, login_hint="alice@example.com", http=NoNetwork())


def test_the_consent_url_asks_for_offline_mail_access_with_pkce() -> None:
    flow = consent()
    url, _, query = flow.url.partition("?")
    fields = dict(urllib.parse.parse_qsl(query))
    assert url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert fields["scope"] == IMAP_SCOPE and fields["redirect_uri"] == REDIRECT
    assert (fields["access_type"], fields["prompt"]) == ("offline", "consent")
    assert fields["code_challenge_method"] == "S256" and len(fields["code_challenge"]) == 43
    assert fields["state"] == flow.state and fields["login_hint"] == "alice@example.com"
    assert consent().state != flow.state


@pytest.mark.parametrize(
    ("redirect", "reason"),
    [
        ({"state": "forged", "code": "c"}, "does not belong to this request"),
        ({"code": "c"}, "does not belong to this request"),
    ],
)
def test_a_redirect_of_another_request_is_refused(redirect: dict[str, str], reason: str) -> None:
    with pytest.raises(AuthFailed, match=reason):
        consent().refresh_token(redirect)


def test_a_refusal_is_reported_without_an_exchange() -> None:
    flow = consent()
    with pytest.raises(AuthFailed, match="access_denied"):
        flow.refresh_token({"state": flow.state, "error": "access_denied"})


@pytest.mark.parametrize(
    "fields",
    [
        {"oauth_auth_url": "http://accounts.example/auth"},
        {"oauth_token_url": "http://oauth2.example/token"},
    ],
)
def test_endpoints_must_be_https_unless_on_loopback(fields: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="must be https://"):
        consent(**fields)
