"""The PKCS#11 key store: Charter's Ed25519 keys generated and used inside a token.

``charter init --key-store 'pkcs11:token=charter?module-path=/…/libsofthsm2.so&pin-source=file:/…'``
(an RFC 7512 URI) makes every key of the home inside the token (``CKM_EC_EDWARDS_KEY_PAIR_GEN``,
Ed25519, ``CKA_SENSITIVE``, not extractable) and signs there (``CKM_EDDSA``). A key reference
is the object's label (``owner``, ``log``, ``issuer:<kid>``, ``agent:<name>``); the public key is
read back from the token (``CKA_EC_POINT``, a DER OCTET STRING of the 32 bytes). The home keeps
only the URI (:attr:`HomeLayout.key_store`), never a private key, and never the PIN when it is
given by ``pin-source``.

Binding: ``python-pkcs11`` (optional extra ``charter[pkcs11]``), imported only when this store
is used. It ships type information (``py.typed``), raises typed exceptions (a wrong PIN is
``PinIncorrect``), and its Ed25519 sign measured ~0.28 ms on SoftHSM2 against ~0.31 ms for
``PyKCS11`` (docs/KEYS.md).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from charter.errors import ConfigError
from charter.keys import vault_key as vault_key_file

if TYPE_CHECKING:
    from charter.config import HomeLayout

SCHEME = "pkcs11:"
#: DER of the Ed25519 OID 1.3.101.112: the CKA_EC_PARAMS of an Ed25519 key (RFC 8410).
ED25519_PARAMS = bytes.fromhex("06032b6570")
_TOKEN_ATTRS = {"token", "serial", "manufacturer", "model"}
_QUERY_ATTRS = {"module-path", "pin-value", "pin-source"}


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI that name a token, its module and its PIN."""

    token: str
    module_path: str
    serial: str | None = None
    pin_value: str | None = None
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        """Parse ``pkcs11:token=L[;serial=S]?module-path=P&(pin-value=V|pin-source=file:F)``.

        Relative file paths are made absolute (the URI is kept and read from elsewhere later).

        Raises:
            ConfigError: not a PKCS#11 URI, or an attribute Charter cannot honour.
        """
        text = text.strip()
        if not text.lower().startswith(SCHEME):
            raise ConfigError("a PKCS#11 key store is a URI starting with 'pkcs11:' (RFC 7512)")
        path, _, query = text[len(SCHEME) :].partition("?")
        attrs = _pairs(path, ";", _TOKEN_ATTRS, "path")
        params = _pairs(query, "&", _QUERY_ATTRS, "query")
        if "token" not in attrs:
            raise ConfigError("the PKCS#11 URI must name the token: pkcs11:token=LABEL?…")
        if "module-path" not in params:
            raise ConfigError("the PKCS#11 URI must give module-path=/path/to/module.so")
        if ("pin-value" in params) == ("pin-source" in params):
            raise ConfigError("the PKCS#11 URI needs exactly one of pin-value=… or pin-source=…")
        source = params.get("pin-source")
        if source is not None:
            if source.startswith("file:"):
                source = source[len("file:") :]
                source = source[2:] if source.startswith("//") else source
            if not source:
                raise ConfigError("pin-source must name a file: pin-source=file:/path/to/pin")
            source = str(Path(source).expanduser().absolute())
        return cls(
            token=attrs["token"],
            serial=attrs.get("serial"),
            module_path=str(Path(params["module-path"]).expanduser().absolute()),
            pin_value=params.get("pin-value"),
            pin_source=source,
        )

    def __str__(self) -> str:
        path = f"token={_q(self.token)}" + (f";serial={_q(self.serial)}" if self.serial else "")
        query = f"module-path={_q(self.module_path)}"
        if self.pin_source is not None:
            query += f"&pin-source=file:{_q(self.pin_source)}"
        else:
            query += f"&pin-value={_q(self.pin_value or '')}"
        return f"{SCHEME}{path}?{query}"

    def redacted(self) -> str:
        """The URI without a literal PIN (for messages and ``charter doctor``)."""
        text = str(self)
        return (
            text.replace(f"pin-value={_q(self.pin_value)}", "pin-value=***")
            if (self.pin_value is not None)
            else text
        )

    def pin(self) -> str:
        """The user PIN: ``pin-value``, or the first line of the ``pin-source`` file.

        Raises:
            ConfigError: the PIN file cannot be read or is empty.
        """
        if self.pin_value is not None:
            return self.pin_value
        assert self.pin_source is not None
        try:
            data = Path(self.pin_source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"cannot read the PKCS#11 PIN file: {reason}") from exc
        pin = data.split("\n", 1)[0].rstrip("\r")
        if not pin:
            raise ConfigError("the PKCS#11 PIN file is empty")
        return pin


