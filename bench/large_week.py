"""Benchmarks 2 and 3 of issue 13: the large week's requests vs floor, and the collector's and resolver's peak RSS.

Benchmark 2 (large week): >= 5,000 merged PRs, 15,000 reviews and 3,000 closed issues over 20 repos and >= 200,000
messages in 20 allow-listed Discord channels in one week, served by the sandbox in a process of its own
(``bench/sandbox_process.py``). The week is collected an hour after it closed with the real collectors
(``build_source`` + ``collect_epoch``) into a fresh temporary database: requests beside the floor per stream
(``ceil(items / 100)``, doubled for PRs and issues, whose listing pages are each followed by one GraphQL query, as
``bench/api_requests.py`` counts it), wall time and events/s, and the ledger checked against the sandbox's ground truth.

Benchmark 3 (memory growth): the GitHub collector, the Discord collector and the resolver (``resolve_epoch`` +
``allocate_epoch`` over the collected week, then the ``epoch_allocations`` asset's ``rules_view``) each run in a fresh process of their own, which reports its peak RSS
(``VmHWM``, not ``ru_maxrss``, which a child inherits from its parent) as it exits; the same week with N x the messages (``--messages-multiplier 1,10``) is run after it
in a new sandbox and database, and the peaks are printed side by side with their ratio (issue 13: < 1.5x).

``--profile`` runs the same children under ``tracemalloc`` (a thread keeps the snapshot of the highest traced
memory) and prints their top allocation sites: the innermost frame, and the innermost frame in credit_pipeline.

    python bench/large_week.py [--scale 1.0] [--messages-multiplier 1,10] [--profile] [--no-rules] [--discord-pool-share 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT = "LARGE_WEEK_RESULT "
PER_PAGE = {"pull_requests": 2, "issues": 2}  # a listing page and the GraphQL details query of that page per 100 items


def maxrss_mib() -> float:
    """This process's own peak RSS: ``VmHWM`` of its address space. Not ``ru_maxrss``: Linux keeps that across
    ``execve``, so a child started by this orchestrator reported the orchestrator's peak (its sets of a week's
    event ids) whenever that was higher than its own; the figures before 2026-12-04 carry that error."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- profiling (children) ------------------------------------------------------------------------------------------

class PeakSnapshots:
    """tracemalloc with a sampler thread that keeps the snapshot taken at the highest traced memory seen."""

    def __init__(self, frames: int = 12, interval: float = 0.5) -> None:
        import tracemalloc

        self.tm = tracemalloc
        tracemalloc.start(frames)
        self.best = None
        self.best_size = 0
        self.snapshots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def sample(self, force: bool = False) -> None:
        current, _ = self.tm.get_traced_memory()
        if (force and current > self.best_size) or current > self.best_size * 1.1 + (8 << 20):
            self.best = self.tm.take_snapshot()
            self.best_size = current
            self.snapshots += 1

    def report(self, top: int = 15) -> dict:
        self._stop.set()
        self._thread.join()
        self.sample(force=True)
        _, peak = self.tm.get_traced_memory()
        snap = self.best.filter_traces([self.tm.Filter(False, self.tm.__file__), self.tm.Filter(False, "<frozen importlib._bootstrap>")])
        inner: Counter = Counter()
        counts: Counter = Counter()
        ours: Counter = Counter()
        ours_counts: Counter = Counter()
        for trace in snap.traces:
            frames = list(trace.traceback)  # oldest first
            site = frames[-1]
            inner[f"{site.filename}:{site.lineno}"] += trace.size
            counts[f"{site.filename}:{site.lineno}"] += 1
            mine = next((f for f in reversed(frames) if "credit_pipeline" in f.filename and "/sandbox/" not in f.filename), None)
            key = f"{mine.filename}:{mine.lineno}" if mine else "(no credit_pipeline frame)"
            ours[key] += trace.size
            ours_counts[key] += 1
        self.tm.stop()
        short = lambda p: p.replace(os.path.dirname(HERE) + "/", "").split("site-packages/")[-1]  # noqa: E731
        return {"traced_peak_mib": round(peak / 2**20, 1), "snapshot_mib": round(self.best_size / 2**20, 1), "snapshots": self.snapshots,
                "innermost": [[short(k), round(v / 2**20, 1), counts[k]] for k, v in inner.most_common(top)],
                "credit_pipeline": [[short(k), round(v / 2**20, 1), ours_counts[k]] for k, v in ours.most_common(top)]}


