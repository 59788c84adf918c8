"""Sending as an agent, and the send log (``charter mail outbox``).

Sending runs in a fixed order, and nothing reaches a mail server before the ledger holds a
signed intent naming the message (:func:`prepare_send` does step 1, the caller checks the
scopes of step 2, :func:`send_plan` the rest of 2 and 3, and returns the plan of 4 and 5 that
only the gate runs, :mod:`charter.tools.plan`):

1. validate every argument (:mod:`charter.tools.mail.message`): header injection, addresses,
   sizes — :class:`InvalidInput`;
2. policy: the agent needs an address in its charter, ``email:send:<recipient>`` for each
   recipient and each ``reply_to`` address, a transport that can reach the recipients and
   room under its hourly rate — refusals are recorded as denied calls;
3. render the message (fresh Message-ID and Date) and compute its canonical digest;
4. commit the intent (recipients, subject, digests, Message-ID) and, in the same
   transaction, the message's ``mail_sent`` row after checking the hourly rate again: the
   row exists exactly when the intent does (a full disk or a crash cannot leave one without
   the other);
5. sign ``Charter-Signature`` over the digest and the intent's seq, then hand the message to
   the transport exactly once; its reply goes into the outcome entry.

A send to other agents of this home (the local transport) never leaves Charter, so steps 4
and 5 and the outcome are one transaction (:class:`~charter.tools.plan.LocalPlan`): the
message is in the recipients' mailboxes exactly when its intent and outcome are on disk.

A transport failure after step 4 is an ``error`` outcome and is never retried: an agent's
retry is a new call with a new Message-ID. Bodies are never stored, only digests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from charter.clock import rfc3339
from charter.storage.mail import NewSend
from charter.storage.ports import Tx
from charter.tools.mail import message as mm
from charter.tools.mail.models import SendResult
from charter.tools.mail.policy import EmailPolicy, require_policy
from charter.tools.mail.settings import settings_changed, transport_for
from charter.tools.mail.transport import Envelope, LocalTransport, MailDenied
from charter.tools.plan import LocalPlan, Plan

if TYPE_CHECKING:
    from charter.evidence.entries import Entry
    from charter.home import Home
    from charter.tools.identity import AgentContext


# -- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedSend:
    """A validated message and the sender's policy (:func:`prepare_send`)."""

    mail: mm.OutgoingMail
    policy: EmailPolicy

    @property
    def scopes(self) -> list[str]:
        """The scopes the send needs: ``email:send:<address>`` for every recipient and every
        ``reply_to`` address (the caller checks them before :func:`send_plan`)."""
        mail = self.mail
        # Reply-To is where the answers go: an address outside the recipient policy there
        # would route the conversation to someone the owner never allowed, so it is held to
        # it too.
        return [f"email:send:{address.lower()}" for address in (*mail.recipients, *mail.reply_to)]


def prepare_send(
    agent: AgentContext,
    *,
    to: str | list[str] | None,
    subject: str,
    text: str,
    cc: str | list[str] | None = None,
    bcc: str | list[str] | None = None,
    reply_to: str | list[str] | None = None,
    in_reply_to: str | None = None,
    attachments: list[mm.AttachmentIn] | None = None,
) -> PreparedSend:
    """Step 1 of a send (the order is in the module docstring): validate every argument.

    Raises:
        InvalidInput: bad arguments.  MailDenied: the agent has no address.
    """
    policy = require_policy(agent)
    mail = mm.validate(
        sender=policy.address,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        in_reply_to=in_reply_to,
        subject=subject,
        text=text,
        attachments=attachments,
        max_bytes=policy.max_bytes,
    )
    return PreparedSend(mail, policy)


