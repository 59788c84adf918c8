"""A C2SP witness (``c2sp.org/tlog-witness``): Charter's own small program, beside the server.

A witness keeps, for each log it is told to watch, the latest checkpoint it cosigned, and
cosigns a new one only if a consistency proof shows it extends that one. Logs submit every new
checkpoint; auditors require a quorum of witnesses' cosignatures (``c2sp.org/tlog-policy``), so
a log cannot show two auditors two different histories without the witnesses noticing.

- :mod:`charter.witness.core`: :class:`~charter.witness.core.Witness` (its folder, key and
  state, and the ``add-checkpoint`` decision);
- :mod:`charter.witness.http`: the HTTP app (``POST /add-checkpoint``) on starlette.

Only the CLI imports this package (``charter witness init|add-log|serve``).
"""
