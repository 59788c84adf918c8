"""Keys: the signer seam (:mod:`charter.keys.signer`) and its stores.

Every private-key operation goes through a :class:`Signer`; the rest of Charter holds
:class:`KeyHandle` objects (a reference, a public key, a key id) and never a key file.
"""

from charter.keys.files import KeyPair
from charter.keys.jws import compact_jws
from charter.keys.pkcs11 import Pkcs11Signer
from charter.keys.signer import LOG, OWNER, FileSigner, KeyHandle, Signer, agent_ref, issuer_ref

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
