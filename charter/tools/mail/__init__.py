"""Email for agents: the owner's settings, each agent's mail policy, sending, the send log
and reading the agent's mailbox.

The modules, bottom first (each imports only those above it):

- :mod:`~charter.tools.mail.models`: the pydantic shapes of the ``email_*`` tools;
- :mod:`~charter.tools.mail.message`: validating, rendering, digesting and signing a message;
- :mod:`~charter.tools.mail.transport`: SMTP and the local transport, :class:`MailDenied`;
- :mod:`~charter.tools.mail.imap`: reading a mailbox over IMAP;
- :mod:`~charter.tools.mail.policy`: each agent's ``policy["email"]``;
- :mod:`~charter.tools.mail.settings`: the owner's mail server and ``charter mail test``;
- :mod:`~charter.tools.mail.sending`: the send's plan (intent before effect) and the outbox;
- :mod:`~charter.tools.mail.inbox`: ``email_list`` and ``email_read``.

The tables are in :mod:`charter.storage.mail`. ``charter serve`` imports this package at
start (for the tools' shapes), so the heavy imports (``aiosmtplib``, ``imaplib``,
``email.policy``) are made inside the functions that need them.
"""

from __future__ import annotations

from charter.tools.mail.inbox import list_messages as list_messages
from charter.tools.mail.inbox import read_message as read_message
from charter.tools.mail.policy import DEFAULT_RATE_PER_HOUR as DEFAULT_RATE_PER_HOUR
from charter.tools.mail.policy import MAX_ALLOW_SENDERS as MAX_ALLOW_SENDERS
from charter.tools.mail.policy import MAX_RATE_PER_HOUR as MAX_RATE_PER_HOUR
from charter.tools.mail.policy import EmailPolicy as EmailPolicy
from charter.tools.mail.policy import agent_addresses as agent_addresses
from charter.tools.mail.policy import check_address_free as check_address_free
from charter.tools.mail.policy import email_policy as email_policy
from charter.tools.mail.policy import merge_email_policy as merge_email_policy
from charter.tools.mail.policy import require_policy as require_policy
from charter.tools.mail.sending import INTERRUPTED_AFTER as INTERRUPTED_AFTER
from charter.tools.mail.sending import OutboxEntry as OutboxEntry
from charter.tools.mail.sending import PreparedSend as PreparedSend
from charter.tools.mail.sending import outbox as outbox
from charter.tools.mail.sending import prepare_send as prepare_send
from charter.tools.mail.sending import send_plan as send_plan
from charter.tools.mail.settings import DEFAULT_PORTS as DEFAULT_PORTS
from charter.tools.mail.settings import PASSWORD_SECRET as PASSWORD_SECRET
from charter.tools.mail.settings import SECURITY as SECURITY
from charter.tools.mail.settings import MailSettings as MailSettings
from charter.tools.mail.settings import check_imap as check_imap
from charter.tools.mail.settings import clear_settings as clear_settings
from charter.tools.mail.settings import imap_config as imap_config
from charter.tools.mail.settings import load_settings as load_settings
from charter.tools.mail.settings import mail_password as mail_password
from charter.tools.mail.settings import make_settings as make_settings
from charter.tools.mail.settings import save_settings as save_settings
from charter.tools.mail.settings import send_test as send_test
from charter.tools.mail.settings import transport_for as transport_for
from charter.tools.mail.transport import MailDenied as MailDenied
