"""The vault's services: the owner's set/list/rm/rotate, and the agent's list/get/use.

An agent uses a secret without seeing it: it writes ``{{secret:NAME}}`` in the URL path or
query, a header value or the body; :func:`http_request_plan` checks the scopes and the
secret's allowed hosts and returns the plan the gate runs: commit the intent, then send the
request from here and hand back the response with every occurrence of the value (raw and in
its common encodings) replaced by ``[REDACTED:NAME]``. Reading a value (:func:`reveal_plan`)
is a separate, narrower grant.
"""

from __future__ import annotations

from charter.tools.vault.agent import SecretListItem as SecretListItem
from charter.tools.vault.agent import SecretListOut as SecretListOut
from charter.tools.vault.agent import SecretOut as SecretOut
from charter.tools.vault.agent import decode_secret as decode_secret
from charter.tools.vault.agent import read_secret as read_secret
from charter.tools.vault.agent import reveal_plan as reveal_plan
from charter.tools.vault.agent import visible_secrets as visible_secrets
from charter.tools.vault.http import MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES
from charter.tools.vault.http import HttpResponseOut as HttpResponseOut
from charter.tools.vault.http import Method as Method
from charter.tools.vault.http import http_request_plan as http_request_plan
from charter.tools.vault.http import placeholder_names as placeholder_names
from charter.tools.vault.limits import VaultDenied as VaultDenied
from charter.tools.vault.owner import list_secrets as list_secrets
from charter.tools.vault.owner import remove_secret as remove_secret
from charter.tools.vault.owner import rotate_master_key as rotate_master_key
from charter.tools.vault.owner import set_secret as set_secret
from charter.tools.vault.owner import unblock_secret as unblock_secret
from charter.tools.vault.owner import vault_of as vault_of
from charter.tools.vault.redact import Redactor as Redactor
