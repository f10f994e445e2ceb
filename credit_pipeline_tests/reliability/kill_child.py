"""One step (or several, in order) of the pipeline for one epoch, in its own process, optionally SIGKILLed at a chosen point.

    python -m credit_pipeline_tests.reliability.kill_child --database-url URL --policy FILE --epoch KEY \\
        --now 2026-03-02T00:00:00Z --step collect-github \\
        [--kill credit_pipeline.ledger.facts:FactsStore._advance_cursor --occurrence 3 --phase before] \\
        [--trace pages.jsonl] [--report result.json]

``--step resolve,allocate,approve,finalize`` runs several steps in order in this one process (how a test
recovers after a kill without paying the interpreter's start-up once per step).

Steps (the real stage functions, the real sources built by ``build_source`` from the environment:
``GITHUB_API_URL``, ``GITHUB_TOKEN``, ``DISCORD_API_URL``, ``DISCORD_BOT_TOKEN``, as ``Sandbox.env()`` gives them):

- ``collect-github`` / ``collect-discord``: ``collect_epoch`` for the epoch (a closed window: full, with completeness);
- ``resolve``: ``resolve_epoch``;
- ``allocate``: ``allocate_epoch`` (enters review when the epoch is ready; exit 3 when it is not);
- ``approve``: sign the current approval message with the key in ``$KILL_CHILD_APPROVER_KEY`` (or the variable
  ``--approver-key-env`` names) and ``approve_epoch``; skipped when that signer already approved that exact message
  (what the demo does: an approval that committed before a kill is not signed twice);
- ``finalize``: ``finalize_epoch``, then ``verify_stored``.

A kill point is a dotted target, ``module:function`` or ``module:Class.method`` (patched where callers look it
up), an occurrence N (1-based) and a phase: on the N-th call the process sends itself SIGKILL ``before`` the
original runs or ``after`` it returned. ``sql:REGEX`` targets the N-th executed SQL statement matching REGEX
(SQLAlchemy's ``after_cursor_execute``, so ``after`` = executed inside its transaction, not committed).
Just before killing, the child writes ``KILL POINT REACHED ...`` to stderr; a child that exits normally never
reached its kill point (the caller must treat that as a failure).

Times: ``--now`` is passed to every stage function that takes one: collection and allocation as ``now``, the
approval as ``approved_at`` and finalize as ``issued_at``, so every run of the week writes the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import re
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

STEPS = ("collect-github", "collect-discord", "resolve", "allocate", "approve", "finalize")
EXIT_NOT_READY = 3
# Fast retries against the local sandbox. Its limits are GitHub's (search: 30 a minute), and a module of kill tests
# collects the same repos again and again, so waits up to a whole search window are honoured, as production would.
SOURCE_OPTIONS = {"github": dict(secondary_wait=1.0, backoff=0.05, max_wait=120.0, graphql_rate_wait=1.0), "discord": dict(max_wait=120.0)}


def die(where: str) -> None:
    sys.stderr.write(f"KILL POINT REACHED {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def resolve_target(target: str) -> tuple[Any, str, Callable]:
    """``module:attr`` or ``module:Class.method`` -> (owner object to patch, attribute name, current callable)."""
    module_name, _, path = target.partition(":")
    if not module_name or not path:
        raise SystemExit(f"kill target {target!r}: use module:function or module:Class.method")
    owner: Any = importlib.import_module(module_name)
    parts = path.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    name = parts[-1]
    original = inspect.getattr_static(owner, name) if inspect.isclass(owner) else getattr(owner, name)
    if isinstance(original, (staticmethod, classmethod)):
        raise SystemExit(f"kill target {target!r}: static and class methods are not supported")
    if not callable(original):
        raise SystemExit(f"kill target {target!r} is not callable")
    return owner, name, original


def arm(target: str, occurrence: int, phase: str) -> None:
    """Make the ``occurrence``-th call of ``target`` SIGKILL this process ``before`` or ``after`` it runs."""
    where = f"{target} #{occurrence} {phase}"
    if target.startswith("sql:"):
        import sqlalchemy as sa

        pattern = re.compile(target[4:], re.IGNORECASE | re.DOTALL)
        calls = {"n": 0}
        event = "before_cursor_execute" if phase == "before" else "after_cursor_execute"

        def on_execute(conn, cursor, statement, parameters, context, executemany):
            if pattern.search(statement):
                calls["n"] += 1
                if calls["n"] == occurrence:
                    die(where)

        sa.event.listen(sa.engine.Engine, event, on_execute)
        return
    owner, name, original = resolve_target(target)
    calls = {"n": 0}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == occurrence and phase == "before":
            die(where)
        result = original(*args, **kwargs)
        if calls["n"] == occurrence and phase == "after":
            die(where)
        return result

    setattr(owner, name, wrapper)


def trace_pages(path: Path) -> None:
    """Append one JSON line per committed ``record_page`` (stream, events, new) to ``path``."""
    from credit_pipeline.ledger.facts import FactsStore

    original = FactsStore.record_page
    calls = {"n": 0}

    @functools.wraps(original)
    def record_page(self, events, cursor=None, *args, **kwargs):
        write = original(self, events, cursor, *args, **kwargs)
        calls["n"] += 1
        stream = f"{cursor.source}:{cursor.stream}:{cursor.source_ref}" if cursor is not None else None
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"call": calls["n"], "stream": stream, "events": len(events), "new": len(write.new_ids)}) + "\n")
        return write

    FactsStore.record_page = record_page


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise SystemExit(f"--now {text!r} needs a time zone")
    return value


def run_step(step: str, store, policy, key: str, now: datetime, approver_key: str | None) -> dict[str, Any]:
    # Stage functions are looked up on their modules at call time, so a kill point on them takes effect.
    from credit_pipeline.stages import allocate, approve, collect, finalize, resolve, sources_config, verify

    if step.startswith("collect-"):
        name = step.removeprefix("collect-")
        source = sources_config.build_source(name, policy, dict(os.environ), **SOURCE_OPTIONS[name])
        report = collect.collect_epoch(store, source, key, now=now)
        return {"new": report.new, "seen": report.seen, "pages": {k: v.pages for k, v in report.streams.items()},
                "completeness": report.completeness, "shortfalls": report.shortfalls, "late_events": report.late_events}
    if step == "resolve":
        report = resolve.resolve_epoch(store, key, policy)
        return {"events_in_window": report.events_in_window, "curated": report.curated, "written": report.written,
                "by_resolution": report.by_resolution}
    if step == "allocate":
        report = allocate.allocate_epoch(store, key, policy, now)
        if report.state.status != "review":
            return {"status": report.state.status, "review_blocked": report.review_blocked, "exit": EXIT_NOT_READY}
        return {"status": report.state.status, "entered_review": report.entered_review,
                "allocation_set_hash": report.state.allocation_set_hash, "pool_total": report.state.pool_total}
    if step == "approve":
        from credit_pipeline.core.hashing import address_of, sign_message

        if not approver_key:
            raise SystemExit("approve: no approver key in the environment")
        state = approve.approvable_state(store, key, policy)
        signer = address_of(approver_key).lower()
        if any(a["message"] == state.approval_message and a["signer"] == signer for a in store.approvals(key)):
            return {"approved": False, "already": True, "allocation_set_hash": state.allocation_set_hash}
        record = approve.approve_epoch(store, key, state.allocation_set_hash, sign_message(state.approval_message, approver_key), policy,
                                       approved_at=now)
        return {"approved": True, "signer": record.signer, "allocation_set_hash": record.allocation_set_hash}
    if step == "finalize":
        result = finalize.finalize_epoch(store, key, issued_at=now)
        checked = verify.verify_stored(store, key)
        return {"written": result.written, "statement_hash": result.statement_hash, "verified": checked.ok,
                "mismatch": None if checked.ok else str(checked.mismatch), "exit": 0 if checked.ok else 4}
    raise SystemExit(f"unknown step {step!r}: use one of {', '.join(STEPS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kill_child", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--policy", required=True, help="the policy YAML file")
    parser.add_argument("--epoch", required=True)
    parser.add_argument("--now", required=True, help="ISO time with zone, passed to the stages that take one")
    parser.add_argument("--step", required=True, help=f"one of {', '.join(STEPS)}, or several, comma-separated, run in order "
                        "in this one process (a kill point then counts calls across all of them)")
    parser.add_argument("--approver-key-env", default="KILL_CHILD_APPROVER_KEY")
    parser.add_argument("--kill", help="module:function, module:Class.method or sql:REGEX")
    parser.add_argument("--occurrence", type=int, default=1)
    parser.add_argument("--phase", choices=("before", "after"), default="before")
    parser.add_argument("--trace", help="append a JSON line per committed page to this file")
    parser.add_argument("--report", help="write the step's result as JSON to this file")
    args = parser.parse_args(argv)
    if args.occurrence < 1:
        parser.error("--occurrence counts from 1")
    steps = [s.strip() for s in args.step.split(",")]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}: use {', '.join(STEPS)}")

    import sqlalchemy as sa

    from credit_pipeline.ledger.store import LedgerStore
    from credit_pipeline.stages.settings import load_policy

    policy = load_policy(args.policy)
    now = parse_time(args.now)
    if args.trace:
        trace_pages(Path(args.trace))
    if args.kill:
        arm(args.kill, args.occurrence, args.phase)
    engine = sa.create_engine(args.database_url)
    results = []
    try:
        for step in steps:
            result = {"step": step, **run_step(step, LedgerStore(engine), policy, args.epoch, now, os.environ.get(args.approver_key_env))}
            results.append(result)
            print(json.dumps(result, default=str, sort_keys=True), flush=True)
            if result.get("exit", 0):
                break
    finally:
        engine.dispose()
    if args.report:
        Path(args.report).write_text(json.dumps(results, default=str, sort_keys=True), encoding="utf-8")
    return int(results[-1].get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
