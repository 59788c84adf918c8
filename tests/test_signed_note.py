"""C2SP signed-note, tlog-checkpoint, tlog-cosignature, tlog-proof and tlog-policy.

The signed-note known answer is Go's ``golang.org/x/mod/sumdb/note`` test key and note:
Ed25519 is deterministic, so the signature line must come out byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from nacl.signing import SigningKey

from charter.evidence import merkle
from charter.evidence.c2sp import (
    ALG_COSIGNATURE_V1,
    MAX_SIGNATURES,
    TLOG_PROOF_HEADER,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    NoteError,
    NoteSigner,
    Policy,
    Signature,
    Signer,
    TlogProof,
    Verifier,
    append_signatures,
    cosignature_message,
    cosignature_timestamp,
    key_id,
    open_checkpoint,
    open_note,
    parse_policy,
    parse_vkey,
    sign_note,
    split_note,
    verify_policy,
    verify_tlog_proof,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG_LINE

ORIGIN = "audit.example/ledger"
TIME = 1_767_000_000


def seeded_key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


LOG = Signer(ORIGIN, seeded_key("log"))
OTHER = Signer("other.example/key", seeded_key("other"))
WITNESSES = [
    CosignatureSigner(f"witness.example/w{i}", seeded_key(f"w{i}"), clock=lambda: TIME)
    for i in range(4)
]


def tree_of(n: int) -> merkle.MemoryTree:
    return merkle.MemoryTree(merkle.leaf_hash(f"entry {i}".encode()) for i in range(n))


def checkpoint_of(n: int) -> Checkpoint:
    return Checkpoint(ORIGIN, n, tree_of(n).root())


def flip_base64_byte(line: str, position: int) -> str:
    prefix, encoded = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[position] ^= 0x01
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


# --- signed-note: Go known answer ---------------------------------------------------------


def test_go_known_answer_key_ids_and_vkey() -> None:
    signer = Signer.from_private_key(GO_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.verifier().vkey == GO_VKEY
    assert signer.private_key() == GO_SKEY
    verifier = Verifier.from_vkey(GO_VKEY)
    assert verifier == signer.verifier()
    assert verifier.key_id == key_id("PeterNeumann", 0x01, bytes(verifier.verify_key))
    assert "c74f20a3" in repr(signer)
    assert "AYEK" not in repr(signer)


def test_go_known_answer_signature_is_byte_identical() -> None:
    assert sign_note(GO_TEXT, [Signer.from_private_key(GO_SKEY)]) == GO_NOTE


def test_go_known_answer_note_opens() -> None:
    text, signatures = open_note(GO_NOTE, [Verifier.from_vkey(GO_VKEY)])
    assert text == GO_TEXT
    assert [(s.name, s.key_id.hex()) for s in signatures] == [("PeterNeumann", "c74f20a3")]
    assert signatures[0].line() == GO_SIG_LINE
    assert open_note(GO_NOTE.encode(), [Verifier.from_vkey(GO_VKEY)])[0] == GO_TEXT


@pytest.mark.parametrize(
    "tampered",
    [
        GO_NOTE.replace("cryptography", "Cryptography"),
        GO_NOTE.replace("problem is.", "problem is!"),
        "\n" + GO_NOTE,
        GO_TEXT + "extra line\n\n" + GO_SIG_LINE,
        GO_TEXT + "\n" + flip_base64_byte(GO_SIG_LINE, 10),
        GO_TEXT + "\n" + flip_base64_byte(GO_SIG_LINE, 67),
    ],
)
def test_tampered_go_note_is_rejected(tampered: str) -> None:
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, [Verifier.from_vkey(GO_VKEY)])


def test_changing_the_key_id_makes_the_signature_unknown() -> None:
    note = GO_TEXT + "\n" + flip_base64_byte(GO_SIG_LINE, 0)
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(note, [Verifier.from_vkey(GO_VKEY)])


# --- signed-note: verification rules -------------------------------------------------------


def test_unknown_signatures_are_ignored() -> None:
    note = sign_note(GO_TEXT, [OTHER, Signer.from_private_key(GO_SKEY)])
    text, signatures = open_note(note, [Verifier.from_vkey(GO_VKEY)])
    assert text == GO_TEXT
    assert [s.name for s in signatures] == ["PeterNeumann"]
    # A garbage signature under an unknown (name, key ID) pair is ignored too.
    junk = Signature("unknown.example", b"\x00\x01\x02\x03", b"\xff" * 64).line()
    _, signatures = open_note(note + junk, [Verifier.from_vkey(GO_VKEY)])
    assert len(signatures) == 1


def test_same_name_with_another_key_id_is_unknown() -> None:
    impostor = Signer("PeterNeumann", seeded_key("impostor"))
    note = sign_note(GO_TEXT, [impostor, Signer.from_private_key(GO_SKEY)])
    _, signatures = open_note(note, [Verifier.from_vkey(GO_VKEY)])
    assert [s.key_id.hex() for s in signatures] == ["c74f20a3"]


def test_only_unknown_signatures_is_rejected() -> None:
    note = sign_note(GO_TEXT, [OTHER])
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(note, [Verifier.from_vkey(GO_VKEY)])
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(note, [])


def test_bad_signature_by_known_key_rejects_note_despite_a_good_one() -> None:
    good = sign_note(GO_TEXT, [OTHER, Signer.from_private_key(GO_SKEY)])
    bad_other = Signature(OTHER.name, OTHER.key_id, b"\x00" * 64).line()
    verifiers = [Verifier.from_vkey(GO_VKEY), OTHER.verifier()]
    with pytest.raises(NoteError, match="invalid signature by 'other"):
        open_note(good + bad_other, verifiers)
    # Wrong payload length from a known key is a bad signature, not a format error.
    short = Signature(OTHER.name, OTHER.key_id, b"\x00" * 10).line()
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(good + short, verifiers)


def test_repeated_signature_is_reported_once() -> None:
    note = sign_note(GO_TEXT, [Signer.from_private_key(GO_SKEY)])
    _, signatures = open_note(note + GO_SIG_LINE, [Verifier.from_vkey(GO_VKEY)])
    assert len(signatures) == 1


def test_many_signatures_accepted_up_to_the_limit() -> None:
    unknown = [Signer(f"extra{i}", seeded_key(f"extra{i}")) for i in range(MAX_SIGNATURES - 1)]
    note = sign_note(GO_TEXT, [*unknown[:15], Signer.from_private_key(GO_SKEY)])
    assert len(open_note(note, [Verifier.from_vkey(GO_VKEY)])[1]) == 1
    note = sign_note(GO_TEXT, [*unknown, Signer.from_private_key(GO_SKEY)])
    assert len(split_note(note)[1]) == MAX_SIGNATURES
    verifiers = [Verifier.from_vkey(GO_VKEY), *(s.verifier() for s in unknown)]
    assert len(open_note(note, verifiers)[1]) == MAX_SIGNATURES
    with pytest.raises(NoteError, match="too many"):
        open_note(note + GO_SIG_LINE, [Verifier.from_vkey(GO_VKEY)])
    with pytest.raises(NoteError, match="too many"):
        append_signatures(note, [OTHER])


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (GO_TEXT + GO_SIG_LINE, "no blank line"),
        (GO_NOTE.rstrip("\n"), "end with a newline"),
        (GO_TEXT + "\n", "end with a newline"),
        (GO_TEXT + "\n\n" + GO_SIG_LINE, "invalid signature"),  # the text gains a blank line
        (GO_NOTE + "\n", "end with a newline"),
        (GO_TEXT + "\n" + GO_SIG_LINE.replace("—", "-"), "em dash"),
        (GO_TEXT + "\n" + GO_SIG_LINE.replace("— ", "—"), "em dash"),
        (GO_TEXT + "\n" + GO_SIG_LINE.replace("Neumann ", "Neumann  "), "base64"),
        (GO_TEXT + "\n" + GO_SIG_LINE.replace("=\n", "\n"), "base64"),
        (GO_TEXT + "\n" + GO_SIG_LINE.replace("AM=", "AN="), "canonical"),
        (GO_TEXT + "\n" + GO_SIG_LINE.replace("PeterNeumann", "Peter+Neumann"), "key name"),
        (GO_TEXT + "\n" + "— PeterNeumann \n", "too short"),
        (GO_TEXT + "\n" + "— PeterNeumann AAAAAA==\n", "too short"),
        (GO_TEXT + "\n" + "—  x08go/ZJ\n", "empty"),
        (GO_NOTE.replace("If", "If\t"), "control"),
        (GO_NOTE.replace("If", "If\r"), "control"),
        (GO_NOTE.replace("If", "If\x00"), "control"),
        (GO_NOTE.replace("If", "If\ud800"), "UTF-8"),
    ],
)
def test_malformed_notes_are_rejected(note: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        open_note(note, [Verifier.from_vkey(GO_VKEY)])


def test_invalid_utf8_bytes_are_rejected() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(GO_NOTE.encode().replace(b"If", b"If\xff"), [Verifier.from_vkey(GO_VKEY)])


def test_text_is_split_at_the_last_blank_line() -> None:
    signer = Signer.from_private_key(GO_SKEY)
    text = "first paragraph\n\nsecond paragraph\n\n"
    note = sign_note(text, [signer])
    assert open_note(note, [signer.verifier()])[0] == text


def test_non_ascii_text_and_names() -> None:
    signer = Signer("журнал.example/ключ", seeded_key("unicode"))
    text = "héllo — wörld ✓\n"
    note = sign_note(text, [signer])
    assert open_note(note, [Verifier.from_vkey(signer.verifier().vkey)])[0] == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no newline", "newline"),
        ("", "newline"),
        ("tab\there\n", "control"),
        ("bell\x07\n", "control"),
        ("surrogate \udc80\n", "UTF-8"),
    ],
)
def test_sign_note_rejects_bad_text(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        sign_note(text, [OTHER])


def test_sign_note_needs_a_signer() -> None:
    with pytest.raises(NoteError, match="at least one"):
        sign_note(GO_TEXT, [])


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2003b", "a\nb"])
def test_key_names_are_validated(name: str) -> None:
    with pytest.raises(NoteError):
        Signer(name, seeded_key("x"))
    with pytest.raises(NoteError):
        Verifier(name, seeded_key("x").verify_key)


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        ("PeterNeumann+c74f20a3", "name\\+keyid\\+key"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "base64"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("PeterNeumann+c74f20a3+AQ==", "empty"),
    ],
)
def test_bad_vkeys_are_rejected(vkey: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        Verifier.from_vkey(vkey)


def test_vkey_type_and_length_checks() -> None:
    public = bytes(seeded_key("k").verify_key)

    def vkey(alg: int, key: bytes) -> str:
        encoded = base64.b64encode(bytes([alg]) + key).decode()
        return f"k+{key_id('k', alg, key).hex()}+{encoded}"

    with pytest.raises(NoteError, match="32 bytes"):
        Verifier.from_vkey(vkey(0x01, public[:31]))
    with pytest.raises(NoteError, match="not Ed25519"):
        Verifier.from_vkey(vkey(0x04, public))
    with pytest.raises(NoteError, match="not a cosignature"):
        CosignatureVerifier.from_vkey(vkey(0x01, public))
    with pytest.raises(NoteError, match="unsupported"):
        parse_vkey(vkey(0x02, public))
    assert isinstance(parse_vkey(vkey(0x01, public)), Verifier)
    assert isinstance(parse_vkey(vkey(0x04, public)), CosignatureVerifier)
    # Uppercase hex, as Go's parser accepts.
    upper = vkey(0x01, public).split("+", 2)
    assert Verifier.from_vkey("+".join([upper[0], upper[1].upper(), upper[2]])).name == "k"


@pytest.mark.parametrize(
    "skey",
    [
        GO_SKEY.replace("c74f20a3", "c74f20a4"),
        GO_SKEY.replace("PRIVATE+KEY", "PUBLIC+KEY"),
        GO_SKEY.replace("+AYEK", "+AoEK"),
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        GO_SKEY[:-4],
    ],
)
def test_bad_private_keys_are_rejected(skey: str) -> None:
    with pytest.raises(NoteError):
        Signer.from_private_key(skey)


def test_ambiguous_verifiers_are_rejected() -> None:
    real = Verifier.from_vkey(GO_VKEY)
    assert open_note(GO_NOTE, [real, Verifier.from_vkey(GO_VKEY)])[0] == GO_TEXT

    class Clash:
        name = "PeterNeumann"
        key_id = real.key_id

        def verify(self, text: bytes, payload: bytes) -> bool:
            return True

    with pytest.raises(NoteError, match="share name"):
        open_note(GO_NOTE, [real, Clash()])


def test_append_signatures_keeps_existing_lines() -> None:
    note = sign_note(GO_TEXT, [Signer.from_private_key(GO_SKEY)])
    extended = append_signatures(note, [OTHER])
    assert extended.startswith(GO_NOTE)
    _, signatures = open_note(extended, [Verifier.from_vkey(GO_VKEY), OTHER.verifier()])
    assert [s.name for s in signatures] == ["PeterNeumann", OTHER.name]


# --- tlog-checkpoint ----------------------------------------------------------------------


def test_checkpoint_round_trip_and_spec_example() -> None:
    example = "audit.example/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    parsed = Checkpoint.parse(example)
    assert parsed == Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT)
    assert parsed.to_text() == example
    with_extensions = Checkpoint(ORIGIN, 2**64 - 1, b"\x07" * 32, ("ext one", "ext-two"))
    assert Checkpoint.parse(with_extensions.to_text()) == with_extensions
    assert with_extensions.to_text().endswith("\next one\next-two\n")


def test_spec_example_note_structure() -> None:
    note = (
        "audit.example/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
        "— audit.example/ledger NlKs4gWuqXeGxF5bZus0DnSEJLNLoGMyjjw15iBfSEa7eccGJYC2YQ7abc4"
        "MZ5oSz2mZw6XhcAeo1u38cIeiyGArbgY=\n"
        "— witness.example/w1 Ro2ZuwAAAABpUkfA4PabdGMaNtkrsB3YcUUhl0HLcp411/XuhNtGiHKA19Tf2e"
        "vB0vQX9G9lHTMLcuPHXwAnpuM64H53p5tqb1whAQ==\n"
    )
    text, signatures = split_note(note)
    assert Checkpoint.parse(text).size == 0
    assert [len(s.payload) for s in signatures] == [64, 72]
    assert cosignature_timestamp(signatures[1]) == 0x695247C0
    with pytest.raises(NoteError, match="72 bytes"):
        cosignature_timestamp(signatures[0])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("origin\n5\n", "origin, size and root"),
        ("origin\n05\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "leading zeros"),
        ("origin\n-1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "decimal"),
        ("origin\n+1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "decimal"),
        ("origin\n١\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "decimal"),
        ("origin\n18446744073709551616\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "64-bit"),
        ("origin\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n", "canonical"),
        ("origin\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hS\n", "32 bytes"),
        ("origin\n1\n47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=\n", "base64"),
        ("\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "origin"),
        ("origin\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "newline"),
        ("origin\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n", "extension"),
        ("origin\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\na\tb\n", "control"),
    ],
)
def test_malformed_checkpoints_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        Checkpoint.parse(text)


def test_checkpoint_constructor_validates() -> None:
    with pytest.raises(NoteError, match="size"):
        Checkpoint(ORIGIN, -1, merkle.EMPTY_ROOT)
    with pytest.raises(NoteError, match="size"):
        Checkpoint(ORIGIN, 2**64, merkle.EMPTY_ROOT)
    with pytest.raises(NoteError, match="32 bytes"):
        Checkpoint(ORIGIN, 1, b"\x00" * 31)
    with pytest.raises(NoteError, match="origin"):
        Checkpoint("two\nlines", 1, merkle.EMPTY_ROOT)
    with pytest.raises(NoteError, match="extension"):
        Checkpoint(ORIGIN, 1, merkle.EMPTY_ROOT, ("",))


def test_signed_checkpoint_opens() -> None:
    checkpoint = checkpoint_of(5)
    note = sign_note(checkpoint.to_text(), [LOG])
    opened, signatures = open_checkpoint(note, [LOG.verifier()])
    assert opened == checkpoint
    assert signatures[0].name == ORIGIN


# --- tlog-cosignature ---------------------------------------------------------------------


def test_cosignature_round_trip() -> None:
    witness = WITNESSES[0]
    text = checkpoint_of(7).to_text()
    note = sign_note(text, [LOG, witness])
    opened, signatures = open_note(note, [LOG.verifier(), witness.verifier()])
    assert opened == text
    assert [s.name for s in signatures] == [ORIGIN, witness.name]
    cosig = signatures[1]
    assert len(cosig.payload) == 72
    assert cosignature_timestamp(cosig) == TIME
    # The payload is the timestamp and a plain Ed25519 signature over the spec's message.
    expected_message = f"cosignature/v1\ntime {TIME}\n{text}".encode()
    assert cosignature_message(TIME, text.encode()) == expected_message
    witness.verifier().verify_key.verify(expected_message, cosig.payload[8:])
    # Only the witness verifier is needed to open it, too.
    assert open_note(note, [witness.verifier()])[1] == [cosig]


def test_cosignature_key_id_uses_type_0x04() -> None:
    witness = WITNESSES[1]
    public = bytes(witness.verifier().verify_key)
    assert witness.key_id == hashlib.sha256(witness.name.encode() + b"\n\x04" + public).digest()[:4]
    assert witness.key_id != key_id(witness.name, 0x01, public)
    vkey = witness.verifier().vkey
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == ALG_COSIGNATURE_V1
    assert parse_vkey(vkey) == witness.verifier()
    assert CosignatureVerifier.from_vkey(vkey) == witness.verifier()


def test_cosignature_tampering_is_rejected() -> None:
    witness = WITNESSES[0]
    note = sign_note(checkpoint_of(7).to_text(), [witness])
    line = split_note(note)[1][0]
    later = Signature(line.name, line.key_id, (TIME + 1).to_bytes(8, "big") + line.payload[8:])
    for bad in (later, Signature(line.name, line.key_id, line.payload[:71])):
        tampered = note.replace(line.line(), bad.line())
        with pytest.raises(NoteError, match="invalid signature"):
            open_note(tampered, [witness.verifier()])
    # A plain Ed25519 verifier with the same key does not accept a cosignature, and vice versa.
    plain = Signer(witness.name, seeded_key("w0"))
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(note, [plain.verifier()])
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(sign_note(checkpoint_of(7).to_text(), [plain]), [witness.verifier()])


def test_cosigner_only_signs_checkpoints() -> None:
    with pytest.raises(NoteError, match="origin, size and root"):
        sign_note("just some text\n", [WITNESSES[0]])


def test_cosigner_uses_its_clock() -> None:
    ticks = iter([100, 200])
    witness = CosignatureSigner("w", seeded_key("w"), clock=lambda: next(ticks))
    text = checkpoint_of(1).to_text()
    stamps = [cosignature_timestamp(split_note(sign_note(text, [witness]))[1][0]) for _ in "ab"]
    assert stamps == [100, 200]
    broken = CosignatureSigner("w", seeded_key("w"), clock=lambda: -5.0)
    with pytest.raises(NoteError, match="clock"):
        sign_note(text, [broken])


# --- tlog-proof ---------------------------------------------------------------------------


def make_proof(n: int, index: int, extra: bytes | None = None) -> tuple[TlogProof, bytes]:
    tree = tree_of(n)
    note = sign_note(checkpoint_of(n).to_text(), [LOG, WITNESSES[0]])
    proof = TlogProof(index, tuple(tree.inclusion_proof(index)), note, extra)
    return proof, f"entry {index}".encode()


def test_tlog_proof_format_and_round_trip() -> None:
    proof, data = make_proof(10, 3, extra=b"hello")
    text = proof.to_text()
    lines = text.split("\n")
    assert lines[0] == TLOG_PROOF_HEADER
    assert lines[1] == "extra aGVsbG8="
    assert lines[2] == "index 3"
    assert [base64.b64decode(x) for x in lines[3 : 3 + len(proof.proof)]] == list(proof.proof)
    assert text == "".join(
        [
            TLOG_PROOF_HEADER + "\n",
            "extra aGVsbG8=\n",
            "index 3\n",
            *(base64.b64encode(h).decode() + "\n" for h in proof.proof),
            "\n",
            proof.checkpoint,
        ]
    )
    assert TlogProof.parse(text) == proof
    assert TlogProof.parse(text.encode()) == proof
    checkpoint = verify_tlog_proof(text, data, [LOG.verifier()])
    assert checkpoint == checkpoint_of(10)
    assert verify_tlog_proof(proof, data, [WITNESSES[0].verifier()]) == checkpoint


def test_tlog_proof_without_extra_and_single_leaf() -> None:
    proof, data = make_proof(1, 0)
    text = proof.to_text()
    assert text.startswith(TLOG_PROOF_HEADER + "\nindex 0\n\n")
    assert TlogProof.parse(text) == proof
    verify_tlog_proof(text, data, [LOG.verifier()])


def test_tlog_proof_mutations_are_rejected() -> None:
    proof, data = make_proof(10, 3)
    text = proof.to_text()
    verifiers = [LOG.verifier()]
    first_hash = base64.b64encode(proof.proof[0]).decode()
    flipped = base64.b64encode(bytes([proof.proof[0][0] ^ 1]) + proof.proof[0][1:]).decode()
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(text, b"entry 4", verifiers)
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(text.replace("index 3\n", "index 2\n"), data, verifiers)
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(text.replace(first_hash, flipped), data, verifiers)
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(text.replace(first_hash + "\n", ""), data, verifiers)
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(text.replace("\n\n", "\n" + first_hash + "\n\n", 1), data, verifiers)
    with pytest.raises(NoteError, match="invalid signature"):
        verify_tlog_proof(text.replace(f"{ORIGIN}\n10\n", f"{ORIGIN}\n11\n"), data, verifiers)
    with pytest.raises(NoteError, match="no valid signature"):
        verify_tlog_proof(text, data, [OTHER.verifier()])
    with pytest.raises(NoteError, match="nothing vouches"):
        verify_tlog_proof(text, data)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.replace(TLOG_PROOF_HEADER, "c2sp.org/tlog-proof@v2"), "header"),
        (lambda t: t.replace("index 3\n", ""), "index line"),
        (lambda t: t.replace("index 3\n", "index 03\n"), "leading zeros"),
        (lambda t: t.replace("index 3\n", "index -3\n"), "decimal"),
        (lambda t: t.replace("index 3\n", "index 3 \n"), "decimal"),
        (lambda t: t.replace("index 3\n", "extra \nindex 3\n"), "extra"),
        (lambda t: t.replace("index 3\n", "index 3\nextra aGVsbG8=\n"), "proof hash"),
        (lambda t: t.replace("index 3\n", "index 3\nAAAA\n"), "proof hash"),
        (lambda t: t.replace("\n\n", "\n", 1), "not base64"),
        (lambda t: t.split("\n\n", 1)[0] + "\n\n", "no blank line"),
        (lambda t: t.split("\n\n", 1)[0] + "\n\nnot a note\n\n— x AAAAAAAA\n", "origin"),
        (
            lambda t: t.replace(
                "index 3\n", "index 3\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 60
            ),
            "too many",
        ),
    ],
)
def test_malformed_tlog_proofs_are_rejected(edit: Callable[[str], str], reason: str) -> None:
    proof, _ = make_proof(10, 3)
    with pytest.raises(NoteError, match=reason):
        TlogProof.parse(edit(proof.to_text()))


def test_tlog_proof_constructor_validates() -> None:
    proof, _ = make_proof(4, 1)
    with pytest.raises(NoteError, match="index"):
        TlogProof(-1, proof.proof, proof.checkpoint)
    with pytest.raises(NoteError, match="32 bytes"):
        TlogProof(1, (b"x",), proof.checkpoint)
    with pytest.raises(NoteError, match="non-empty"):
        TlogProof(1, proof.proof, proof.checkpoint, b"")
    with pytest.raises(NoteError, match="blank line"):
        TlogProof(1, proof.proof, "no note here\n")


# --- tlog-policy --------------------------------------------------------------------------


def policy_text(quorum: str = "two-of-three") -> str:
    w = [s.verifier().vkey for s in WITNESSES]
    return "\n".join(
        [
            "# production ledger",
            f"log {LOG.verifier().vkey} https://audit.example/",
            "",
            f"witness alpha {w[0]}",
            f"witness beta {w[1]} https://beta.example/",
            f"witness gamma {w[2]}   # trailing comment",
            f"witness delta {w[3]}",
            "group two-of-three 2 alpha beta gamma",
            "group either any alpha delta",
            "group both all two-of-three either",
            f"quorum {quorum}",
            "",
        ]
    )


def cosigned(*witness_indices: int, size: int = 6) -> str:
    signers: list[NoteSigner] = [LOG, *(WITNESSES[i] for i in witness_indices)]
    return sign_note(checkpoint_of(size).to_text(), signers)


def test_policy_parses() -> None:
    policy = parse_policy(policy_text())
    assert isinstance(policy, Policy)
    assert [log.name for log in policy.logs] == [ORIGIN]
    assert sorted(policy.witnesses) == ["alpha", "beta", "delta", "gamma"]
    assert policy.groups["two-of-three"].threshold == 2
    assert policy.groups["either"].threshold == 1
    assert policy.groups["both"].threshold == 2
    assert policy.quorum == "two-of-three"
    assert parse_policy(policy_text("none")).quorum is None


def test_policy_quorum_satisfied() -> None:
    policy = parse_policy(policy_text())
    verify_policy(cosigned(0, 1), policy)
    verify_policy(cosigned(1, 2, 3), policy)
    verify_policy(cosigned(0, 0, 2), policy)


@pytest.mark.parametrize("witnesses", [(), (0,), (3,), (0, 3), (0, 0)])
def test_policy_quorum_unsatisfied(witnesses: tuple[int, ...]) -> None:
    with pytest.raises(NoteError, match="quorum 'two-of-three' is not satisfied"):
        verify_policy(cosigned(*witnesses), parse_policy(policy_text()))


@pytest.mark.parametrize(
    ("quorum", "ok", "not_ok"),
    [
        ("alpha", (0,), (1, 2)),
        ("either", (3,), (1, 2)),
        ("both", (0, 2), (0, 3)),
        ("both", (1, 2, 3), (1, 2)),
        ("none", (), None),
    ],
)
def test_policy_groups_and_single_witness_quorums(
    quorum: str, ok: tuple[int, ...], not_ok: tuple[int, ...] | None
) -> None:
    policy = parse_policy(policy_text(quorum))
    verify_policy(cosigned(*ok), policy)
    if not_ok is not None:
        with pytest.raises(NoteError, match="not satisfied"):
            verify_policy(cosigned(*not_ok), policy)


def test_policy_requires_the_log_signature() -> None:
    policy = parse_policy(policy_text("none"))
    witnesses_only = sign_note(checkpoint_of(6).to_text(), [WITNESSES[0], WITNESSES[1]])
    with pytest.raises(NoteError, match="no valid signature by the log"):
        verify_policy(witnesses_only, policy)
    foreign_origin = sign_note(
        Checkpoint("other.example/log", 6, tree_of(6).root()).to_text(), [LOG, WITNESSES[0]]
    )
    with pytest.raises(NoteError, match="no valid signature by the log"):
        verify_policy(foreign_origin, policy)


def test_policy_rejects_a_bad_witness_signature() -> None:
    note = cosigned(0, 1)
    line = split_note(note)[1][1]
    forged = Signature(line.name, line.key_id, line.payload[:8] + bytes(64)).line()
    with pytest.raises(NoteError, match="invalid signature"):
        verify_policy(note.replace(line.line(), forged), parse_policy(policy_text()))


def test_tlog_proof_with_policy() -> None:
    tree = tree_of(6)
    proof = TlogProof(2, tuple(tree.inclusion_proof(2)), cosigned(0, 2))
    policy = parse_policy(policy_text())
    assert verify_tlog_proof(proof.to_text(), b"entry 2", policy=policy).size == 6
    weak = TlogProof(2, proof.proof, cosigned(0))
    with pytest.raises(NoteError, match="not satisfied"):
        verify_tlog_proof(weak.to_text(), b"entry 2", policy=policy)
    with pytest.raises(NoteError, match="not satisfied"):
        verify_tlog_proof(weak, b"entry 2", [LOG.verifier()], policy=policy)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.replace("quorum two-of-three\n", ""), "exactly one quorum"),
        (lambda t: t + "quorum none\n", "exactly one quorum"),
        (lambda t: t.replace("quorum two-of-three", "quorum nobody"), "not defined"),
        (
            lambda t: t.replace("group both all two-of-three either", "group both all x y"),
            "not defined",
        ),
        (lambda t: t.replace("2 alpha beta gamma", "4 alpha beta gamma"), "threshold"),
        (lambda t: t.replace("2 alpha beta gamma", "0 alpha beta gamma"), "threshold"),
        (lambda t: t.replace("2 alpha beta gamma", "02 alpha beta gamma"), "leading zeros"),
        (lambda t: t.replace("2 alpha beta gamma", "some alpha beta gamma"), "decimal"),
        (lambda t: t.replace("2 alpha beta gamma", "2 alpha alpha gamma"), "repeats"),
        (lambda t: t.replace("group either any", "group alpha any"), "defined twice"),
        (lambda t: t.replace("witness delta", "witness none"), "reserved"),
        (lambda t: t.replace("witness delta", "witness alpha"), "defined twice|listed twice"),
        (lambda t: t.replace("group two-of-three 2", "group two-of-three"), "decimal"),
        (lambda t: t.replace("group either any alpha delta", "group either any"), "policy line"),
        (lambda t: t.replace("witness alpha", "witnesses alpha"), "policy line"),
        (lambda t: t.replace(f"log {LOG.verifier().vkey}", "# no log"), "no log"),
        (lambda t: t.replace("witness alpha ", "witness alpha x+00000000+AQ== "), "vkey"),
        (lambda t: "group early any alpha\n" + t, "not defined"),
    ],
)
def test_malformed_policies_are_rejected(edit: Callable[[str], str], reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_policy(edit(policy_text()))


def test_policy_rejects_a_key_listed_twice() -> None:
    vkey = WITNESSES[0].verifier().vkey
    text = f"log {LOG.verifier().vkey}\nwitness a {vkey}\nwitness b {vkey}\nquorum a\n"
    with pytest.raises(NoteError, match="listed twice"):
        parse_policy(text)


def test_policy_accepts_an_ed25519_witness_key() -> None:
    plain = Signer("plain.example/witness", seeded_key("plain"))
    text = f"log {LOG.verifier().vkey}\nwitness p {plain.verifier().vkey}\nquorum p\n"
    note = sign_note(checkpoint_of(3).to_text(), [LOG, plain])
    verify_policy(note, parse_policy(text))
