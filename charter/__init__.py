"""Charter: owner-bound identity, tools and a signed audit ledger for AI agents over MCP."""

__version__ = "0.1.0"
__all__ = ["__version__"]
