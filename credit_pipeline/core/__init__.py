"""The pure domain of credit_pipeline: no I/O, no framework imports.

This package is what an auditor reads. Every number in a payout statement is
computed by a function here from plain values: epochs, event ids and payload
hashes, the weight policy, allocations, payouts, hashes and the statement bundle.
"""