def _q(value: str) -> str:
    return quote(value, safe="/-_.~:")


def _pairs(text: str, sep: str, allowed: set[str], part: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, text.split(sep)):
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or name not in allowed:
            raise ConfigError(
                f"unsupported PKCS#11 URI {part} attribute {name!r} "
                f"(Charter takes {', '.join(sorted(allowed))})"
            )
        if name in out:
            raise ConfigError(f"PKCS#11 URI attribute {name!r} given twice")
        out[name] = unquote(value)
    return out


def _ec_point(der: bytes) -> bytes:
    """The 32-byte Ed25519 public key from CKA_EC_POINT (a DER OCTET STRING, or raw)."""
    if len(der) == 34 and der[:2] == b"\x04\x20":
        return der[2:]
    if len(der) == 32:  # some tokens store the raw point
        return der
    raise ConfigError("the token's public key is not an Ed25519 point")


class Pkcs11Signer:
    """A :class:`~charter.keys.signer.Signer` whose keys live in a PKCS#11 token.

    One read-write user session per signer, opened on first use and shared under a lock
    (PKCS#11 sessions are not safe for concurrent operations).
    """

    def __init__(self, uri: Pkcs11Uri) -> None:
        self.uri = uri
        #: Where the home keeps its vault master key (a symmetric key the token does not
        #: hold yet: it stays a file in the home, as docs/KEYS.md says); set by the home.
        self.vault_path: Path | None = None
        self._session: Any = None
        self._keys: dict[str, Any] = {}
        self._public: dict[str, bytes] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_uri(cls, text: str) -> Pkcs11Signer:
        """A signer for the token ``text`` names (nothing is opened yet).

        Raises:
            ConfigError: a malformed or unsupported URI.
        """
        return cls(Pkcs11Uri.parse(text))

    # -- the token -------------------------------------------------------------------------

    def describe(self) -> str:
        """One line naming the store (no PIN)."""
        return f"PKCS#11 token {self.uri.token!r} (module {Path(self.uri.module_path).name})"

    def _open(self) -> Any:
        if self._session is not None:
            return self._session
        try:
            import pkcs11
            from pkcs11 import exceptions as p11e
        except ImportError as exc:
            raise ConfigError(
                "the PKCS#11 key store needs python-pkcs11: pip install 'charter[pkcs11]'"
            ) from exc
        where = f"PKCS#11 token {self.uri.token!r}"
        if not os.path.isfile(self.uri.module_path):
            raise ConfigError(f"{where}: no PKCS#11 module at {self.uri.module_path}")
        pin = self.uri.pin()
        try:
            lib = pkcs11.lib(self.uri.module_path)
            query: dict[str, str] = {"token_label": self.uri.token}
            if self.uri.serial:
                query["token_serial"] = self.uri.serial
            token = lib.get_token(**query)
            try:
                self._session = token.open(user_pin=pin, rw=True)
            except p11e.UserAlreadyLoggedIn:
                # PKCS#11 logs in per process: another session of this process holds the login
                self._session = token.open(rw=True)
        except p11e.NoSuchToken as exc:
            raise ConfigError(f"{where} not found in module {self.uri.module_path}") from exc
        except p11e.MultipleTokensReturned as exc:
            raise ConfigError(f"{where} is ambiguous: add serial=… to the URI") from exc
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange) as exc:
            raise ConfigError(f"{where}: wrong PIN") from exc
        except p11e.PinLocked as exc:
            raise ConfigError(f"{where}: the PIN is locked") from exc
        except p11e.PKCS11Error as exc:
            raise ConfigError(f"{where}: cannot open ({_reason(exc)})") from exc
        return self._session

    def check(self) -> None:
        """Open the token now (module, token and PIN), so a bad setting fails first.

        Raises:
            ConfigError: one line saying which.
        """
        with self._lock:
            self._open()

    def close(self) -> None:
        """Close the session (the keys stay in the token)."""
        with self._lock:
            session, self._session = self._session, None
            self._keys.clear()
            if session is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    session.close()

    def _objects(self, ref: str, kind: str) -> list[Any]:
        from pkcs11 import Attribute, ObjectClass

        cls = ObjectClass.PRIVATE_KEY if kind == "private" else ObjectClass.PUBLIC_KEY
        session = self._open()
        return list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: ref}))

    def _private(self, ref: str) -> Any:
        key = self._keys.get(ref)
        if key is None:
            found = self._objects(ref, "private")
            if len(found) != 1:
                raise ConfigError(
                    f"key {ref!r} is not in {self.describe()}"
                    if not found
                    else f"{self.describe()} holds {len(found)} keys labelled {ref!r}"
                )
            key = self._keys[ref] = found[0]
        return key

    def labels(self) -> list[str]:
        """The labels of the Ed25519 private keys in the token (for ``charter doctor``)."""
        from pkcs11 import Attribute, KeyType, ObjectClass

        with self._lock:
            try:
                session = self._open()
                template = {
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                    Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                }
                objects = session.get_objects(template)
                return sorted(str(o[Attribute.LABEL]) for o in objects)
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"{self.describe()}: {_reason(exc)}") from exc

    # -- the Signer protocol ---------------------------------------------------------------

    def sign(self, ref: str, message: bytes) -> bytes:
        """See :meth:`Signer.sign`: signed inside the token with CKM_EDDSA."""
        from pkcs11 import Mechanism

        with self._lock:
            key = self._private(ref)
            try:
                return bytes(key.sign(message, mechanism=Mechanism.EDDSA))
            except Exception as exc:
                what = f"{self.describe()} cannot sign with {ref!r}"
                raise ConfigError(f"{what}: {_reason(exc)}") from exc

    def public_key(self, ref: str) -> bytes:
        """See :meth:`Signer.public_key`: CKA_EC_POINT of the public object."""
        from pkcs11 import Attribute

        with self._lock:
            cached = self._public.get(ref)
            if cached is not None:
                return cached
            found = self._objects(ref, "public")
            if len(found) != 1:
                raise ConfigError(f"key {ref!r} is not in {self.describe()}")
            public = _ec_point(bytes(found[0][Attribute.EC_POINT]))
            self._public[ref] = public
            return public

    def create(self, ref: str, *, passphrase: bytes | None = None) -> str:
        """See :meth:`Signer.create`: a key pair generated inside the token (the private half
        sensitive and never extractable). A passphrase is refused: the token's PIN guards it."""
        from pkcs11 import Attribute, KeyType, Mechanism

        from charter.evidence.jwk import thumbprint

        if passphrase is not None:
            raise ConfigError("keys in a PKCS#11 token are guarded by its PIN, not a passphrase")
        _check_ref(ref)
        with self._lock:
            session = self._open()
            label = ref if ref != "issuer:" else f"issuer:pending-{secrets.token_hex(8)}"
            if self._objects(label, "private") or self._objects(label, "public"):
                raise ConfigError(f"key {ref!r} already exists in {self.describe()}; refusing")
            try:
                public, private = session.generate_keypair(
                    KeyType.EC_EDWARDS,
                    store=True,
                    label=label,
                    mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    public_template={Attribute.EC_PARAMS: ED25519_PARAMS, Attribute.VERIFY: True},
                    private_template={
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.PRIVATE: True,
                        Attribute.SIGN: True,
                    },
                )
                point = _ec_point(bytes(public[Attribute.EC_POINT]))
                if ref == "issuer:":
                    ref = f"issuer:{thumbprint(point)}"
                    public[Attribute.LABEL] = ref
                    private[Attribute.LABEL] = ref
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(
                    f"{self.describe()} cannot make an Ed25519 key: {_reason(exc)}"
                ) from exc
            self._keys[ref] = private
            self._public[ref] = point
            return ref

    def remove(self, ref: str) -> None:
        """See :meth:`Signer.remove`: destroys both halves in the token."""
        with self._lock:
            self._keys.pop(ref, None)
            self._public.pop(ref, None)
            for kind in ("private", "public"):
                for obj in self._objects(ref, kind):
                    try:
                        obj.destroy()
                    except Exception as exc:
                        raise ConfigError(
                            f"{self.describe()} cannot remove {ref!r}: {_reason(exc)}"
                        ) from exc

    def unlock(self, ref: str, passphrase: bytes | None) -> None:
        """See :meth:`Signer.unlock`: the token was unlocked with its PIN; checks the key."""
        with self._lock:
            self._private(ref)

    def is_protected(self, ref: str) -> bool:
        """See :meth:`Signer.is_protected`: never (the PIN opened the token)."""
        return False

    def exists(self, ref: str) -> bool:
        """True when the token holds a private key labelled ``ref``."""
        with self._lock:
            return bool(self._objects(ref, "private"))

    # -- what the signer seam asks of every store beyond signing ----------------------------

    def set_passphrase(self, passphrase: bytes | None) -> None:
        """A token is unlocked by its PIN, never a passphrase: nothing to set."""

    def check_unlocked(self) -> None:
        """Open the token now (module, token, PIN), so a bad one fails before any work."""
        self.check()

    def _vault(self) -> Path:
        if self.vault_path is None:
            raise ConfigError("this key store does not know its home's vault key file")
        return self.vault_path

    def vault_key(self, key_version: int, passphrase: bytes | None) -> bytes:
        """See :meth:`Signer.vault_key` (the key file in the home, never sealed by a KEK)."""
        return vault_key_file.load_vault_key(self._vault(), key_version, passphrase, _no_kek, None)

    def adopt_vault_key(
        self, passphrase: bytes | None, limits: tuple[int, int]
    ) -> tuple[int, bytes]:
        """See :meth:`Signer.adopt_vault_key`."""
        return vault_key_file.adopt_vault_key(self._vault(), passphrase, limits, _no_kek, None)

    def stage_vault_key(
        self, key_version: int, passphrase: bytes | None, limits: tuple[int, int]
    ) -> bytes:
        """See :meth:`Signer.stage_vault_key`."""
        pending = self._vault().with_name("vault.key.new")
        pending.unlink(missing_ok=True)  # a leftover of a rotation that never committed
        return vault_key_file.write_vault_key(pending, key_version, passphrase, limits, _no_kek)

    def commit_vault_key(self) -> None:
        """See :meth:`Signer.commit_vault_key`."""
        os.replace(self._vault().with_name("vault.key.new"), self._vault())

    def discard_vault_key(self) -> None:
        """See :meth:`Signer.discard_vault_key`."""
        self._vault().with_name("vault.key.new").unlink(missing_ok=True)


def _check_ref(ref: str) -> None:
    kind, _, name = ref.partition(":")
    fixed = ("owner", "log", "issuer:", "owner:default")
    if ref in fixed or (kind in ("issuer", "agent") and name):
        return
    raise ConfigError(f"unknown key reference {ref!r}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# -- the home's choice of store ----------------------------------------------------------------


def _no_kek() -> None:
    return None


def save_key_store(layout: HomeLayout, signer: Pkcs11Signer) -> None:
    """Record in the home that its keys are in ``signer``'s token (a 0600 one-line file)."""
    path = layout.key_store
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(str(signer.uri) + "\n")


def for_home(signer: Pkcs11Signer, layout: HomeLayout) -> Pkcs11Signer:
    """``signer``, told where its home keeps the vault master key file."""
    signer.vault_path = layout.keys / "vault.key"
    return signer


def configured_signer(layout: HomeLayout) -> Pkcs11Signer | None:
    """The PKCS#11 signer the home's config names, or None for a home with key files.

    Raises:
        ConfigError: the config is unreadable or names an unusable URI.
    """
    path = layout.key_store
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the home's key-store setting {path.name}") from exc
    return for_home(Pkcs11Signer.from_uri(text), layout)
