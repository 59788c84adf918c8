"""The owner's rules for an agent's Claude Code tool calls, in Claude Code's own syntax.

A rule is ``Tool`` (every use of the tool) or ``Tool(specifier)``, as in Claude Code's
``permissions.allow`` / ``ask`` / ``deny`` settings:

=============================  ==========================================================
``Bash``, ``Bash(*)``          every command
``Bash(npm run build)``        exactly that command
``Bash(npm run test *)``       ``*`` matches any text; a trailing `` *`` also matches the
                               bare command and keeps a word boundary (``Bash(ls *)``
                               matches ``ls -la`` and ``ls``, not ``lsof``)
``Bash(npm run test:*)``       the legacy suffix, the same as ``Bash(npm run test *)``
``Read(./secrets/**)``         file reads by path (gitignore patterns: :mod:`.paths`);
                               also Glob, Grep, LS and NotebookRead
``Edit(/src/**/*.ts)``         file edits by path: Edit, Write, MultiEdit, NotebookEdit
``WebFetch(domain:x.com)``     fetches of that host (``domain:*.x.com``: its subdomains)
``Agent(Explore)``             a subagent type (``Task`` is the older name of the tool)
``Skill(name)``                a skill
``mcp__server``                every tool of an MCP server (``mcp__server__*`` the same)
``mcp__server__tool``          one tool of an MCP server
=============================  ==========================================================

A call is decided deny > ask > allow: the first matching deny rule denies, else the first
matching ask rule asks, else the allow rules allow, else there is no decision (Claude Code
goes on with its own settings). Specificity does not change the order (Claude Code: a broad
deny cannot be carved out by a narrower allow).

Where Claude Code's documentation leaves a choice, deny and ask rules read *broadly* and
allow rules *narrowly*, so an ambiguity can only deny or ask more, never allow more: Bash
commands (:mod:`.shell`): a deny matches if any subcommand matches, an allow needs every
subcommand allowed; paths (:mod:`.paths`); hosts (a deny of ``domain:x.com`` also covers
``a.x.com``); a call whose input lacks the field a specifier tests (no ``command``, no
``url``) matches every deny and ask rule of its tool and no allow rule with a specifier.

Rules that could not take effect are refused with a one-line :class:`RuleError`: a
specifier on a tool that documents none (``Write(…)``: write ``Edit(…)``), a misspelt tool
name (``bash``), ``mcp__…`` rules with parentheses, an unbalanced rule.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from charter.errors import InvalidInput
from charter.tools.hooks import shell
from charter.tools.hooks.events import PreToolUse
from charter.tools.hooks.paths import PathPattern, PathPatternError, parse_path_pattern

Decision = Literal["allow", "deny", "ask"]

MAX_RULE_CHARS = 1000
MAX_RULES = 500

#: Tools whose inputs a Read rule tests, and the input fields that hold the path.
READ_TOOLS: Mapping[str, tuple[str, ...]] = {
    "Read": ("file_path",),
    "NotebookRead": ("notebook_path",),
    "Glob": ("path",),
    "Grep": ("path",),
    "LS": ("path",),
}
#: Tools whose inputs an Edit rule tests ("Edit rules apply to all built-in tools that edit
#: files").
EDIT_TOOLS: Mapping[str, tuple[str, ...]] = {
    "Edit": ("file_path",),
    "MultiEdit": ("file_path",),
    "Write": ("file_path",),
    "NotebookEdit": ("notebook_path",),
}
#: Tools that take a specifier, and what it is.
_SPECIFIED = {"Bash", "Read", "Edit", "WebFetch", "Agent", "Task", "Skill"}
#: Tools Claude Code documents, for catching a misspelt name (``bash``).
KNOWN_TOOLS = frozenset(
    {*READ_TOOLS, *EDIT_TOOLS, *_SPECIFIED, "WebSearch", "TodoWrite", "ExitPlanMode",
     "BashOutput", "KillShell", "KillBash", "SlashCommand", "AskUserQuestion"}
)  # fmt: skip
_TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_MCP = re.compile(r"^mcp__([A-Za-z0-9_-]+?)(?:__([A-Za-z0-9_-]+|\*))?$")
_DOMAIN = re.compile(
    r"^(\*\.)?([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$"
)


class RuleError(InvalidInput):
    """A rule that cannot take effect; the message is one line."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed rule: the text as written, its tool and its specifier (or None)."""

    text: str
    tool: str
    specifier: str | None
    _path: PathPattern | None = field(default=None, repr=False, compare=False)
    _wild: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What a rule is matched against: a tool, its input, and where relative paths start."""

    tool_name: str
    tool_input: Mapping[str, Any] = field(repr=False)
    cwd: str | None = None
    #: The project root (``CLAUDE_PROJECT_DIR``) for ``/path`` patterns; else ``cwd``.
    project_dir: str | None = None
    home: str | None = None

    @classmethod
    def from_event(
        cls, event: PreToolUse, *, project_dir: str | None = None, home: str | None = None
    ) -> ToolCall:
        return cls(event.tool_name, event.tool_input, event.cwd, project_dir, home)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision (None: no rule matched) and the rules that made it."""

    decision: Decision | None
    rules: tuple[Rule, ...] = ()

    @property
    def rule(self) -> Rule | None:
        return self.rules[0] if self.rules else None

    @property
    def reason(self) -> str:
        if self.decision is None:
            return "no owner rule matches this call"
        named = ", ".join(r.text for r in self.rules)
        verb = {"deny": "denied", "ask": "needs approval", "allow": "allowed"}[self.decision]
        return f"{verb} by the owner's rule {named}"


