"""Keys: the signer seam (:mod:`charter.keys.signer`) and its stores.

Every private-key operation goes through a :class:`Signer`; the rest of Charter holds
:class:`KeyHandle` objects (a reference, a public key, a key id) and never a key file.
"""

from typing import TYPE_CHECKING, Any

from charter.keys.files import KeyPair
from charter.keys.jws import compact_jws
from charter.keys.signer import LOG, OWNER, FileSigner, KeyHandle, Signer, agent_ref, issuer_ref

if TYPE_CHECKING:
    from charter.keys.pkcs11 import Pkcs11Signer


def __getattr__(name: str) -> Any:
    """``Pkcs11Signer`` is imported on first use (a home with key files never needs it)."""
    if name == "Pkcs11Signer":
        from charter.keys.pkcs11 import Pkcs11Signer

        return Pkcs11Signer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LOG",
    "OWNER",
    "FileSigner",
    "KeyHandle",
    "KeyPair",
    "Pkcs11Signer",
    "Signer",
    "agent_ref",
    "compact_jws",
    "issuer_ref",
]