def child(mode: str, config_file: str) -> int:
    with open(config_file) as f:
        cfg = json.load(f)
    if cfg.get("memory_limit_gib"):  # a guard for a shared machine: this process fails, nobody else's is OOM-killed
        limit = int(cfg["memory_limit_gib"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import sqlalchemy as sa

    from credit_pipeline.core.policy import validate_policy
    from credit_pipeline.ledger.store import LedgerStore
    from credit_pipeline.stages.allocate import allocate_epoch
    from credit_pipeline.stages.collect import collect_epoch
    from credit_pipeline.stages.resolve import resolve_epoch
    from credit_pipeline.stages.sources_config import build_source

    engine = sa.create_engine(cfg["url"])
    store = LedgerStore(engine)
    policy = validate_policy(cfg["policy"])
    key, now = cfg["key"], datetime.fromisoformat(cfg["now"])
    out: dict = {"base_rss_mib": round(maxrss_mib(), 1)}
    profiler = PeakSnapshots() if cfg.get("profile") == "tracemalloc" else None
    started = time.perf_counter()
    if mode == "collect":
        source = build_source(cfg["source"], policy, cfg["env"])
        report = collect_epoch(store, source, key, now=now)
        out.update(new=report.new, seen=report.seen, requests=report.requests, waited=report.waited_seconds,
                   shortfalls=report.shortfalls, by_stream=dict(source.telemetry.by_stream),
                   streams=[[str(r), r.stream, str(r.ref)] for r in source.streams()], notes=report.notes[:5])
    else:
        resolved = resolve_epoch(store, key, policy)
        out.update(resolve_seconds=round(time.perf_counter() - started, 1), resolve_rss_mib=round(maxrss_mib(), 1),
                   mode=resolved.mode, curated=resolved.curated, events_in_window=resolved.events_in_window,
                   by_resolution=resolved.by_resolution, written=resolved.written)
        t1 = time.perf_counter()
        allocated = allocate_epoch(store, key, policy, now=now)
        out.update(allocate_seconds=round(time.perf_counter() - t1, 1), entered_review=allocated.entered_review,
                   review_blocked=allocated.review_blocked, recipients=len(allocated.state.final_units),
                   allocate_rss_mib=round(maxrss_mib(), 1))
        # What the epoch_allocations asset adds for its metadata: the rules view (and, under rules, the same
        # policy simulated without them), read a row at a time.
        from credit_pipeline.stages.explain import rules_view
        from credit_pipeline.stages.resolve import effective_policy

        t2 = time.perf_counter()
        view = rules_view(store, key, effective_policy(store.get_epoch(key), policy))
        out.update(view_seconds=round(time.perf_counter() - t2, 1), view_rules=len(view.summary))
    out["seconds"] = round(time.perf_counter() - started, 2)
    if profiler:
        out["profile"] = profiler.report()
    engine.dispose()
    out["peak_rss_mib"] = round(maxrss_mib(), 1)
    print(RESULT + json.dumps(out, default=str), flush=True)
    return 0


# -- orchestration ----------------------------------------------------------------------------------------------------

class SandboxProcess:
    """``bench/sandbox_process.py`` as a child: its info line, and its one-word commands."""

    def __init__(self, scale: float, multiplier: float, truth: str, bucket: int) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "sandbox_process.py"), "--scale", str(scale),
                                      "--messages-multiplier", str(multiplier), "--truth", truth, "--discord-bucket-limit", str(bucket)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the sandbox process exited ({self.proc.wait()}) before serving")
        self.info = json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            self.proc.kill()  # our own child, by its Popen handle
            self.proc.wait()


def memray_peak(path: str, top: int = 15) -> dict:
    """The allocations live at the high-water mark of a memray capture, by innermost frame and innermost
    credit_pipeline frame (memray without --trace-python-allocators: pymalloc arenas are charged to the
    allocation that asked for the arena, a sample of who fills them)."""
    from memray import FileReader

    reader = FileReader(path)
    inner: Counter = Counter()
    ours: Counter = Counter()
    total = 0
    short = lambda p: p.replace(os.path.dirname(HERE) + "/", "").split("site-packages/")[-1]  # noqa: E731
    for record in reader.get_high_watermark_allocation_records(merge_threads=True):
        frames = list(record.stack_trace(max_stacks=40))  # innermost first: (function, file, line)
        total += record.size
        site = frames[0] if frames else ("?", "(native)", 0)
        inner[f"{short(site[1])}:{site[2]} {site[0]}"] += record.size
        mine = [f for f in frames if "credit_pipeline" in f[1] and "/sandbox/" not in f[1]][:2]  # the site and its caller
        ours[" <- ".join(f"{short(f[1])}:{f[2]} {f[0]}" for f in mine) if mine else "(no credit_pipeline frame)"] += record.size
    mib = lambda n: round(n / 2**20, 1)  # noqa: E731
    return {"traced_peak_mib": mib(reader.metadata.peak_memory), "snapshot_mib": mib(total), "snapshots": "memray high-water mark",
            "innermost": [[k, mib(v), 0] for k, v in inner.most_common(top)],
            "credit_pipeline": [[k, mib(v), 0] for k, v in ours.most_common(top)]}


def run_child(mode: str, cfg: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    capture = f.name + ".memray"
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, f.name]
    if cfg.get("profile") == "memray":
        command = [sys.executable, "-m", "memray", "run", "--quiet", "--force", "-o", capture, *command[1:]]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT)]
        if done.returncode or not lines:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"the {mode} child failed ({done.returncode})")
        result = json.loads(lines[-1][len(RESULT):])
        if cfg.get("profile") == "memray":
            result["profile"] = memray_peak(capture)
        return result
    finally:
        os.unlink(f.name)
        if os.path.exists(capture):
            os.unlink(capture)