def parse_rule(text: str) -> Rule:
    """Parse one rule.

    Raises:
        RuleError: the rule is malformed or could not take effect (module docstring).
    """
    given: object = text  # rules may come from JSON: check the type at run time
    if not isinstance(given, str) or not given.strip():
        raise RuleError("a rule must be non-empty text")
    shown = text if len(text) <= 80 else text[:77] + "..."
    shown = shown.encode("unicode_escape").decode("ascii")
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(f"rule {shown}: longer than {MAX_RULE_CHARS} characters")
    if text != text.strip() or any(ch in text for ch in "\x00\r\n"):
        raise RuleError(f"rule {shown}: no surrounding spaces or line breaks, please")
    if "(" in text:
        if not text.endswith(")"):
            raise RuleError(f"rule {shown}: '(' without a closing ')' at the end")
        tool, _, spec = text[:-1].partition("(")
    elif ")" in text:
        raise RuleError(f"rule {shown}: ')' without '('")
    else:
        tool, spec = text, None
    if tool.startswith("mcp__"):
        if spec is not None:
            raise RuleError(f"rule {shown}: MCP rules take no '(…)'; write mcp__server__tool")
        if not _MCP.match(tool):
            raise RuleError(
                f"rule {shown}: an MCP rule is mcp__server, mcp__server__* or mcp__server__tool"
            )
        return Rule(text, tool, None)
    if not _TOOL_NAME.match(tool):
        raise RuleError(f"rule {shown}: {tool!r} is not a tool name")
    if tool not in KNOWN_TOOLS:
        for known in KNOWN_TOOLS:
            if known.lower() == tool.lower():
                raise RuleError(
                    f"rule {shown}: tool names are case-sensitive; did you mean {known}?"
                )
    if spec is None or (spec == "*" and tool in _SPECIFIED):
        return Rule(text, tool, None)  # Claude Code: Bash(*) is the same as Bash
    if spec == "":
        raise RuleError(f"rule {shown}: empty '()'; write {tool} alone for every use")
    if tool not in _SPECIFIED:
        hint = (
            " (path rules are written Edit(…) or Read(…))"
            if tool in EDIT_TOOLS or tool in READ_TOOLS
            else ""
        )
        raise RuleError(f"rule {shown}: Claude Code documents no specifier for {tool}{hint}")
    if tool in ("Read", "Edit"):
        try:
            return Rule(text, tool, spec, _path=parse_path_pattern(spec))
        except PathPatternError as exc:
            raise RuleError(f"rule {shown}: {exc}") from None
    if tool == "WebFetch":
        domain = spec.removeprefix("domain:").lower()
        if not spec.startswith("domain:") or not _DOMAIN.match(domain):
            raise RuleError(f"rule {shown}: WebFetch takes domain:HOST (or domain:*.HOST)")
        return Rule(text, tool, "domain:" + domain)
    if tool == "Bash" and spec.endswith(":*"):
        spec = spec[:-2] + " *"  # the legacy prefix syntax (Claude Code: same as " *")
    return Rule(text, tool, spec, _wild=_wildcard(spec))


