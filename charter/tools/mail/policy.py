"""Each agent's mail policy, read from ``policy["email"]`` of its owner-signed charter: its
address, hourly send rate, size cap and the senders whose mail it may see."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter.errors import ConfigError, InvalidInput
from charter.tools.mail import message as mm
from charter.tools.mail.transport import MailDenied

if TYPE_CHECKING:
    from charter.home import Home
    from charter.storage.ports import Tx
    from charter.tools.identity import AgentContext

DEFAULT_RATE_PER_HOUR = 50
MAX_RATE_PER_HOUR = 10_000
MAX_ALLOW_SENDERS = 100


@dataclass(frozen=True, slots=True)
class EmailPolicy:
    """``policy["email"]`` of a charter."""

    address: str
    rate_per_hour: int = DEFAULT_RATE_PER_HOUR
    max_bytes: int = mm.DEFAULT_MAX_BYTES
    allow_senders: tuple[str, ...] = ()

    def allows_sender(self, sender: str) -> bool:
        """True when no allowlist is set or ``sender`` matches one of its patterns."""
        if not self.allow_senders:
            return True
        return any(fnmatch.fnmatchcase(sender.lower(), p) for p in self.allow_senders)


def email_policy(policy: dict[str, Any]) -> EmailPolicy | None:
    """Read ``policy["email"]`` (None when the agent has no address)."""
    doc = policy.get("email")
    if not isinstance(doc, dict) or not doc.get("address"):
        return None
    try:
        return EmailPolicy(
            address=mm.parse_address(str(doc["address"]), "the charter's email address"),
            rate_per_hour=int(doc.get("rate_per_hour", DEFAULT_RATE_PER_HOUR)),
            max_bytes=int(doc.get("max_bytes", mm.DEFAULT_MAX_BYTES)),
            allow_senders=tuple(str(p).lower() for p in doc.get("allow_senders") or ()),
        )
    except (InvalidInput, TypeError, ValueError):
        # NOTE: fail closed: a policy we cannot read grants no mail at all.
        raise ConfigError(
            "the agent's email policy is malformed; the owner can fix it with "
            "`charter agent update NAME --email ADDRESS`"
        ) from None


def require_policy(agent: AgentContext) -> EmailPolicy:
    """The agent's email policy.

    Raises:
        MailDenied: it has no address.
    """
    policy = email_policy(agent.charter.policy)
    if policy is None:
        raise MailDenied(
            "this agent has no email address; the owner can give it one with "
            f"`charter agent update {agent.name} --email ADDRESS`"
        )
    return policy


def merge_email_policy(
    policy: dict[str, Any],
    *,
    address: str | None = None,
    rate_per_hour: int | None = None,
    max_bytes: int | None = None,
    allow_senders: list[str] | None = None,
) -> dict[str, Any]:
    """Return ``policy`` with its ``email`` entry updated by the given fields (for the CLI).

    Raises:
        InvalidInput: a bad address, limit or pattern, or limits without an address.
    """
    current = dict(policy.get("email") or {})
    if address is not None:
        current["address"] = mm.parse_address(address, "--email")
    if rate_per_hour is not None:
        if not 0 < rate_per_hour <= MAX_RATE_PER_HOUR:
            raise InvalidInput(f"the send rate must be 1-{MAX_RATE_PER_HOUR} per hour")
        current["rate_per_hour"] = rate_per_hour
    if max_bytes is not None:
        if not 0 < max_bytes <= mm.MAX_BYTES_CEILING:
            raise InvalidInput(f"the maximum message size must be 1-{mm.MAX_BYTES_CEILING} bytes")
        current["max_bytes"] = max_bytes
    if allow_senders is not None:
        patterns = sorted({_sender_pattern(p) for p in allow_senders})
        if len(patterns) > MAX_ALLOW_SENDERS:
            raise InvalidInput(f"at most {MAX_ALLOW_SENDERS} sender patterns")
        if patterns:
            current["allow_senders"] = patterns
        else:
            current.pop("allow_senders", None)
    if not current:
        return policy
    if "address" not in current:
        raise InvalidInput("give the agent an address with --email before setting mail limits")
    return policy | {"email": current}


def _sender_pattern(pattern: str) -> str:
    text = mm.check_header_text(pattern, "sender pattern").strip().lower()
    if not 0 < len(text) <= 254 or " " in text:
        raise InvalidInput(f"invalid sender pattern {pattern!r}: use e.g. *@example.com")
    return text


async def agent_addresses(home: Home) -> dict[str, tuple[str, ...]]:
    """Lowercased address -> names of the active agents that have it."""
    return await home.read(lambda tx: addresses_in(home, tx))


def addresses_in(home: Home, tx: Tx) -> dict[str, tuple[str, ...]]:
    """:func:`agent_addresses` inside a unit of work.

    Each active agent's address comes from its owner-signed charter, verified once per
    process and charter hash (:func:`_charter_address`): a local send reads this directory
    in its own transaction, and re-verifying every agent's charter there cost one Ed25519
    verification per agent of the home per send. The agents' states are read each time.
    """
    out: dict[str, tuple[str, ...]] = {}
    for name in tx.agents.list_names():
        record = tx.agents.get(name)
        if record is None or record.status != "active":
            continue
        key = _charter_address(home, tx, record.charter_hash)
        if key is not None:
            out[key] = (*out.get(key, ()), name)
    return out


#: Lowercased address (or None: no address, or an unreadable policy) of each charter this
#: process verified, by (home origin, owner key, charter hash). A charter is immutable and
#: named by its hash, so its verified policy stays true; a tampered row is a different body
#: or hash and is verified afresh. Bounded: cleared when full.
_ADDRESSES: dict[tuple[str, bytes, str], str | None] = {}
_ADDRESSES_MAX = 4096


def _charter_address(home: Home, tx: Tx, charter_hash: str) -> str | None:
    from charter.tools.charter_views import charter_view

    key = (home.origin, home.owner_public_key, charter_hash)
    if key in _ADDRESSES:
        return _ADDRESSES[key]
    view = charter_view(home, tx, charter_hash)  # ConfigError (tampered) is not cached
    try:
        policy = email_policy(view.policy)
    except ConfigError:
        policy = None  # a malformed policy makes that agent unreachable, not everyone
    address = None if policy is None else policy.address.lower()
    if len(_ADDRESSES) >= _ADDRESSES_MAX:
        _ADDRESSES.clear()
    _ADDRESSES[key] = address
    return address


async def check_address_free(home: Home, address: str, agent: str) -> None:
    """Refuse giving ``agent`` an address another active agent already has.

    Raises:
        InvalidInput: naming the other agent.
    """
    addresses = await agent_addresses(home)
    others = [n for n in addresses.get(address.lower(), ()) if n != agent]
    if others:
        raise InvalidInput(f"{address} is already the address of agent {others[0]!r}")