async def send_plan(
    home: Home, agent: AgentContext, prepared: PreparedSend
) -> Plan[SendResult] | LocalPlan[SendResult]:
    """Steps 2 (after the scopes) to 5 of a send, as the plan the gate runs.

    Checks the transport and the rate and renders the message here; the plan's intent
    carries the message's facts and reserves its ``mail_sent`` row; its act signs and hands
    the message to the transport exactly once; the outcome records the server's reply.

    Raises:
        MailDenied: no transport reaches a recipient, or the hourly rate is used up.
    The act raises ServiceError: the transport failed after the intent (never retried).
    """
    mail, policy = prepared.mail, prepared.policy
    transport = await transport_for(home)
    if not isinstance(transport, LocalTransport):  # a local send checks in its transaction
        await transport.check(mail.recipients)
    now = home.clock.now()
    message_id = mm.new_message_id(mail.sender)
    date = mm.format_date(now)
    unsigned = mm.render(mail, message_id=message_id, date=date, agent_id=agent.agent_id)
    digest = mm.outgoing_digest(mail, message_id=message_id, date=date, unsigned=unsigned)
    if not isinstance(transport, LocalTransport):
        # Refuse early; checked again at the intent (a local send checks it only there, in
        # the one transaction that records and delivers it).
        await home.read(lambda tx: _check_rate(tx, agent.name, policy, now))
    details = {
        "message_id": message_id,
        "from": mail.sender,
        "to": list(mail.to),
        "cc": list(mail.cc),
        "bcc": list(mail.bcc),
        "subject": mail.subject[:200],
        "text_sha256": hashlib.sha256(mm.canonical_text(mail.text).encode()).hexdigest(),
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": len(a.data),
                "sha256": hashlib.sha256(a.data).hexdigest(),
            }
            for a in mail.attachments
        ],
        "size": mail.size,
        "digest": digest,
        "transport": transport.name,
    }
    row = _Reservation(agent.name, mail, message_id, digest, transport.name, policy, now)
    if isinstance(transport, LocalTransport):
        return _local_send_plan(home, agent, transport, details, row, unsigned)

    async def act(entry: Entry) -> SendResult:
        jws = mm.sign(
            agent.key,
            digest=digest,
            seq=entry.seq,
            ledger=home.origin,
            agent_id=agent.agent_id,
            charter_hash=agent.charter.hash,
        )
        await _finish(home, row, "sending", None, expect="reserved", seq=entry.seq)
        envelope = Envelope(message_id, mail.sender, mail.recipients, agent.agent_id)
        try:
            delivery = await transport.deliver(envelope, mm.add_signature(unsigned, jws))
        except BaseException as exc:
            reason = getattr(exc, "public_message", None) or "internal error"
            await _finish(home, row, "failed", reason, expect="sending")
            raise
        await _finish(home, row, "sent", delivery.reply, expect="sending")
        return SendResult(
            message_id=message_id,
            recipients=list(mail.recipients),
            transport="local" if transport.name == "local" else "smtp",
            reply=delivery.reply,
            refused=delivery.refused,
            ledger_seq=entry.seq,
        )

    return Plan(details=details, act=act, intent_effects=(row.insert,), outcome=_send_facts)


def _local_send_plan(
    home: Home,
    agent: AgentContext,
    transport: LocalTransport,
    details: dict[str, Any],
    row: _Reservation,
    unsigned: bytes,
) -> LocalPlan[SendResult]:
    """A send to other agents of this home is a local effect (:class:`LocalPlan`): its intent,
    the ``mail_sent`` row, the signed copy in each recipient's mailbox and the outcome commit
    in one transaction, so the message is delivered exactly when the ledger says so."""
    mail, message_id = row.mail, row.message_id

    def apply(tx: Tx, intent: Entry) -> SendResult:
        changed = settings_changed(home, tx)
        if changed is not None:
            raise changed
        # MailDenied refuses the unit: one denied call. The directory it reads serves the
        # delivery too (same transaction: nothing can change in between).
        known = transport.check_in(tx, mail.recipients)
        row.insert(tx)
        jws = mm.sign(
            agent.key,
            digest=row.digest,
            seq=intent.seq,
            ledger=home.origin,
            agent_id=agent.agent_id,
            charter_hash=agent.charter.hash,
        )
        envelope = Envelope(message_id, mail.sender, mail.recipients, agent.agent_id)
        delivery = transport.deliver_in(tx, envelope, mm.add_signature(unsigned, jws), known)
        now = rfc3339(home.clock.now())
        if not tx.mail.change_status(
            message_id,
            "sent",
            agent=row.agent,
            created_at=rfc3339(row.now),
            expect="reserved",
            finished_at=now,
            reply=delivery.reply,
            intent_seq=intent.seq,
        ):
            raise RuntimeError(f"mail_sent row {message_id} is not reserved; refusing to go on")
        return SendResult(
            message_id=message_id,
            recipients=list(mail.recipients),
            transport="local",
            reply=delivery.reply,
            refused=delivery.refused,
            ledger_seq=intent.seq,
        )

    return LocalPlan(details=details, apply=apply, outcome=_send_facts)


def _send_facts(result: SendResult) -> dict[str, Any]:
    """The outcome entry's facts of a send: the server's reply and any refused recipient."""
    facts: dict[str, Any] = {"reply": result.reply}
    if result.refused:
        facts["refused"] = result.refused
    return facts


