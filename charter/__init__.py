"""Charter: owner-bound identity, tools and a signed audit ledger for AI agents over MCP.

The public Python API is ``__all__``: the version and the offline verifier of an export
(:func:`charter.evidence.verify_export`; the evidence library's whole surface is
``charter.evidence.__all__``). Everything else is internal and may change between versions;
the supported interfaces are the ``charter`` command, the MCP tools and AUDIT-FORMAT.md.
Importing ``charter`` loads nothing else: ``verify_export`` is loaded on first use (every
``charter`` command and server imports this package first, and must start fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charter.evidence.export import verify_export

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "verify_export":
        from charter.evidence.export import verify_export

        return verify_export
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "verify_export"]
