"""RFC 9162 tree hashing and proofs against published vectors (tests/data, with source)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from hypothesis import given
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
