"""How a Bash permission rule sees a command: its subcommands, and the forms each may match.

Claude Code documents that it "is aware of shell operators", so ``Bash(safe-cmd *)`` does not
allow ``safe-cmd && other-cmd``, and that it strips process wrappers (``timeout``, ``nice``,
``nohup``…) before matching. This module is the conservative reading of that:

- :func:`split_commands` cuts a command at ``&&``, ``||``, ``;``, ``|``, ``|&``, ``&``,
  newlines and subshell parentheses (outside quotes), and adds the bodies of ``$(…)``,
  backticks and ``<(…)``/``>(…)`` as commands of their own. ``None`` when the quotes do not
  balance (no reading is safe).
- :func:`forms` lists the strings a rule is tried against. *Narrow* (allow rules): the
  subcommand as written, and, behind a documented wrapper, the command it runs. *Broad*
  (deny and ask rules) adds everything that could be what really runs: quotes removed,
  leading ``VAR=value`` assignments, shell keywords (``if``, ``then``, ``!``…) and any known
  wrapper (``env``, ``sudo``, ``xargs``, ``command``…) skipped, redirections dropped, a
  path-qualified or backslashed program reduced to its name (``/bin/rm``, ``\\rm``), and the
  body of ``bash -c``/``sh -c``/``eval``. A deny rule may then match more than Claude
  Code's own matcher would, never less: that is the safe direction for a deny.

A rule matches text, not programs: a script that runs ``rm`` itself, or an alias, is not
seen (Claude Code says the same of its own rules). Heredoc bodies are split as lines, which
can only make a deny match more or an allow match less.
"""

from __future__ import annotations

import os
import re
import shlex

#: Wrappers Claude Code documents stripping before it matches (allow rules use only these).
DOCUMENTED_WRAPPERS = frozenset({"timeout", "time", "nice", "nohup", "stdbuf"})
#: Words after which the rest of the command is (or may be) another command: deny/ask only.
BROAD_WRAPPERS = DOCUMENTED_WRAPPERS | {
    "env", "sudo", "doas", "xargs", "command", "builtin", "exec", "ionice", "setsid",
    "chrt", "taskset", "flock", "caffeinate", "unbuffer", "watch", "strace", "ltrace",
    "then", "do", "else", "elif", "if", "while", "until", "!", "{", "}", "(", ")",
}  # fmt: skip
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_REDIRECT = re.compile(r"^(?:\d*|&)(?:>>?|<<?<?|>&|<&|>\|)(.*)$")
#: Bound on the forms one subcommand expands to (a hostile command cannot blow it up).
MAX_FORMS = 256
#: Bound on nested substitutions and ``sh -c`` bodies followed.
MAX_NESTING = 8


class _Unbalanced(Exception):
    pass


def split_commands(command: str) -> list[str] | None:
    """The subcommands of ``command`` (see the module docstring), or None if unbalanced."""
    out: list[str] = []
    try:
        _scan(command, 0, out, None, 0)
    except (_Unbalanced, RecursionError):
        return None
    return [c for c in (s.strip() for s in out) if c]


def _scan(s: str, i: int, out: list[str], closing: str | None, depth: int) -> int:
    """Split ``s`` from ``i`` into ``out`` until ``closing`` (or the end); return the index
    after the closing character."""
    if depth > MAX_NESTING:
        raise _Unbalanced
    start = i
    n = len(s)
    heredocs: list[tuple[str, bool, bool]] = []  # (delimiter, quoted, strip tabs)

    def flush(end: int) -> None:
        out.append(s[start:end])

    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "<" and s.startswith("<<", i) and not s.startswith("<<<", i):
            i = _heredoc_word(s, i + 2, heredocs)
            continue
        if c == "\n" and heredocs:
            flush(i)
            i = _skip_heredocs(s, i + 1, heredocs, out, depth)
            heredocs = []
            start = i
            continue
        if c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                raise _Unbalanced
            i = j + 1
            continue
        if c == '"':
            i = _double_quoted(s, i + 1, out, depth)
            continue
        if c == "`":
            i = _backticks(s, i + 1, out, depth)
            continue
        if c in "$<>" and s.startswith("(", i + 1):
            i = _scan(s, i + 2, out, ")", depth + 1)
            continue
        if closing is not None and c == closing:
            flush(i)
            return i + 1
        if c == "(":
            flush(i)
            i = _scan(s, i + 1, out, ")", depth + 1)
            start = i
            continue
        if c == ")" and closing is None:
            raise _Unbalanced
        if c in ";\n" or (c == "|" and s[i - 1 : i] != ">") or _is_background(s, i):
            flush(i)
            i += 2 if s[i : i + 2] in ("&&", "||", "|&", ";;") else 1
            start = i
            continue
        if c == "#" and (i == 0 or s[i - 1] in " \t\n;&|("):
            j = s.find("\n", i)
            i = n if j < 0 else j
            continue
        i += 1
    if closing is not None:
        raise _Unbalanced
    flush(n)
    return n


_WORD_END = frozenset(" \t\n;&|()<>")


def _heredoc_word(s: str, i: int, heredocs: list[tuple[str, bool, bool]]) -> int:
    """Read the delimiter after ``<<`` (``<<-`` strips tabs; a quoted one turns expansion
    off); return the index after it."""
    strip = s.startswith("-", i)
    i += 1 if strip else 0
    while i < len(s) and s[i] in " \t":
        i += 1
    word: list[str] = []
    quoted = False
    while i < len(s) and s[i] not in _WORD_END:
        c = s[i]
        if c in "'\"":
            j = s.find(c, i + 1)
            if j < 0:
                raise _Unbalanced
            word.append(s[i + 1 : j])
            quoted, i = True, j + 1
        elif c == "\\":
            word.append(s[i + 1 : i + 2])
            quoted, i = True, i + 2
        else:
            word.append(c)
            i += 1
    if word:
        heredocs.append(("".join(word), quoted, strip))
    return i


