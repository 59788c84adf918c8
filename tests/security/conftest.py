"""Fixtures for the security tests; helpers live in ``tests/support/sechelp.py``."""

from __future__ import annotations
