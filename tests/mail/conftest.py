"""Fixtures with real mail servers on 127.0.0.1 (helpers in ``tests/support/mailservers.py``).

* ``tls_material`` (session): :class:`TlsMaterial` — ``ca_pem``, ``cert_pem``, ``key_pem``,
  ``client_context``, ``server_context()``.
* ``smtp_server``: :class:`SmtpServer`, no AUTH, no TLS — ``host``, ``port``, ``messages``,
  ``wait_for_messages()``, failure knobs ``rcpt_replies``/``data_reply``/``mail_reply``.
* ``smtp_server_auth_starttls``: :class:`SmtpServer` requiring STARTTLS and then AUTH
  (``SMTP_USERNAME``/``SMTP_PASSWORD``, also in ``.auth``); ``.tls.client_context`` trusts it.
* ``dovecot`` (session): plain :class:`DovecotServer` — ``host``, ``port``, ``add_user()``,
  ``new_user()``, ``connect()``, ``append()``, ``fetch_all()``, ``login_log()``, ``log_tail()``.
* ``dovecot_tls`` (session): :class:`DovecotServer` with STARTTLS on ``port`` and IMAPS on
  ``ssl_port``; ``.tls.client_context`` trusts it.

The Dovecot servers are shared by the whole session: give each test its own user
(``dovecot.new_user()``). They fail the test under ``CI`` when Dovecot is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mailservers import (
    SMTP_PASSWORD,
    SMTP_USERNAME,
    DovecotServer,
    SmtpServer,
    TlsMaterial,
    make_tls_material,
)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A throwaway CA and a 127.0.0.1/localhost server certificate."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no AUTH, no TLS) capturing every message."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_server_auth_starttls(tls_material: TlsMaterial) -> Iterator[SmtpServer]:
    """An SMTP submission server: STARTTLS required, then AUTH PLAIN/LOGIN required."""
    with SmtpServer(
        auth={SMTP_USERNAME: SMTP_PASSWORD},
        starttls=tls_material,
        require_starttls=True,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A private plain-IMAP Dovecot shared by the session (``ssl = no``)."""
    with DovecotServer() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_tls(tls_material: TlsMaterial) -> Iterator[DovecotServer]:
    """A private Dovecot with STARTTLS on ``port`` and implicit TLS on ``ssl_port``."""
    with DovecotServer(tls=tls_material) as server:
        yield server
