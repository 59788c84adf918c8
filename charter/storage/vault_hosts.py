"""Where a secret may be sent: its allowed hosts, each a scheme, a host and a port.

An entry is stored as ``scheme://host:port`` (``https://api.example.com:443``). The owner may
write a bare host (``api.example.com``: https on port 443) or ``host:port`` (https on that
port); plain ``http`` is accepted only for loopback hosts. A bare *loopback* host
(``127.0.0.1``, ``localhost``, ``::1``) is kept bare and keeps its old meaning: any port of
this machine, http or https. Entries stored before ports counted may be bare non-loopback
hosts: they mean https on port 443 (``charter doctor`` lists them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import urllib.parse

from charter.errors import InvalidInput

DEFAULT_PORTS = {"https": 443, "http": 80}
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_host(host: str) -> str:
    """Return the canonical form of a host: a lowercase DNS name or an IP address.

    Raises:
        InvalidInput: for wildcards, ports, schemes, paths or anything else that is not a host.
    """
    text = host.strip().lower()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(bare))
    labels = text.split(".")
    if not 0 < len(text) <= 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise InvalidInput(
            f"invalid allowed host {host!r}: give an exact host name or IP address "
            "(no scheme, port, path or wildcard)"
        )
    return text


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _join(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def normalize_allowed(entry: str) -> str:
    """The stored form of an allowed-host entry the owner wrote.

    Raises:
        InvalidInput: not a host, ``host:port`` or ``scheme://host[:port]``; a path, user
            info, wildcard or unknown scheme; plain http to a host that is not loopback.
    """
    text = entry.strip()
    if "://" not in text:
        with contextlib.suppress(InvalidInput):
            host = normalize_host(text)
            return host if is_loopback(host) else _join("https", host, 443)
        text = "https://" + text  # host:port
    error = InvalidInput(
        f"invalid allowed host {entry[:200]!r}: write a host (api.example.com), host:port, "
        "or https://host:port (no path, user info or wildcard)"
    )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise error from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.path not in ("", "/") or parts.query:
        raise error
    if parts.fragment or parts.username is not None or not parts.hostname:
        raise error
    host = normalize_host(parts.hostname)
    if scheme == "http" and not is_loopback(host):
        raise InvalidInput(
            f"invalid allowed host {entry[:200]!r}: plain http is allowed only for loopback "
            "hosts; use https"
        )
    return _join(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])


def is_legacy(entry: str) -> bool:
    """True for a bare non-loopback entry stored before ports counted (means https:443)."""
    return "://" not in entry and not is_loopback(entry)


def allows(entry: str, scheme: str, host: str, port: int) -> bool:
    """True when the stored ``entry`` lets a secret go to ``scheme://host:port``."""
    if "://" not in entry:  # a bare host: loopback (any port), or a legacy entry (https:443)
        if is_loopback(entry):
            return host == entry
        return (scheme, host, port) == ("https", entry, 443)
    return entry == _join(scheme, host, port)
