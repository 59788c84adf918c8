"""Outgoing messages: validation (header injection), rendering, digest and Charter-Signature.

Signatures are checked twice: by Charter's own ``mail.message.verify`` and by
``recipient.verify``, written from AUDIT-FORMAT.md §10 without Charter's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
from collections.abc import Callable
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recipient import NotVerified
from recipient import verify as recipient_verify

from charter.errors import InvalidInput
from charter.evidence.charters import charter_hash, make_charter
from charter.keys import KeyPair
from charter.tools.mail import message as mm

DATE = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
AGENT_ID = "spiffe://charter.local/agent/owner/bot"
ADDRESS = "bot@agents.example.com"
LEDGER = "charter.local/charter/owner/0123456789abcdef"
INJECTIONS = ["\r\nBcc: evil@example.net", "\n", "\r", "\x00", "\x85", "\u2028", "\x1b[31m"]


@pytest.fixture(scope="module")
def signer() -> tuple[dict[str, Any], KeyPair, KeyPair]:
    """(charter, owner key, agent key) for an agent with an address and `email:send`."""
    owner, agent = KeyPair.generate(), KeyPair.generate()
    charter = make_charter(
        owner_key=owner,
        owner_id="owner@example.com",
        agent_id=AGENT_ID,
        agent_name="bot",
        agent_public_key=agent.public_key,
        scopes=["email:send:*@example.com", "email:send:*@example.org"],
        audiences=[],
        not_before=DATE - dt.timedelta(days=1),
        not_after=DATE + dt.timedelta(days=90),
        policy={"email": {"address": ADDRESS}},
    )
    return charter, owner, agent


def _mail(**overrides: Any) -> mm.OutgoingMail:
    args: dict[str, Any] = {
        "sender": ADDRESS,
        "to": ["Bob@Example.com", "carol@example.org"],
        "cc": "dave@example.com",
        "bcc": ["secret-bcc@example.com"],
        "subject": "Quarterly report — façade naïve 🎉",
        "text": "Hello Bob,  \r\nthe numbers are attached.\n\n-- bot\n",
        "attachments": [
            mm.AttachmentIn(
                filename="résumé 2026.pdf",
                content_type="application/pdf",
                content_base64=base64.b64encode(bytes(range(256)) * 4).decode(),
            )
        ],
    }
    return mm.validate(**(args | overrides))


def _sign(
    mail: mm.OutgoingMail,
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
    *,
    key: KeyPair | None = None,
    message_id: str = "<0123abcd@agents.example.com>",
) -> bytes:
    charter, _, agent = signer
    unsigned = mm.render(mail, message_id=message_id, date=mm.format_date(DATE), agent_id=AGENT_ID)
    digest = mm.message_digest(mm.parse(unsigned))
    token = mm.sign(
        key or agent,
        digest=digest,
        seq=42,
        ledger=LEDGER,
        agent_id=AGENT_ID,
        charter_hash=charter_hash(charter),
    )
    return mm.add_signature(unsigned, token)


def _both_verify(raw: bytes, signer: tuple[dict[str, Any], KeyPair, KeyPair]) -> dict[str, Any]:
    charter, owner, agent = signer
    ours = mm.verify(mm.parse(raw), agent.public_key)
    theirs = recipient_verify(raw, charter, owner.jwk())
    assert theirs["digest"] == ours.digest and theirs["seq"] == ours.seq == 42
    return theirs


def _both_refuse(raw: bytes, signer: tuple[dict[str, Any], KeyPair, KeyPair]) -> None:
    charter, owner, agent = signer
    with pytest.raises(mm.UnverifiableMessage):
        mm.verify(mm.parse(raw), agent.public_key)
    with pytest.raises(NotVerified):
        recipient_verify(raw, charter, owner.jwk())


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to"])
@pytest.mark.parametrize("bad", INJECTIONS)
def test_header_injection_in_any_address_field_is_refused(field: str, bad: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: .*|^{field} contains a line break"):
        _mail(**{field: [f"bob@example.com{bad}"]})
    with pytest.raises(InvalidInput, match="header injection"):
        _mail(**{field: f"ok@example.com, bob@example.com{bad}"})


@pytest.mark.parametrize("bad", INJECTIONS)
def test_header_injection_in_subject_reply_id_and_attachment_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="subject contains a line break"):
        _mail(subject=f"Hello{bad}Bcc: evil@example.net")
    with pytest.raises(InvalidInput, match="in_reply_to contains a line break"):
        _mail(in_reply_to=f"<a@b.c>{bad}")
    att = {"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGk="}
    with pytest.raises(InvalidInput, match=r"attachments\[0\]\.filename contains a line break"):
        _mail(attachments=[mm.AttachmentIn(**att | {"filename": f"a{bad}.txt"})])
    with pytest.raises(InvalidInput, match=r"attachments\[0\]\.content_type contains"):
        _mail(attachments=[mm.AttachmentIn(**att | {"content_type": f"text/plain{bad}"})])
    with pytest.raises(InvalidInput, match="from contains a line break"):
        _mail(sender=f"bot@agents.example.com{bad}")


@pytest.mark.parametrize(
    "address",
    [
        "bob",
        "bob@",
        "@example.com",
        "bob@example",
        "bob@@example.com",
        "bo b@example.com",
        "Bob <bob@example.com>",
        "bøb@example.com",
        "bob@exa_mple.com",
        "bob@-example.com",
        ".bob@example.com",
        "bob.@example.com",
        "a" * 65 + "@example.com",
        '"quoted"@example.com',
    ],
)
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match=r"not a (valid email|bare) address"):
        _mail(to=[address])


def test_recipients_are_required_deduplicated_and_capped() -> None:
    with pytest.raises(InvalidInput, match="no recipient"):
        _mail(to=[], cc=None, bcc=None)
    with pytest.raises(InvalidInput, match="no recipient"):
        _mail(to=" , ", cc=[], bcc=[])
    mail = _mail(to=["a@example.com", "A@EXAMPLE.com"], cc="a@example.com", bcc=None)
    assert mail.recipients == ("a@example.com",)
    many = [f"u{i}@example.com" for i in range(mm.MAX_RECIPIENTS + 1)]
    with pytest.raises(InvalidInput, match="too many recipients"):
        _mail(to=many, cc=None, bcc=None)


def test_sizes_and_attachment_shapes_are_checked() -> None:
    with pytest.raises(InvalidInput, match="message too large"):
        _mail(text="x" * 101, attachments=None, max_bytes=100)
    big = mm.AttachmentIn(filename="a.bin", content_base64=base64.b64encode(b"x" * 80).decode())
    with pytest.raises(InvalidInput, match="message too large: 90 bytes"):
        _mail(text="0123456789", attachments=[big], max_bytes=89)
    assert _mail(text="0123456789", attachments=[big], max_bytes=90).size == 90
    with pytest.raises(InvalidInput, match="not valid base64"):
        _mail(attachments=[mm.AttachmentIn(filename="a", content_base64="@@@")])
    for name in ("../etc/passwd", "a/b", "a\\b", "..", " "):
        with pytest.raises(InvalidInput, match="plain file name"):
            _mail(attachments=[mm.AttachmentIn(filename=name, content_base64="")])
    for ctype in ("multipart/mixed", "message/rfc822", "text", "text/plain; x=y"):
        with pytest.raises(InvalidInput, match="not a plain MIME type"):
            _mail(
                attachments=[mm.AttachmentIn(filename="a", content_type=ctype, content_base64="")]
            )
    with pytest.raises(InvalidInput, match="too many attachments"):
        _mail(attachments=[mm.AttachmentIn(filename="a", content_base64="")] * 11)
    with pytest.raises(InvalidInput, match="NUL"):
        _mail(text="a\x00b")
    with pytest.raises(InvalidInput, match="lone surrogate"):
        _mail(text="a\ud800b")
    with pytest.raises(InvalidInput, match="not a Message-ID"):
        _mail(in_reply_to="no-brackets@example.com")


# -- rendering ----------------------------------------------------------------------------------


def test_rendered_message_has_the_expected_headers_and_hides_bcc(
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
) -> None:
    raw = _sign(_mail(in_reply_to="<orig@example.com>"), signer)
    assert b"secret-bcc" not in raw
    assert all(len(line) <= 78 for line in raw.split(b"\r\n")), "header lines stay foldable"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["From"]) == ADDRESS
    assert str(msg["To"]) == "Bob@Example.com, carol@example.org"
    assert str(msg["Subject"]) == "Quarterly report — façade naïve 🎉"
    assert str(msg["Date"]) == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert str(msg["In-Reply-To"]) == str(msg["References"]) == "<orig@example.com>"
    assert str(msg["Charter-Agent"]) == AGENT_ID
    assert msg.get_content_type() == "multipart/mixed"
    text, att = list(msg.iter_parts())
    assert (
        text.get_content().replace("\r\n", "\n")
        == "Hello Bob,  \nthe numbers are attached.\n\n-- bot\n"
    )
    assert att.get_filename() == "résumé 2026.pdf"
    assert att.get_content() == bytes(range(256)) * 4


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "plain",
        "two  spaces and a trailing one ",
        " leading",
        "looks like =?utf-8?q?encoded?= but is not",
        "Héllo wörld " * 12,
        "日本語のテキスト" * 20,
        "x" * 120,
    ],
)
def test_subject_survives_encoding_and_folding(subject: str) -> None:
    raw = mm.render(
        _mail(subject=subject, attachments=None),
        message_id="<a@b.example>",
        date=mm.format_date(DATE),
        agent_id=AGENT_ID,
    )
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    parsed = str(mm.parse(raw)["Subject"])
    assert parsed == subject
    assert mm.digest_document(mm.parse(raw))["subject"] == " ".join(subject.split())


# -- signature and digest -----------------------------------------------------------------------


def test_signature_verifies_independently(
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
) -> None:
    payload = _both_verify(_sign(_mail(), signer), signer)
    charter = signer[0]
    assert payload["agent"] == AGENT_ID
    assert payload["ledger"] == LEDGER
    assert payload["charter"] == charter_hash(charter)


def _lf_endings(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def _server_headers(raw: bytes) -> bytes:
    return (
        b"Return-Path: <bot@agents.example.com>\r\n"
        b"Received: from mail.example.com by mx.example.org; Fri, 2 Jan 2026 03:04:06 +0000\r\n"
        b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=agents.example.com\r\n"
        + raw
    )


def _unfold_signature(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    for line in lines:
        if line.startswith(b" ") and out and out[-1].startswith(b"Charter-Signature:"):
            out[-1] += line.strip()
        else:
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def _reencode(cte: str) -> Callable[[bytes], bytes]:
    def transform(raw: bytes) -> bytes:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        part = next(iter(msg.iter_parts()))
        assert isinstance(part, EmailMessage)
        text = part.get_content()
        part.set_content(text, subtype="plain", charset="utf-8", cte=cte)
        return msg.as_bytes(policy=email.policy.SMTP)

    return transform


def _other_subject_encoder(raw: bytes) -> bytes:
    """The subject as another mailer would write it: Q-encoded words split elsewhere."""
    qp_utf8 = Charset("utf-8")
    qp_utf8.header_encoding = QP
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg["Subject"])
    head, _, body = raw.partition(b"\r\n\r\n")
    lines, out, skipping = head.split(b"\r\n"), [], False
    for line in lines:
        if line.startswith(b"Subject:"):
            skipping = True
            out.append(
                b"Subject: " + Header(subject, qp_utf8).encode().encode().replace(b"\n", b"\r\n")
            )
        elif skipping and line.startswith(b" "):
            continue
        else:
            skipping = False
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def _strip_trailing_spaces(raw: bytes) -> bytes:
    return _reencode("8bit")(raw).replace(b"  \r\n", b"\r\n")


@pytest.mark.parametrize(
    "transport",
    [
        _lf_endings,
        _server_headers,
        _unfold_signature,
        _reencode("base64"),
        _reencode("8bit"),
        _other_subject_encoder,
        _strip_trailing_spaces,
    ],
)
def test_digest_survives_what_mail_servers_do(
    transport: Callable[[bytes], bytes], signer: tuple[dict[str, Any], KeyPair, KeyPair]
) -> None:
    raw = _sign(_mail(), signer)
    changed = transport(raw)
    assert changed != raw
    _both_verify(changed, signer)


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def transform(raw: bytes) -> bytes:
        assert old in raw
        return raw.replace(old, new, 1)

    return transform


def _prepend(header: bytes) -> Callable[[bytes], bytes]:
    return lambda raw: header + b"\r\n" + raw


def _edit_text(raw: bytes) -> bytes:
    return _reencode("8bit")(raw).replace(b"numbers are", b"numbers aren't")


def _add_footer_part(raw: bytes) -> bytes:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    msg.add_attachment("Scanned by ExampleAV", filename="footer.txt")
    return msg.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize(
    "tamper",
    [
        _replace(b"To: Bob@Example.com", b"To: Mallory@Example.com"),
        _replace(b"Cc: dave@example.com", b"Cc: dave@example.com, eve@example.com"),
        _replace(b"From: bot@agents", b"From: ceo@agents"),
        _replace(b"Date: Fri, 02 Jan 2026 03:04:05", b"Date: Fri, 02 Jan 2026 03:04:06"),
        _replace(b"Message-ID: <0123abcd", b"Message-ID: <0123abce"),
        _replace(b"Charter-Agent: spiffe://charter.local/agent/owner/bot", b"Charter-Agent: x"),
        _prepend(b"Subject: URGENT: wire money"),
        _prepend(b"In-Reply-To: <other@example.com>"),
        _prepend(b"Reply-To: mallory@example.net"),
        _edit_text,
        _replace(b"AAECAwQFBgc", b"AAECAwQFBgg"),
        _add_footer_part,
    ],
)
def test_any_change_to_covered_content_breaks_the_signature(
    tamper: Callable[[bytes], bytes], signer: tuple[dict[str, Any], KeyPair, KeyPair]
) -> None:
    _both_refuse(tamper(_sign(_mail(), signer)), signer)


def test_signature_by_another_key_or_with_a_second_signature_is_refused(
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
) -> None:
    _both_refuse(_sign(_mail(), signer, key=KeyPair.generate()), signer)
    raw = _sign(_mail(), signer)
    other = _sign(_mail(subject="other"), signer).split(b"\r\nFrom:")[0]
    _both_refuse(other + b"\r\n" + raw, signer)


def test_recipient_checks_the_charter_not_just_the_key(
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
) -> None:
    charter, owner, _ = signer
    raw = _sign(_mail(), signer)
    with pytest.raises(NotVerified, match="trusted owner"):
        recipient_verify(raw, charter, KeyPair.generate().jwk())
    forged = charter | {"policy": {"email": {"address": "ceo@agents.example.com"}}}
    with pytest.raises(NotVerified, match="charter hash"):
        recipient_verify(raw, forged, owner.jwk())
    outside = _sign(_mail(to=["x@elsewhere.net"], cc=None), signer)
    with pytest.raises(NotVerified, match=r"does not allow mail to x@elsewhere\.net"):
        recipient_verify(outside, charter, owner.jwk())


def test_plain_text_message_without_attachments_verifies(
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
) -> None:
    raw = _sign(_mail(attachments=None, text=""), signer)
    assert mm.parse(raw).get_content_type() == "text/plain"
    _both_verify(raw, signer)


def test_the_worked_example_in_the_document_runs(
    signer: tuple[dict[str, Any], KeyPair, KeyPair],
) -> None:
    """AUDIT-FORMAT.md §10's Python example, executed as written, accepts a good message only."""
    doc = (Path(__file__).parents[2] / "AUDIT-FORMAT.md").read_text(encoding="utf-8")
    section = doc.split("\n## 10. ", 1)[1].split("\n## ", 1)[0]
    example = section.split("### 10.6 Worked example", 1)[1].split("```python\n", 1)[1]
    example = example.split("```", 1)[0]
    charter, owner, _ = signer
    raw = _sign(_mail(), signer)
    exec(example, {"raw": raw, "charter": charter, "trusted_owner_jwk": owner.jwk()})
    tampered = raw.replace(b"numbers are", b"numbers aren")
    with pytest.raises(AssertionError):
        exec(example, {"raw": tampered, "charter": charter, "trusted_owner_jwk": owner.jwk()})


