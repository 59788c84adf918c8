"""Organization ledgers (issue 28, AUDIT-FORMAT §13): what the verifier refuses, from the pinned
organization key alone. Each attack is written into the ledger directly (bypassing the CLI's
own checks), so only the verifier stands between it and a clean audit."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest

from charter.errors import LedgerIntegrityError
from charter.evidence.canonical import canonical_json
from charter.evidence.charters import charter_hash, make_charter
from charter.evidence.entries import Entry, sign_entry
from charter.evidence.jwk import Ed25519Signer, thumbprint
from charter.evidence.owners import certificate_hash, make_owner_certificate
from charter.evidence.verifier import verify_entries
from charter.home import ActingOwner, Home
from charter.keys import KeyPair
from charter.storage.ports import Draft
from charter.testing import FrozenClock, make_home, raw_tx
from charter.tools import identity, owners

A, B, C = "alice@example.com", "bob@example.com", "carol@example.com"


@pytest.fixture
async def org(tmp_path: Path) -> Any:
    clock = FrozenClock()
    home = await make_home(tmp_path / "home", owner=A, organization="acme", clock=clock)
    bob = KeyPair.generate()
    await owners.add_owner(home, B, bob.public_key)
    await identity.add_agent(home, "alpha", scopes=["audit:read"])  # alice's (default owner)
    await identity.add_agent(home, "beta", scopes=["audit:read"], by=ActingOwner(B, bob))
    yield home, bob
    await home.close()


def bodies(home: Home) -> list[bytes]:
    return list(raw_tx(home).ledger.iter_bodies())


def verify(home: Home, body_list: list[bytes] | None = None) -> None:
    verify_entries(home.identity, bodies(home) if body_list is None else body_list)


def forge(home: Home, action: str, args: dict[str, Any], signer: Ed25519Signer, actor: str,
          owner: str | None = None) -> None:  # fmt: skip
    """Append an event signed by ``signer`` straight into the ledger (no CLI check)."""
    raw_tx(home).ledger.append_one(
        Draft(
            actor=actor,
            owner=owner or actor,
            action=action,
            phase="event",
            signer=signer,
            args=args,
            args_hash=hashlib.sha256(canonical_json(args)).hexdigest(),
            outcome="ok",
        )
    )


def refused(home: Home, says: str) -> None:
    with pytest.raises(LedgerIntegrityError) as caught:
        verify(home)
    assert says in caught.value.reason, caught.value.reason


def charter_by(home: Home, key: Ed25519Signer, owner_id: str, name: str) -> dict[str, Any]:
    now = home.clock.now()
    agent = KeyPair.generate()
    return make_charter(
        owner_key=key,
        owner_id=owner_id,
        agent_id=f"spiffe://charter.local/agent/x/{name}",
        agent_name=name,
        agent_public_key=agent.public_key,
        scopes=["audit:read"],
        audiences=[],
        not_before=now,
        not_after=now + dt.timedelta(days=1),
    )


def register(home: Home, charter: dict[str, Any]) -> dict[str, Any]:
    return {"agent": charter["agent"]["name"], "agent_id": charter["agent"]["id"],
            "charter": charter, "charter_hash": charter_hash(charter)}  # fmt: skip


async def test_the_organization_ledger_verifies_from_the_organization_key(org: Any) -> None:
    home, _ = org
    report, state = verify_entries(home.identity, bodies(home))
    assert home.identity.owner_key == home.owner_public_key  # the pinned key: the org's
    assert state.owners.organization == "acme" and set(state.owners.by_id) == {A, B}
    assert report.agents == 2


async def test_a_certificate_not_signed_by_the_organization_key_fails(org: Any) -> None:
    home, _ = org
    rogue = KeyPair.generate()
    cert = make_owner_certificate(
        org_key=rogue, org_id="acme", owner_id=C, owner_public_key=KeyPair.generate().public_key,
        not_before=home.clock.now(), not_after=home.clock.now() + dt.timedelta(days=1),
    )  # fmt: skip
    args = {"certificate": cert, "certificate_hash": certificate_hash(cert)}
    forge(home, "owner.certify", args, home.owner_key(), "acme")
    refused(home, "owner.certify carries an invalid certificate")


async def test_an_owner_certify_signed_by_another_key_fails(org: Any) -> None:
    home, bob = org
    cert = make_owner_certificate(
        org_key=bob, org_id="acme", owner_id=C, owner_public_key=KeyPair.generate().public_key,
        not_before=home.clock.now(), not_after=home.clock.now() + dt.timedelta(days=1),
    )  # fmt: skip
    args = {"certificate": cert, "certificate_hash": certificate_hash(cert)}
    forge(home, "owner.certify", args, bob, B, "acme")
    refused(home, "an owner key may not sign owner.certify")


async def test_an_owner_key_used_before_its_certificate_fails(org: Any) -> None:
    home, _ = org
    carol = KeyPair.generate()
    forge(home, "agent.register", register(home, charter_by(home, carol, C, "gamma")), carol, C)
    refused(home, "signed by an unknown key")


async def test_an_owner_key_used_after_its_removal_fails(org: Any) -> None:
    home, bob = org
    await owners.remove_owner(home, B)
    verify(home)  # the removal itself verifies, and beta is revoked by it
    forge(home, "agent.register", register(home, charter_by(home, bob, B, "gamma")), bob, B)
    refused(home, f"signed by owner {B}, removed at entry")


async def test_an_agent_of_a_removed_owner_cannot_sign(org: Any) -> None:
    home, _ = org
    beta = await identity.load_agent(home, "beta")
    await owners.remove_owner(home, B)
    forge_agent = Draft(actor=beta.charter.agent_id, owner=B, action="identity_whoami",
                        phase="call", signer=beta.key, charter=beta.charter.hash)  # fmt: skip
    raw_tx(home).ledger.append_one(forge_agent)
    refused(home, "entry by revoked agent")


async def test_a_charter_signed_by_the_wrong_owner_fails(org: Any) -> None:
    home, bob = org
    alice_key = (await owners.acting_owner(home)).key  # type: ignore[union-attr]
    # Bob's entry carrying a charter alice signed for herself.
    forge(home, "agent.register", register(home, charter_by(home, alice_key, A, "g1")), bob, B)
    refused(home, "carries a charter of another owner")


async def test_a_charter_naming_an_owner_but_signed_by_another_key_fails(org: Any) -> None:
    home, bob = org
    stranger = KeyPair.generate()
    forge(home, "agent.register", register(home, charter_by(home, stranger, B, "g2")), bob, B)
    refused(home, "charter names a different owner key")


async def test_one_owner_revoking_anothers_agent_fails_verification(org: Any) -> None:
    home, bob = org
    alpha = await identity.get_agent(home, "alpha")
    args = {"agent": "alpha", "agent_id": alpha.agent_id, "charter_hash": alpha.charter_hash,
            "reason": ""}  # fmt: skip
    forge(home, "agent.revoke", args, bob, B)
    refused(home, f"agent.revoke by owner {B} for another owner's agent")


async def test_one_owner_updating_anothers_agent_fails_verification(org: Any) -> None:
    home, bob = org
    alpha = await identity.load_charter(
        home, (await identity.get_agent(home, "alpha")).charter_hash
    )
    now = home.clock.now()
    stolen = make_charter(
        owner_key=bob, owner_id=B, agent_id=alpha.agent_id, agent_name="alpha",
        agent_public_key=alpha.agent_key, scopes=["audit:read"], audiences=[],
        not_before=now, not_after=now + dt.timedelta(days=1),
    )  # fmt: skip
    forge(home, "agent.update", register(home, stolen) | {"replaces": alpha.hash}, bob, B)
    refused(home, "for another owner's agent")


async def test_the_organization_key_does_not_sign_charters(org: Any) -> None:
    home, _ = org
    org_key = home.owner_key()
    forge(home, "agent.register", register(home, charter_by(home, org_key, "acme", "g3")),
          org_key, "acme")  # fmt: skip
    refused(home, "must be signed by the agent's owner, not the organization key")


async def test_the_organization_key_revokes_any_agent_and_the_ledger_says_who(org: Any) -> None:
    home, _ = org
    by_org = ActingOwner("acme", home.owner_key(), is_org=True)
    await identity.revoke_agent(home, "beta", by=by_org)
    verify(home)
    last = Entry.from_body(bodies(home)[-1]).fields
    assert (last["action"], last["actor"], last["kid"]) == (
        "agent.revoke",
        "acme",
        thumbprint(home.owner_public_key),
    )


async def test_tampering_with_an_organization_ledger_is_caught(org: Any) -> None:
    home, _ = org
    good = bodies(home)
    certify = next(i for i, b in enumerate(good) if b'"action":"owner.certify"' in b and B.encode()
                   in b)  # fmt: skip
    edited = good[certify].replace(B.encode(), b"mallory@example.com")
    with pytest.raises(LedgerIntegrityError):
        verify(home, [*good[:certify], edited, *good[certify + 1 :]])
    with pytest.raises(LedgerIntegrityError):  # an owner certificate dropped
        verify(home, [*good[:certify], *good[certify + 1 :]])
    # Re-signed by the owner it names, the certificate is still not the organization's.
    fields = Entry.from_body(good[certify]).fields
    resigned = sign_entry({k: v for k, v in fields.items() if k not in ("kid", "sig")},
                          KeyPair.generate()).body  # fmt: skip
    with pytest.raises(LedgerIntegrityError):
        verify(home, [*good[:certify], resigned, *good[certify + 1 :]])
