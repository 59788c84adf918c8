"""A compact range (the right edge of an RFC 9162 Merkle tree): appends leaves and gives the
root in O(log n) memory, so a verifier can stream a ledger of any size."""

from __future__ import annotations

from collections.abc import Sequence

from charter.evidence import merkle


class CompactRange:
    """The right edge of a Merkle tree: the perfect nodes of ``[0, size)``, largest first.

    One hash per set bit of ``size`` is enough to append leaves and compute the root, so a
    verifier can stream millions of entries in O(log n) memory.

    Args:
        size: Number of leaves covered.
        hashes: The hashes of :func:`charter.evidence.merkle.perfect_nodes` ``(0, size)``, in order.

    Raises:
        ValueError: If the number or length of the hashes does not fit ``size``.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("a compact range needs one hash per set bit of its size")
        if any(len(h) != merkle.HASH_SIZE for h in hashes):
            raise ValueError("compact range hashes must be 32 bytes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append a leaf hash; return the perfect nodes it creates, bottom-up."""
        created = [(0, self.size, leaf)]
        value, level, index = leaf, 0, self.size
        while index & 1:
            value = merkle.node_hash(self.hashes.pop(), value)
            level, index = level + 1, index >> 1
            created.append((level, index, value))
        self.hashes.append(value)
        self.size += 1
        return created

    def root(self) -> bytes:
        """The root of the tree of ``size`` leaves."""
        if not self.hashes:
            return merkle.EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = merkle.node_hash(left, value)
        return value

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self.size, self.hashes)
