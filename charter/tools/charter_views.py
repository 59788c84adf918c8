"""A stored charter, verified again on every load: the owner's, or a sub-agent's delegation
chain up to the owner's (AUDIT-FORMAT.md §3, §12).

Its own small module so that short-lived processes (Claude Code hooks) can load an agent's
charter without importing the identity service.
"""

from __future__ import annotations

import json
from typing import Any

from charter.errors import ConfigError
from charter.evidence.charters import CharterView, verify_charter
from charter.evidence.delegation import is_delegation, verify_delegation
from charter.evidence.jwk import thumbprint
from charter.home import Home
from charter.storage.ports import Tx


def charter_view(home: Home, tx: Tx, h: str) -> CharterView:
    """The stored charter ``h``, re-verified (inside a unit of work).

    Raises:
        ConfigError: the stored charter is missing or fails verification (database tampered).
    """
    body = tx.agents.charter_body(h)
    if body is None:
        raise ConfigError(f"charter {h[:12]}… is missing from the database")
    try:
        doc = json.loads(body)
        if is_delegation(doc):  # a sub-agent's: verify the chain up to the owner's charter
            parent = charter_view(home, tx, str(doc["parent"]["charter"]))
            view = verify_delegation(doc, parent)
        else:
            view = owner_charter(home, tx, doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"stored charter {h[:12]}… is invalid: {exc}") from exc
    if view.hash != h:
        raise ConfigError(f"stored charter {h[:12]}… does not match its hash")
    return view


def owner_charter(home: Home, tx: Tx, doc: Any) -> CharterView:
    """Verify an owner's charter: signed by the home's owner key, or in an organization home by
    an owner the organization certified (current or removed: old charters stay readable).

    Raises:
        ValueError: it does not verify.
    """
    view = verify_charter(doc, None if home.organization else home.owner_public_key)
    if home.organization is not None:
        signer = tx.owners.by_kid(thumbprint(view.owner_key))
        if signer is None or signer.owner_id != view.owner_id:
            raise ValueError("not signed by a certified owner of the organization")
    return view
