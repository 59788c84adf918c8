"""What a side-effecting service hands the gate: a :class:`Plan` of one call.

A service never acts on its own and never sees the gate. It checks and prepares, then
returns a plan; only the gate runs it (``await call.run(plan)``, ``charter/server/calls.py``),
always in this order:

1. approvals the charter's policy demands for the scopes the call needed;
2. the signed intent entry carrying :attr:`Plan.details`, with :attr:`Plan.intent_effects`
   committed in its transaction (they exist exactly when the intent does);
3. :attr:`Plan.act`, the side effect, given the committed intent entry;
4. on success, :attr:`Plan.outcome` (non-secret facts for the outcome entry) and
   :attr:`Plan.success_effects` (committed with the ``ok`` outcome entry, and only with it),
   both computed from the act's result.

A failure in step 1 or 2 means no intent and no act; a failure in step 3 or 4 records an
``error`` outcome and applies no success effect.

A :class:`LocalPlan` is for an effect that stays inside Charter until it is committed (a
token's row, a secret handed back, a message put in another agent's mailbox): nothing can
happen outside between its intent and its outcome, so the gate commits the intent, the
effect and the ``ok`` outcome in one transaction, one fsync (AUDIT-FORMAT.md, "Intent and
outcome"): all three exist or none does, and a failure is recorded as one ``call`` entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from charter.evidence.entries import Entry
    from charter.storage.ledger import Effect
    from charter.storage.ports import Tx

R = TypeVar("R")


def _no_effects(_result: Any) -> tuple[Effect, ...]:
    return ()


def _no_facts(_result: Any) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Plan(Generic[R]):
    """One side effect, as the gate will record, commit and perform it."""

    #: The side effect: called once, after the intent is durable, with the intent entry
    #: (e.g. its ``seq``, which a signed email cites); returns the call's result.
    act: Callable[[Entry], Awaitable[R]]
    #: Non-secret facts merged into the intent's argument summary (``details``).
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: State changes committed in the intent's transaction (e.g. an email's send-log row);
    #: one that raises refuses the intent, and nothing is done.
    intent_effects: tuple[Effect, ...] = ()
    #: The state changes to commit with the ``ok`` outcome entry, given the act's result
    #: (e.g. a token's row: without it the token does not verify).
    success_effects: Callable[[R], tuple[Effect, ...]] = _no_effects
    #: The non-secret facts the outcome entry carries, given the act's result (e.g. the
    #: SMTP reply, the issuer key's kid).
    outcome: Callable[[R], Mapping[str, Any]] = _no_facts


@dataclass(frozen=True, slots=True)
class LocalPlan(Generic[R]):
    """A side effect local to Charter: intent, effect and outcome commit together."""

    #: The effect, run on the store's thread inside the intent's transaction, given the unit
    #: of work and the intent entry (its ``seq`` is final); returns the call's result, which
    #: leaves Charter only once the transaction is durable. Raising refuses the whole unit:
    #: no intent, no effect, no outcome (the gate then records one ``call`` entry).
    apply: Callable[[Tx, Entry], R]
    #: Non-secret facts merged into the intent's argument summary (``details``).
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The non-secret facts the outcome entry carries, given the result.
    outcome: Callable[[R], Mapping[str, Any]] = _no_facts
