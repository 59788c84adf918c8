"""The owner's console: a loopback-only web app over the services of :mod:`charter.tools`.

``charter console`` serves it (:mod:`charter.console.run`). It sits above ``tools/``, beside
``server/``: it imports neither ``mcp`` nor SQL; its storage work is units of work over the
repositories, as every service's is. Security: :mod:`charter.console.auth` (one-time login
token, session cookie, CSRF, loopback Host check, CSP).
"""
