"""TokenRepo: the token rows, the issuer keys and the issuer setting, as plain values."""

from __future__ import annotations

from charter.evidence.jwk import b64url_decode
from charter.home import Home
from charter.keys import KeyPair
from charter.storage.db import transaction
from charter.storage.tokens import NewToken, TokenRepo
from charter.testing import raw_db

T0, T1, T2 = "2026-01-02T03:00:00.000Z", "2026-01-02T03:10:00.000Z", "2026-01-02T03:20:00.000Z"


def new_token(kid: str, jti: str, charter: str = "c1", expires_at: str = T2) -> NewToken:
    return NewToken(
        jti=jti,
        kid=kid,
        agent_name="ghost",
        agent_id="spiffe://charter.local/agent/owner/ghost",
        charter=charter,
        audience="https://api.example.com",
        scope="audit:read token:issue",
        issued_at=T0,
        expires_at=expires_at,
        digest="d" * 64,
    )


def test_tokens_round_trip_and_revoke(home: Home) -> None:
    repo = TokenRepo(raw_db(home))
    kid = home.meta["issuer_kid"]
    public = KeyPair.generate().public_key
    with transaction(raw_db(home)):
        assert repo.insert_issuer_key_if_absent(kid, public, T0) is True
        assert repo.insert_issuer_key_if_absent(kid, public, T0) is False  # already there
        repo.insert(new_token(kid, "a"))
        repo.insert(new_token(kid, "b", expires_at=T1))
        repo.insert(new_token(kid, "c", charter="c2"))
    stored = repo.get("a")
    assert stored is not None and stored.scope == "audit:read token:issue"
    assert stored.revoked_at is None and repo.get("nope") is None
    state = repo.get_with_agent("a")
    assert state is not None and state.digest == "d" * 64
    assert state.agent_status is None  # no agent "ghost" in this home
    assert repo.count_live_for_charter("c1", T0) == 2
    assert repo.count_live_for_charter("c1", T1) == 1  # "b" expires at T1
    with transaction(raw_db(home)):
        assert repo.mark_revoked("a", T1, "leaked") is True
        assert repo.mark_revoked("nope", T1, None) is False
    revoked = repo.get("a")
    assert revoked is not None and (revoked.revoked_at, revoked.revoked_reason) == (T1, "leaked")
    assert repo.count_live_for_charter("c1", T0) == 1
    assert repo.last_expiry(kid, T0) == T2 and repo.last_expiry(kid, T2) is None


def test_issuer_keys_and_the_issuer_setting(home: Home) -> None:
    repo = TokenRepo(raw_db(home))
    assert repo.current_kid() is None and not repo.has_issuer_keys()  # registered on first use
    first, newer = home.meta["issuer_kid"], KeyPair.generate()
    with transaction(raw_db(home)):
        repo.insert_issuer_key(first, KeyPair.generate().public_key, T0)
    assert repo.current_kid() == first and repo.has_issuer_keys()
    with transaction(raw_db(home)):
        repo.insert(new_token(first, "live", expires_at=T2))
        repo.retire_issuer_key(first, T0)
        repo.insert_issuer_key(newer.kid, newer.public_key, T0)
        repo.set_signing_kid(newer.kid)
    assert repo.current_kid() == newer.kid
    assert [k.kid for k in repo.published_keys(T1)] == [newer.kid, first]
    assert [k.kid for k in repo.published_keys(T2)] == [newer.kid]  # its last token expired
    assert repo.published_key(newer.kid, T2) == newer.public_key
    assert repo.published_key(first, T2) is None and repo.issuer_key_exists(first)
    assert not repo.issuer_key_exists("unknown")
    row = raw_db(home).execute("SELECT value FROM meta WHERE key = 'issuer_kid'").fetchone()
    assert row[0] == newer.kid
    assert repo.get_issuer() is None
    with transaction(raw_db(home)):
        repo.set_issuer("https://charter.example.com")
    assert repo.get_issuer() == "https://charter.example.com"
    assert (
        b64url_decode(
            raw_db(home)
            .execute("SELECT public_key FROM issuer_keys WHERE kid = ?", (newer.kid,))
            .fetchone()[0]
        )
        == newer.public_key
    )
