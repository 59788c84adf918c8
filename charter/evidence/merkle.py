"""RFC 6962 / RFC 9162 Merkle trees: hashing, roots, proofs and proof verification.

Pure functions, no I/O. The tree is stored as *perfect subtrees*: node ``(level, index)``
covers leaves ``[index * 2**level, (index + 1) * 2**level)`` and exists as soon as the tree
holds all of those leaves. Level 0 holds the leaf hashes themselves. A store that keeps every
such node answers roots and proofs of any tree size it has reached with O(log n) reads through
the ``get(level, index)`` callables taken below, and grows with :func:`append_nodes`.

The verifiers implement RFC 9162 §2.1.3.2 and §2.1.4.2 literally and raise :class:`ProofError`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "MemoryTree",
    "NodeGetter",
    "ProofError",
    "append_nodes",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "perfect_nodes",
    "root",
    "root_from_inclusion_proof",
    "root_from_leaves",
    "root_nodes",
    "split_point",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: Tree sizes and indices are unsigned 64-bit integers on the wire (RFC 9162, C2SP).
MAX_TREE_SIZE = 2**64 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``get(level, index)`` returns the stored hash of perfect node ``(level, index)``.
NodeGetter = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof, hash or tree size failed verification.

    Attributes:
        reason: A short, human-readable cause.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf: ``SHA-256(0x00 || data)``.

    Args:
        data: The leaf's bytes (for the ledger, the canonical entry bytes).

    Returns:
        The 32-byte leaf hash.
    """
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: ``SHA-256(0x01 || left || right)``.

    Args:
        left: Hash of the left child.
        right: Hash of the right child.

    Returns:
        The 32-byte node hash.
    """
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """Return the largest power of two strictly less than ``n``, the RFC 9162 split ``k``.

    Args:
        n: A tree size, at least 2.

    Returns:
        ``k`` with ``k < n <= 2k``.

    Raises:
        ValueError: If ``n < 2``.
    """
    if n < 2:
        raise ValueError("split point needs at least two leaves")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """Compute ``MTH`` of a list of leaf hashes by the RFC recursion (reference, O(n)).

    Args:
        leaf_hashes: The leaf hashes, in order.

    Returns:
        The tree root; :data:`EMPTY_ROOT` for no leaves.
    """

    def mth(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaf_hashes[start]
        mid = start + split_point(end - start)
        return node_hash(mth(start, mid), mth(mid, end))

    if not leaf_hashes:
        return EMPTY_ROOT
    return mth(0, len(leaf_hashes))


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TREE_SIZE


def _check_size(value: object, what: str) -> None:
    if not _is_size(value):
        raise ValueError(f"{what} out of range: {value}")


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _checked(get: NodeGetter) -> NodeGetter:
    def checked_get(level: int, index: int) -> bytes:
        value = get(level, index)
        if not _is_hash(value):
            raise ValueError(f"store returned a malformed hash for node ({level}, {index})")
        return value

    return checked_get


def append_nodes(size_before: int, leaf: bytes, get: NodeGetter) -> list[tuple[int, int, bytes]]:
    """List the perfect nodes created by appending one leaf hash to a tree.

    Args:
        size_before: The tree size ``n`` before the append; the new leaf gets index ``n``.
        leaf: The new leaf's *hash* (see :func:`leaf_hash`).
        get: Reads an existing perfect node of the tree of size ``n``.

    Returns:
        ``(level, index, hash)`` triples, bottom-up: the leaf at ``(0, n)`` and then every
        parent the leaf completes. The caller stores all of them.

    Raises:
        ValueError: If the size or the hash is malformed.
    """
    _check_size(size_before, "tree size")
    if size_before == MAX_TREE_SIZE:
        raise ValueError("tree is full")
    if len(leaf) != HASH_SIZE:
        raise ValueError("leaf hash must be 32 bytes")
    get = _checked(get)
    nodes = [(0, size_before, leaf)]
    level, index, value = 0, size_before, leaf
    while index & 1:
        value = node_hash(get(level, index - 1), value)
        level += 1
        index >>= 1
        nodes.append((level, index, value))
    return nodes


def perfect_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """Decompose an RFC 9162 subtree ``[start, end)`` into perfect nodes, left to right.

    The subtree must be one that the RFC recursion produces: ``start`` is a multiple of the
    smallest power of two that is at least ``end - start``. Any ``[0, n)`` qualifies.

    Args:
        start: First leaf index of the subtree.
        end: One past the last leaf index.

    Returns:
        ``(level, index)`` addresses, largest first, one per set bit of ``end - start``.

    Raises:
        ValueError: If the range is empty or not aligned as an RFC 9162 subtree.
    """
    _check_size(start, "start")
    _check_size(end, "end")
    width = end - start
    if width <= 0:
        raise ValueError("empty or reversed range")
    if start % (1 << (width - 1).bit_length()):
        raise ValueError(f"[{start}, {end}) is not an RFC 9162 subtree")
    addresses = []
    position = start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            addresses.append((level, position >> level))
            position += 1 << level
    return addresses


def subtree_hash(start: int, end: int, get: NodeGetter) -> bytes:
    """Compute ``MTH(D[start:end])`` from perfect nodes with at most log2(n)+1 reads.

    Args:
        start: First leaf index; see :func:`perfect_nodes` for the alignment rule.
        end: One past the last leaf index.
        get: Reads a stored perfect node.

    Returns:
        The 32-byte subtree hash.

    Raises:
        ValueError: If the range is not an RFC 9162 subtree or the store returns a bad hash.
    """
    get = _checked(get)
    addresses = perfect_nodes(start, end)
    # The RFC splits off the largest power of two first, so the right spine folds right-to-left.
    value = get(*addresses[-1])
    for level, index in reversed(addresses[:-1]):
        value = node_hash(get(level, index), value)
    return value


def root(size: int, get: NodeGetter) -> bytes:
    """Return the root hash of the tree of the given size.

    Args:
        size: Tree size; may be smaller than the store's current size.
        get: Reads a stored perfect node.

    Returns:
        The root; :data:`EMPTY_ROOT` for size 0.
    """
    _check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return subtree_hash(0, size, get)


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """Build the RFC 9162 §2.1.3.1 inclusion proof ``PATH(index, D[size])``.

    Args:
        index: Leaf index, ``0 <= index < size``.
        size: Tree size.
        get: Reads a stored perfect node.

    Returns:
        Sibling hashes from the leaf up to the root.

    Raises:
        ValueError: If ``index`` is not inside the tree.
    """
    _check_size(size, "tree size")
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside tree of size {size}")
    path = []
    start, end = 0, size
    # Descend from the root; only the first right sibling can be imperfect, so O(log n) reads.
    while end - start > 1:
        mid = start + split_point(end - start)
        if index < mid:
            path.append(subtree_hash(mid, end, get))
            end = mid
        else:
            path.append(subtree_hash(start, mid, get))
            start = mid
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, get: NodeGetter) -> list[bytes]:
    """Build the RFC 9162 §2.1.4.1 consistency proof ``PROOF(old_size, D[new_size])``.

    Args:
        old_size: Size of the earlier tree, ``0 <= old_size <= new_size``.
        new_size: Size of the later tree.
        get: Reads a stored perfect node.

    Returns:
        The proof hashes; empty when ``old_size`` is 0 or equals ``new_size``.

    Raises:
        ValueError: If the sizes are out of order or range.
    """
    _check_size(old_size, "old size")
    _check_size(new_size, "new size")
    if old_size > new_size:
        raise ValueError("old size exceeds new size")
    if old_size in (0, new_size):
        return []
    path = []
    start, end = 0, new_size
    # ``complete`` is SUBPROOF's flag b: still on the left edge, where the old root is known.
    complete = True
    while old_size != end:
        mid = start + split_point(end - start)
        if old_size <= mid:
            path.append(subtree_hash(mid, end, get))
            end = mid
        else:
            path.append(subtree_hash(start, mid, get))
            start = mid
            complete = False
    if not complete:
        path.append(subtree_hash(start, end, get))
    path.reverse()
    return path


def _addresses(compute: Callable[[NodeGetter], object]) -> list[tuple[int, int]]:
    # Which nodes an algorithm reads depends only on the sizes, never on the hash values.
    seen: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        if (level, index) not in seen:
            seen.append((level, index))
        return bytes(HASH_SIZE)

    compute(record)
    return seen


def root_nodes(size: int) -> list[tuple[int, int]]:
    """List the node addresses :func:`root` reads, so a store can fetch them in one query.

    Args:
        size: Tree size.

    Returns:
        Distinct ``(level, index)`` addresses, in the order they are read.
    """
    return _addresses(lambda get: root(size, get))


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """List the node addresses :func:`inclusion_proof` reads.

    Args:
        index: Leaf index.
        size: Tree size.

    Returns:
        Distinct ``(level, index)`` addresses, in the order they are read.
    """
    return _addresses(lambda get: inclusion_proof(index, size, get))


def consistency_proof_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """List the node addresses :func:`consistency_proof` reads.

    Args:
        old_size: Size of the earlier tree.
        new_size: Size of the later tree.

    Returns:
        Distinct ``(level, index)`` addresses, in the order they are read.
    """
    return _addresses(lambda get: consistency_proof(old_size, new_size, get))


def _check_hash(value: object, what: str) -> None:
    if not _is_hash(value):
        raise ProofError(f"{what} is not a 32-byte hash")


def _check_proof_size(value: object, what: str) -> None:
    if not _is_size(value):
        raise ProofError(f"{what} out of range")


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Recompute the root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4).

    Args:
        leaf_hash: Hash of the leaf (not its data).
        index: Claimed leaf index.
        size: Claimed tree size.
        proof: The audit path, leaf to root.

    Returns:
        The root the proof commits to. Compare it with a trusted root.

    Raises:
        ProofError: If the index is outside the tree or the proof has the wrong shape.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_proof_size(index, "index")
    _check_proof_size(size, "tree size")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        _check_hash(p, "proof node")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify an RFC 9162 §2.1.3.2 inclusion proof.

    Args:
        leaf_hash: Hash of the leaf (not its data).
        index: Claimed leaf index.
        size: Tree size of the trusted root.
        proof: The audit path, leaf to root.
        root: The trusted root hash of the tree of ``size`` leaves.

    Raises:
        ProofError: If the proof does not show the leaf at ``index`` under ``root``.
    """
    _check_hash(root, "root")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if not hmac.compare_digest(computed, root):
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Verify an RFC 9162 §2.1.4.2 consistency proof.

    Equal sizes need an empty proof and equal roots. Old size 0 needs an empty proof and, as
    the empty tree has exactly one root, ``old_root`` must be :data:`EMPTY_ROOT`.

    Args:
        old_size: Size of the earlier tree.
        new_size: Size of the later tree.
        old_root: Trusted root of the earlier tree.
        new_root: Root of the later tree.
        proof: The consistency proof.

    Raises:
        ProofError: If the later tree does not extend the earlier one.
    """
    _check_proof_size(old_size, "old size")
    _check_proof_size(new_size, "new size")
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for node in proof:
        _check_hash(node, "proof node")
    if new_size < old_size:
        raise ProofError(f"new size {new_size} is smaller than old size {old_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("proof between equal sizes must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise ProofError("roots of equal-size trees differ")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError("root of the empty tree is not the empty hash")
        return
    if old_size == 0:
        if proof:
            raise ProofError("proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("root of the empty tree is not the empty hash")
        return
    if not proof:
        raise ProofError("consistency proof is empty")

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError("consistency proof does not lead to the old root")
    if not hmac.compare_digest(sr, new_root):
        raise ProofError("consistency proof does not lead to the new root")


class MemoryTree:
    """An in-memory perfect-node store, for tests, exports and offline tools.

    Args:
        leaf_hashes: Leaf hashes to append initially.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0
        for value in leaf_hashes:
            self.append(value)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._size

    def get(self, level: int, index: int) -> bytes:
        """Return stored node ``(level, index)``; raises ``KeyError`` if it does not exist."""
        return self._nodes[(level, index)]

    def append(self, leaf: bytes) -> int:
        """Append a leaf hash and return its index."""
        for level, index, value in append_nodes(self._size, leaf, self.get):
            self._nodes[(level, index)] = value
        self._size += 1
        return self._size - 1

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the first ``size`` leaves (default: all)."""
        return root(self._size if size is None else self._bounded(size), self.get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        return inclusion_proof(index, self._size if size is None else self._bounded(size), self.get)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return the consistency proof from ``old_size`` to ``new_size`` (default: all)."""
        new = self._size if new_size is None else self._bounded(new_size)
        return consistency_proof(old_size, new, self.get)

    def _bounded(self, size: int) -> int:
        if not 0 <= size <= self._size:
            raise ValueError(f"tree has only {self._size} leaves")
        return size