# -- the digest computed from the fields (no parse) -----------------------------------------------

_HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), max_size=200
)
_BODY = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=400).map(
    lambda t: t.replace("\x00", "")
)
_ADDRESS_LIST = st.lists(
    st.sampled_from(["Bob@Example.com", "carol@example.org", "d.e+f@sub.example.net", "X@Y.IO"]),
    max_size=3,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    subject=_HEADER_TEXT,
    text=_BODY,
    to=_ADDRESS_LIST,
    cc=_ADDRESS_LIST,
    reply_to=_ADDRESS_LIST,
    in_reply_to=st.sampled_from([None, "<a.b@c.example>", "<x$y@z-1.example>"]),
    moment=st.datetimes(
        min_value=dt.datetime(1990, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ),
)
def test_the_digest_from_the_fields_is_the_digest_a_recipient_parses(
    subject: str,
    text: str,
    to: list[str],
    cc: list[str],
    reply_to: list[str],
    in_reply_to: str | None,
    moment: dt.datetime,
) -> None:
    """``outgoing_digest`` (what a send signs, computed without parsing the message back) is
    the digest of what a recipient parses: any difference would make every such message
    fail verification at the recipient."""
    mail = mm.validate(
        sender="Bot@Agents.Example.com",
        to=to or ["bob@example.com"],
        cc=cc,
        reply_to=reply_to,
        in_reply_to=in_reply_to,
        subject=subject,
        text=text,
    )
    message_id, date = "<0123abcd@agents.example.com>", mm.format_date(moment)
    unsigned = mm.render(mail, message_id=message_id, date=date, agent_id=AGENT_ID)
    parsed = mm.message_digest(mm.parse(unsigned))
    assert mm.outgoing_digest(mail, message_id=message_id, date=date, unsigned=unsigned) == parsed


@pytest.mark.parametrize(
    "subject", ["", " x ", "a  b\u00a0 c", "=?utf-8?q?x?=", "日本語 " * 40, "\u200bz", "w" * 90]
)
@pytest.mark.parametrize(
    "text", ["", "  \n\n", "a\x0bb\x0cc\x1cd\u2028e\x85f", "=\n.\nFrom x", "é" * 300]
)
def test_the_digest_from_the_fields_matches_on_edge_cases(subject: str, text: str) -> None:
    mail = _mail(subject=subject, text=text, attachments=None)
    unsigned = mm.render(mail, message_id="<m@x.example>", date=mm.format_date(DATE), agent_id=None)
    assert mm.outgoing_digest(
        mail, message_id="<m@x.example>", date=mm.format_date(DATE), unsigned=unsigned
    ) == mm.message_digest(mm.parse(unsigned))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=_BODY)
def test_a_text_body_is_written_byte_for_byte_as_the_email_package_writes_it(text: str) -> None:
    """The text/plain body of a message without attachments is written without the email
    package's header machinery, and is the same bytes."""
    mail = _mail(text=text, attachments=None)
    assert mm._mime_body(mail) == mm._email_mime_body(mail)


@pytest.mark.parametrize(
    "text", ["", "\n", "a\r\nb\rc", " \t\n", "x" * 200, "é" * 100 + "\n" + "=" * 80, "a\x0bb\x85"]
)
def test_text_bodies_on_edge_cases_are_the_email_packages(text: str) -> None:
    mail = _mail(text=text, attachments=None)
    assert mm._mime_body(mail) == mm._email_mime_body(mail)