def shipped_rules() -> dict:
    """The ``rules`` section of the repository's ``policy.yaml`` (what a new deployment runs)."""
    import yaml

    with open(os.path.join(HERE, "..", "policy.yaml")) as f:
        return yaml.safe_load(f)["rules"]


def policy_document(info: dict, rules: bool = True, discord_share: int | None = None) -> dict:
    doc = {"version": 1, "epoch": {"anchor": info["key"]}, "sources": info["sources"], "exclude": info["exclude"],
           "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000, "discord:message_sent": 100},
           "pool": {"base_issuance": 10000}, "approvers": ["0x1111111111111111111111111111111111111111"]}
    if rules:  # version 2 with the shipped rules: the resolver decides every rule, the Discord cap is binding
        doc.update(version=2, rules=shipped_rules())
        if discord_share:  # the passes a binding pool_share adds (totals, remainders ranked in the database)
            doc["rules"].setdefault("caps", {})["pool_share"] = {"discord": discord_share}
    return doc


def ledger_ids(url: str, start: datetime, end: datetime) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=50_000).exec_driver_sql(
                "SELECT event_id FROM activity_events WHERE event_time >= %(s)s AND event_time < %(e)s", {"s": start, "e": end})
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def run_week(args: argparse.Namespace, multiplier: float, profile: bool) -> dict:
    import sqlalchemy as sa

    from credit_pipeline.ledger.engine import normalize_url
    from credit_pipeline.ledger.migrations import upgrade

    sys.path.insert(0, HERE)
    from api_requests import temp_database

    t0 = time.perf_counter()
    truth_file = tempfile.NamedTemporaryFile(prefix="lw_truth_", suffix=".txt", delete=False).name
    sandbox = SandboxProcess(args.scale, multiplier, truth_file, args.discord_bucket_limit)
    info = sandbox.info
    start, end = datetime.fromisoformat(info["start"]), datetime.fromisoformat(info["end"])
    kinds = info["kinds"]
    print(f"\n=== week {info['key']} x{multiplier:g} messages{f' (profiled: {profile})' if profile else ''}: "
          f"{kinds.get('pr_merged', 0):,} merged PRs, {kinds.get('review_submitted', 0):,} reviews, {kinds.get('issue_closed', 0):,} "
          f"closed issues over {info['repos']} repos; {kinds.get('message_sent', 0):,} messages in {info['channels']} allow-listed channels "
          f"(in the window; the sandbox holds {info['stats']['messages']:,} messages, {info['stats']['pulls']:,} PRs; generated in "
          f"{info['generated_seconds']} s, served after {info['setup_seconds']} s)", flush=True)
    policy_doc = policy_document(info, args.rules, args.discord_pool_share)
    print(f"  policy: version {policy_doc['version']}"
          + (f", policy.yaml's rules{', Discord pool_share ' + str(args.discord_pool_share) + '%' if args.discord_pool_share else ''}"
             if args.rules else ", no rules"), flush=True)
    url, drop = temp_database(normalize_url(args.database_url), f"_lw{int(multiplier * 10)}{'p' if profile else ''}")
    result: dict = {"multiplier": multiplier, "info": info, "collect": {}, "profiler": profile, "policy_version": policy_doc["version"],
                    "discord_pool_share": args.discord_pool_share}
    try:
        engine = sa.create_engine(url)
        upgrade(engine)
        engine.dispose()
        base = {"url": url, "env": info["env"], "key": info["key"], "now": (end + timedelta(hours=1)).isoformat(),
                "policy": policy_doc, "profile": profile, "memory_limit_gib": args.child_memory_limit_gib}
        for name in ("github", "discord"):
            sandbox.ask("reset")
            wall = time.perf_counter()
            out = run_child("collect", {**base, "source": name})
            out["wall"] = time.perf_counter() - wall
            out["http"] = sandbox.ask("requests").get(name, 0)
            result["collect"][name] = out
            print(f"  collected {name}: {out['new']:,} new events in {out['seconds']:.1f} s, peak RSS {out['peak_rss_mib']:,.0f} MiB", flush=True)
        stored = ledger_ids(url, start, end)
        with open(truth_file) as f:
            truth = {line.rstrip("\n") for line in f}
        result["missing"], result["extra"], result["truth"] = len(truth - stored), len(stored - truth), len(truth)
        del stored, truth
        result["sandbox_rss_mib"] = round(sandbox.ask("rss")["maxrss_kib"] / 1024, 1)
        if args.collect_only:
            result["resolve"] = None
        else:
            result["resolve"] = run_child("resolve", {**base, "now": (end + timedelta(hours=2)).isoformat()})
        if result["resolve"]:
            print(f"  resolved + allocated + the asset's rules view in {result['resolve']['seconds']:.1f} s, peak RSS {result['resolve']['peak_rss_mib']:,.0f} MiB", flush=True)
    finally:
        sandbox.stop()
        drop()
        os.unlink(truth_file)
    result["total_seconds"] = time.perf_counter() - t0
    print_week(result)
    return result


