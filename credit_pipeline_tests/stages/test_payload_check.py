"""Verify's payload check in worker processes (a large statement) reports exactly what the in-process check does.

The threshold is lowered so that the small week of ``test_flow`` goes through real worker processes
(``python -m credit_pipeline.stages.payload_check``, their own connections), split into slices.
"""

from __future__ import annotations

import sys

import pytest

from credit_pipeline.ledger.store import LedgerError
from credit_pipeline.stages import payload_check
from credit_pipeline.stages.verify import verify_stored

from credit_pipeline_tests.stages.test_flow import KEY, week  # noqa: F401
from credit_pipeline_tests.stages.test_integrity import TAMPERS, finalized, tamper

def in_workers(monkeypatch, workers: int) -> list[list[str]]:
    """Lower the threshold to one event; record each worker's command line."""
    monkeypatch.setattr(payload_check, "PARALLEL_FROM", 1)
    monkeypatch.setattr(payload_check, "workers", lambda: workers)
    started: list[list[str]] = []
    real = payload_check.subprocess.Popen

    def popen(argv, **kwargs):
        started.append(list(argv))
        return real(argv, **kwargs)

    monkeypatch.setattr(payload_check.subprocess, "Popen", popen)
    return started


@pytest.mark.parametrize("workers", [1, 3])
def test_an_untouched_statement_verifies_in_workers(store, week, monkeypatch, workers):
    finalized(store)
    started = in_workers(monkeypatch, workers)
    assert verify_stored(store, KEY).ok
    assert [argv[-2:] for argv in started] == [[str(i), str(workers)] for i in range(workers)]
    assert all("postgresql" not in " ".join(argv) for argv in started)  # the URL travels in the environment only


@pytest.mark.parametrize("table, statement, named", [t for t in TAMPERS if t[0] == "activity_events"],
                         ids=[f"activity_events-{i}" for i, t in enumerate(TAMPERS) if t[0] == "activity_events"])
def test_a_tampered_payload_is_the_same_failure_in_workers_as_here(store, week, monkeypatch, table, statement, named):
    finalized(store)
    tamper(store, table, statement)
    here = verify_stored(store, KEY)
    started = in_workers(monkeypatch, 2)
    there = verify_stored(store, KEY)
    assert started, "the check did not go through worker processes"
    assert not here.ok and not there.ok
    assert there.mismatch == here.mismatch and named in there.mismatch


def test_a_payload_mismatch_found_by_a_worker_is_reported_with_its_event(store, week, monkeypatch):
    finalized(store)
    tamper(store, "activity_events", "UPDATE activity_events SET payload = jsonb_set(payload, '{title}', '\"x\"') "
                                     "WHERE event_id = 'github:pr:acme/widgets:3'")
    in_workers(monkeypatch, 3)
    report = verify_stored(store, KEY)
    assert not report.ok
    assert "events[event_id=github:pr:acme/widgets:3].payload_hash" in report.mismatch, report.mismatch


def test_a_worker_that_fails_is_an_error_naming_it_not_a_pass(store, week, monkeypatch):
    finalized(store)
    in_workers(monkeypatch, 2)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the worker cannot start its interpreter
    with pytest.raises(LedgerError, match="payload check worker exited with 1"):
        verify_stored(store, KEY)


def test_inside_an_open_transaction_the_check_stays_in_this_process(store, week, monkeypatch):
    finalized(store)
    started = in_workers(monkeypatch, 2)
    with store.atomic():
        assert verify_stored(store, KEY).ok
    assert started == []
