"""RFC 6962/9162 Merkle trees: CT known answers, a reference cross-check and proof mutations.

The vectors are those of transparency-dev/merkle (``testonly/constants.go`` and
``proof/verify_test.go``, which number leaves from 1: its inclusion case (6, 8) is index 5
here). Every other expectation comes from the RFC recursion, written out again below
independently of ``charter.evidence.merkle``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.evidence import merkle
from charter.evidence.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ProofError,
    append_nodes,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    perfect_nodes,
    root,
    root_from_inclusion_proof,
    root_from_leaves,
    root_nodes,
    split_point,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_LEAF_HASHES = [leaf_hash(d) for d in CT_LEAVES]
CT_TREE = MemoryTree(CT_LEAF_HASHES)

CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

# (index, size, proof): transparency-dev's (1,1), (1,8), (6,8), (3,3), (2,5), 0-based here.
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# A larger tree for the exhaustive and property tests; proofs for any size <= 300 come from it.
BIG_LEAF_HASHES = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
BIG_TREE = MemoryTree(BIG_LEAF_HASHES)
GARBAGE = hashlib.sha256(b"garbage").digest()
RANDOM_ROOT = hashlib.sha256(b"random root").digest()


# --- the RFC 9162 §2.1 definitions, written independently of charter.evidence.merkle ------


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = ref_k(n)
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if m in (0, len(leaves)):
        return []
    return ref_subproof(m, leaves, True)


# --- mutations, after transparency-dev's verify_test.go -------------------------------------


def flip(value: bytes, bit: int) -> bytes:
    data = bytearray(value)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def proof_corruptions(
    proof: list[bytes], root_hash: bytes, bits: Sequence[int]
) -> list[tuple[str, list[bytes]]]:
    """Corrupted variants of a proof: each must be rejected."""
    out = [
        ("garbage appended", [*proof, GARBAGE]),
        ("garbage prepended", [GARBAGE, *proof]),
        ("root appended", [*proof, root_hash]),
        ("root prepended", [root_hash, *proof]),
        ("empty hash appended", [*proof, EMPTY_ROOT]),
        ("short node appended", [*proof, b"\x00"]),
    ]
    if proof:
        out.append(("truncated", proof[:-1]))
        out.append(("first node dropped", proof[1:]))
        out.append(("node inserted", [proof[0], GARBAGE, *proof[1:]]))
        out.append(("node duplicated", [proof[0], *proof]))
        out.append(("short node", [proof[0][:31], *proof[1:]]))
        out.append(("reversed", proof[::-1]) if len(set(proof)) > 1 else ("empty", []))
    for position, node in enumerate(proof):
        for bit in bits:
            out.append(
                (
                    f"bit {bit} of node {position}",
                    [*proof[:position], flip(node, bit), *proof[position + 1 :]],
                )
            )
    return out


def rejects(verify: Callable[..., None], *args: object) -> bool:
    try:
        verify(*args)
    except ProofError:
        return True
    return False


def inclusion_mutations(
    index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes, bits: Sequence[int]
) -> list[tuple[str, bytes, int, int, list[bytes], bytes]]:
    """(label, leaf, index, size, proof, root) variants that must all fail."""
    out = [
        ("index - 1", leaf, index - 1, size, proof, root_hash),
        ("index + 1", leaf, index + 1, size, proof, root_hash),
        ("index ^ 2", leaf, index ^ 2, size, proof, root_hash),
        ("size * 2", leaf, index, size * 2, proof, root_hash),
        ("size // 2", leaf, index, size // 2, proof, root_hash),
        ("wrong leaf", leaf_hash(b"WrongLeaf"), index, size, proof, root_hash),
        ("empty root", leaf, index, size, proof, EMPTY_ROOT),
        ("random root", leaf, index, size, proof, RANDOM_ROOT),
        ("short root", leaf, index, size, proof, root_hash[:31]),
        ("size 2**64", leaf, index, 2**64, proof, root_hash),
    ]
    out.extend(
        (label, leaf, index, size, bad, root_hash)
        for label, bad in proof_corruptions(proof, root_hash, bits)
    )
    return out


def assert_inclusion_rejected(
    index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes, bits: Sequence[int]
) -> int:
    mutations = inclusion_mutations(index, size, proof, root_hash, leaf, bits)
    accepted = [label for label, *args in mutations if not rejects(verify_inclusion, *args)]
    assert accepted == [], f"inclusion mutations accepted for ({index}, {size})"
    return len(mutations)


def consistency_mutations(
    m: int, n: int, proof: list[bytes], old_root: bytes, new_root: bytes, bits: Sequence[int]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """(label, size1, size2, root1, root2, proof) variants that must all fail."""
    out: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = []
    if m == 0:
        # Any tree extends the empty tree, so only the proof and the old root can be wrong.
        out.append(("non-empty proof from 0", 0, n, old_root, new_root, [GARBAGE]))
        out.append(("empty proof node from 0", 0, n, old_root, new_root, [EMPTY_ROOT]))
        out.append(("wrong empty root", 0, n, RANDOM_ROOT, new_root, proof))
        out.append(("old root is the new root", 0, n, RANDOM_ROOT, RANDOM_ROOT, proof))
        if n:
            out.append(("time travel to 0", n, 0, new_root, old_root, proof))
        else:
            out.append(("empty tree, random new root", 0, 0, old_root, RANDOM_ROOT, proof))
        return out
    out += [
        ("size1 - 1", m - 1, n, old_root, new_root, proof),
        ("size1 + 1", m + 1, n, old_root, new_root, proof),
        ("size1 ^ 2", m ^ 2, n, old_root, new_root, proof),
        ("size2 * 2", m, n * 2, old_root, new_root, proof),
        ("size2 // 2", m, n // 2, old_root, new_root, proof),
        ("old root empty", m, n, EMPTY_ROOT, new_root, proof),
        ("new root empty", m, n, old_root, EMPTY_ROOT, proof),
        ("old root random", m, n, RANDOM_ROOT, new_root, proof),
        ("new root random", m, n, old_root, RANDOM_ROOT, proof),
        ("short old root", m, n, old_root[:31], new_root, proof),
    ]
    if m != n:
        out += [
            ("swapped roots", m, n, new_root, old_root, proof),
            ("swapped sizes (time travel)", n, m, old_root, new_root, proof),
            ("swapped sizes and roots", n, m, new_root, old_root, proof),
            ("empty proof", m, n, old_root, new_root, []),
        ]
    out.extend(
        (label, m, n, old_root, new_root, bad)
        for label, bad in proof_corruptions(proof, new_root, bits)
    )
    return out


def assert_consistency_rejected(
    m: int, n: int, proof: list[bytes], old_root: bytes, new_root: bytes, bits: Sequence[int]
) -> int:
    mutations = consistency_mutations(m, n, proof, old_root, new_root, bits)
    accepted = [label for label, *args in mutations if not rejects(verify_consistency, *args)]
    assert accepted == [], f"consistency mutations accepted for ({m}, {n})"
    return len(mutations)


# --- hashing and roots -----------------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert leaf_hash(b"").hex() == CT_ROOTS[1]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    # Domain separation: a leaf of two hashes is not the node over them.
    assert leaf_hash(b"L" * 32 + b"R" * 32) != node_hash(b"L" * 32, b"R" * 32)


@pytest.mark.parametrize(
    ("n", "k"), [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (2**40 + 1, 2**40), (2**63, 2**62)]
)
def test_split_point_is_largest_power_of_two_strictly_below(n: int, k: int) -> None:
    assert split_point(n) == k
    assert split_point(n) == ref_k(n)


@pytest.mark.parametrize("n", [-1, 0, 1])
def test_split_point_rejects_tiny_trees(n: int) -> None:
    with pytest.raises(ValueError, match="two leaves"):
        split_point(n)


@pytest.mark.parametrize("size", range(9))
def test_ct_known_roots(size: int) -> None:
    expected = bytes.fromhex(CT_ROOTS[size])
    assert root_from_leaves(CT_LEAF_HASHES[:size]) == expected
    assert ref_mth(CT_LEAF_HASHES[:size]) == expected
    assert root(size, CT_TREE.get) == expected
    assert CT_TREE.root(size) == expected


def test_roots_match_reference_up_to_300() -> None:
    for size in range(301):
        expected = root_from_leaves(BIG_LEAF_HASHES[:size])
        assert BIG_TREE.root(size) == expected, size
    for size in (1, 2, 3, 5, 17, 64, 100, 255, 256, 257, 300):
        assert root_from_leaves(BIG_LEAF_HASHES[:size]) == ref_mth(BIG_LEAF_HASHES[:size])


def test_midpoint_split_gives_a_different_root() -> None:
    # The interoperability bug the RFC split rule prevents: a balanced split is a different tree.
    leaves = CT_LEAF_HASHES[:6]
    midpoint = node_hash(
        node_hash(leaves[0], node_hash(leaves[1], leaves[2])),
        node_hash(leaves[3], node_hash(leaves[4], leaves[5])),
    )
    assert midpoint != root_from_leaves(leaves)


# --- incremental storage ---------------------------------------------------------------------


def test_append_nodes_builds_every_perfect_node() -> None:
    store: dict[tuple[int, int], bytes] = {}
    leaves = BIG_LEAF_HASHES[:130]
    for n, value in enumerate(leaves):
        created = append_nodes(n, value, lambda level, index: store[(level, index)])
        # One node for the leaf plus one per parent it completes (the trailing ones of n).
        trailing_ones = (n ^ (n + 1)).bit_length() - 1
        assert len(created) == trailing_ones + 1
        assert created[0] == (0, n, value)
        for level, index, digest in created:
            assert (level, index) not in store
            store[(level, index)] = digest
    for (level, index), digest in store.items():
        width = 1 << level
        assert digest == ref_mth(leaves[index * width : (index + 1) * width])
    expected_nodes = sum(len(leaves) >> level for level in range(len(leaves).bit_length()))
    assert len(store) == expected_nodes


def test_append_nodes_validates_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        append_nodes(0, b"short", CT_TREE.get)
    with pytest.raises(ValueError, match="out of range"):
        append_nodes(-1, GARBAGE, CT_TREE.get)
    with pytest.raises(ValueError, match="full"):
        append_nodes(2**64 - 1, GARBAGE, CT_TREE.get)


def test_store_returning_a_malformed_hash_is_detected() -> None:
    with pytest.raises(ValueError, match="malformed hash"):
        root(3, lambda level, index: b"\x00" * 31)
    with pytest.raises(ValueError, match="malformed hash"):
        append_nodes(1, GARBAGE, lambda level, index: b"")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 1, [(0, 0)]),
        (0, 7, [(2, 0), (1, 2), (0, 6)]),
        (4, 7, [(1, 2), (0, 6)]),
        (8, 13, [(2, 2), (0, 12)]),
        (6, 7, [(0, 6)]),
        (0, 2**40, [(40, 0)]),
    ],
)
def test_perfect_nodes_decomposition(start: int, end: int, expected: list[tuple[int, int]]) -> None:
    assert perfect_nodes(start, end) == expected


@pytest.mark.parametrize(
    ("start", "end"), [(0, 0), (3, 3), (5, 4), (2, 5), (1, 3), (4, 9), (-1, 1)]
)
def test_subtree_hash_rejects_ranges_the_recursion_never_produces(start: int, end: int) -> None:
    with pytest.raises(ValueError, match=r"range|subtree"):
        subtree_hash(start, end, BIG_TREE.get)


def test_subtree_hash_matches_reference_for_every_recursion_range() -> None:
    def ranges(start: int, end: int) -> list[tuple[int, int]]:
        if end - start == 1:
            return [(start, end)]
        mid = start + ref_k(end - start)
        return [(start, end), *ranges(start, mid), *ranges(mid, end)]

    for n in range(1, 70):
        for start, end in ranges(0, n):
            expected = ref_mth(BIG_LEAF_HASHES[start:end])
            assert subtree_hash(start, end, BIG_TREE.get) == expected


def test_memory_tree_bounds() -> None:
    tree = MemoryTree(CT_LEAF_HASHES[:3])
    assert tree.size == 3
    assert tree.append(CT_LEAF_HASHES[3]) == 3
    assert tree.root() == bytes.fromhex(CT_ROOTS[4])
    with pytest.raises(ValueError, match="only 4 leaves"):
        tree.root(5)
    with pytest.raises(ValueError, match="only 4 leaves"):
        tree.consistency_proof(1, 5)
    with pytest.raises(KeyError):
        tree.get(2, 1)
    assert tree.inclusion_proof(3) == ref_path(3, CT_LEAF_HASHES[:4])
    assert tree.consistency_proof(2) == ref_proof(2, CT_LEAF_HASHES[:4])


# --- proof generation --------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof_hex"), CT_INCLUSION)
def test_ct_inclusion_vectors(index: int, size: int, proof_hex: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof_hex]
    assert inclusion_proof(index, size, CT_TREE.get) == expected
    assert ref_path(index, CT_LEAF_HASHES[:size]) == expected
    root_hash = bytes.fromhex(CT_ROOTS[size])
    verify_inclusion(CT_LEAF_HASHES[index], index, size, expected, root_hash)
    assert root_from_inclusion_proof(CT_LEAF_HASHES[index], index, size, expected) == root_hash


@pytest.mark.parametrize(("old", "new", "proof_hex"), CT_CONSISTENCY)
def test_ct_consistency_vectors(old: int, new: int, proof_hex: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof_hex]
    assert consistency_proof(old, new, CT_TREE.get) == expected
    assert ref_proof(old, CT_LEAF_HASHES[:new]) == expected
    verify_consistency(
        old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), expected
    )


def test_every_inclusion_proof_up_to_64_matches_reference_and_verifies() -> None:
    for size in range(1, 65):
        leaves = BIG_LEAF_HASHES[:size]
        root_hash = BIG_TREE.root(size)
        for index in range(size):
            proof = inclusion_proof(index, size, BIG_TREE.get)
            assert proof == ref_path(index, leaves), (index, size)
            verify_inclusion(leaves[index], index, size, proof, root_hash)


def test_every_consistency_proof_up_to_64_matches_reference_and_verifies() -> None:
    roots = [BIG_TREE.root(size) for size in range(65)]
    for new in range(65):
        leaves = BIG_LEAF_HASHES[:new]
        for old in range(new + 1):
            proof = consistency_proof(old, new, BIG_TREE.get)
            assert proof == ref_proof(old, leaves), (old, new)
            verify_consistency(old, new, roots[old], roots[new], proof)


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0), (0, -1), (0, 2**64)])
def test_inclusion_proof_rejects_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(ValueError, match=r"outside|range"):
        inclusion_proof(index, size, BIG_TREE.get)


@pytest.mark.parametrize(("old", "new"), [(5, 4), (-1, 4), (0, 2**64)])
def test_consistency_proof_rejects_bad_arguments(old: int, new: int) -> None:
    with pytest.raises(ValueError, match=r"exceeds|range"):
        consistency_proof(old, new, BIG_TREE.get)


# --- O(log n) reads ----------------------------------------------------------------------------


class _CountingStore:
    """Answers any address with a fixed hash and counts reads: only the access pattern matters."""

    def __init__(self) -> None:
        self.reads = 0

    def get(self, level: int, index: int) -> bytes:
        self.reads += 1
        return hashlib.sha256(f"{level}/{index}".encode()).digest()


def _reads(call: Callable[[merkle.NodeGetter], object]) -> int:
    store = _CountingStore()
    call(store.get)
    return store.reads


def test_reads_are_logarithmic_in_the_tree_size() -> None:
    rng = random.Random(9162)
    sizes = [1, 2, 3, 2**20 - 1, 2**20, 2**20 + 1, 2**63 - 1, 2**64 - 1]
    sizes += [rng.randrange(1, 2**64) for _ in range(200)]
    for size in sizes:
        bits = size.bit_length()
        assert _reads(partial(root, size)) <= bits
        for index in (0, size - 1, rng.randrange(size), size // 2):
            reads = _reads(partial(inclusion_proof, index, size))
            assert reads <= 2 * bits, (index, size, reads)
        for old in (1, size - 1, rng.randrange(size + 1), size // 2):
            reads = _reads(partial(consistency_proof, old, size))
            assert reads <= 2 * bits + 1, (old, size, reads)


def test_node_address_helpers_list_exactly_what_is_read() -> None:
    def restricted(allowed: list[tuple[int, int]]) -> merkle.NodeGetter:
        def get(level: int, index: int) -> bytes:
            assert (level, index) in allowed
            return BIG_TREE.get(level, index)

        return get

    rng = random.Random(6962)
    for _ in range(200):
        size = rng.randrange(1, 301)
        index = rng.randrange(size)
        old = rng.randrange(size + 1)
        assert root(size, restricted(root_nodes(size))) == BIG_TREE.root(size)
        assert inclusion_proof(
            index, size, restricted(inclusion_proof_nodes(index, size))
        ) == BIG_TREE.inclusion_proof(index, size)
        assert consistency_proof(
            old, size, restricted(consistency_proof_nodes(old, size))
        ) == BIG_TREE.consistency_proof(old, size)
    assert sorted(root_nodes(7)) == [(0, 6), (1, 2), (2, 0)]
    assert root_nodes(0) == []


# --- verifier: mutations must be rejected ------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof_hex"), CT_INCLUSION)
def test_ct_inclusion_mutations_rejected(index: int, size: int, proof_hex: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in proof_hex]
    root_hash = bytes.fromhex(CT_ROOTS[size])
    assert (
        assert_inclusion_rejected(index, size, proof, root_hash, CT_LEAF_HASHES[index], range(256))
        > 10
    )


@pytest.mark.parametrize(("old", "new", "proof_hex"), CT_CONSISTENCY)
def test_ct_consistency_mutations_rejected(old: int, new: int, proof_hex: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in proof_hex]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert assert_consistency_rejected(old, new, proof, old_root, new_root, range(256)) > 10


def test_inclusion_mutations_rejected_for_all_small_trees() -> None:
    bits = (0, 7, 8, 129, 255)
    for size in range(1, 18):
        root_hash = BIG_TREE.root(size)
        for index in range(size):
            proof = BIG_TREE.inclusion_proof(index, size)
            assert_inclusion_rejected(index, size, proof, root_hash, BIG_LEAF_HASHES[index], bits)


def test_consistency_mutations_rejected_for_all_small_trees() -> None:
    bits = (0, 7, 8, 129, 255)
    for new in range(18):
        for old in range(new + 1):
            proof = BIG_TREE.consistency_proof(old, new)
            assert_consistency_rejected(
                old, new, proof, BIG_TREE.root(old), BIG_TREE.root(new), bits
            )


def test_consistency_edge_cases() -> None:
    r3 = BIG_TREE.root(3)
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 3, EMPTY_ROOT, r3, [])
    verify_consistency(3, 3, r3, r3, [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [GARBAGE])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(0, 3, EMPTY_ROOT, r3, [GARBAGE])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(3, 3, r3, r3, [r3])
    with pytest.raises(ProofError, match="empty hash"):
        verify_consistency(0, 0, r3, r3, [])
    with pytest.raises(ProofError, match="differ"):
        verify_consistency(3, 3, r3, BIG_TREE.root(4), [])
    with pytest.raises(ProofError, match="smaller"):
        verify_consistency(4, 3, BIG_TREE.root(4), r3, BIG_TREE.consistency_proof(3, 4))
    with pytest.raises(ProofError, match="is empty"):
        verify_consistency(3, 4, r3, BIG_TREE.root(4), [])


def test_verifiers_reject_malformed_arguments() -> None:
    leaf = BIG_LEAF_HASHES[0]
    proof = BIG_TREE.inclusion_proof(0, 4)
    r4 = BIG_TREE.root(4)
    bad_calls: list[Callable[[], None]] = [
        lambda: verify_inclusion(leaf[:31], 0, 4, proof, r4),
        lambda: verify_inclusion(leaf, 0, 4, proof, r4 + b"\x00"),
        lambda: verify_inclusion(leaf, 0, 4, [*proof[:-1], bytearray(proof[-1])], r4),  # type: ignore[list-item]
        lambda: verify_inclusion(leaf, -1, 4, proof, r4),
        lambda: verify_inclusion(leaf, 0, -4, proof, r4),
        lambda: verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT),
        lambda: verify_inclusion(leaf, 0, 4.0, proof, r4),  # type: ignore[arg-type]
        lambda: verify_inclusion(leaf, False, 4, proof, r4),
        lambda: verify_consistency(-1, 4, r4, r4, []),
        lambda: verify_consistency(2, 2**64, BIG_TREE.root(2), r4, proof),
        lambda: verify_consistency(2, 4, BIG_TREE.root(2), r4, [b"x" * 33]),
        lambda: verify_consistency(2, 4, BIG_TREE.root(2)[:16], r4, proof[2:]),
    ]
    for call in bad_calls:
        with pytest.raises(ProofError):
            call()


def test_proof_error_carries_a_reason() -> None:
    with pytest.raises(ProofError) as caught:
        verify_inclusion(GARBAGE, 0, 1, [], RANDOM_ROOT)
    assert caught.value.reason == "inclusion proof does not lead to the root"
    assert isinstance(caught.value, ValueError)


# --- property test ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_proofs_verify_and_one_byte_mutations_fail(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 300), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old")
    root_hash = BIG_TREE.root(size)
    old_root = BIG_TREE.root(old)
    assert root_hash == root_from_leaves(BIG_LEAF_HASHES[:size])

    proof = BIG_TREE.inclusion_proof(index, size)
    verify_inclusion(BIG_LEAF_HASHES[index], index, size, proof, root_hash)
    # One target among the proof nodes, the leaf and the root; one byte of it changed.
    target = data.draw(st.integers(0, len(proof) + 1), label="inclusion target")
    byte = data.draw(st.integers(0, 31), label="byte")
    delta = data.draw(st.integers(1, 255), label="delta")

    def mutate(value: bytes) -> bytes:
        return value[:byte] + bytes([value[byte] ^ delta]) + value[byte + 1 :]

    leaf, mutated_proof, mutated_root = BIG_LEAF_HASHES[index], list(proof), root_hash
    if target < len(proof):
        mutated_proof[target] = mutate(proof[target])
    elif target == len(proof):
        leaf = mutate(leaf)
    else:
        mutated_root = mutate(root_hash)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, mutated_proof, mutated_root)

    cproof = BIG_TREE.consistency_proof(old, size)
    verify_consistency(old, size, old_root, root_hash, cproof)
    target = data.draw(st.integers(0, len(cproof) + 1), label="consistency target")
    m_old, m_new, m_proof = old_root, root_hash, list(cproof)
    if target < len(cproof):
        m_proof[target] = mutate(cproof[target])
    elif target == len(cproof) or old == 0:
        m_old = mutate(old_root)
    else:
        m_new = mutate(root_hash)
    with pytest.raises(ProofError):
        verify_consistency(old, size, m_old, m_new, m_proof)


def test_size_is_bound_only_through_the_proof_shape() -> None:
    # Why "size + 1" is not in the mutation list: RFC 9162 verification binds the tree size
    # only through the proof's shape, so the size must come from the same signed checkpoint
    # as the root. Leaf 0 of 3 and leaf 0 of 4 walk the same path.
    proof = BIG_TREE.inclusion_proof(0, 3)
    verify_inclusion(BIG_LEAF_HASHES[0], 0, 3, proof, BIG_TREE.root(3))
    verify_inclusion(BIG_LEAF_HASHES[0], 0, 4, proof, BIG_TREE.root(3))
