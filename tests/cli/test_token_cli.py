"""``charter token issue|verify|revoke`` and ``charter keys jwks|rotate`` against real homes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from charter.cli import cli
from charter.config import Settings
from charter.evidence.entries import Entry
from charter.evidence.jwk import b64url, b64url_decode
from charter.home import Home
from charter.keys.files import read_key_file
from charter.testing import make_home, raw_tx
from charter.tools import audit

API = "https://api.example.com"


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)}, input=input)


def ok(home: Path, *args: str, input: str | None = None) -> Result:
    result = run(home, *args, input=input)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    ok(path, "init", "--owner", "alice@example.com")
    ok(path, "agent", "add", "bot", "--scope", "audit:read", "--scope", "token:issue",
       "--audience", API)  # fmt: skip
    return path


def issue(home: Path, *extra: str) -> str:
    return ok(home, "token", "issue", "--agent", "bot", "--audience", API, *extra).stdout.strip()


async def ledger(home: Path) -> list[dict[str, Any]]:
    async with await Home.open(Settings(home=home)) as h:
        return [Entry.from_body(b).fields for b in raw_tx(h).ledger.iter_bodies()]


async def test_issue_prints_only_the_token_and_records_it_without_the_token(home: Path) -> None:
    result = ok(home, "token", "issue", "--agent", "bot", "--audience", API, "--ttl", "60")
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert "jti " in result.stderr and "scopes audit:read" in result.stderr
    last = (await ledger(home))[-1]
    assert (last["action"], last["actor"]) == ("token.issue", "alice@example.com")
    assert token not in json.dumps(await ledger(home))
    async with await Home.open(Settings(home=home)) as h:
        await audit.verify_home(h)


def test_verify_prints_the_claims_of_a_valid_token(home: Path) -> None:
    token = issue(home, "--scope", "audit:read")
    result = ok(home, "token", "verify", token, "--audience", API)
    assert result.stdout.startswith("valid: token ")
    claims = json.loads(result.stdout.split("\n", 1)[1])
    assert claims["scope"] == "audit:read" and claims["aud"] == API
    piped = ok(home, "token", "verify", "-", "--audience", API, "--json", input=token + "\n")
    assert json.loads(piped.stdout)["valid"] is True


def test_verify_says_exactly_why_a_token_fails(home: Path) -> None:
    token = issue(home)
    wrong_aud = run(home, "token", "verify", token, "--audience", "https://other.example")
    assert wrong_aud.exit_code == 5
    assert wrong_aud.stderr.strip() == f"invalid: audience {API!r} is not 'https://other.example'"

    header, payload, _ = token.split(".")
    none = b64url(json.dumps(json.loads(b64url_decode(header)) | {"alg": "none"}).encode())
    unsigned = run(home, "token", "verify", f"{none}.{payload}.", "--audience", API)
    assert unsigned.exit_code == 5
    assert "algorithm 'none' is not accepted" in unsigned.stderr

    wrong_iss = run(home, "token", "verify", token, "--audience", API, "--issuer", "https://x.io")
    assert "is not this issuer ('https://x.io')" in wrong_iss.stderr

    as_json = run(home, "token", "verify", "garbage", "--audience", API, "--json")
    assert as_json.exit_code == 5
    assert json.loads(as_json.stdout) == {
        "valid": False,
        "error": "malformed",
        "reason": "not a compact JWT (want three dot-separated parts)",
    }


async def test_revoke_makes_the_token_invalid(home: Path) -> None:
    result = ok(home, "token", "issue", "--agent", "bot", "--audience", API, "--json")
    issued = json.loads(result.stdout)
    # A token id is typed on command lines: never one a shell or click takes for an option
    # (a base64url id began with "-" one time in 64 and this test failed then).
    assert re.fullmatch(r"[0-9a-f]{32}", issued["jti"])
    revoked = ok(home, "token", "revoke", issued["jti"], "--reason", "leaked")
    assert f"Revoked token {issued['jti']} of agent bot" in revoked.stdout
    refused = run(home, "token", "verify", issued["token"], "--audience", API)
    assert refused.exit_code == 5 and "was revoked at" in refused.stderr
    again = run(home, "token", "revoke", issued["jti"])
    assert again.exit_code == 2 and "already revoked" in again.stderr
    unknown = run(home, "token", "revoke", "nope")
    assert unknown.exit_code == 3 and "no token with id 'nope'" in unknown.stderr
    assert (await ledger(home))[-1]["args"] == {
        "jti": issued["jti"],
        "agent": "bot",
        "agent_id": "spiffe://charter.local/agent/alice/bot",
        "reason": "leaked",
    }


def test_revoking_the_agent_makes_its_tokens_inactive(home: Path) -> None:
    token = issue(home)
    ok(home, "agent", "revoke", "bot", "--yes")
    refused = run(home, "token", "verify", token, "--audience", API)
    assert refused.exit_code == 5
    assert refused.stderr.strip() == "invalid: agent 'bot' has been revoked"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--ttl", "3601"), 2, "Invalid value for '--ttl': 3601 is not in the range 1<=x<=3600"),
        (("--ttl", "0"), 2, "Invalid value for '--ttl'"),
        (("--scope", "email:send"), 4, "'email:send' is not granted by this agent's charter"),
        (("--scope", "root"), 2, "unknown scope 'root'"),
    ],
)
def test_issue_refusals(home: Path, args: tuple[str, ...], code: int, message: str) -> None:
    result = run(home, "token", "issue", "--agent", "bot", "--audience", API, *args)
    assert result.exit_code == code and message in result.stderr
    assert result.stdout == ""


def test_issue_for_an_audience_outside_the_charter_is_refused(home: Path) -> None:
    result = run(home, "token", "issue", "--agent", "bot", "--audience", "https://evil.example")
    assert result.exit_code == 4
    assert "audience 'https://evil.example' is not allowed" in result.stderr


async def test_keys_jwks_and_rotate(home: Path) -> None:
    before = json.loads(ok(home, "keys", "jwks").stdout)
    (first,) = before["keys"]
    assert (first["kty"], first["crv"], first["alg"]) == ("OKP", "Ed25519", "EdDSA")
    old_token = issue(home)

    rotated = json.loads(ok(home, "keys", "rotate", "--json").stdout)
    assert rotated["retired_kid"] == first["kid"]
    after = json.loads(ok(home, "keys", "jwks").stdout)
    assert [k["kid"] for k in after["keys"]] == [rotated["kid"], first["kid"]]

    ok(home, "token", "verify", old_token, "--audience", API)  # still valid until it expires
    new_token = issue(home)
    header = json.loads(b64url_decode(new_token.split(".")[0]))
    assert header["kid"] == rotated["kid"]
    event = (await ledger(home))[-2]  # the rotation, then the new token's issue
    assert event["action"] == "keys.rotate" and event["args"]["kid"] == rotated["kid"]
    async with await Home.open(Settings(home=home)) as h:
        await audit.verify_home(h)


async def test_protected_owner_key_needs_the_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "home"
    secret = tmp_path / "pass"
    secret.write_text("correct horse\n")
    await (
        await make_home(path, owner="alice@example.com", passphrase=b"correct horse")
    ).close()  # cheap KDF
    ok(path, "agent", "add", "bot", "--audience", API, "--passphrase-file", str(secret))
    refused = run(path, "keys", "rotate")
    assert refused.exit_code == 2 and "--passphrase-file" in refused.stderr
    assert len(list((path / "keys").glob("issuer-*.key"))) == 1  # nothing written
    ok(path, "keys", "rotate", "--passphrase-file", str(secret))
    ok(
        path,
        "token",
        "issue",
        "--agent",
        "bot",
        "--audience",
        API,
        "--passphrase-file",
        str(secret),
    )


async def test_verify_refuses_a_token_re_signed_with_a_later_expiry(home: Path) -> None:
    token = issue(home, "--ttl", "60")
    header, payload, _ = token.split(".")
    claims = json.loads(b64url_decode(payload))
    async with await Home.open(Settings(home=home)) as h:
        key = read_key_file(h.layout.issuer_key(h.meta["issuer_kid"]))
    moved = b64url(json.dumps(claims | {"exp": claims["exp"] + 600}).encode())
    resigned = f"{header}.{moved}." + b64url(key.sign(f"{header}.{moved}".encode()))
    refused = run(home, "token", "verify", resigned, "--audience", API)
    assert refused.exit_code == 5
    assert refused.stderr.strip() == (
        "invalid: the token does not match what was issued under its id"
    )
    as_json = run(home, "token", "verify", resigned, "--audience", API, "--json")
    assert json.loads(as_json.stdout)["error"] == "not_issued"


def test_issue_refuses_a_glob_wider_than_the_charter(home: Path) -> None:
    ok(home, "agent", "update", "bot", "--scope", "secret:use:A?", "--audience", API)
    wider = run(home, "token", "issue", "--agent", "bot", "--audience", API,
                "--scope", "secret:use:A*")  # fmt: skip
    assert wider.exit_code == 4 and wider.stdout == ""
    assert "requested scope 'secret:use:A*' is not granted by this agent's charter" in (
        wider.stderr
    )
    issue(home, "--scope", "secret:use:AB")


def test_issue_for_a_revoked_agent_says_so(home: Path) -> None:
    ok(home, "agent", "revoke", "bot", "--yes")
    result = run(home, "token", "issue", "--agent", "bot", "--audience", API)
    assert result.exit_code == 4 and result.stdout == ""
    assert "agent 'bot' has been revoked: no token can be issued for it" in result.stderr
    assert "cannot be served" not in result.stderr


def test_the_issuer_is_set_on_purpose(tmp_path: Path) -> None:
    path = tmp_path / "home"
    bad = run(path, "init", "--owner", "a@example.com", "--issuer", "https://x.example/p")
    assert bad.exit_code == 2 and "must be an origin" in bad.stderr
    assert not path.exists()  # refused before anything was made
    made = ok(path, "init", "--owner", "a@example.com", "--issuer", "https://charter.example")
    assert "issuer: https://charter.example" in made.stdout
    assert ok(path, "token", "issuer").stdout.strip() == "https://charter.example"
    changed = ok(path, "token", "issuer", "set", "https://other.example:8443/")
    assert "Issuer is now https://other.example:8443 (was https://charter.example)" in (
        changed.stdout
    )
    assert ok(path, "token", "issuer").stdout.strip() == "https://other.example:8443"
    fresh = tmp_path / "fresh"
    ok(fresh, "init", "--owner", "a@example.com")
    assert ok(fresh, "token", "issuer").stdout.strip() == (
        "http://127.0.0.1:8765 (default: none set yet)"
    )
