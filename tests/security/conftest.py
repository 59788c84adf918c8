"""Fixtures for the security tests; helpers live in ``tests/security/sechelp.py``.

pytest runs with ``--import-mode=importlib``, which never puts test folders on ``sys.path``:
this conftest adds ``tests/security`` so the tests here can ``import sechelp``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
