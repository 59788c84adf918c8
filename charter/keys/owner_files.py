"""An owner's own key file (organization homes, issue 28), kept on the owner's machine.

``charter owner keygen --out FILE`` writes one; ``--owner-key FILE`` signs with it. It is a key
file like the home's (:mod:`charter.keys.files`): a private JWK, mode 0600, its seed sealed
with Argon2id + XSalsa20-Poly1305 under its own passphrase when one is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from charter.errors import ConfigError, InvalidInput
from charter.evidence.jwk import public_key_from_jwk
from charter.keys.files import KeyPair, read_key_file, read_public_key, write_key_file


def make_owner_key_file(path: Path, passphrase: bytes | None, *, cheap_kdf: bool = False) -> bytes:
    """Write a new owner key to ``path`` (never over an existing file); return its public key.

    Raises:
        ConfigError: the file exists or cannot be written.
    """
    key = KeyPair.generate()
    try:
        write_key_file(path, key, passphrase, cheap_kdf=cheap_kdf)
    except FileExistsError as exc:
        raise ConfigError(f"{path.name} already exists; refusing to replace a key") from exc
    return key.public_key


def load_owner_key_file(path: Path, passphrase: bytes | None) -> KeyPair:
    """The owner key in ``path``.

    Raises:
        ConfigError: missing, corrupt, or a wrong or missing passphrase.
    """
    return read_key_file(path, passphrase)


def owner_public_key_file(path: Path) -> bytes:
    """The public key recorded in an owner key file (no passphrase needed).

    Raises:
        ConfigError: missing or corrupt.
    """
    return read_public_key(path)


def parse_owner_public_key(value: str) -> bytes:
    """An owner's public key from ``charter owner add --public-key``: a public JWK given
    inline or in a file (what ``charter owner keygen`` prints). Private halves are refused.

    Raises:
        InvalidInput: not a public Ed25519 JWK, or a private key.
    """
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the public key file {Path(value).name}") from exc
    try:
        jwk = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("the public key is not a JSON Web Key") from exc
    if not isinstance(jwk, dict):
        raise InvalidInput("the public key is not a JSON Web Key")
    if {"d", "sealed", "enc"} & set(jwk):
        raise InvalidInput(
            "that is a private key: give the public key `charter owner keygen` printed"
        )
    try:
        return public_key_from_jwk(jwk)
    except ValueError as exc:
        raise InvalidInput(f"not an Ed25519 public key: {exc}") from exc
