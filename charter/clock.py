"""Time, injected: production code asks a ``Clock``; tests hand in a ``FrozenClock``."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    """Source of the current time (always UTC, timezone-aware)."""

    def now(self) -> dt.datetime:
        """Return the current time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """Return the current UTC time."""
        return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    """Format ``moment`` as RFC 3339 UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    u = moment.astimezone(dt.UTC)
    # NOTE: formatted by hand: strftime costs more than the rest of a ledger timestamp.
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond // 1000:03d}Z"
    )


def parse_rfc3339(text: str) -> dt.datetime:
    """Parse a timestamp written by :func:`rfc3339` (or any ISO 8601 UTC form)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone")
    return value.astimezone(dt.UTC)
