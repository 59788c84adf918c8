"""How vault rows are sealed: XChaCha20-Poly1305 with bound associated data.

The master key comes from the signer seam (``Signer.vault_key``; the file store keeps it in
``keys/vault.key``, sealed when the home has a passphrase): nothing here reads a key file.
No SQL here: :mod:`charter.storage.vault` stores what these functions seal.
"""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from charter.evidence.canonical import canonical_json

_AD_PREFIX = b"charter-vault-v1\x00"
_KEY_CHECK_TEXT = b"charter vault key check v1"


def ad(vault_id: str, name: str, version: int, key_version: int) -> bytes:
    """Associated data binding a ciphertext to its vault, name, version and key version."""
    return _AD_PREFIX + canonical_json(
        {"vault": vault_id, "name": name, "version": version, "key_version": key_version}
    )


def key_check_ad(vault_id: str, key_version: int) -> bytes:
    """Associated data of the key check (``vault_state.key_check``)."""
    return _AD_PREFIX + canonical_json(
        {"vault": vault_id, "purpose": "key-check", "key_version": key_version}
    )


def seal(key: bytes, plain: bytes, ad: bytes) -> tuple[bytes, bytes]:
    """Encrypt under a fresh random nonce; return ``(nonce, ciphertext)``."""
    nonce = nacl.utils.random(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    return nonce, sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    """Decrypt and authenticate, or None: callers turn None into their own clear error."""
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key))
    except nacl.exceptions.CryptoError:
        return None


def key_check(vault_id: str, key_version: int, key: bytes) -> bytes:
    """A fixed text sealed under ``key``: it opens only with the right key."""
    nonce, sealed = seal(key, _KEY_CHECK_TEXT, key_check_ad(vault_id, key_version))
    return nonce + sealed


def key_checks_out(vault_id: str, key_version: int, key: bytes, check: bytes) -> bool:
    """True when ``check`` (from :func:`key_check`) opens under ``key``."""
    return open_sealed(key, check[:24], check[24:], key_check_ad(vault_id, key_version)) is not None
