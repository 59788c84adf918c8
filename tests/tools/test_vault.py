"""Vault services: owner actions and their ledger events, grants, placeholders, redaction."""

from __future__ import annotations

import base64
import functools
import json
import urllib.parse
from typing import Any

import pytest

from charter.errors import InvalidInput, NotFound, ScopeDenied
from charter.evidence.entries import Entry
from charter.home import Home
from charter.scopes import grants
from charter.storage.vault import SecretValue
from charter.testing import BlockingVault, raw_tx
from charter.tools import audit
from charter.tools import vault as vt

VALUE = "tok-3b1f9d27a8c4e6f0/+=x"


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


@pytest.fixture
async def vhome(home: Home) -> Home:
    await vt.set_secret(
        home, "API_KEY", VALUE.encode(), description="api", allowed_hosts=["api.test"]
    )
    await vt.set_secret(home, "NOHOST", b"nohost-value")
    BlockingVault(home).put("charter:mail-password", b"mail-pw-value", system=True)
    return home


# -- owner services and the ledger --------------------------------------------------------------


async def test_owner_actions_are_signed_into_the_ledger_without_values(vhome: Home) -> None:
    await vt.set_secret(vhome, "API_KEY", b"rotated-value-123")  # keeps description and hosts
    info = BlockingVault(vhome).info("API_KEY")
    assert (info.version, info.description, info.allowed_hosts) == (
        2,
        "api",
        ("https://api.test:443",),
    )
    await vt.rotate_master_key(vhome)
    await vt.remove_secret(vhome, "NOHOST")
    events = [e for e in entries(vhome) if e["action"].startswith(("secret.", "vault."))]
    assert [(e["action"], e["args"].get("name")) for e in events] == [
        ("secret.set", "API_KEY"),
        ("secret.set", "NOHOST"),
        ("secret.set", "API_KEY"),
        ("vault.rotate", None),
        ("secret.remove", "NOHOST"),
    ]
    assert events[2]["args"] == {
        "name": "API_KEY",
        "version": 2,
        "description": "api",
        "allowed_hosts": ["https://api.test:443"],
    }
    assert events[3]["args"]["key_version"] == 2
    assert all(e["actor"] == vhome.owner_id for e in events)
    ledger = b"".join(raw_tx(vhome).ledger.iter_bodies())
    for secret in (VALUE.encode(), b"rotated-value-123", b"nohost-value"):
        assert secret not in ledger
    await audit.verify_home(vhome)


async def test_system_secrets_cannot_be_removed_by_the_secret_commands(vhome: Home) -> None:
    with pytest.raises(InvalidInput, match="managed by Charter"):
        await vt.remove_secret(vhome, "charter:mail-password")
    with pytest.raises(InvalidInput, match="reserved"):
        await vt.set_secret(vhome, "charter:mail-password", b"x")


# -- what an agent may see ----------------------------------------------------------------------


async def test_agents_see_only_granted_secrets_and_never_system_ones(vhome: Home) -> None:
    vault = BlockingVault(vhome)
    out = await vt.visible_secrets(
        vault.home, vault.vault, functools.partial(grants, ["secret:use:API_*", "secret:read:*"])
    )
    names = {s.name: s for s in out.secrets}
    assert set(names) == {"API_KEY", "NOHOST"}
    assert names["API_KEY"].can_use and names["API_KEY"].allowed_hosts == ["https://api.test:443"]
    assert not names["NOHOST"].can_use and names["NOHOST"].allowed_hosts == []
    assert (
        await vt.visible_secrets(vault.home, vault.vault, functools.partial(grants, []))
    ).secrets == []
    assert (
        await vt.visible_secrets(vault.home, vault.vault, functools.partial(grants, ["audit:read"]))
    ).secrets == []


