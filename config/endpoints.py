"""Which URLs a secret may be sent to: HTTPS anywhere, plain HTTP only to this machine.

Config-level so that both settings validation and the crawler's own checks (the OAuth token
endpoint) apply the one rule; it imports nothing of the crawler.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """Whether `host` is this machine: `localhost`, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_secure_endpoint(url: str) -> bool:
    """Whether a secret may travel to `url`: it is `https://`, or `http://` to a loopback host
    (a stand-in on this machine)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")
