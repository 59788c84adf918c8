"""Claude Code hooks, as pure pieces (issue 23): parse one hook event, decide a tool call by
the owner's rules in Claude Code's own permission syntax, and write the hook's answer.

Nothing here touches storage, keys or the network: plain values in and out, so the command
(``charter hook claude-code``) can wire them to the ledger whatever shape storage takes.

- :mod:`.events`: stdin JSON → typed, frozen events; redacted, bounded summaries of tool
  inputs; hashes of prompts and responses.
- :mod:`.rules`: ``Bash(npm run test *)``, ``Read(./secrets/**)``,
  ``WebFetch(domain:example.com)``, ``mcp__server__tool``…: parse, and decide a call with
  Claude Code's precedence (deny > ask > allow).
- :mod:`.output`: the hook's stdout JSON / exit code for a decision, and the fail-closed path.
"""