def _skip_heredocs(
    s: str, i: int, heredocs: list[tuple[str, bool, bool]], out: list[str], depth: int
) -> int:
    """Skip the bodies of pending heredocs from ``i`` (the line after their command).
    A body is data, but an unquoted one still runs its ``$(…)`` and backticks: those are
    split into ``out``."""
    for delimiter, quoted, strip in heredocs:
        body_start = i
        while i < len(s):
            end = s.find("\n", i)
            line = s[i : len(s) if end < 0 else end]
            if (line.lstrip("\t") if strip else line) == delimiter:
                body, i = s[body_start:i], len(s) if end < 0 else end + 1
                break
            i = len(s) if end < 0 else end + 1
        else:
            body = s[body_start:]
        if not quoted:
            _substitutions(body, out, depth)
    return i


def _substitutions(text: str, out: list[str], depth: int) -> None:
    """Split the ``$(…)`` and backtick commands of ``text`` (an unquoted heredoc body)."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text.startswith("$(", i):
            i = _scan(text, i + 2, out, ")", depth + 1)
        elif text[i] == "`":
            i = _backticks(text, i + 1, out, depth)
        else:
            i += 1


def _is_background(s: str, i: int) -> bool:
    """``&`` that separates commands, not the one of a redirection (``2>&1``, ``&>``)."""
    if s[i] != "&":
        return False
    return s[i - 1 : i] not in (">", "<") and s[i + 1 : i + 2] != ">"


def _double_quoted(s: str, i: int, out: list[str], depth: int) -> int:
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif c == "`":
            i = _backticks(s, i + 1, out, depth)
        elif c == "$" and s.startswith("(", i + 1):
            i = _scan(s, i + 2, out, ")", depth + 1)
        else:
            i += 1
    raise _Unbalanced


def _backticks(s: str, i: int, out: list[str], depth: int) -> int:
    j = i
    while j < len(s) and s[j] != "`":
        j += 2 if s[j] == "\\" else 1
    if j >= len(s):
        raise _Unbalanced
    body = split_commands(s[i:j].replace("\\`", "`")) if depth < MAX_NESTING else None
    if body is None:
        raise _Unbalanced
    out.extend(body)
    return j + 1


def forms(segment: str, *, broad: bool, depth: int = 0) -> list[str]:
    """The strings a Bash rule is tried against for one subcommand (module docstring)."""
    raw = segment.strip()
    found: dict[str, None] = {raw: None}
    try:
        words = shlex.split(raw, comments=False, posix=True)
    except ValueError:
        return list(found)
    if not words:
        return list(found)
    if not broad:
        inner = _after_documented_wrapper(words)
        if inner is not None and inner:
            found[shlex.join(inner)] = None
        return list(found)
    for tail in _tails(words):
        for variant in (tail, _without_redirections(tail)):
            if not variant:
                continue
            found[" ".join(variant)] = None
            found[shlex.join(variant)] = None
            name = os.path.basename(variant[0])
            if name and name != variant[0]:
                found[" ".join([name, *variant[1:]])] = None
            if name in _SHELLS and "-c" in variant[1:] and depth < MAX_NESTING:
                body = variant[variant.index("-c") + 1 :]
                found.update(dict.fromkeys(_nested(body[:1], depth)))
            if name == "eval" and depth < MAX_NESTING:
                found.update(dict.fromkeys(_nested([" ".join(variant[1:])], depth)))
        if len(found) >= MAX_FORMS:
            break
    return list(found)[:MAX_FORMS]


def _nested(bodies: list[str], depth: int) -> list[str]:
    out: list[str] = []
    for body in bodies:
        for sub in split_commands(body) or [body]:
            out.extend(forms(sub, broad=True, depth=depth + 1))
    return out


def _tails(words: list[str]) -> list[list[str]]:
    """``words`` and, past assignments, keywords and wrappers, each later start: the
    command behind ``timeout -s KILL 30 rm -rf x`` is one of them (which one depends on the
    wrapper's options, so all are kept)."""
    tails = [words]
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        i += 1
    if i:
        tails.append(words[i:])
    if i < len(words) and (os.path.basename(words[i]) in BROAD_WRAPPERS):
        tails.extend(words[j:] for j in range(i + 1, min(len(words), i + 1 + MAX_FORMS // 4)))
    return tails


def _after_documented_wrapper(words: list[str]) -> list[str] | None:
    """The command behind one documented wrapper and its options, for allow rules: only
    ``timeout [-opts] DURATION``, ``nice [-n N]``, ``nohup``, ``time [-p]``, ``stdbuf -oL``…
    with option values that are plain; anything else is no wrapper (no allow)."""
    if words[0] not in DOCUMENTED_WRAPPERS:
        return None
    rest = words[1:]
    takes_value = {"timeout": {"-s", "--signal", "-k", "--kill-after"}, "nice": {"-n"}}.get(
        words[0], set()
    )
    while rest and rest[0].startswith("-") and rest[0] != "--":
        rest = rest[2:] if rest[0] in takes_value else rest[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if words[0] == "timeout":
        if not rest or not re.fullmatch(r"[0-9.]+[smhd]?", rest[0]):
            return None
        rest = rest[1:]
    return rest


def _without_redirections(words: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        m = _REDIRECT.match(word)
        if m:
            skip = m.group(1) == ""  # "> file": the target is the next word
            continue
        out.append(word)
    return out
