"""Google Workspace as the fakes see it: service accounts and the public halves of their keys,
the users of each domain, and the domain-wide delegations each domain's admin granted (Admin
console > Security > API controls > Domain-wide delegation: a client id and its scopes).

One `Workspace` is shared by the fake token endpoint (`standins.fakeoauth`), which asks it about
each JWT-bearer assertion (`check_assertion`: the user or service account the token is for and
its scopes, or Google's refusal, checked in the order that module's docstring lists), and the fake
Directory API (`standins.fakedirectory`), which lists its users. A suspended or archived user
still gets a token (the delegation is the domain's, not the user's; what the user may do is each
service's to say). Signatures are verified with google-auth's own `google.auth.crypt`.

The refusals' texts are Google's, as its clients have reported them (docs/gmail-facts.md,
"Domain-wide delegation"); `Bad Request` as the answer to an assertion that is not a JWT is the
fake's own choice (a text Google gives with `invalid_grant`, for inputs it does not publish).

`new_key` makes an RSA key as the Cloud console does, and `service_account_key_file` the JSON key
file Google gives with it. `ServiceAccountConfig`, `UserConfig` and `DomainConfig` are the
Workspace parts of the fakes' JSON config (`standins.fakeoauth.EndpointConfig`).
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from standins.loopback import Answer, refusal

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105  # the `aud` google-auth signs
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
MAX_ASSERTION_LIFETIME = 3600  # seconds from `iat` to `exp`
ASSERTION_CLOCK_SKEW = 300  # seconds either way an assertion's times may be off (the fake's own)
SERVICE_ACCOUNT_KEY_BITS = 2048  # what the Cloud console makes

# The refusals of an assertion, in the order they are checked (docs/gmail-facts.md); the token
# endpoint checks that there is one first (`standins.fakeoauth.NO_ASSERTION`).
MALFORMED_ASSERTION = refusal(400, "invalid_grant", "Bad Request")
NOT_AN_ACCOUNT = refusal(400, "invalid_grant", "Not a valid email or user ID.")
ACCOUNT_NOT_FOUND = refusal(400, "invalid_grant", "Invalid grant: account not found")
BAD_SIGNATURE = refusal(400, "invalid_grant", "Invalid JWT Signature.")
BAD_AUDIENCE = refusal(
    400,
    "invalid_grant",
    f"Invalid JWT: Failed audience check. The right audience is {GOOGLE_TOKEN_URL}",
)
BAD_TIMEFRAME = refusal(
    400,
    "invalid_grant",
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values and use a clock with skew to account for clock differences "
    "between systems.",
)
NO_SCOPE = refusal(400, "invalid_scope", "Empty or missing scope not allowed.")
UNKNOWN_USER = refusal(400, "invalid_grant", "Invalid email or User ID")
NOT_DELEGATED = refusal(
    401,
    "unauthorized_client",
    "Client is unauthorized to retrieve access tokens using this method, or client not "
    "authorized for any of the scopes requested.",
)


def _email_key(email: str) -> str:
    return email.strip().lower()


def domain_of(email: str) -> str:
    """The domain part of an email address, lower-cased."""
    return _email_key(email).rpartition("@")[2]


def public_key_pem(public_key: str | bytes) -> str:
    """`public_key` (a PEM public key or X.509 certificate) as text; ValueError when google-auth
    cannot verify signatures with it."""
    text = public_key.decode() if isinstance(public_key, bytes) else public_key
    crypt.RSAVerifier.from_string(text)  # type: ignore[no-untyped-call]
    return text


@dataclass(frozen=True)
class ServiceAccount:
    """A service account: its email (a JWT's `iss`), the numeric client id a Workspace admin
    delegates to, and the public halves of its keys by `private_key_id` (a JWT's `kid`)."""

    client_email: str
    client_id: str
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainUser:
    """A user of a Workspace domain, as the Directory API lists them."""

    email: str
    suspended: bool = False
    archived: bool = False
    is_admin: bool = False
    given_name: str = ""
    family_name: str = ""

    @property
    def domain(self) -> str:
        """The user's domain, lower-cased."""
        return domain_of(self.email)


@dataclass(frozen=True)
class Delegated:
    """A good assertion: the access token goes to `email` (the user, or the service account
    itself) for `scopes`."""

    email: str
    scopes: tuple[str, ...]


def _default_names(email: str) -> tuple[str, str]:
    local, _, domain = email.partition("@")
    first, _, last = local.partition(".")
    return first.capitalize(), (last or domain.partition(".")[0]).capitalize()


_JWS_COMPACT = re.compile(
    r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)  # base64url, no padding


def _seconds(value: object) -> float | None:
    """A JWT time claim (a JSON number) in epoch seconds, or None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # a JSON integer past a float's range
        return None


def _parse_jwt(
    assertion: str,
) -> tuple[Mapping[str, object], Mapping[str, object], bytes, bytes] | None:
    """The header, claims, signed part and signature of a JWT, unverified; None when it is none."""
    if not _JWS_COMPACT.fullmatch(assertion):
        return None
    try:
        header: Mapping[str, object] = jwt.decode_header(assertion)  # type: ignore[no-untyped-call]
        claims: Mapping[str, object] = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
        signed, _, encoded = assertion.encode().rpartition(b".")
        signature = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
    except (ValueError, RecursionError):  # google-auth's MalformedError is a ValueError
        return None
    return header, claims, signed, signature


def unverified_claim(assertion: str, name: str) -> str | None:
    """A string claim of a JWT as claimed, unverified; None when it has none (or is no JWT)."""
    parsed = _parse_jwt(assertion) if assertion else None
    value = parsed[1].get(name) if parsed is not None else None
    return value if isinstance(value, str) else None


def _signed_by(
    account: ServiceAccount, header: Mapping[str, object], signed: bytes, signature: bytes
) -> bool:
    """Whether one of the account's keys (the `kid` one, when the header names one) signed it."""
    kid = header.get("kid")
    if header.get("alg") != "RS256":
        return False
    if kid is None:
        keys = list(account.keys.values())
    elif isinstance(kid, str) and kid in account.keys:
        keys = [account.keys[kid]]
    else:
        return False
    return bool(keys) and bool(crypt.verify_signature(signed, signature, keys))  # type: ignore[no-untyped-call]


def _in_timeframe(claims: Mapping[str, object], now: float) -> bool:
    issued, expires = _seconds(claims.get("iat")), _seconds(claims.get("exp"))
    if issued is None or expires is None:
        return False
    return (
        0 < expires - issued <= MAX_ASSERTION_LIFETIME
        and issued <= now + ASSERTION_CLOCK_SKEW
        and expires > now - ASSERTION_CLOCK_SKEW
    )


class Workspace:
    """Google Workspace as the token endpoint and the Directory API see it: service accounts and
    their public keys, the users of each domain, and the domain-wide delegations each domain's
    admin granted (a client id and its scopes). Thread-safe; emails are matched case-blind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, ServiceAccount] = {}
        self._deleted_accounts: set[str] = set()
        self._users: dict[str, DomainUser] = {}
        self._delegations: dict[tuple[str, str], frozenset[str]] = {}

    # service accounts

    def add_service_account(
        self, client_email: str, client_id: str, keys: Mapping[str, str | bytes] | None = None
    ) -> ServiceAccount:
        """Register a service account with its public keys by `private_key_id` (replacing one of
        that email); ValueError for a key google-auth cannot read."""
        account = ServiceAccount(
            client_email,
            client_id,
            {key_id: public_key_pem(key) for key_id, key in (keys or {}).items()},
        )
        with self._lock:
            self._accounts[_email_key(client_email)] = account
            self._deleted_accounts.discard(_email_key(client_email))
        return account

    def add_key(self, client_email: str, key_id: str, public_key: str | bytes) -> None:
        """Give a registered service account another key (KeyError: no such account)."""
        pem = public_key_pem(public_key)
        with self._lock:
            account = self._accounts[_email_key(client_email)]
            self._accounts[_email_key(client_email)] = replace(
                account, keys={**account.keys, key_id: pem}
            )

    def delete_key(self, client_email: str, key_id: str) -> None:
        """Delete a key, as in the Cloud console: assertions it signs are refused from now on."""
        with self._lock:
            account = self._accounts.get(_email_key(client_email))
            if account is not None:
                keys = {kid: pem for kid, pem in account.keys.items() if kid != key_id}
                self._accounts[_email_key(client_email)] = replace(account, keys=keys)

    def delete_service_account(self, client_email: str) -> None:
        """Delete a service account: its assertions are refused as an account not found."""
        with self._lock:
            if self._accounts.pop(_email_key(client_email), None) is not None:
                self._deleted_accounts.add(_email_key(client_email))

    def service_account(self, client_email: str) -> ServiceAccount | None:
        """The registered service account of that email, if any."""
        with self._lock:
            return self._accounts.get(_email_key(client_email))

    # domain users

    def add_user(
        self,
        email: str,
        *,
        suspended: bool = False,
        archived: bool = False,
        is_admin: bool = False,
        given_name: str | None = None,
        family_name: str | None = None,
    ) -> DomainUser:
        """Add a user to the domain of `email` (or replace that user's flags and names)."""
        email = email.strip()
        local, _, domain = email.partition("@")
        if not local or not domain:
            raise ValueError(f"not an email address: {email!r}")
        default_given, default_family = _default_names(email)
        user = DomainUser(
            email,
            suspended=suspended,
            archived=archived,
            is_admin=is_admin,
            given_name=default_given if given_name is None else given_name,
            family_name=default_family if family_name is None else family_name,
        )
        with self._lock:
            self._users[_email_key(email)] = user
        return user

    def remove_user(self, email: str) -> None:
        """Delete a user: no token is issued for them any more, and the directory omits them."""
        with self._lock:
            self._users.pop(_email_key(email), None)

    def user(self, email: str) -> DomainUser | None:
        """The user of that email, if any."""
        with self._lock:
            return self._users.get(_email_key(email))

    def users(self, domain: str) -> list[DomainUser]:
        """The users of `domain`, by email."""
        domain = domain.lower()
        with self._lock:
            found = [user for key, user in self._users.items() if domain_of(key) == domain]
        return sorted(found, key=lambda user: _email_key(user.email))

    # domain-wide delegation

    def delegate(self, domain: str, client_id: str, scopes: Iterable[str]) -> None:
        """What a domain's admin does in the Admin console: let `client_id` act as the domain's
        users for exactly `scopes` (replacing what it was given before)."""
        granted = frozenset(scopes)
        if not granted:
            raise ValueError("a delegation needs at least one scope")
        with self._lock:
            self._delegations[(domain.lower(), client_id)] = granted

    def revoke_delegation(self, domain: str, client_id: str) -> None:
        """Take back everything `domain` delegated to `client_id`."""
        with self._lock:
            self._delegations.pop((domain.lower(), client_id), None)

    def delegated_scopes(self, domain: str, client_id: str) -> frozenset[str]:
        """The scopes `domain` delegated to `client_id` (none: empty)."""
        with self._lock:
            return self._delegations.get((domain.lower(), client_id), frozenset())

    # the JWT-bearer grant

    def check_assertion(
        self, assertion: str, now: float, audiences: Sequence[str]
    ) -> Delegated | Answer:
        """Who an assertion gets a token for, or Google's refusal (in the order of
        `standins.fakeoauth`'s docstring)."""
        parsed = _parse_jwt(assertion)
        if parsed is None:
            return MALFORMED_ASSERTION
        header, claims, signed, signature = parsed
        issuer = claims.get("iss")
        account = self.service_account(issuer) if isinstance(issuer, str) else None
        if account is None:
            with self._lock:
                deleted = isinstance(issuer, str) and _email_key(issuer) in self._deleted_accounts
            return ACCOUNT_NOT_FOUND if deleted else NOT_AN_ACCOUNT
        if not _signed_by(account, header, signed, signature):
            return BAD_SIGNATURE
        return self._check_claims(account, claims, now, audiences)

    def _check_claims(
        self,
        account: ServiceAccount,
        claims: Mapping[str, object],
        now: float,
        audiences: Sequence[str],
    ) -> Delegated | Answer:
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience not in audiences:
            return BAD_AUDIENCE
        if not _in_timeframe(claims, now):
            return BAD_TIMEFRAME
        scope = claims.get("scope")
        scopes = tuple(dict.fromkeys(scope.split())) if isinstance(scope, str) else ()
        if not scopes:
            return NO_SCOPE
        return self._delegation(account, claims.get("sub"), scopes)

    def _delegation(
        self, account: ServiceAccount, subject: object, scopes: tuple[str, ...]
    ) -> Delegated | Answer:
        if subject is None:
            return Delegated(account.client_email, scopes)
        user = self.user(subject) if isinstance(subject, str) else None
        if user is None:
            return UNKNOWN_USER
        if not set(scopes) <= self.delegated_scopes(user.domain, account.client_id):
            return NOT_DELEGATED
        return Delegated(user.email, scopes)


def new_key() -> tuple[str, str]:
    """A new RSA key as a service account key has it: (private key PEM, PKCS#8; public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=SERVICE_ACCOUNT_KEY_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public.decode()


def service_account_key_file(
    client_email: str,
    client_id: str,
    key_id: str,
    private_key: str,
    *,
    project_id: str,
    token_uri: str,
    auth_uri: str = GOOGLE_AUTH_URL,
) -> dict[str, str]:
    """A service account's JSON key file, field for field as the Cloud console downloads it."""
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": private_key,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": auth_uri,
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + urllib.parse.quote(client_email, safe=""),
        "universe_domain": "googleapis.com",
    }


class ServiceAccountConfig(BaseModel):
    """A service account in the JSON config: its email, client id and public keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_email: str
    client_id: str
    keys: dict[str, str] = Field(default_factory=dict)

    @field_validator("keys")
    @classmethod
    def _readable(cls, keys: dict[str, str]) -> dict[str, str]:
        for key_id, key in keys.items():
            try:
                public_key_pem(key)
            except ValueError:
                raise ValueError(f"key {key_id!r} is not a public key PEM or certificate") from None
        return keys


class UserConfig(BaseModel):
    """A domain user in the JSON config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str
    suspended: bool = False
    archived: bool = False
    is_admin: bool = False
    given_name: str | None = None
    family_name: str | None = None


class DomainConfig(BaseModel):
    """A Workspace domain in the JSON config: its users, and its delegations by client id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[UserConfig] = Field(default_factory=list)
    delegations: dict[str, list[str]] = Field(default_factory=dict)
