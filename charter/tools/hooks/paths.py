"""Path patterns of ``Read(…)`` and ``Edit(…)`` rules, as Claude Code documents them.

Claude Code says Read and Edit rules "follow the gitignore specification" with four kinds of
pattern:

- ``//path``: absolute from the filesystem root (``Read(//etc/**)`` is ``/etc/**``);
- ``~/path``: from the home folder;
- ``/path``: from the project root (Claude Code: the settings file's folder; here the
  project directory the caller passes, else the event's ``cwd``);
- ``path`` or ``./path``: from the current folder (the event's ``cwd``).

``*`` matches within one path segment, ``**`` across segments, ``?`` one character,
``[…]`` a class; a pattern that names a folder also covers everything below it (gitignore).

Ambiguities, and the reading taken (broad = deny and ask rules, narrow = allow rules):

- A pattern with no slash (``Read(*.env)``, ``Read(.env)``): gitignore matches it at any
  depth, while Claude Code's table shows ``<cwd>/*.env``. Broad: any depth below the base;
  narrow: directly in it.
- Case: macOS and Windows file systems ignore case, so ``.ENV`` opens ``.env``. Broad:
  case-insensitive; narrow: exact.
- An unknown base (no ``cwd`` for a relative pattern): broad matches the pattern anywhere in
  the path; narrow never matches.

Paths are normalized lexically (``a/../b`` → ``b``); symbolic links are not resolved (this
module reads no file system): a caller that wants that passes a resolved path.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PathPattern:
    """One compiled path specifier: its base and the glob below it."""

    base: str  # "root", "home", "project" or "cwd"
    #: ``../`` steps the pattern climbs above its base before its glob.
    up: int
    glob: str
    #: True when gitignore would match the glob at any depth (it has no inner slash).
    floating: bool

    def matches(self, path: str, *, cwd: str | None, project: str | None, home: str | None,
                broad: bool) -> bool:  # fmt: skip
        """Whether the absolute ``path`` is matched (see the module docstring)."""
        target = posixpath.normpath(
            path if path.startswith("/") else posixpath.join(cwd or "/", path)
        )
        base = {"root": "/", "home": home, "project": project or cwd, "cwd": cwd}[self.base]
        if base is None:
            if not broad:
                return False
            return (
                _regex(self.glob, floating=True, broad=True).match(target.lstrip("/")) is not None
            )
        base = posixpath.normpath(base)
        for _ in range(self.up):
            base = posixpath.dirname(base)
        if base == "/":
            rel = target.lstrip("/")
        else:
            prefix = base + "/"
            folded = (target.lower(), prefix.lower()) if broad else (target, prefix)
            if not folded[0].startswith(folded[1]):
                return False
            rel = target[len(prefix) :]
        if not rel:
            return False
        regex = _regex(self.glob, floating=self.floating and broad, broad=broad)
        parts = rel.split("/")
        # gitignore: a pattern matching a folder covers everything below it.
        return any(regex.fullmatch("/".join(parts[:k])) for k in range(1, len(parts) + 1))

    def covers_folder(self, folder: str, *, cwd: str | None, project: str | None,
                      home: str | None) -> bool:  # fmt: skip
        """Whether a search rooted at ``folder`` (Glob, Grep, LS) starts inside the pattern's
        literal folder (``./secrets/**`` → ``secrets``): deny and ask only. A search from an
        ancestor (the project root) is not caught: that would deny every search."""
        literal = re.split(r"[*?\[]", self.glob, maxsplit=1)[0].rpartition("/")[0]
        base = {"root": "/", "home": home, "project": project or cwd, "cwd": cwd}[self.base]
        if not literal or base is None or self.floating:
            return False
        base = posixpath.normpath(base)
        for _ in range(self.up):
            base = posixpath.dirname(base)
        root = posixpath.join(base, literal).lower()
        target = posixpath.normpath(posixpath.join(cwd or "/", folder)).lower()
        return target == root or target.startswith(root + "/")


class PathPatternError(ValueError):
    """The specifier is not a usable path pattern."""


def parse_path_pattern(spec: str) -> PathPattern:
    """Compile a Read/Edit specifier.

    Raises:
        PathPatternError: empty, or holds a NUL.
    """
    if not spec or "\x00" in spec:
        raise PathPatternError("a path pattern must be non-empty text")
    if spec.startswith("//"):
        base, rest = "root", spec[2:]
    elif spec == "~" or spec.startswith("~/"):
        base, rest = "home", spec[2:]
    elif spec.startswith("/"):
        base, rest = "project", spec[1:]
    elif spec.startswith("./"):
        base, rest = "cwd", spec[2:]
    else:
        base, rest = "cwd", spec
    anchored = spec.startswith(("/", "./", "~")) or "/" in rest.rstrip("/")
    up = 0
    while rest.startswith("../"):
        up, rest = up + 1, rest[3:]
    rest = posixpath.normpath(rest) + ("/" if rest.endswith("/") else "") if rest else "**"
    if rest.startswith("../") or rest == "..":
        raise PathPatternError("a path pattern may climb with ../ only at its start")
    if rest.endswith("/"):
        rest += "**"  # a folder: everything below it
    try:
        _regex(rest, floating=False, broad=False)
    except re.error:
        raise PathPatternError("a path pattern has an unbalanced [ ] class") from None
    return PathPattern(base=base, up=up, glob=rest, floating=not anchored)


_CACHE: dict[tuple[str, bool, bool], re.Pattern[str]] = {}


def _regex(glob: str, *, floating: bool, broad: bool) -> re.Pattern[str]:
    key = (glob, floating, broad)
    if key not in _CACHE:
        body = _translate(glob)
        if floating:
            body = "(?:.*/)?" + body
        _CACHE[key] = re.compile(body, re.DOTALL | (re.IGNORECASE if broad else 0))
    return _CACHE[key]


def _translate(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i):
            at_start = i == 0 or glob[i - 1] == "/"
            if at_start and glob.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            else:
                out.append(".*")
                i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = glob.find("]", i + 2)
            if j < 0:
                raise re.error("unbalanced class")
            inner = glob[i + 1 : j]
            negate = inner[:1] in ("!", "^")
            inner = inner[1:] if negate else inner
            out.append("[" + ("^" if negate else "") + inner.replace("\\", "\\\\") + "]")
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)
