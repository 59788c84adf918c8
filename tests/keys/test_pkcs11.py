"""The PKCS#11 key store (issue 19.4) against a real SoftHSM2 token: keys generated and used in
the token, a home that holds no private key, the CLI end to end (init, agent add, a real stdio
``serve``, audit verify, doctor), and one-line errors for a bad PIN, module or token."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from nacl.signing import SigningKey, VerifyKey
from rawstdio import exchange

from bench import _softhsm
from bench._softhsm import Token
from charter.cli import cli
from charter.config import HomeLayout, Settings
from charter.errors import ConfigError
from charter.evidence.jwk import b64url_decode
from charter.home import Home
from charter.keys import Pkcs11Signer
from charter.keys.pkcs11 import Pkcs11Uri
from charter.testing import BlockingVault, raw_tx
from charter.tools import identity


@pytest.fixture(scope="session")
def softhsm() -> Token:
    why = _softhsm.missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"SoftHSM2 is required in CI: {why}")
        pytest.skip(why)
    return _softhsm.softhsm_token()


@pytest.fixture
def token(softhsm: Token) -> Iterator[Token]:
    """The session's token, emptied before and after each test."""
    _softhsm.wipe(softhsm)
    yield softhsm
    _softhsm.wipe(softhsm)


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)})


def ok(home: Path, *args: str) -> Result:
    result = run(home, *args)
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


async def published_keys(home: Path) -> set[bytes]:
    """Every public key the ledger publishes (owner, log, issuer, each agent)."""
    found: set[bytes] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if value.get("kty") == "OKP" and isinstance(value.get("x"), str):
                found.add(b64url_decode(value["x"]))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    async with await Home.open(Settings(home=home)) as h:
        for body in raw_tx(h).ledger.iter_bodies():
            walk(json.loads(body))
        found.add(h.owner_public_key)
        found.add(h.log_key.public_key)
    return found


