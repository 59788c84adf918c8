"""C2SP signed notes, checkpoints, cosignatures, offline proofs and witness policies.

Pure functions over strings and keys, no I/O. Implements:

- ``c2sp.org/signed-note``: Ed25519 (type 0x01) note signatures, vkeys, the Go private-key
  form, :func:`sign_note` and :func:`open_note`;
- ``c2sp.org/tlog-checkpoint``: :class:`Checkpoint`;
- ``c2sp.org/tlog-cosignature``: timestamped Ed25519 cosignatures (type 0x04);
- ``c2sp.org/tlog-proof``: :class:`TlogProof` and :func:`verify_tlog_proof`;
- ``c2sp.org/tlog-policy``: :func:`parse_policy` and :func:`verify_policy`;
- ``c2sp.org/tlog-witness``: :class:`AddCheckpoint` request bodies, 409 size bodies,
  :func:`cosignatures_from` and :class:`KeyCosigner`.

Every format or signature failure raises :class:`NoteError`; a bad Merkle proof raises
:class:`charter.evidence.merkle.ProofError`. Both are ``ValueError``.
"""

from __future__ import annotations

from charter.evidence.c2sp.checkpoint import Checkpoint, open_checkpoint
from charter.evidence.c2sp.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    cosignature_timestamp,
    parse_vkey,
)
from charter.evidence.c2sp.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_SIGNATURES,
    TLOG_PROOF_HEADER,
    KeySigner,
    NoteError,
    NoteSigner,
    NoteVerifier,
    Signature,
    Signer,
    Verifier,
    append_signatures,
    key_id,
    open_note,
    sign_note,
    split_note,
)
from charter.evidence.c2sp.policy import Group, Policy, parse_policy, verify_policy
from charter.evidence.c2sp.proof import TlogProof, verify_tlog_proof
from charter.evidence.c2sp.witness import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    KeyCosigner,
    cosignatures_from,
    parse_size_body,
    size_body,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "SIZE_CONTENT_TYPE",
    "TLOG_PROOF_HEADER",
    "AddCheckpoint",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "Group",
    "KeyCosigner",
    "KeySigner",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Policy",
    "Signature",
    "Signer",
    "TlogProof",
    "Verifier",
    "append_signatures",
    "cosignature_message",
    "cosignature_timestamp",
    "cosignatures_from",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_policy",
    "parse_size_body",
    "parse_vkey",
    "sign_note",
    "size_body",
    "split_note",
    "verify_policy",
    "verify_tlog_proof",
]
