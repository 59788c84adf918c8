"""Bare HTTP endpoints: the same-run baselines of the token-exchange and witness rows.

Each does the cryptography its Charter counterpart cannot avoid, and nothing else (no
database unless asked, no ledger, no policy), served by uvicorn exactly as ``charter serve
--http`` and ``charter witness serve`` run it (warnings only, no access log):

``python -m bench._bare_http exchange PORT SEED_HEX [--durable DB]``
    ``POST /token``: parse the form, verify the subject and actor JWTs (EdDSA, PyJWT), sign
    one new JWT for the actor acting for the subject, answer the RFC 8693 JSON. ``--durable``:
    first commit one row for the new token (SQLite, WAL, ``synchronous=FULL``: one fsync), the
    floor of any token service that records what it issues.
``python -m bench._bare_http witness PORT SEED_HEX LOG_VKEY_HEX``
    ``POST /add-checkpoint``: verify the note's Ed25519 signature with the log's key and sign
    a cosignature line (PyNaCl): the raw work of a witness, no state kept.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

#: The issuer and audience of the bare exchange's tokens.
ISSUER = "https://bare.example"
AUDIENCE = "https://bare.example/mcp"


def spawn(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server process with its output discarded."""
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def jwt_keys(seed: bytes) -> tuple[Any, Any]:
    """(private, public) Ed25519 keys for PyJWT from a 32-byte seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private, private.public_key()


def bare_token(seed: bytes, sub: str, scope: str) -> str:
    """A token the bare exchange accepts (for the bench's subject and actor)."""
    import jwt

    private, _ = jwt_keys(seed)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope}
    return jwt.encode(claims | {"iat": now, "exp": now + 3600}, private, algorithm="EdDSA")


def exchange_app(seed: bytes, durable: str | None) -> Any:
    """The bare token endpoint (see the module docstring)."""
    import secrets

    import jwt
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    private, public = jwt_keys(seed)
    db = None
    if durable is not None:
        from charter.storage.db import preallocate_wal

        db = sqlite3.connect(durable, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, exp INTEGER)")
        preallocate_wal(db)

    def verified(token: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER
        )
        return claims

    async def token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        try:
            subject = verified(form["subject_token"])
            actor = verified(form["actor_token"])
        except (KeyError, jwt.InvalidTokenError) as exc:
            return JSONResponse({"error": "invalid_request", "detail": str(exc)}, 400)
        now = int(time.time())
        exp = min(subject["exp"], actor["exp"], now + 900)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject["sub"],
            "act": {"sub": actor["sub"]},
            "scope": actor["scope"],
            "iat": now,
            "exp": exp,
            "jti": secrets.token_hex(16),
        }
        if db is not None:
            db.execute("INSERT INTO tokens VALUES (?, ?)", (claims["jti"], exp))
        issued = jwt.encode(claims, private, algorithm="EdDSA")
        body = {"access_token": issued, "token_type": "Bearer", "expires_in": exp - now}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


def witness_app(seed: bytes, log_key: bytes) -> Any:
    """The bare witness (see the module docstring): body = the signed note; answer = one
    cosignature-like line."""
    import base64

    from nacl.signing import SigningKey, VerifyKey
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    signer, verifier = SigningKey(seed), VerifyKey(log_key)

    async def add_checkpoint(request: Request) -> Response:
        body = (await request.body()).decode()
        try:  # "old N", proof lines, a blank line, then the note: text, blank line, signatures
            _, note = body.split("\n\n", 1)
            text, signatures = note.split("\n\n", 1)
            text += "\n"
            first = signatures.split("\n", 1)[0]
            verifier.verify(text.encode(), base64.b64decode(first.rsplit(" ", 1)[1])[4:])
        except Exception:
            return Response("no valid signature\n", status_code=403)
        stamp = int(time.time()).to_bytes(8, "big")
        cosig = signer.sign(stamp + text.encode()).signature
        line = "\u2014 bare " + base64.b64encode(b"\0\0\0\0" + stamp + cosig).decode() + "\n"
        return Response(line.encode(), media_type="text/plain")

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])


def main(argv: list[str]) -> None:
    import uvicorn

    kind, port, seed = argv[0], int(argv[1]), bytes.fromhex(argv[2])
    if kind == "exchange":
        durable = argv[argv.index("--durable") + 1] if "--durable" in argv else None
        app = exchange_app(seed, durable)
    else:
        app = witness_app(seed, bytes.fromhex(argv[3]))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