def seeds_in(root: Path, public_keys: set[bytes]) -> list[str]:
    """Files under ``root`` holding, at any offset, a 32-byte Ed25519 seed of one of
    ``public_keys`` (raw, or as base64url text such as a JWK's ``d``)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        views = [data]
        for word in data.replace(b'"', b" ").replace(b"\n", b" ").split():
            if len(word) == 43:  # unpadded base64url of 32 bytes
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    views.append(b64url_decode(word.decode("ascii")))
        for view in views:
            if any(
                bytes(SigningKey(view[i : i + 32]).verify_key) in public_keys
                for i in range(len(view) - 31)
            ):
                hits.append(str(path.relative_to(root)))
                break
    return hits


# -- the URI ---------------------------------------------------------------------------------


def test_uri_parses_rfc7512_with_pin_value_or_pin_source(tmp_path: Path) -> None:
    uri = Pkcs11Uri.parse("pkcs11:token=my%20token?module-path=/m/lib.so&pin-value=12%2634")
    assert (uri.token, uri.module_path, uri.pin()) == ("my token", "/m/lib.so", "12&34")
    assert "12" not in uri.redacted() and "pin-value=***" in uri.redacted()
    (tmp_path / "pin").write_text("9876\n")
    uri = Pkcs11Uri.parse(f"pkcs11:token=t?module-path=/m.so&pin-source=file:{tmp_path}/pin")
    assert uri.pin() == "9876" and uri.pin_value is None
    assert Pkcs11Uri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("token=t?module-path=/m.so&pin-value=1", "pkcs11:"),
        ("pkcs11:?module-path=/m.so&pin-value=1", "name the token"),
        ("pkcs11:token=t?pin-value=1", "module-path"),
        ("pkcs11:token=t?module-path=/m.so", "exactly one"),
        ("pkcs11:token=t?module-path=/m.so&pin-value=1&pin-source=file:/p", "exactly one"),
        ("pkcs11:token=t;object=owner?module-path=/m.so&pin-value=1", "'object'"),
        ("pkcs11:token=t?module-path=/m.so&pin-value=1&module-name=x", "'module-name'"),
    ],
)
def test_uri_refuses_what_it_cannot_honour(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Pkcs11Uri.parse(text)


# -- the signer ------------------------------------------------------------------------------


def test_keys_are_generated_in_the_token_and_sign_there(token: Token) -> None:
    signer = Pkcs11Signer.from_uri(token.uri())
    ref = signer.create("issuer:")
    assert ref.startswith("issuer:") and len(ref) > len("issuer:pending")
    assert signer.create("agent:bot") == "agent:bot"
    for r in (ref, "agent:bot"):
        sig = signer.sign(r, b"message")
        VerifyKey(signer.public_key(r)).verify(b"message", sig)  # the token's CKA_EC_POINT
    assert _softhsm.objects(token) == sorted(
        [
            ("PRIVATE_KEY", ref),
            ("PUBLIC_KEY", ref),
            ("PRIVATE_KEY", "agent:bot"),
            ("PUBLIC_KEY", "agent:bot"),
        ]
    )
    with pytest.raises(ConfigError, match="already exists"):
        signer.create("agent:bot")
    signer.remove("agent:bot")
    assert not signer.exists("agent:bot")
    with pytest.raises(ConfigError, match="not in PKCS#11 token"):
        signer.sign("agent:bot", b"x")
    signer.close()


def test_private_keys_are_sensitive_and_never_extractable(token: Token) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    signer = Pkcs11Signer.from_uri(token.uri())
    signer.create("log")
    signer.close()
    with _softhsm.session(token) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="log")
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.TOKEN] is True
        with pytest.raises(pkcs11.exceptions.PKCS11Error):  # the token refuses to show it
            key[Attribute.VALUE]


# -- the CLI end to end ----------------------------------------------------------------------


async def test_init_agent_serve_verify_with_keys_in_the_token(token: Token, tmp_path: Path) -> None:
    home = tmp_path / "home"
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    out = ok(
        home, "init", "--owner", "alice@example.com", "--key-store", token.uri(pin_file=pin_file)
    )
    assert "PKCS#11 token" in out.output
    ok(home, "agent", "add", "bot", "--scope", "audit:read", "--scope", "token:issue",
       "--audience", "https://api.example.com")  # fmt: skip
    ok(home, "token", "issue", "--agent", "bot", "--audience", "https://api.example.com")

    # the token holds the owner, issuer, log and agent keys, each as a key pair
    async with await Home.open(Settings(home=home)) as h:
        assert isinstance(h.signer, Pkcs11Signer)
        issuer = f"issuer:{h.meta['issuer_kid']}"
    labels = ["owner", "log", issuer, "agent:bot"]
    assert _softhsm.objects(token) == sorted(
        (cls, label) for label in labels for cls in ("PRIVATE_KEY", "PUBLIC_KEY")
    )

    # the home names the token (the PIN file's path, not the PIN) and holds no key file
    config = HomeLayout(home).key_store.read_text()
    assert "pin-source=file:" in config and token.pin not in config.replace(str(pin_file), "")
    assert sorted(p.name for p in (home / "keys").rglob("*.key")) == []

    # a real stdio server signs its entries in the token
    env = {
        "CHARTER_HOME": str(home),
        "PATH": os.environ.get("PATH", ""),
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", "serve", "--agent", "bot"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines, _ = exchange(
        proc,
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "identity_whoami", "arguments": {}},
            },
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {
                    "name": "token_issue",
                    "arguments": {"audience": "https://api.example.com"},
                },
            },
        ],
    )
    answers = {m["id"]: m for m in map(json.loads, lines) if "id" in m}
    assert answers[2]["result"]["structuredContent"]["name"] == "bot"
    issued = answers[3]["result"]["structuredContent"]["token"]
    ok(home, "token", "verify", issued, "--audience", "https://api.example.com")  # issuer in token

    verified = json.loads(ok(home, "audit", "verify", "--json").output)
    assert verified["valid"] is True
    async with await Home.open(Settings(home=home)) as h:
        served = [json.loads(b) for b in raw_tx(h).ledger.iter_bodies()]
    assert any(e["action"] == "token.issue" and e["actor"].endswith("/bot") for e in served), [
        (e["action"], e["actor"]) for e in served
    ]

    # no 32-byte window of any file in the home is the seed of a published public key
    public = await published_keys(home)
    assert len(public) >= 4
    assert seeds_in(home, public) == []

    doctor = run(home, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.output)["checks"]}
    assert checks["key store"]["status"] == "ok" and "PKCS#11" in checks["key store"]["detail"]
    assert checks["keys in token"]["status"] == "ok", checks["keys in token"]
    assert checks["owner key"]["status"] == "ok"


async def test_seed_scan_finds_key_files_of_a_file_home(tmp_path: Path) -> None:
    """The scan above is not vacuous: it finds every key of a home with key files."""
    home = tmp_path / "home"
    ok(home, "init", "--owner", "alice@example.com")
    ok(home, "agent", "add", "bot", "--scope", "audit:read")
    hits = seeds_in(home, await published_keys(home))
    assert {"keys/owner.key", "keys/log.key", "keys/agents/bot.key"} <= set(hits)


def test_doctor_fails_when_a_key_is_gone_from_the_token(token: Token, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(home, "init", "--owner", "alice@example.com", "--key-store", token.uri())
    ok(home, "agent", "add", "bot", "--scope", "audit:read")
    signer = Pkcs11Signer.from_uri(token.uri())
    signer.remove("agent:bot")
    signer.close()
    doctor = run(home, "doctor", "--json")
    assert doctor.exit_code == 1
    checks = {c["name"]: c for c in json.loads(doctor.output)["checks"]}
    assert checks["keys in token"]["status"] == "fail"
    assert "agent:bot" in checks["keys in token"]["detail"]


# -- bad settings: one line, non-zero, nothing left behind ------------------------------------


def test_wrong_pin_is_one_line_and_makes_nothing(token: Token, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run(home, "init", "--owner", "a@example.com", "--key-store", token.uri(pin="0000"))
    assert "wrong PIN" in one_line_error(result)
    assert "0000" not in result.output
    assert not home.exists() and _softhsm.objects(token) == []


def test_missing_module_and_missing_token_are_one_line(token: Token, tmp_path: Path) -> None:
    home = tmp_path / "home"
    gone = Token(module=str(tmp_path / "nope.so"), conf=token.conf)
    assert "no PKCS#11 module" in one_line_error(
        run(home, "init", "--owner", "a@example.com", "--key-store", gone.uri())
    )
    other = Token(module=token.module, conf=token.conf, label="no-such-token")
    assert "not found" in one_line_error(
        run(home, "init", "--owner", "a@example.com", "--key-store", other.uri())
    )
    assert "unsupported" in one_line_error(
        run(home, "init", "--owner", "a@example.com", "--key-store", "pkcs11:token=x;id=1")
    )
    assert not home.exists()


def test_a_home_whose_pin_changed_fails_cleanly_on_open(token: Token, tmp_path: Path) -> None:
    home = tmp_path / "home"
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin)
    ok(home, "init", "--owner", "a@example.com", "--key-store", token.uri(pin_file=pin_file))
    pin_file.write_text("0000")
    assert "wrong PIN" in one_line_error(run(home, "audit", "verify"))
    pin_file.unlink()
    assert "cannot read the PKCS#11 PIN file" in one_line_error(run(home, "audit", "verify"))


def test_passphrase_and_token_together_are_refused(token: Token, tmp_path: Path) -> None:
    (tmp_path / "pp").write_text("secret")
    result = run(tmp_path / "home", "init", "--owner", "a@example.com", "--key-store",
                 token.uri(), "--passphrase-file", str(tmp_path / "pp"))  # fmt: skip
    assert "PIN" in one_line_error(result)


def test_a_token_already_holding_a_home_is_not_reused(token: Token, tmp_path: Path) -> None:
    ok(tmp_path / "one", "init", "--owner", "a@example.com", "--key-store", token.uri())
    result = run(tmp_path / "two", "init", "--owner", "a@example.com", "--key-store", token.uri())
    assert "already holds" in one_line_error(result)
    assert not (tmp_path / "two").exists()


async def test_home_api_opens_the_configured_token(token: Token, tmp_path: Path) -> None:
    home = await Home.init(
        Settings(home=tmp_path / "h"), owner="a@example.com", key_store=token.uri()
    )
    await identity.add_agent(home, "bot", scopes=["audit:read"])
    await home.close()
    async with await Home.open(Settings(home=tmp_path / "h")) as h:
        assert isinstance(h.signer, Pkcs11Signer)
        assert h.owner_key().public_key == h.owner_public_key


async def test_a_token_home_keeps_secrets_and_rotates_the_vault_key(
    token: Token, tmp_path: Path
) -> None:
    """The vault master key of a token home (a file in the home until the token holds it):
    a secret is set, read back through the vault, and survives a master-key rotation."""
    home = tmp_path / "home"
    ok(home, "init", "--owner", "alice@example.com", "--key-store", token.uri())
    stored = CliRunner().invoke(
        cli, ["secret", "set", "API"], env={"CHARTER_HOME": str(home)}, input="v4lue-in-vault"
    )
    assert stored.exit_code == 0, stored.output
    ok(home, "secret", "rotate-master-key")
    async with await Home.open(Settings.from_env({"CHARTER_HOME": str(home)})) as h:
        assert BlockingVault(h).get("API").reveal() == b"v4lue-in-vault"
