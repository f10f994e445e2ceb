"""Statement v3's distribution: payout wallets proven by their own signatures, token amounts, held credit and
Merkle claims, recomputed by an offline verify; and every proof checked by an independent implementation."""

import copy

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.distribution import HELD_CLAIMANT, HELD_NO_WALLET, distribution, merkle_dump
from credit_pipeline.core.hashing import sign_message
from credit_pipeline.core.merkle import load
from credit_pipeline.core.statement import BUNDLE_FORMAT_V3, build_statement, verify_bundle
from credit_pipeline.core.wallets import PayoutWallet, WalletError, binding_evidence, binding_message, parse_wallet

from credit_pipeline_tests.core import test_statement_v2 as v2
from credit_pipeline_tests.core.test_merkle import _indep_verify

TOKEN = {"token_address": "0x6B175474E89094C44Da98b954EedeAC495271d0F", "decimals": 18, "token_units_per_credit": 10**18}
ALICE_KEY = "0x" + "a1" * 32
ALICE_WALLET = Account.from_key(ALICE_KEY).address


def wallet_of(person: str, key: str, event_id: int = 7, ledger: str = v2.LEDGER) -> PayoutWallet:
    address = Account.from_key(key).address
    evidence = binding_evidence(ledger, person, address, sign_message(binding_message(ledger, person, address), key))
    return PayoutWallet(person, address, event_id, evidence["message"], evidence["signature"])


def make(token=TOKEN, wallets=None, **kw):
    """test_statement_v2's statement (alice 8700 units, claimant github:2 6000) under a policy paying TOKEN."""
    original = v2.policy
    doc = original().canonical()
    if token is not None:
        doc["payout"] = token
    from credit_pipeline.core.policy import validate_policy

    v2.policy = lambda: validate_policy(doc)
    try:
        bundle = v2.make(**kw)
    finally:
        v2.policy = original
    body = {k: v for k, v in bundle.items() if k != "statement_hash"}
    payouts = body["payouts"]
    body["distribution"] = distribution(payouts, doc.get("payout"), {"alice": wallet_of("alice", ALICE_KEY)} if wallets is None else wallets)
    return {**body, "statement_hash": canonical_hash(body)}


def rehash(bundle):
    return v2.rehash(bundle)


def test_a_v3_bundle_pays_the_wallet_bound_line_holds_the_claimant_and_verifies():
    bundle = make()
    assert bundle["format"] == BUNDLE_FORMAT_V3
    report = verify_bundle(bundle)
    assert report.ok, report.mismatch
    dist = bundle["distribution"]
    lines = {line["recipient_id"]: line for line in dist["lines"]}
    alice, claimant = lines["alice"], lines["github:2"]
    assert alice["status"] == "payable" and alice["wallet"] == ALICE_WALLET
    assert int(alice["token_amount"]) == alice["amount_credits"] * 10**18
    assert claimant["status"] == "held" and claimant["held_reason"] == HELD_CLAIMANT and claimant["wallet"] is None
    assert dist["held_credits"] + dist["payable_credits"] == bundle["pool"]["total"]
    assert report.proved["merkle_root"] == dist["merkle"]["root"]
    # the proof verifies against the root with an independent implementation of OpenZeppelin's leaf and pair hashing
    assert _indep_verify(dist["merkle"]["root"], alice["wallet"], int(alice["token_amount"]), alice["proof"])
    assert not _indep_verify(dist["merkle"]["root"], alice["wallet"], int(alice["token_amount"]) + 1, alice["proof"])
    assert load(merkle_dump(dist)).root == dist["merkle"]["root"]


def test_without_a_token_or_a_wallet_lines_are_held_and_there_is_no_merkle_root():
    bundle = make(token=None)
    assert verify_bundle(bundle).ok
    assert bundle["distribution"]["merkle"] is None and all(line["token_amount"] is None for line in bundle["distribution"]["lines"])
    unbound = make(wallets={})
    assert verify_bundle(unbound).ok
    assert {line["held_reason"] for line in unbound["distribution"]["lines"]} == {HELD_CLAIMANT, HELD_NO_WALLET}
    assert unbound["distribution"]["merkle"] is None and unbound["distribution"]["payable_credits"] == 0


