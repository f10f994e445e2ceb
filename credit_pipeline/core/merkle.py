"""OpenZeppelin ``StandardMerkleTree`` ("standard-v1") for ``["address", "uint256"]`` leaves.

A payout root built here is what a merkle-distributor contract or OpenZeppelin's
``MerkleProof.verify`` accepts, and ``dump()`` is what ``StandardMerkleTree.load`` reads.
leaf = keccak256(keccak256(abi.encode(address, amount))); pairs are hashed sorted;
leaves are sorted by hash and stored at the end of a 2n-1 array in reverse order.
Hex strings are lowercase with ``0x``; addresses are lowercase, amounts decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import is_address, is_checksum_address, keccak, to_checksum_address

FORMAT = "standard-v1"
LEAF_ENCODING = ("address", "uint256")
_MAX_UINT256 = 2**256 - 1


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _address(address: object) -> str:
    if not isinstance(address, str) or not address.startswith("0x") or not is_address(address):
        raise ValueError(f"not an address: {address!r}")
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(address):
        raise ValueError(f"not an address (bad EIP-55 checksum): {address!r}")
    return address.lower()


def _amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount is not an integer: {amount!r}")
    if not 0 <= amount <= _MAX_UINT256:
        raise ValueError(f"amount out of uint256 range: {amount!r}")
    return amount


def leaf_hash(address: str, amount: int) -> bytes:
    """keccak256(keccak256(abi.encode(["address", "uint256"], [address, amount])))."""
    encoded = encode(list(LEAF_ENCODING), [to_checksum_address(_address(address)), _amount(amount)])
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """keccak256 of the two nodes concatenated in ascending byte order (OpenZeppelin ``Hashes.commutativeKeccak256``)."""
    return keccak(a + b if a <= b else b + a)


@dataclass(frozen=True)
class MerkleTree:
    root: str
    tree: tuple[str, ...]
    values: tuple[tuple[str, int], ...]  # input order, lowercase addresses
    tree_indices: tuple[int, ...]  # tree_indices[i] is where values[i]'s leaf sits in ``tree``

    def proof(self, index: int) -> list[str]:
        """Sibling hashes from the leaf of ``values[index]`` up to (not including) the root."""
        if not 0 <= index < len(self.values):
            raise IndexError(f"no value at index {index}")
        j, siblings = self.tree_indices[index], []
        while j > 0:
            siblings.append(self.tree[j - 1 if j % 2 == 0 else j + 1])
            j = (j - 1) // 2
        return siblings

    def dump(self) -> dict[str, Any]:
        """The JSON object OpenZeppelin's ``StandardMerkleTree.load`` reads."""
        return {
            "format": FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "tree": list(self.tree),
            "values": [
                {"value": [address, str(amount)], "treeIndex": k}
                for (address, amount), k in zip(self.values, self.tree_indices)
            ],
        }


def merkle_tree(values: Sequence[tuple[str, int]]) -> MerkleTree:
    """Build the tree ``StandardMerkleTree.of(values, ["address", "uint256"])`` builds."""
    if not values:
        raise ValueError("no values: a Merkle tree needs at least one (address, amount)")
    clean = tuple((_address(a), _amount(n)) for a, n in values)
    seen: set[str] = set()
    for address, _ in clean:
        if address in seen:
            raise ValueError(f"duplicate address: {address}")
        seen.add(address)
    leaves = [leaf_hash(a, n) for a, n in clean]
    order = sorted(range(len(leaves)), key=lambda i: leaves[i])
    size = 2 * len(leaves) - 1
    nodes: list[bytes] = [b""] * size
    indices = [0] * len(leaves)
    for rank, i in enumerate(order):
        indices[i] = size - 1 - rank
        nodes[size - 1 - rank] = leaves[i]
    for i in range(size - len(leaves) - 1, -1, -1):
        nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
    tree = tuple(_hex(node) for node in nodes)
    return MerkleTree(root=tree[0], tree=tree, values=clean, tree_indices=tuple(indices))


def verify_proof(root: str, address: str, amount: int, proof: Sequence[str]) -> bool:
    """What ``MerkleProof.verify(proof, root, leaf)`` answers for this (address, amount)."""
    node = leaf_hash(address, amount)
    for sibling in proof:
        node = hash_pair(node, bytes.fromhex(sibling.removeprefix("0x")))
    return _hex(node) == root.lower()


def _dump_amount(raw: object) -> int:
    if isinstance(raw, str) and raw.isdecimal() and raw.isascii():
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ValueError(f"amount is not a decimal string: {raw!r}")


def load(dump: Mapping[str, Any]) -> MerkleTree:
    """Rebuild a tree from a ``dump()``; refuse one whose tree does not match its values."""
    if dump.get("format") != FORMAT:
        raise ValueError(f"format is {dump.get('format')!r}, expected {FORMAT!r}")
    if list(dump.get("leafEncoding") or []) != list(LEAF_ENCODING):
        raise ValueError(f"leafEncoding is {dump.get('leafEncoding')!r}, expected {list(LEAF_ENCODING)!r}")
    entries = dump.get("values") or []
    values = [(entry["value"][0], _dump_amount(entry["value"][1])) for entry in entries]
    built = merkle_tree(values)
    tree = [str(node).lower() for node in dump.get("tree") or []]
    if len(tree) != len(built.tree):
        raise ValueError(f"tree has {len(tree)} nodes, {len(values)} values need {len(built.tree)}")
    for k, (entry, (address, amount)) in enumerate(zip(entries, built.values)):
        j, leaf = entry.get("treeIndex"), _hex(leaf_hash(address, amount))
        if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < len(tree) or tree[j] != leaf:
            raise ValueError(f"value {k} ({address}, {amount}): its leaf {leaf} is not tree node {j!r}")
    for i, (node, expected) in enumerate(zip(tree, built.tree)):
        if node != expected:
            raise ValueError(f"tree node {i} is {node}, the values give {expected}")
    return built
