"""Access tokens for the users of a Google Workspace domain, through domain-wide delegation.

A domain's administrator lets our service account act for the domain's users (Admin console,
Security, API controls, Domain-wide delegation: its client id and the scopes). For a user we
then sign a JWT (RFC 7523) with the service account's key: `iss` the service account, `sub` the
user, `aud` the token URL, `scope`, `iat` and `exp` an hour later. google-auth signs it; the
request (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`) goes through the token
endpoint client of crawler/oauth.py, bounded in time and size like every other. No refresh token
is involved: a new assertion gives a new access token.

Google's refusals, and what they make of the account:

- 401 `unauthorized_client`: the delegation is not granted (client id or scope):
  `DomainRefused`, naming the grant to make.
- 400 `invalid_grant` "Invalid email or User ID": the user is not (or no longer) in the domain:
  `AuthRevoked`, the account is `auth_failed`.
- 400 `invalid_grant` "Invalid JWT Signature.": the key was deleted or is not the service
  account's: `DomainRefused`.
- any other `invalid_grant`, `invalid_client`, `deleted_client`, `invalid_scope` ...: the
  service account (or our clock): `DomainRefused`, naming the error code.

Everything else is classified as for a refresh (crawler/oauth.py): `Transient`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from google.auth import crypt, jwt

from crawler.errors import AuthRevoked, BadInput, DomainRefused
from crawler.oauth import (
    ACCOUNT_ERRORS,
    CLIENT_ERRORS,
    IMAP_SCOPE,
    AccessToken,
    TokenAnswer,
    TokenCipher,
    TokenSource,
    expires_in,
    post_form,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
ASSERTION_LIFETIME = 3600  # seconds: Google accepts at most an hour between iat and exp
UNKNOWN_USER = "Invalid email or User ID"
BAD_SIGNATURE = "Invalid JWT Signature."
MAX_KEY_FILE = 64 * 1024  # bytes of a service account key file; Google's are about 2.3 KiB
_KEY_FIELDS = ("client_email", "client_id", "private_key_id", "private_key")
# Refusals of an assertion that are the service account's (or our clock's), not the user's.
DOMAIN_ERRORS = CLIENT_ERRORS | ACCOUNT_ERRORS | {"invalid_grant", "access_denied"}


@dataclass(frozen=True)
class ServiceAccountKey:
    """A service account's JSON key file, read and checked; `signer` signs with its key."""

    client_email: str
    client_id: str
    key_id: str
    info: Mapping[str, Any]
    signer: crypt.Signer

    @classmethod
    def parse(cls, data: bytes) -> ServiceAccountKey:
        """The key in a JSON key file's bytes; BadInput naming what is wrong (never the key)."""
        if len(data) > MAX_KEY_FILE:
            raise BadInput(f"the key file is over {MAX_KEY_FILE:,} bytes: not a key file")
        try:
            info = json.loads(data)
        except ValueError:
            raise BadInput("the key file is not JSON") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise BadInput('the key file is not a service account key ("type": "service_account")')
        missing = [name for name in _KEY_FIELDS if not isinstance(info.get(name), str)]
        if missing or not all(info[name] for name in _KEY_FIELDS):
            raise BadInput(f"the key file has no usable {', '.join(missing) or 'fields'}")
        try:
            signer = crypt.RSASigner.from_service_account_info(info)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, IndexError):
            raise BadInput("the key file's private_key is not a usable RSA key") from None
        return cls(info["client_email"], info["client_id"], info["private_key_id"], info, signer)

    def document(self, domain: str, admin: str, cipher: TokenCipher) -> dict[str, Any]:
        """The `domains` fields that hold this key (encrypted) for `domain`."""
        return {
            "domain": domain,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "key_id": self.key_id,
            "key": cipher.encrypt(json.dumps(dict(self.info))),
            "admin": admin,
        }

    def grant(self, scopes: tuple[str, ...] = (IMAP_SCOPE, DIRECTORY_SCOPE)) -> str:
        """What a domain's administrator must grant, in the Admin console's words."""
        return (
            "in the Admin console (Security, Access and data control, API controls, "
            f"Domain-wide delegation) add client ID {self.client_id} with the scopes "
            f"{','.join(scopes)}"
        )


class DelegatedTokens(TokenSource):
    """Access tokens for a domain's users from its service account key (`token`), beside a
    refresh token's (`refresh`)."""

    def key(self, domain: Mapping[str, Any]) -> ServiceAccountKey:
        """The domain's service account key, decrypted and checked."""
        name = str(domain.get("domain"))
        plain = self._cipher.decrypt(domain.get("key"), f"domains[{name}].key")
        try:
            return ServiceAccountKey.parse(plain.encode())
        except BadInput as error:
            raise DomainRefused(name, f"its stored key cannot be used: {error}") from None

    def token(self, domain: Mapping[str, Any], email: str, scope: str = IMAP_SCOPE) -> AccessToken:
        """An access token for `email`, a user of `domain` (its `domains` document)."""
        name = str(domain.get("domain"))
        key = self.key(domain)
        now = int(self._clock())
        claims = {
            "iss": key.client_email,
            "sub": email,
            "aud": self._settings.oauth_token_url,
            "scope": scope,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        assertion = jwt.encode(key.signer, claims).decode()  # type: ignore[no-untyped-call]
        body = urlencode({"grant_type": JWT_BEARER, "assertion": assertion})
        answer = post_form(self._settings, self._http, body)
        _refusal(answer, name, email, key, scope)
        token = answer.granted("assertion", AuthRevoked(f"{email}: invalid_grant"))
        return AccessToken(token["access_token"], self._clock() + expires_in(token))


def _refusal(
    answer: TokenAnswer, domain: str, email: str, key: ServiceAccountKey, scope: str
) -> None:
    """Raise what a refusal of the assertion means (see the module docstring); nothing if the
    answer is not one."""
    fields = answer.fields() or {}
    code, said = fields.get("error"), fields.get("error_description")
    if answer.status not in (400, 401) or code not in DOMAIN_ERRORS:
        return
    if code == "unauthorized_client":
        raise DomainRefused(
            domain,
            f"Google says the domain has not granted our service account {key.client_email} "
            f"domain-wide delegation for {scope} (unauthorized_client): {key.grant()}",
            code=code,
        )
    if said == UNKNOWN_USER:
        raise AuthRevoked(f"{email} is not a user of {domain} (Google: {UNKNOWN_USER!r})")
    if said == BAD_SIGNATURE:
        raise DomainRefused(
            domain,
            f"Google does not accept the key {key.key_id} of {key.client_email}: it was "
            "deleted or is not this service account's (invalid_grant, Invalid JWT Signature); "
            "add a current key with `crawler domains add`",
            code=code,
        )
    message = f"Google refused the service account {key.client_email} ({code})"
    raise DomainRefused(domain, message, code=code)