@pytest.mark.parametrize("tamper, named", [
    (lambda d: d["lines"][0].update(token_amount=str(int(d["lines"][0]["token_amount"]) + 1)), "distribution.lines"),
    (lambda d: d["lines"][0].update(wallet="0x" + "22" * 20), "distribution.lines"),
    (lambda d: d["lines"][0]["proof"].append("0x" + "00" * 32), "distribution.lines"),
    (lambda d: d["merkle"].update(root="0x" + "11" * 32), "distribution.merkle"),
    (lambda d: d["lines"][1].update(status="payable"), "distribution.lines"),
    (lambda d: d["wallets"][0].update(signature=sign_message(d["wallets"][0]["message"], "0x" + "b2" * 32)), "not by"),
    (lambda d: d["wallets"][0].update(message=d["wallets"][0]["message"].replace("User: alice", "User: mallory")), "binding message"),
])
def test_a_changed_distribution_fails_naming_it_even_when_rehashed(tamper, named):
    bundle = make()
    tamper(bundle["distribution"])
    report = verify_bundle(rehash(bundle))
    assert not report.ok and named in report.mismatch, report.mismatch


def test_a_wallet_bound_on_another_ledger_does_not_prove_anything_here():
    other = wallet_of("alice", ALICE_KEY, ledger="00000000-0000-4000-8000-000000000000")
    report = verify_bundle(make(wallets={"alice": other}))
    assert not report.ok and "not the one for alice on ledger" in report.mismatch


def test_a_token_policy_needs_v3():
    bundle = make()
    bundle["format"] = "credit_pipeline.statement.v2"
    bundle.pop("distribution")
    report = verify_bundle(rehash(bundle))
    assert not report.ok and "needs credit_pipeline.statement.v3" in report.mismatch


def test_wallets_are_eip55_checksummed_or_refused():
    assert parse_wallet(ALICE_WALLET) == ALICE_WALLET
    with pytest.raises(WalletError, match="EIP-55 checksum"):
        parse_wallet(ALICE_WALLET.lower() if ALICE_WALLET != ALICE_WALLET.lower() else ALICE_WALLET.upper())
    with pytest.raises(WalletError, match="not an Ethereum address"):
        parse_wallet("0x123")
    with pytest.raises(WalletError, match="not by"):
        binding_evidence(v2.LEDGER, "alice", ALICE_WALLET, sign_message(binding_message(v2.LEDGER, "alice", ALICE_WALLET), "0x" + "b2" * 32))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.booleans()), min_size=1, max_size=12), st.integers(1, 10**24))
def test_every_payable_line_has_a_proof_an_independent_verifier_accepts(lines, per_credit):
    keys = ["0x" + f"{k + 1:064x}" for k in range(len(lines))]
    payouts = [{"recipient_id": f"p{k:02d}", "amount_credits": credits} for k, (credits, _) in enumerate(lines)]
    wallets = {f"p{k:02d}": wallet_of(f"p{k:02d}", keys[k], k + 1) for k, (_, bound) in enumerate(lines) if bound}
    dist = distribution(payouts, {**TOKEN, "token_units_per_credit": per_credit}, wallets)
    payable = [line for line in dist["lines"] if line["status"] == "payable"]
    assert dist["payable_credits"] + dist["held_credits"] == sum(c for c, _ in lines)
    for line in payable:
        assert _indep_verify(dist["merkle"]["root"], line["wallet"], int(line["token_amount"]), line["proof"])
        assert int(line["token_amount"]) == line["amount_credits"] * per_credit
    assert (dist["merkle"] is None) == (not payable)
    assert copy.deepcopy(dist) == distribution(payouts, {**TOKEN, "token_units_per_credit": per_credit}, wallets)


def test_only_a_bind_proves_a_wallet_a_merged_wallet_pays_no_one_until_bound_again():
    from credit_pipeline.core.wallets import payout_wallets

    w = wallet_of("alice", ALICE_KEY)
    bind = {"identity_event_id": 1, "action": "bind", "provider": "wallet", "external_id": ALICE_WALLET.lower(), "user_id": "alice",
            "evidence": {"message": w.message, "signature": w.signature}}
    assert payout_wallets([bind])["alice"] == PayoutWallet("alice", ALICE_WALLET, 1, w.message, w.signature)
    merged = {**bind, "identity_event_id": 2, "action": "merge", "user_id": "carol", "previous_user_id": "alice", "evidence": {}}
    assert payout_wallets([bind, merged]) == {}  # the signature names alice, the wallet is carol's now: held
    revoked = {**bind, "identity_event_id": 3, "action": "revoke", "user_id": "carol", "evidence": {}}
    again = wallet_of("carol", ALICE_KEY, event_id=4)
    rebound = {**bind, "identity_event_id": 4, "user_id": "carol", "evidence": {"message": again.message, "signature": again.signature}}
    assert payout_wallets([bind, merged, revoked, rebound]) == {"carol": again}
    github = {**bind, "provider": "github", "external_id": "100", "identity_event_id": 5}
    assert payout_wallets([github]) == {}