async def test_read_checks_the_scope_before_the_name_exists(vhome: Home) -> None:
    vault = BlockingVault(vhome)
    with pytest.raises(ScopeDenied):
        await vt.read_secret(vault.home, vault.vault, ["secret:use:API_KEY"], "API_KEY")
    with pytest.raises(ScopeDenied):  # not NotFound: no probing of ungranted names
        await vt.read_secret(vault.home, vault.vault, ["secret:read:API_KEY"], "UNKNOWN")
    with pytest.raises(NotFound):
        await vt.read_secret(vault.home, vault.vault, ["secret:read:*"], "UNKNOWN")
    with pytest.raises(InvalidInput):
        await vt.read_secret(vault.home, vault.vault, ["secret:read:*"], "charter:mail-password")
    assert (
        await vt.read_secret(vault.home, vault.vault, ["secret:read:API_*"], "API_KEY")
    ).reveal() == VALUE.encode()


# -- placeholders -------------------------------------------------------------------------------


def test_placeholder_names_in_order_without_duplicates() -> None:
    assert vt.placeholder_names("a{{secret:B}}c{{secret:A}}", "{{secret:B}}", "") == ["B", "A"]
    assert vt.placeholder_names("no placeholders {{ here }}") == []


@pytest.mark.parametrize(
    "text", ["{{secret:bad name}}", "{{secret:A}", "{{secret:}}", "{{secret:a:b}}", "{{secret:A"]
)
def test_malformed_placeholders_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        vt.placeholder_names(text)


# -- requests refused before anything is sent -----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"url": "https://api.test/"}, InvalidInput, "no {{secret:NAME}}"),
        ({"url": "https://{{secret:API_KEY}}.api.test/"}, InvalidInput, "only appear"),
        ({"url": "https://{{secret:API_KEY}}@api.test/"}, InvalidInput, "only appear"),
        ({"url": "https://u:{{secret:API_KEY}}@api.test/"}, InvalidInput, "only appear"),
        ({"url": "https://api.test/#{{secret:API_KEY}}"}, InvalidInput, "only appear"),
        ({"url": "https://api.test:{{secret:API_KEY}}/"}, InvalidInput, "URL"),
        ({"url": "{{secret:API_KEY}}://api.test/"}, InvalidInput, "URL"),
        ({"url": "ftp://api.test/{{secret:API_KEY}}"}, InvalidInput, "https"),
        ({"url": "http://api.test/{{secret:API_KEY}}"}, InvalidInput, "only sent over https"),
        ({"url": "https://evil.test/{{secret:API_KEY}}"}, ScopeDenied, "may not be sent"),
        ({"url": "https://api.test.evil.test/{{secret:API_KEY}}"}, ScopeDenied, "may not be"),
        ({"url": "https://api.test\\@evil.test/{{secret:API_KEY}}"}, ScopeDenied, "evil.test"),
        ({"url": "https://api.test/{{secret:NOHOST}}"}, ScopeDenied, "NOHOST"),
        ({"url": "https://api.test/{{secret:UNKNOWN}}"}, ScopeDenied, "UNKNOWN"),
        (
            {
                "url": "https://api.test/",
                "headers": {"Host": "evil.test", "X": "{{secret:API_KEY}}"},
            },
            InvalidInput,
            "may not be set",
        ),
        (
            {"url": "https://api.test/{{secret:API_KEY}}", "headers": {"X": "a\r\nHost: evil"}},
            InvalidInput,
            "control characters",
        ),
        (
            {"url": "https://api.test/", "headers": {"{{secret:API_KEY}}": "x"}},
            InvalidInput,
            "header names",
        ),
        (
            {"url": "https://api.test/", "headers": {"Proxy-Authorization": "{{secret:API_KEY}}"}},
            InvalidInput,
            "may not be set",
        ),
    ],
)
async def test_bad_requests_are_refused_before_the_intent(
    vhome: Home, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    # Refused while planning: no plan, so the gate has no intent to record and nothing to run.
    args: dict[str, Any] = {"method": "GET", "headers": None, "body": None} | kwargs
    with pytest.raises(error, match=message.replace("{", r"\{").replace("}", r"\}")) as info:
        await vt.http_request_plan(
            vhome,
            vt.vault_of(vhome),
            ["secret:use:API_KEY", "secret:use:NOHOST"],
            agent="alpha",
            **args,
        )
    assert VALUE not in str(info.value)


async def test_a_secret_with_control_characters_never_goes_in_a_header(home: Home) -> None:
    await vt.set_secret(home, "ML", b"line1\nX-Evil: 1", allowed_hosts=["127.0.0.1"])

    with pytest.raises(InvalidInput, match="control characters") as info:  # no plan, no intent
        await vt.http_request_plan(
            home,
            vt.vault_of(home),
            ["secret:use:ML"],
            agent="alpha",
            method="GET",
            url="http://127.0.0.1:9/",
            headers={"X-Key": "{{secret:ML}}"},
            body=None,
        )
    assert "line1" not in str(info.value)


# -- redaction ----------------------------------------------------------------------------------


def test_redactor_catches_raw_and_encoded_forms() -> None:
    raw = VALUE.encode()
    redactor = vt.Redactor([SecretValue("K", 1, raw)])
    forms = [
        raw,
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw),
        urllib.parse.quote(raw, safe="").encode(),
        urllib.parse.quote_plus(raw).encode(),
        json.dumps(VALUE).encode()[1:-1],
        raw.hex().encode(),
    ]
    for form in forms:
        out = redactor.redact(b"before " + form + b" after")
        assert out == b"before [REDACTED:K] after", form
    # Inside a longer base64 string, at each of the three alignments (e.g. HTTP Basic).
    for prefix in (b"u:", b"us:", b"use:"):
        encoded = base64.b64encode(prefix + raw + b":tail")
        out = redactor.redact(encoded)
        assert b"[REDACTED:K]" in out
        assert base64.b64encode(raw)[4:-4] not in out
    assert redactor.redact_text(f"x{VALUE}y") == "x[REDACTED:K]y"