def _wildcard(spec: str) -> re.Pattern[str]:
    """``*`` any text (``\\*`` a literal star); a trailing `` *`` may also match nothing."""
    parts: list[str] = []
    i = 0
    while i < len(spec):
        if spec.startswith("\\*", i) or spec.startswith("\\\\", i):
            parts.append(re.escape(spec[i + 1]))
            i += 2
        elif spec[i] == "*":
            parts.append("*")
            i += 1
        else:
            parts.append(re.escape(spec[i]))
            i += 1
    if len(parts) >= 2 and parts[-2:] == [re.escape(" "), "*"]:
        body = "".join(".*" if p == "*" else p for p in parts[:-2]) + "(?: .*)?"
    else:
        body = "".join(".*" if p == "*" else p for p in parts)
    return re.compile(body, re.DOTALL)


@dataclass(frozen=True, slots=True)
class OwnerRules:
    """An agent's deny, ask and allow lists."""

    deny: tuple[Rule, ...] = ()
    ask: tuple[Rule, ...] = ()
    allow: tuple[Rule, ...] = ()

    @classmethod
    def parse(
        cls, *, deny: Iterable[str] = (), ask: Iterable[str] = (), allow: Iterable[str] = ()
    ) -> OwnerRules:
        """Parse three lists of rule texts.

        Raises:
            RuleError: the first bad rule, naming its list and position.
        """
        lists: dict[str, tuple[Rule, ...]] = {}
        for name, texts in (("deny", deny), ("ask", ask), ("allow", allow)):
            if isinstance(texts, str):
                raise RuleError(f"{name} rules must be a list of rules, not one string")
            parsed = []
            for index, text in enumerate(texts):
                if index >= MAX_RULES:
                    raise RuleError(f"{name} rules: more than {MAX_RULES}")
                try:
                    parsed.append(parse_rule(text))
                except RuleError as exc:
                    raise RuleError(f"{name} rule {index + 1}: {exc.public_message}") from None
            lists[name] = tuple(parsed)
        return cls(**lists)

    def texts(self) -> dict[str, list[str]]:
        """The rules as written (for the signed charter)."""
        return {k: [r.text for r in getattr(self, k)] for k in ("deny", "ask", "allow")}

    def decide(self, call: ToolCall) -> Verdict:
        """Claude Code's precedence: deny > ask > allow > no decision."""
        for rule in self.deny:
            if matches(rule, call, broad=True):
                return Verdict("deny", (rule,))
        for rule in self.ask:
            if matches(rule, call, broad=True):
                return Verdict("ask", (rule,))
        return self._allow(call)

    def _allow(self, call: ToolCall) -> Verdict:
        for rule in self.allow:
            if rule.specifier is None and _tool_matches(rule, call.tool_name):
                return Verdict("allow", (rule,))
        if call.tool_name != "Bash":
            for rule in self.allow:
                if matches(rule, call, broad=False):
                    return Verdict("allow", (rule,))
            return Verdict(None)
        # Every subcommand must be allowed by some rule (Claude Code: a prefix rule does
        # not allow "safe-cmd && other-cmd").
        command = call.tool_input.get("command")
        segments = shell.split_commands(command) if isinstance(command, str) else None
        if not segments:
            return Verdict(None)
        used: list[Rule] = []
        for segment in segments:
            forms = shell.forms(segment, broad=False)
            found = next((r for r in self.allow if _bash_matches(r, forms)), None)
            if found is None:
                return Verdict(None)
            if found not in used:
                used.append(found)
        return Verdict("allow", tuple(used))


