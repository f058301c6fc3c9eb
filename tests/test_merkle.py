"""RFC 9162 tree hashing and proofs against published vectors (tests/data, with source)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predlog.audit import _merkle as m

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc9162_vectors.json").read_text())
LEAVES = [m.leaf_hash(bytes.fromhex(h)) for h in VECTORS["leaves_hex"]]
b64 = base64.b64decode


class TestPublishedVectors:
    def test_roots_of_every_size(self):
        """MTH of the first n reference leaves equals the published root, n = 0..8."""
        for n, expected in enumerate(VECTORS["roots_hex"]):
            assert m.root(LEAVES[:n]).hex() == expected

    def test_inclusion_proofs(self):
        """Our proofs equal the published ones, and verify against the published roots."""
        for case in VECTORS["inclusion"]:
            index, size = case["leafIdx"], case["treeSize"]
            proof = [b64(p) for p in case["proof"]]
            assert m.leaf_hash(bytes.fromhex(VECTORS["leaves_hex"][index])) == b64(case["leafHash"])
            assert m.inclusion_proof(index, LEAVES[:size]) == proof
            assert m.verify_inclusion(index, size, b64(case["leafHash"]), proof, b64(case["root"]))

    def test_consistency_proofs(self):
        """Our consistency proofs equal the published ones and verify."""
        for case in VECTORS["consistency"]:
            old, new = case["size1"], case["size2"]
            proof = [b64(p) for p in case["proof"]]
            assert m.consistency_proof(old, LEAVES[:new]) == proof
            assert m.verify_consistency(old, new, b64(case["root1"]), b64(case["root2"]), proof)

    def test_modified_proofs_fail(self):
        """Flipping any bit of any published proof element makes verification fail."""
        for case in VECTORS["inclusion"]:
            proof = [b64(p) for p in case["proof"]]
            for i in range(len(proof)):
                bad = [bytearray(p) for p in proof]
                bad[i][3] ^= 0x10
                assert not m.verify_inclusion(
                    case["leafIdx"],
                    case["treeSize"],
                    b64(case["leafHash"]),
                    [bytes(b) for b in bad],
                    b64(case["root"]),
                )
        for case in VECTORS["consistency"]:
            proof = [b64(p) for p in case["proof"]]
            for i in range(len(proof)):
                bad = [bytearray(p) for p in proof]
                bad[i][3] ^= 0x10
                assert not m.verify_consistency(
                    case["size1"],
                    case["size2"],
                    b64(case["root1"]),
                    b64(case["root2"]),
                    [bytes(b) for b in bad],
                )


class TestProperties:
    @given(data=st.lists(st.binary(max_size=8), min_size=1, max_size=40), pick=st.data())
    def test_every_inclusion_proof_verifies(self, data, pick):
        """For any tree and leaf, the generated proof verifies; for another leaf it does not."""
        leaves = [m.leaf_hash(d) for d in data]
        index = pick.draw(st.integers(min_value=0, max_value=len(leaves) - 1))
        proof = m.inclusion_proof(index, leaves)
        top = m.root(leaves)
        assert m.verify_inclusion(index, len(leaves), leaves[index], proof, top)
        assert not m.verify_inclusion(index, len(leaves), m.leaf_hash(b"other\x00"), proof, top)

    @given(data=st.lists(st.binary(max_size=8), min_size=1, max_size=40), pick=st.data())
    def test_every_consistency_proof_verifies(self, data, pick):
        """For any two sizes, the generated consistency proof verifies."""
        leaves = [m.leaf_hash(d) for d in data]
        old = pick.draw(st.integers(min_value=1, max_value=len(leaves)))
        proof = m.consistency_proof(old, leaves)
        assert m.verify_consistency(old, len(leaves), m.root(leaves[:old]), m.root(leaves), proof)


SEVENTY = [m.leaf_hash(i.to_bytes(2, "big")) for i in range(70)]
#: SHA-256 over the roots of SEVENTY[:n] for n = 0..70, from the full recomputation.
SEVENTY_ROOTS_DIGEST = "8ff5ee8a58c9c353c9e6d0cb6f13fe4d7fb8d313d5d6e67f7180b226d1d5762b"


def grown(leaves) -> m.CompactRange:
    tree = m.CompactRange()
    tree.extend(leaves)
    return tree


class TestCompactRange:
    def test_published_roots(self):
        """The compact range's root equals the published root at every size 0..8."""
        tree = m.CompactRange()
        for n, expected in enumerate(VECTORS["roots_hex"]):
            assert tree.root().hex() == expected
            if n < len(LEAVES):
                tree.append(LEAVES[n])

    def test_every_size_up_to_seventy(self):
        """At every size 0..70, root and size equal the full recomputation's, the
        kept hashes are one per set bit of the size, and those roots are the pinned ones."""
        tree = m.CompactRange()
        roots = []
        for n in range(71):
            roots.append(tree.root())
            assert roots[-1] == m.root(SEVENTY[:n]), n
            assert tree.root() == roots[-1], "root() must not change the range"
            assert tree.size == n
            assert len(tree.subtrees) == n.bit_count()
            if n < 70:
                tree.append(SEVENTY[n])
        assert hashlib.sha256(b"".join(roots)).hexdigest() == SEVENTY_ROOTS_DIGEST

    @pytest.mark.parametrize("n", [255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 2049])
    def test_around_powers_of_two(self, n):
        """Sizes next to a power of two, where the tree's split moves, match too."""
        leaves = [m.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
        assert grown(leaves).root() == m.root(leaves)

    @settings(max_examples=200)
    @given(data=st.lists(st.binary(max_size=6), max_size=300), pick=st.data())
    def test_matches_full_recomputation(self, data, pick):
        """For any leaves, the root after each of some appends equals ``root`` of that
        prefix, and the roots of two prefixes pass RFC 9162's consistency check."""
        leaves = [m.leaf_hash(d) for d in data]
        sizes = set(pick.draw(st.lists(st.integers(0, len(leaves)), max_size=8)))
        tree, roots = m.CompactRange(), {}
        for n in range(len(leaves) + 1):
            if n in sizes:
                roots[n] = tree.root()
                assert roots[n] == m.root(leaves[:n]), n
            if n < len(leaves):
                tree.append(leaves[n])
        assert tree.root() == m.root(leaves)
        for old in (s for s in roots if s):
            for new in (s for s in roots if s >= old):
                proof = m.consistency_proof(old, leaves[:new])
                assert m.verify_consistency(old, new, roots[old], roots[new], proof)

    def test_extend_is_append_in_order(self):
        """extend() keeps the same subtree roots as one append per leaf, in order."""
        one_by_one = m.CompactRange()
        for leaf in SEVENTY:
            one_by_one.append(leaf)
        assert grown(SEVENTY).subtrees == one_by_one.subtrees
        assert grown(reversed(SEVENTY)).root() != one_by_one.root()
