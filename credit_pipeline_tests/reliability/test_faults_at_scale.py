"""A whole week with 20 % of requests failing at random, through the real PyGithub and discord.py clients.

The week is collected as production collects it: an incremental pass while the week is open (the
sensor), a probe, the closed week's full pass with its completeness check (Monday's schedule), and a
rerun of that pass (a retried job, which must be a no-op). The same sequence first runs fault-free to
measure the request floor, then on a fresh ledger with a seeded fault rule that fails each request with
probability ``RATE``. A failing request gets one fault class among those that apply to it (server and
endpoint), the least fired so far with a seeded tie-break, so every class fires even at the fast scale.

A step that ends in a clean ``SourceError`` (a message naming what failed) is rerun, as an operator or
Dagster's retry would, a bounded number of times. Anything else escaping a step fails the test.

Asserted: the stored facts are exactly the ground truth (none missing, none extra, no duplicate rows),
the completeness check has no shortfall, every fault class fired, rate-limit waits were logged in the
adapters' Telemetry, and the HTTP requests stay within ``floor / (1 - RATE) * 1.5 + SLACK`` (no tight
retry loop, no rerun from scratch of a whole week per fault).

Truncated bodies (a 200 whose JSON is cut mid-document) are among the classes: both adapters retry them
(since c0f1b08; before it the decoder's JSONDecodeError escaped the run, not a SourceError).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.faults import Fault, FaultRule
from credit_pipeline.sandbox.runner import Sandbox, start_sandbox
from credit_pipeline.sources.base import SourceError
from credit_pipeline.stages.collect import collect_epoch
from credit_pipeline.stages.sources_config import build_source

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.sources.conftest import (
    DISCORD_TOKEN,
    FAST,
    GITHUB_TOKEN,
    assert_ground_truth,
    expected_view,
    org_policy,
)

RATE = 0.2
SEED = 20_270
SLACK = 12  # requests: probe and setup calls whose retries the ratio does not model
MAX_RERUNS_PER_STEP = 4
MAX_RERUNS = 12
# GitHub sends whole seconds in Retry-After (the sandbox rounds up, as GitHub does): 1 s is the shortest.
GH_5XX, DC_5XX = (500, 502, 503, 504), (500, 502, 503, 504)


@dataclass(frozen=True)
class FaultClass:
    name: str
    server: str
    make: Callable[[random.Random], Fault]
    path: str | None = None  # re.search on the request path
    waits: bool = False  # the client must wait (and log the wait) before retrying


CLASSES: list[FaultClass] = [
    FaultClass("github 429 with Retry-After", "github", lambda r: Fault.http_429(retry_after=r.uniform(0.05, 1)), waits=True),
    FaultClass("github 429 without Retry-After", "github", lambda r: Fault.http_429(retry_after=None), waits=True),
    FaultClass("github 403 secondary limit with Retry-After", "github",
               lambda r: Fault.github_secondary_limit(retry_after=r.uniform(0.05, 1)), waits=True),
    FaultClass("github 403 secondary limit without Retry-After", "github",
               lambda r: Fault.github_secondary_limit(retry_after=None), waits=True),
    FaultClass("github primary limit spent", "github", lambda r: Fault.github_primary_limit(reset_in=1), waits=True),
    FaultClass("github 5xx", "github", lambda r: Fault.server_error(r.choice(GH_5XX))),
    FaultClass("github dropped connection", "github", lambda r: Fault.drop_connection()),
    FaultClass("github GraphQL RATE_LIMITED in a 200", "github", lambda r: Fault.graphql_rate_limited(reset_in=1),
               path=r"/graphql$", waits=True),
    FaultClass("discord 429", "discord", lambda r: Fault.discord_429(retry_after=r.uniform(0.05, 1)), waits=True),
    FaultClass("discord global 429", "discord", lambda r: Fault.discord_429(retry_after=r.uniform(0.05, 1), is_global=True),
               waits=True),
    FaultClass("discord 5xx", "discord", lambda r: Fault.server_error(r.choice(DC_5XX))),
    FaultClass("discord dropped connection", "discord", lambda r: Fault.drop_connection()),
]
TRUNCATED = [  # a 200 whose body is cut mid-JSON
    FaultClass("github truncated body", "github", lambda r: Fault.truncated_body(keep=r.uniform(0.05, 0.95))),
    FaultClass("discord truncated body", "discord", lambda r: Fault.truncated_body(keep=r.uniform(0.05, 0.95))),
]


class RandomFaults(FaultRule):
    """One rule that fails each request with probability ``rate`` (consulted under the plan's lock)."""

    def __init__(self, classes: list[FaultClass], rate: float, seed: int) -> None:
        super().__init__(Fault.drop_connection(), times=None)
        self.classes, self.rate, self.rng = classes, rate, random.Random(seed)
        self.fired_by: Counter[str] = Counter()
        self.seen = 0
        self._paths = {c.name: re.compile(c.path) if c.path else None for c in classes}

    def matches(self, server: str, method: str, path: str, query: dict[str, str]) -> bool:
        self.seen += 1
        applicable = [c for c in self.classes if c.server == server and (self._paths[c.name] is None or self._paths[c.name].search(path))]
        if not applicable or self.rng.random() >= self.rate:
            return False
        least = min(self.fired_by[c.name] for c in applicable)
        chosen = self.rng.choice([c for c in applicable if self.fired_by[c.name] == least])
        self.fault = chosen.make(self.rng)
        self.fired_by[chosen.name] += 1
        return True


@dataclass
class Run:
    """What one pass of the week sequence cost, over every attempt of every step."""

    requests: Counter[str] = field(default_factory=Counter)  # HTTP requests the sandbox answered, per server
    telemetry_requests: Counter[str] = field(default_factory=Counter)  # adapter-level calls (Telemetry.requests)
    waits: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: {"github": [], "discord": []})
    reruns: list[str] = field(default_factory=list)  # one line per clean SourceError that was rerun
    reports: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def waited(self, source: str) -> float:
        return round(sum(s for s, _ in self.waits[source]), 3)