def matches(rule: Rule, call: ToolCall, *, broad: bool) -> bool:
    """Whether ``rule`` matches ``call`` (broad for deny/ask, narrow for allow)."""
    if not _tool_matches(rule, call.tool_name, broad=broad):
        return False
    if rule.specifier is None:
        return True
    inp = call.tool_input
    if rule.tool == "Bash":
        command = inp.get("command")
        segments = shell.split_commands(command) if isinstance(command, str) else None
        if segments is None:
            return broad  # no command, or one no reading is safe for
        if not broad:
            return all(_bash_matches(rule, shell.forms(s, broad=False)) for s in segments)
        return any(_bash_matches(rule, shell.forms(s, broad=True)) for s in segments)
    if rule.tool in ("Read", "Edit"):
        return _path_matches(rule, call, broad)
    if rule.tool == "WebFetch":
        return _domain_matches(rule.specifier, inp.get("url"), broad)
    fields = ("subagent_type",) if rule.tool in ("Agent", "Task") else ("skill", "command", "name")
    values = [inp[f] for f in fields if isinstance(inp.get(f), str)]
    if not values:
        return broad
    assert rule._wild is not None
    return any(rule._wild.fullmatch(v) for v in values)


def _tool_matches(rule: Rule, tool: str, *, broad: bool = False) -> bool:
    if rule.tool.startswith("mcp__"):
        name = rule.tool.removesuffix("__*")
        server_only = _MCP.match(rule.tool).group(2) in (None, "*")  # type: ignore[union-attr]
        if server_only:
            return tool.startswith(name + "__")
        # mcp__a__b is tool b of server a, or (a server may have "__" in its name) every
        # tool of server a__b: deny and ask take both readings.
        return tool == name or (broad and tool.startswith(name + "__"))
    if rule.tool in ("Agent", "Task"):
        return tool in ("Agent", "Task")
    if rule.tool == "Read":
        # A Read deny also stops edits of the path (Claude Code describes it so): broad only.
        return tool in READ_TOOLS or (broad and rule.specifier is not None and tool in EDIT_TOOLS)
    if rule.tool == "Edit":
        return tool in EDIT_TOOLS
    return tool == rule.tool


def _bash_matches(rule: Rule, forms: list[str]) -> bool:
    if rule.tool != "Bash":
        return False
    if rule._wild is None:
        return True
    return any(rule._wild.fullmatch(f) for f in forms)


def _path_matches(rule: Rule, call: ToolCall, broad: bool) -> bool:
    assert rule._path is not None
    fields = READ_TOOLS.get(call.tool_name) or EDIT_TOOLS.get(call.tool_name) or ()
    paths = [call.tool_input[f] for f in fields if isinstance(call.tool_input.get(f), str)]
    if not paths and call.tool_name in ("Glob", "Grep", "LS") and call.cwd:
        paths = [call.cwd]  # no path: the search starts in the current folder
    if broad and call.tool_name == "Glob" and isinstance(call.tool_input.get("pattern"), str):
        # Where the glob's literal start points (secrets/*.pem from the root → secrets).
        literal = re.split(r"[*?\[{]", call.tool_input["pattern"], maxsplit=1)[0]
        paths += [f"{p.rstrip('/')}/{literal}".rstrip("/") for p in (paths or [call.cwd or "/"])]
    if not paths or any("\x00" in p for p in paths):
        return broad  # nothing to judge, or a path no file system takes
    where = {"cwd": call.cwd, "project": call.project_dir, "home": call.home}
    searches = broad and call.tool_name in ("Glob", "Grep", "LS")
    if searches and any(rule._path.covers_folder(p, **where) for p in paths):
        return True
    return any(rule._path.matches(p, **where, broad=broad) for p in paths)


def _domain_matches(specifier: str, url: Any, broad: bool) -> bool:
    domain = specifier.removeprefix("domain:")
    host = None
    if isinstance(url, str):
        try:
            host = urllib.parse.urlsplit(url.strip()).hostname
        except ValueError:
            host = None
    if not host:
        return broad  # no host to judge: deny and ask hold, allow does not
    host = host.rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        if not broad:
            return False
    if domain.startswith("*."):
        return host.endswith(domain[1:]) or (broad and host == domain[2:])
    return host == domain or (broad and host.endswith("." + domain))
