"""RFC 9162 Merkle tree hashing and proofs (the Certificate Transparency v2 tree).

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``, the
tree split at the largest power of two smaller than its size. Proof generation
follows the PATH and SUBPROOF definitions of RFC 9162 section 2.1.3.1 and 2.1.4.1,
and verification the algorithms of sections 2.1.3.2 and 2.1.4.2, step by step, so
that any CT-compatible verifier accepts these proofs.

:class:`CompactRange` keeps only the right edge of the tree, so a writer or verifier
can follow a log of any length in O(log n) memory and amortised O(1) hashing per
entry; the proof functions still take every leaf hash, and are meant to be called
only when a proof is asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


class CompactRange:
    """The tree over leaves ``0..size-1`` reduced to its right edge (RFC 9162's tree,
    as "compact ranges" in Certificate Transparency tooling).

    A tree of size n is the perfect subtrees given by the set bits of n, largest
    (leftmost) first; only their roots are kept, so there are ``popcount(n)`` hashes.
    Appending a leaf pushes it and merges the two rightmost subtrees while they have
    equal size (the trailing set bits of the old size), which is amortised one node
    hash per leaf. The root of the current size is those subtree roots folded right
    to left: RFC 9162 splits a tree at the largest power of two below its size, and
    that left part is exactly the leftmost perfect subtree, so the fold computes
    ``root(leaves)`` without the leaves.
    """

    __slots__ = ("_size", "_subtrees")

    def __init__(self) -> None:
        self._size = 0
        self._subtrees: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    @property
    def subtrees(self) -> tuple[bytes, ...]:
        """The roots of the perfect subtrees, largest first: all a resumed range needs."""
        return tuple(self._subtrees)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash; hashes once per trailing set bit of the old size."""
        subtrees = self._subtrees
        subtrees.append(leaf)
        n = self._size
        while n & 1:
            right = subtrees.pop()
            subtrees[-1] = node_hash(subtrees[-1], right)
            n >>= 1
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the leaves added so far, in ``popcount(size) - 1`` node hashes."""
        if not self._subtrees:
            return EMPTY_ROOT
        top = self._subtrees[-1]
        for left in reversed(self._subtrees[:-1]):
            top = node_hash(left, top)
        return top


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) over leaf hashes."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"index {index} is outside a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) over leaf hashes."""
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"old size {old_size} does not fit a tree of size {len(leaves)}")
    return _subproof(old_size, leaves, complete=True)


def _subproof(m: int, leaves: Sequence[bytes], *, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete=complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], complete=False), root(leaves[:k])]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if old_size <= 0 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a full subtree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
