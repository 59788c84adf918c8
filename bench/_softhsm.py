"""A private SoftHSM2 token for the PKCS#11 key-store tests and benchmark.

One token per process: SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the module is first
loaded, and a loaded module does not see tokens made after it. So :func:`softhsm_token` makes
a token folder and a conf in a temporary folder, points ``SOFTHSM2_CONF`` at it (child
processes inherit it), initializes one token, and returns the same token to every later
caller; :func:`wipe` empties it between tests.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

LABEL = "charter"
PIN = "1234"
SO_PIN = "5678"
#: Where Debian, Ubuntu, Fedora and Homebrew put the module.
_MODULE_GLOBS = (
    "/usr/lib/*/softhsm/libsofthsm2.so",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class Token:
    """An initialized SoftHSM2 token."""

    module: str
    conf: Path
    label: str = LABEL
    pin: str = PIN

    def uri(self, *, pin_file: Path | None = None, pin: str | None = None) -> str:
        """The RFC 7512 URI naming this token (PIN by value, or from ``pin_file``)."""
        base = f"pkcs11:token={self.label}?module-path={quote(self.module)}"
        if pin_file is not None:
            return f"{base}&pin-source=file:{quote(str(pin_file))}"
        return f"{base}&pin-value={quote(pin if pin is not None else self.pin)}"


def module_path() -> str | None:
    """The installed ``libsofthsm2.so``, from the package's file list or the usual folders."""
    try:
        listed = subprocess.run(
            ["dpkg", "-L", "libsofthsm2", "softhsm2"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
    except OSError:
        listed = []
    candidates = [p for p in listed if p.endswith("/libsofthsm2.so")]
    for pattern in _MODULE_GLOBS:
        candidates += sorted(glob.glob(pattern))
    return next((p for p in candidates if os.path.isfile(p)), None)


def missing() -> str | None:
    """Why no token can be made here (None when one can)."""
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not installed (.ci/install-softhsm)"
    if module_path() is None:
        return "libsofthsm2.so not found (.ci/install-softhsm)"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 not installed (pip install 'charter[pkcs11]')"
    return None


_token: Token | None = None


def softhsm_token() -> Token:
    """This process's token (made on first call).

    Raises:
        RuntimeError: SoftHSM2 or python-pkcs11 is missing (see :func:`missing`).
    """
    global _token
    if _token is not None:
        return _token
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    module = module_path()
    assert module is not None
    root = Path(tempfile.mkdtemp(prefix="charter-softhsm-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
        env=os.environ | {"SOFTHSM2_CONF": str(conf)},
    )
    _token = Token(module=module, conf=conf)
    return _token


def session(token: Token, *, rw: bool = False) -> Any:
    """A user session on the token (PKCS#11 logs in once per process: if this process is
    logged in already, a session without the PIN has the same rights)."""
    import pkcs11
    from pkcs11.exceptions import UserAlreadyLoggedIn

    found = pkcs11.lib(token.module).get_token(token_label=token.label)
    try:
        return found.open(user_pin=token.pin, rw=rw)
    except UserAlreadyLoggedIn:
        return found.open(rw=rw)


def objects(token: Token) -> list[tuple[str, str]]:
    """(class, label) of every object in the token, sorted."""
    from pkcs11 import Attribute

    with session(token) as s:
        return sorted(
            (str(o[Attribute.CLASS].name), str(o[Attribute.LABEL])) for o in s.get_objects()
        )


def wipe(token: Token) -> None:
    """Destroy every object in the token."""
    with session(token, rw=True) as s:
        for obj in list(s.get_objects()):
            obj.destroy()