def print_week(r: dict) -> None:
    per_ref = {(k, ref): n for k, ref, n in r["info"]["per_ref"]}
    from_stream = {"pull_requests": "pr_merged", "reviews": "review_submitted", "issues": "issue_closed", "messages": "message_sent"}
    print(f"\n{'stream':44} {'items':>8} {'requests':>9} {'floor':>7}")
    totals = {}
    for name, c in r["collect"].items():
        rows = []
        for ref, stream, target in c["streams"]:
            items = per_ref.get((from_stream[stream], target), 0)
            rows.append((ref, items, c["by_stream"].get(ref, 0), PER_PAGE.get(stream, 1) * math.ceil(items / 100)))
        configured = {x[0] for x in rows}
        extra: dict[str, list[int]] = {}  # requests outside the configured streams, by kind: [streams, requests]
        for ref, used in c["by_stream"].items():
            if ref not in configured:
                kind = ("completeness totals (search)" if ref.endswith("(totals)") else "thread listings" if ":threads:" in ref
                        else ref)
                extra.setdefault(kind, [0, 0])
                extra[kind][0] += 1
                extra[kind][1] += used
        for kind, (streams, used) in sorted(extra.items()):
            # a thread listing: one request per channel proves it has none; totals are the completeness check's own
            rows.append((f"{name} {kind} ({streams} refs)", 0, used, streams if kind == "thread listings" else 0))
        for ref, items, used, floor in rows:
            print(f"{ref:44} {items:>8,} {used:>9,} {floor:>7,}")
        totals[name] = (sum(x[1] for x in rows), sum(x[2] for x in rows), sum(x[3] for x in rows))
    print(f"\n{'source':8} {'items':>8} {'new':>8} {'requests':>9} {'http seen':>9} {'floor':>7} {'ratio':>6} {'seconds':>8} "
          f"{'events/s':>9} {'waits s':>8} {'peak RSS MiB':>12}")
    for name, c in r["collect"].items():
        items, used, floor = totals[name]
        print(f"{name:8} {items:>8,} {c['new']:>8,} {c['requests']:>9,} {c['http']:>9,} {floor:>7,} {c['requests'] / max(floor, 1):>6.2f} "
              f"{c['seconds']:>8.1f} {c['new'] / max(c['seconds'], 1e-9):>9,.0f} {c['waited']:>8.1f} {c['peak_rss_mib']:>12,.0f}")
    new = sum(c["new"] for c in r["collect"].values())
    secs = sum(c["seconds"] for c in r["collect"].values())
    print(f"{'both':8} {'':>8} {new:>8,} {'':>9} {'':>9} {'':>7} {'':>6} {secs:>8.1f} {new / max(secs, 1e-9):>9,.0f}")
    short = {n: c["shortfalls"] for n, c in r["collect"].items() if c["shortfalls"]}
    print(f"\nground truth: {r['truth']:,} events in the window; the ledger has {r['missing']:,} missing and {r['extra']:,} extra "
          f"({'EXACT' if not r['missing'] and not r['extra'] else 'NOT EXACT'}); completeness shortfalls: {short or 'none'}")
    v = r["resolve"] or {}
    if v:
        print(f"resolve: {v['events_in_window']:,} events in the window, {v['curated']:,} curated ({v['by_resolution']}), mode {v['mode']}, "
              f"{v['resolve_seconds']} s; allocate: {v['allocate_seconds']} s, {v['recipients']} recipients, entered review {v['entered_review']}"
              f"{'' if v['entered_review'] else ' blocked: ' + '; '.join(v['review_blocked'])}")
    print(f"sandbox process peak RSS {r['sandbox_rss_mib']:,.0f} MiB (not the collector's); week total {r['total_seconds']:.0f} s")
    for what, c in [("github collector", r["collect"]["github"]), ("discord collector", r["collect"]["discord"]), ("resolver", v)]:  # noqa: B007
        if "profile" in c:
            p = c["profile"]
            print(f"\n{r.get('profiler', 'profile')}, {what}: traced peak {p['traced_peak_mib']} MiB; top sites in the snapshot at {p['snapshot_mib']} MiB "
                  f"({p['snapshots']} snapshots)")
            print("  innermost frame:")
            for site, mib, n in p["innermost"]:
                print(f"    {mib:>8.1f} MiB {n or '':>9} {'blocks' if n else '':6}  {site}")
            print("  innermost credit_pipeline frame:")
            for site, mib, n in p["credit_pipeline"]:
                print(f"    {mib:>8.1f} MiB {n or '':>9} {'blocks' if n else '':6}  {site}")


