"""What the vault shows of a secret, its names and its limits: no storage, no keys."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from charter.errors import InvalidInput
from charter.storage.vault_hosts import normalize_allowed

#: Names an owner may give a secret (also safe inside a ``secret:use:<glob>`` scope).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
#: Prefix of system secrets: Charter's own credentials, never listed or granted to agents.
SYSTEM_PREFIX = "charter:"
MAX_VALUE_BYTES = 64 * 1024
MAX_DESCRIPTION_CHARS = 500
MAX_ALLOWED_HOSTS = 50
#: Uses of one secret by one agent per minute (``secret_http_request``) unless set per secret.
DEFAULT_USES_PER_MINUTE = 60
MAX_USES_PER_MINUTE = 10_000


class SecretValue:
    """A decrypted secret. ``repr`` and ``str`` never show it; call :meth:`reveal`."""

    __slots__ = ("_value", "name", "version")

    def __init__(self, name: str, version: int, value: bytes) -> None:
        self.name = name
        self.version = version
        self._value = value

    def reveal(self) -> bytes:
        """The secret bytes. Every caller is a place the value can leak from: keep them few."""
        return self._value

    def reveal_text(self) -> str:
        """The secret as text.

        Raises:
            InvalidInput: if the value is not UTF-8.
        """
        try:
            return self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"secret {self.name!r} is binary, not UTF-8 text") from None

    def __repr__(self) -> str:
        return f"SecretValue(name={self.name!r}, version={self.version}, value=[REDACTED])"

    def __str__(self) -> str:
        return "[REDACTED]"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretValue cannot be pickled")


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: everything but its value."""

    name: str
    description: str
    allowed_hosts: tuple[str, ...]
    version: int
    versions: tuple[int, ...]
    system: bool
    created_at: str
    updated_at: str
    #: Uses per agent per minute through ``secret_http_request`` (None: the default, 60).
    rate_per_minute: int | None = None


def is_system_name(name: str) -> bool:
    """True for the names of Charter's own (system) secrets."""
    return name.startswith(SYSTEM_PREFIX)


def validate_name(name: str, *, system: bool = False) -> str:
    """Return ``name`` if it is a valid secret name of its kind.

    Raises:
        InvalidInput: naming what is allowed.
    """
    bare = name.removeprefix(SYSTEM_PREFIX) if system else name
    if system and not is_system_name(name):
        raise InvalidInput(f"system secret names start with {SYSTEM_PREFIX!r}")
    if not NAME_RE.match(bare):
        raise InvalidInput(
            f"invalid secret name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_new_value(
    name: str,
    value: bytes,
    description: str,
    allowed_hosts: Iterable[str],
    rate_per_minute: int | None,
    system: bool,
) -> list[str]:
    """Check what :meth:`charter.storage.vault.Vault.put` is given; return the allowed hosts
    in their stored form, sorted.

    Raises:
        InvalidInput: bad name, empty or oversized value, bad host, description or rate.
    """
    if not system and is_system_name(name):
        raise InvalidInput(f"names starting with {SYSTEM_PREFIX!r} are reserved for Charter")
    validate_name(name, system=system)
    if not value:
        raise InvalidInput("a secret value must be non-empty bytes")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidInput(f"a secret value is limited to {MAX_VALUE_BYTES} bytes")
    if len(description) > MAX_DESCRIPTION_CHARS or any(ord(c) < 32 for c in description):
        raise InvalidInput(
            f"a description is one line of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    hosts = sorted({normalize_allowed(h) for h in allowed_hosts})
    if len(hosts) > MAX_ALLOWED_HOSTS:
        raise InvalidInput(f"at most {MAX_ALLOWED_HOSTS} allowed hosts per secret")
    if rate_per_minute is not None and not 0 < rate_per_minute <= MAX_USES_PER_MINUTE:
        raise InvalidInput(f"the rate must be 1-{MAX_USES_PER_MINUTE} uses per minute")
    return hosts