def test_a_capped_body_is_cut_at_the_same_place_whatever_the_tail_holds() -> None:
    """The prefix oracle: a guess placed at the cap must be cut the same way whether or not
    it is the beginning of the secret (the old code cut only a matching tail)."""
    redactor = vt.Redactor([SecretValue("K", 1, b"abcdefgh")])
    cap = 10
    outs = {
        guess: redactor.redact(b"hello " + guess + b"-" * redactor.max_length, cap)
        for guess in (b"abcd", b"abcx", b"zzzz")
    }
    assert {len(out) for out in outs.values()} == {cap}
    assert outs[b"abcd"] == b"hello abcd"  # a part of a value is not a value: not cut
    # A whole occurrence across the cap is cut off whole (it was seen whole in the margin).
    assert redactor.redact(b"hello abcdefgh and more", cap) == b"hello "
    assert redactor.redact(b"abcdefgh abcdefgh", cap) == b"[REDACTED:K] "


def test_redaction_prefers_the_longest_match() -> None:
    redactor = vt.Redactor([SecretValue("SHORT", 1, b"abc"), SecretValue("LONG", 1, b"abcdef")])
    assert redactor.redact(b"-abcdef-abc-") == b"-[REDACTED:LONG]-[REDACTED:SHORT]-"


def test_redactor_matches_every_character_in_any_covered_form() -> None:
    value = 'pé<&>\U0001f511 /"\\x'
    redactor = vt.Redactor([SecretValue("K", 1, value.encode())])
    raw = value.encode()
    forms = [
        "".join(f"%{b:02X}" for b in raw).encode(),
        "".join(f"%{b:02x}" for b in raw).encode(),
        "".join(f"%{b:02x}" if i % 3 else chr(b) for i, b in enumerate(raw)).encode("latin-1"),
        json.dumps(value)[1:-1].encode(),  # ASCII-only: surrogate pair for the key emoji
        json.dumps(value, ensure_ascii=False)[1:-1].encode(),
        json.dumps(value)[1:-1].replace("<", "\\u003c").replace("&", "\\u0026").encode(),
        "".join(
            f"\\u{ord(c):04X}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in value
        ).encode(),
        urllib.parse.quote_plus(raw).encode(),
    ]
    for form in forms:
        assert redactor.redact(b"<" + form + b">") == b"<[REDACTED:K]>", form
    # Binary values: raw bytes or percent-encoded, in any mixture.
    binary = vt.Redactor([SecretValue("B", 1, b"\xff\x00\x80abc")])
    assert binary.redact(b"-%FF\x00%80a%62c-") == b"-[REDACTED:B]-"
