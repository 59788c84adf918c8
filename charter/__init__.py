"""Charter: owner-bound identity, tools and a signed audit ledger for AI agents over MCP.

The public Python API is ``__all__``: the version and the offline verifier of an export
(:func:`charter.evidence.verify_export`; the evidence library's whole surface is
``charter.evidence.__all__``). Everything else is internal and may change between versions;
the supported interfaces are the ``charter`` command, the MCP tools and AUDIT-FORMAT.md.
Importing ``charter`` loads the evidence library only (PyNaCl, orjson), never the server.
"""

from charter.evidence import verify_export

__version__ = "0.1.0"

__all__ = ["__version__", "verify_export"]