def week_sequence(store: LedgerStore, sandbox: Sandbox, org, *, options: dict[str, dict[str, Any]] | None = None) -> Run:
    """The week as production collects it, each step rerun after a clean SourceError."""
    policy, run, started = org_policy(org), Run(), time.monotonic()
    start, end = org.windows[0]
    key = start.date().isoformat()
    sandbox.log.reset()

    def attempt(name: str, step: str, body: Callable[[Any], Any]) -> Any:
        for n in range(MAX_RERUNS_PER_STEP + 1):
            source = build_source(name, policy, sandbox.env(), **{**FAST[name], **(options or {}).get(name, {})})
            try:
                return body(source)
            except SourceError as exc:
                message = str(exc)
                # A clean failure names the source and says what to do; never a bare decoder or socket error.
                assert ("GitHub" in message or "Discord" in message or "github:" in message or "discord:" in message), message
                run.reruns.append(f"{name} {step} attempt {n + 1}: {type(exc).__name__}: {message}")
                assert n < MAX_RERUNS_PER_STEP, f"{name} {step} still failing after {n + 1} attempts:\n" + "\n".join(run.reruns)
            finally:
                run.telemetry_requests[name] += source.telemetry.requests
                run.waits[name] += [(w.seconds, w.reason) for w in source.telemetry.waits]

    for name in ("github", "discord"):
        # During the week: the sensor's incremental pass of the open window, then a probe from its cursors.
        attempt(name, "open-window pass", lambda s: collect_epoch(store, s, key, now=end - timedelta(minutes=1), full=False))
        cursors = {ref: store.get_cursor(ref.source, ref.stream, ref.ref) for ref in build_source(name, policy, sandbox.env()).streams()}
        attempt(name, "probe", lambda s: s.probe(cursors))
        # Monday: the closed week in full with its completeness check; then a retried job, which changes nothing.
        closed = attempt(name, "closed-window pass", lambda s: collect_epoch(store, s, key, now=end + timedelta(days=1)))
        again = attempt(name, "closed-window rerun", lambda s: collect_epoch(store, s, key, now=end + timedelta(days=1)))
        run.reports[name] = (closed, again)
    run.requests.update(r.server for r in sandbox.log.records())
    run.seconds = round(time.monotonic() - started, 1)
    return run