def _check_rate(tx: Tx, agent: str, policy: EmailPolicy, now: dt.datetime) -> None:
    """Refuse a send when the agent's hourly rate is used up.

    Raises:
        MailDenied: the agent already sent ``rate_per_hour`` messages in the last hour.
    """
    since = rfc3339(now - dt.timedelta(hours=1))
    count = tx.mail.count_sent_since(agent, since, limit=policy.rate_per_hour)
    if count >= policy.rate_per_hour:
        raise MailDenied(
            f"rate limit: this agent may send {policy.rate_per_hour} messages per hour and "
            f"has sent {count} in the last hour; try again later"
        )


@dataclass(frozen=True)
class _Reservation:
    """The ``mail_sent`` row of a message, inserted with its intent entry (a ledger effect)."""

    agent: str
    mail: mm.OutgoingMail
    message_id: str
    digest: str
    transport: str
    policy: EmailPolicy
    now: dt.datetime

    def insert(self, tx: Tx) -> None:
        """Check the rate again (under the write lock) and insert the row as ``reserved``.

        Raises:
            MailDenied: the rate was reached meanwhile; the intent is not recorded.
        """
        _check_rate(tx, self.agent, self.policy, self.now)
        mail = self.mail
        row = NewSend(
            message_id=self.message_id,
            agent=self.agent,
            sender=mail.sender,
            to=mail.to,
            cc=mail.cc,
            bcc=mail.bcc,
            subject=mail.subject,
            digest=self.digest,
            size=mail.size,
            transport=self.transport,
            created_at=rfc3339(self.now),
        )
        if not tx.mail.reserve(row):
            raise RuntimeError(f"mail_sent row {self.message_id} cannot be reserved")


async def _finish(
    home: Home,
    row: _Reservation,
    status: str,
    reply: str | None,
    *,
    expect: str,
    seq: int | None = None,
) -> None:
    """Move a row from ``expect`` to ``status``; anything else is a bug (never send twice)."""
    now = rfc3339(home.clock.now())
    moved = await home.write(
        lambda tx: tx.mail.change_status(
            row.message_id,
            status,
            agent=row.agent,
            created_at=rfc3339(row.now),
            expect=expect,
            finished_at=now,
            reply=reply,
            intent_seq=seq,
        )
    )
    if not moved:
        raise RuntimeError(f"mail_sent row {row.message_id} is not {expect!r}; refusing to go on")


# -- the outbox -------------------------------------------------------------------------------


#: A send still ``reserved`` or ``sending`` this long after it began was cut off (its server
#: stopped): every step of a transport times out within ``timeout_s`` (at most 600 s).
INTERRUPTED_AFTER = dt.timedelta(hours=1)
#: What such a send's state says: the row moves to ``sending`` just before the transport
#: gets the message (its intent is committed with the row, before either).
_INTERRUPTED = {
    "reserved": "interrupted before the transport got it: not sent",
    "sending": "interrupted while the transport had it: delivery unknown",
}


class OutboxEntry(BaseModel):
    """One message an agent sent (or tried to): no body, only its digest."""

    message_id: str
    agent: str
    sender: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    size: int
    digest: str
    transport: str
    status: str
    reply: str | None
    ledger_seq: int | None
    created_at: str
    #: Set for a send that stopped halfway (its server was killed or lost power), saying
    #: whether the message can have gone out; see :data:`INTERRUPTED_AFTER`.
    interrupted: str | None = None


async def outbox(
    home: Home,
    *,
    agent: str | None = None,
    limit: int = 50,
    now: dt.datetime | None = None,
) -> list[OutboxEntry]:
    """The latest sends, newest first (optionally one agent's).

    With ``now``, a send still unfinished :data:`INTERRUPTED_AFTER` after it began is marked
    ``interrupted``.
    """
    stale = None if now is None else rfc3339(now - INTERRUPTED_AFTER)
    rows = await home.read(lambda tx: tx.mail.list_sent(agent=agent, limit=limit))
    return [
        OutboxEntry(
            message_id=r.message_id,
            agent=r.agent,
            sender=r.sender,
            to=list(r.to),
            cc=list(r.cc),
            bcc=list(r.bcc),
            subject=r.subject,
            size=r.size,
            digest=r.digest,
            transport=r.transport,
            status=r.status,
            reply=r.reply,
            ledger_seq=r.intent_seq,
            created_at=r.created_at,
            interrupted=(
                _INTERRUPTED.get(r.status) if stale is not None and r.created_at < stale else None
            ),
        )
        for r in rows
    ]
