"""OpenZeppelin StandardMerkleTree compatibility of ``credit_pipeline.core.merkle``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from eth_abi import encode
from eth_hash.auto import keccak as eth_hash_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from credit_pipeline.core.merkle import load, merkle_tree, verify_proof

VECTOR_PATH = Path("/work/shared/fixtures/merkle/standard-v1-address-uint256.json")


@pytest.fixture(scope="module")
def vector() -> dict:
    return json.loads(VECTOR_PATH.read_text())


def _vector_values(vector: dict) -> list[tuple[str, int]]:
    return [(v["value"][0], int(v["value"][1])) for v in vector["dump"]["values"]]


# --- 1. the published OpenZeppelin vector -------------------------------------------------------


def test_vector_root_dump_and_proofs(vector: dict) -> None:
    tree = merkle_tree(_vector_values(vector))
    assert tree.root == vector["root"]
    assert tree.dump() == vector["dump"]
    assert json.dumps(tree.dump(), sort_keys=True) == json.dumps(vector["dump"], sort_keys=True)
    assert len(vector["proofs"]) == len(tree.values)
    for i, expected in enumerate(vector["proofs"]):
        assert [tree.values[i][0], str(tree.values[i][1])] == expected["value"]
        assert tree.proof(i) == expected["proof"]
        assert verify_proof(tree.root, tree.values[i][0], tree.values[i][1], expected["proof"])


def test_vector_load(vector: dict) -> None:
    assert load(vector["dump"]).root == vector["root"]


# --- 2. an independent implementation, like Solidity's MerkleProof.processProof -----------------


def _indep_leaf(address: str, amount: int) -> bytes:
    raw = bytes.fromhex(address[2:])
    return eth_hash_keccak(eth_hash_keccak(encode(["address", "uint256"], [raw, amount])))


def _indep_process_proof(leaf: bytes, proof: list[str]) -> bytes:
    computed = leaf
    for p in proof:
        sibling = bytes.fromhex(p[2:])
        a, b = (computed, sibling) if computed < sibling else (sibling, computed)
        computed = eth_hash_keccak(a + b)
    return computed


def _indep_verify(root: str, address: str, amount: int, proof: list[str]) -> bool:
    return "0x" + _indep_process_proof(_indep_leaf(address, amount), proof).hex() == root


def test_independent_verifier_accepts_vector(vector: dict) -> None:
    for p in vector["proofs"]:
        assert _indep_verify(vector["root"], p["value"][0], int(p["value"][1]), p["proof"])


_addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_amounts = st.integers(min_value=0, max_value=2**256 - 1)
_payouts = st.lists(st.tuples(_addresses, _amounts), min_size=1, max_size=40, unique_by=lambda v: v[0])


@settings(max_examples=50, deadline=None)
@given(values=_payouts, data=st.data())
def test_every_proof_verifies_independently(values: list[tuple[str, int]], data: st.DataObject) -> None:
    tree = merkle_tree(values)
    assert tree.values == tuple(values)
    assert sorted(tree.tree_indices) == list(range(len(values) - 1, 2 * len(values) - 1))
    for i, (address, amount) in enumerate(values):
        proof = tree.proof(i)
        assert _indep_verify(tree.root, address, amount, proof)
        assert verify_proof(tree.root, address, amount, proof)
        other_amount = data.draw(_amounts.filter(lambda n: n != amount), label="other amount")
        assert not _indep_verify(tree.root, address, other_amount, proof)
        assert not verify_proof(tree.root, address, other_amount, proof)
        other_address = data.draw(_addresses.filter(lambda a: a != address), label="other address")
        assert not _indep_verify(tree.root, other_address, amount, proof)
        assert not verify_proof(tree.root, other_address, amount, proof)


# --- 3. dump -> load round trip and tampering ---------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(values=_payouts)
def test_dump_load_round_trip(values: list[tuple[str, int]]) -> None:
    tree = merkle_tree(values)
    dumped = json.loads(json.dumps(tree.dump()))
    assert load(dumped) == tree


def test_tampered_tree_node_is_refused(vector: dict) -> None:
    for i in range(len(vector["dump"]["tree"])):
        dumped = copy.deepcopy(vector["dump"])
        node = dumped["tree"][i]
        dumped["tree"][i] = node[:-1] + ("0" if node[-1] != "0" else "1")
        with pytest.raises(ValueError, match="tree node"):
            load(dumped)


def test_tampered_amount_is_refused(vector: dict) -> None:
    dumped = copy.deepcopy(vector["dump"])
    dumped["values"][0]["value"][1] = str(int(dumped["values"][0]["value"][1]) + 1)
    with pytest.raises(ValueError, match="value 0"):
        load(dumped)


def test_tampered_tree_index_and_format_are_refused(vector: dict) -> None:
    dumped = copy.deepcopy(vector["dump"])
    dumped["values"][0]["treeIndex"], dumped["values"][1]["treeIndex"] = 6, 4
    with pytest.raises(ValueError, match="value 0"):
        load(dumped)
    with pytest.raises(ValueError, match="format"):
        load({**vector["dump"], "format": "simple-v1"})
    with pytest.raises(ValueError, match="leafEncoding"):
        load({**vector["dump"], "leafEncoding": ["address", "uint128"]})
    with pytest.raises(ValueError, match="tree has"):
        load({**vector["dump"], "tree": vector["dump"]["tree"][:-1]})


# --- 4. refusals --------------------------------------------------------------------------------

A = "0x1111111111111111111111111111111111111111"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "no values"),
        ([("0x1234", 1)], "not an address"),
        ([("1111111111111111111111111111111111111111", 1)], "not an address"),
        ([("0x" + "g" * 40, 1)], "not an address"),
        ([("0xDB00079cad3e665853Bf766eFe26F4C38cdbdCDA", 1)], "not an address"),  # bad checksum
        ([(A, -1)], "out of uint256 range"),
        ([(A, 2**256)], "out of uint256 range"),
        ([(A, "5")], "not an integer"),
        ([(A, True)], "not an integer"),
        ([(A, 1), (A.upper().replace("0X", "0x"), 2)], "duplicate address"),
    ],
)
def test_refusals(values: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merkle_tree(values)


def test_single_leaf_tree() -> None:
    tree = merkle_tree([(A, 7)])
    assert tree.tree == (tree.root,) and tree.proof(0) == []
    assert _indep_verify(tree.root, A, 7, [])


def test_checksummed_input_dumps_lowercase() -> None:
    checksummed = "0xdB00079cad3e665853Bf766eFe26F4C38cdbdCDA"
    tree = merkle_tree([(checksummed, 1)])
    assert tree.values == ((checksummed.lower(), 1),)
    assert tree.root == merkle_tree([(checksummed.lower(), 1)]).root