def print_growth(weeks: list[dict]) -> None:
    base = weeks[0]
    print(f"\nmemory growth (peak RSS of each fresh process, MiB; an interpreter with the imports is about "
          f"{base['collect']['discord']['base_rss_mib']:.0f} MiB; issue 13's target: < 1.5x; nan: not run)")
    header = "".join(f" {'x%g msgs' % w['multiplier']:>12}" for w in weeks)
    ratios = "".join(f" {'ratio x%g' % w['multiplier']:>10}" for w in weeks[1:])
    print(f"{'process':20}{header}{ratios}")
    rows = [("messages in week", lambda w: w["info"]["kinds"].get("message_sent", 0)),
            ("github collector", lambda w: w["collect"]["github"]["peak_rss_mib"]),
            ("discord collector", lambda w: w["collect"]["discord"]["peak_rss_mib"]),
            ("resolver (resolve)", lambda w: (w["resolve"] or {}).get("resolve_rss_mib", math.nan)),
            ("resolver (+allocate)", lambda w: (w["resolve"] or {}).get("allocate_rss_mib", math.nan)),
            ("+ the asset's view", lambda w: (w["resolve"] or {}).get("peak_rss_mib", math.nan))]
    for name, get in rows:
        cells = "".join(f" {get(w):>12,.0f}" for w in weeks)
        rs = "".join(f" {get(w) / max(get(base), 1e-9):>9.2f}x" for w in weeks[1:])
        print(f"{name:20}{cells}{rs}")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the whole week (1.0 = the issue's large week)")
    parser.add_argument("--messages-multiplier", default="1,10",
                        help="comma-separated message multipliers; the first is the baseline of the growth ratios (default 1,10)")
    parser.add_argument("--profile", nargs="?", const="memray", choices=["memray", "tracemalloc"],
                        help="run the children under memray (pip install memray; the default) or tracemalloc (slow: 12 frames) and "
                             "print the top allocation sites at their peak")
    parser.add_argument("--discord-bucket-limit", type=int, default=50, help="the sandbox's Discord requests per second (Discord's: 50)")
    parser.add_argument("--child-memory-limit-gib", type=float, default=14.0,
                        help="address-space limit of each collector/resolver child (RLIMIT_AS), so a run cannot OOM the machine")
    parser.add_argument("--baseline-json", help="start from the weeks of an earlier run's --json-out (the growth baseline is its first)")
    parser.add_argument("--rules", action=argparse.BooleanOptionalAction, default=True,
                        help="a version-2 policy with policy.yaml's rules (the default), or --no-rules for version 1 without them")
    parser.add_argument("--discord-pool-share", type=int, metavar="PERCENT",
                        help="with the rules, also cap Discord's share of the pool (rules.caps.pool_share.discord)")
    parser.add_argument("--collect-only", action="store_true", help="skip the resolver (a quick collector-only growth run)")
    parser.add_argument("--json-out", help="also write every figure to this JSON file (after each week)")
    args = parser.parse_args()
    multipliers = [float(x) for x in args.messages_multiplier.split(",") if x.strip()]
    t0 = time.perf_counter()
    weeks = []
    if args.baseline_json:  # weeks measured by an earlier run of this script (its --json-out)
        with open(args.baseline_json) as f:
            weeks = json.load(f)
    for m in multipliers:
        weeks.append(run_week(args, m, args.profile))
        if args.json_out:  # every week so far, the baseline's included
            with open(args.json_out, "w") as f:
                json.dump(weeks, f, default=str)
    if len(weeks) > 1:
        print_growth(weeks)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s (a 2-core machine shared with other work: timings are slower than a quiet machine's)")
    bad = any(w["missing"] or w["extra"] for w in weeks)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