@pytest.fixture(scope="module")
def week_sandbox(big_org) -> Iterator[Sandbox]:
    # The search resource's real 30/minute would make the closed passes wait a minute: not what this measures.
    with start_sandbox(big_org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN,
                       github_rate_limits={"search": (10_000, 60.0)}) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def floor(week_sandbox, big_org, pg_server_url, template_db) -> Run:
    """The fault-free cost of the same sequence, on a ledger of its own."""
    week_sandbox.faults.clear()
    with scratch_database(pg_server_url, f"cp_floor_{os.getpid()}", template=template_db) as url:
        engine = sa.create_engine(url)
        try:
            run = week_sequence(LedgerStore(engine), week_sandbox, big_org)
        finally:
            engine.dispose()
    assert run.reruns == [] and not week_sandbox.log.faults()
    return run


def assert_exact_week(store: LedgerStore, sandbox: Sandbox, org, run: Run) -> None:
    window = org.windows[0]
    for name in ("github", "discord"):
        assert_ground_truth(store, sandbox, window, name)
        rows = store.events_between(*window, source=name)
        assert len(rows) == len(expected_view(sandbox, window, name)), f"{name}: duplicate rows"
        closed, again = run.reports[name]
        assert closed.completeness and not closed.shortfalls, closed.completeness
        assert again.new == 0 and not again.shortfalls, f"{name}: the rerun of the closed week wrote {again.new} facts"


def fault_report(rule: RandomFaults, run: Run, floor: Run) -> str:
    lines = [f"faulted requests {sum(run.requests.values())} (github {run.requests['github']}, discord {run.requests['discord']}), "
             f"floor {sum(floor.requests.values())} (github {floor.requests['github']}, discord {floor.requests['discord']}); "
             f"adapter calls {dict(run.telemetry_requests)} vs {dict(floor.telemetry_requests)}; "
             f"waits github {len(run.waits['github'])} / {run.waited('github')} s, discord {len(run.waits['discord'])} / "
             f"{run.waited('discord')} s; reruns {len(run.reruns)}; {run.seconds} s (floor {floor.seconds} s)"]
    lines += [f"  {name}: fired {rule.fired_by[name]}" for name in (c.name for c in rule.classes)]
    lines += [f"  rerun: {r}" for r in run.reruns]
    return "\n".join(lines)


def run_with_faults(store, sandbox, org, floor, classes) -> tuple[RandomFaults, Run]:
    sandbox.faults.clear()
    rule = RandomFaults(classes, RATE, SEED)
    sandbox.faults.add(rule)
    try:
        run = week_sequence(store, sandbox, org)
    finally:
        sandbox.faults.clear()
    print("\n" + fault_report(rule, run, floor))
    return rule, run


def assert_faults_and_costs(rule: RandomFaults, run: Run, floor: Run, sandbox: Sandbox) -> None:
    report = fault_report(rule, run, floor)
    never = [c.name for c in rule.classes if rule.fired_by[c.name] == 0]
    assert never == [], f"fault classes that never fired: {never}\n{report}"
    # The sandbox's log agrees: one logged fault per fired fault, and about RATE of all requests.
    logged = sandbox.log.faults()
    assert len(logged) == sum(rule.fired_by.values()), report
    total = sum(run.requests.values())
    assert 0.1 * total <= len(logged) <= 0.3 * total, report
    # Waits are logged, not slept silently: at least one Telemetry wait per fired rate-limit fault.
    for name in ("github", "discord"):
        limited = sum(rule.fired_by[c.name] for c in rule.classes if c.server == name and c.waits)
        assert len(run.waits[name]) >= limited, f"{name}: {len(run.waits[name])} waits logged for {limited} rate limits\n{report}"
        assert run.waited(name) >= 0.05 * limited, report
    # No tight retry loop and no week-long rerun per fault: requests stay near floor / (1 - RATE).
    bound = sum(floor.requests.values()) / (1 - RATE) * 1.5 + SLACK
    assert total <= bound, f"{total} requests, more than {bound:.0f}\n{report}"
    assert len(run.reruns) <= MAX_RERUNS, report


def test_a_week_with_20_percent_random_faults_is_collected_exactly(store, week_sandbox, big_org, floor, scale):
    rule, run = run_with_faults(store, week_sandbox, big_org, floor, CLASSES + TRUNCATED)
    assert_exact_week(store, week_sandbox, big_org, run)
    assert_faults_and_costs(rule, run, floor, week_sandbox)
