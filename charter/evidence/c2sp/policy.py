"""``c2sp.org/tlog-policy``: witness quorum policies and their check against a note."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from charter.evidence.c2sp.checkpoint import Checkpoint
from charter.evidence.c2sp.cosignature import parse_vkey
from charter.evidence.c2sp.note import NoteError, NoteVerifier, _parse_decimal, open_note


@dataclass(frozen=True)
class Group:
    """A tlog-policy group: satisfied when at least ``threshold`` members are.

    Attributes:
        name: Group name.
        threshold: Members needed, ``1 <= threshold <= len(members)``.
        members: Names of witnesses or earlier groups.
    """

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed ``c2sp.org/tlog-policy``.

    Attributes:
        logs: Log keys; a checkpoint needs a valid signature by one whose name is its origin.
        witnesses: Witness verifiers by policy name.
        groups: Groups by name.
        quorum: Name of the witness or group that must be satisfied, or ``None`` for none.
    """

    logs: tuple[NoteVerifier, ...]
    witnesses: Mapping[str, NoteVerifier]
    groups: Mapping[str, Group]
    quorum: str | None


def parse_policy(text: str) -> Policy:
    """Parse a tlog-policy file.

    Lines are ``log <vkey> [<url>]``, ``witness <name> <vkey> [<url>]``,
    ``group <name> <k|any|all> <member>...`` and exactly one ``quorum <name|none>``. Blank
    lines and ``#`` comments are ignored. Group members must be defined on earlier lines.

    Raises:
        NoteError: If the policy is malformed or ambiguous.
    """
    logs: list[NoteVerifier] = []
    witnesses: dict[str, NoteVerifier] = {}
    groups: dict[str, Group] = {}
    quorum: list[str] = []
    keys: set[tuple[str, bytes]] = set()

    def add_key(verifier: NoteVerifier) -> None:
        if (verifier.name, verifier.key_id) in keys:
            raise NoteError(f"key {verifier.name!r} listed twice")
        keys.add((verifier.name, verifier.key_id))

    def new_name(name: str) -> str:
        if name == "none" or name in witnesses or name in groups:
            raise NoteError(f"policy name {name!r} is reserved or defined twice")
        return name

    for number, raw in enumerate(text.split("\n"), start=1):
        words = raw.partition("#")[0].split()
        if not words:
            continue
        keyword, args = words[0], words[1:]
        if keyword == "log" and len(args) in (1, 2):
            log = parse_vkey(args[0])
            add_key(log)
            logs.append(log)
        elif keyword == "witness" and len(args) in (2, 3):
            witness = parse_vkey(args[1])
            add_key(witness)
            witnesses[new_name(args[0])] = witness
        elif keyword == "group" and len(args) >= 3:
            name, threshold_word, members = new_name(args[0]), args[1], tuple(args[2:])
            if len(set(members)) != len(members):
                raise NoteError(f"line {number}: group {name!r} repeats a member")
            for member in members:
                if member not in witnesses and member not in groups:
                    raise NoteError(f"line {number}: group member {member!r} is not defined")
            if threshold_word == "any":
                threshold = 1
            elif threshold_word == "all":
                threshold = len(members)
            else:
                threshold = _parse_decimal(threshold_word, "group threshold")
                if not 1 <= threshold <= len(members):
                    raise NoteError(f"line {number}: threshold out of range")
            groups[name] = Group(name, threshold, members)
        elif keyword == "quorum" and len(args) == 1:
            quorum.append(args[0])
        else:
            raise NoteError(f"line {number}: cannot parse policy line")
    if not logs:
        raise NoteError("policy lists no log")
    if len(quorum) != 1:
        raise NoteError("policy needs exactly one quorum line")
    if quorum[0] != "none" and quorum[0] not in witnesses and quorum[0] not in groups:
        raise NoteError(f"quorum {quorum[0]!r} is not defined")
    return Policy(tuple(logs), witnesses, groups, None if quorum[0] == "none" else quorum[0])


def verify_policy(note: str | bytes, policy: Policy) -> None:
    """Check that a signed checkpoint satisfies a policy.

    The checkpoint needs a valid signature by a policy log key named after its origin, and
    the quorum must be met by valid signatures of the policy's witnesses. Any invalid
    signature by a key in the policy rejects the note.

    Raises:
        NoteError: If the note is malformed, a signature fails, or the policy is not met.
    """
    text, verified = open_note(note, [*policy.logs, *policy.witnesses.values()])
    checkpoint = Checkpoint.parse(text)
    signed = {(s.name, s.key_id) for s in verified}
    if not any(
        log.name == checkpoint.origin and (log.name, log.key_id) in signed for log in policy.logs
    ):
        raise NoteError(f"no valid signature by the log {checkpoint.origin!r}")
    if policy.quorum is None:
        return

    memo: dict[str, bool] = {}

    def satisfied(name: str) -> bool:
        if name in policy.witnesses:
            witness = policy.witnesses[name]
            return (witness.name, witness.key_id) in signed
        if name not in memo:
            group = policy.groups.get(name)
            if group is None:
                raise NoteError(f"policy name {name!r} is not defined")
            memo[name] = False  # a cycle (impossible from parse_policy) counts as unmet
            memo[name] = sum(satisfied(m) for m in group.members) >= group.threshold
        return memo[name]

    if not satisfied(policy.quorum):
        raise NoteError(f"quorum {policy.quorum!r} is not satisfied")
