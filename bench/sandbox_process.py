"""The sandbox of ``bench/large_week.py`` in a process of its own, so that the collector's RSS is its own.

Builds the large week (``large_week_org``) from its seed and parameters, starts both sandbox servers on
ephemeral ports, writes the ground truth's event ids (one a line) to ``--truth``, and prints one JSON line
on stdout: the env a collector reads, the epoch key, the policy's sources and bot accounts, the in-window
counts and, per stream, the items it holds. Then it answers one-word commands on stdin, one JSON line each:
``requests`` (requests each server saw since the last ``reset``), ``reset``; it stops when stdin closes.

    python bench/sandbox_process.py --truth /tmp/truth.txt [--scale 1.0] [--messages-multiplier 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org

WEEK = datetime(2026, 2, 16, tzinfo=UTC)
# Bulk activity is spread over the week plus 3 days either side (13 days), so 7/13 of it lands in the week:
# 20 repos x 480 merged PRs -> ~5,170 merged in the week, x 3 reviews (on every PR) -> ~15,000+, 400 issues (70 %
# closed) -> ~3,000 closed; 21 channels (20 allow-listed) x 19,000 messages -> ~204,600 in the week.
REPOS, PRS, REVIEWS, ISSUES, CHANNELS, MESSAGES = 20, 480, 3, 400, 21, 19_000



def own_peak_kib() -> int:
    """This process's own peak RSS (``VmHWM``); ``ru_maxrss`` would include its parent's peak (kept across exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def large_week_org(scale: float = 1.0, messages_multiplier: float = 1.0):
    """The large week of issue 13 (benchmark 2); the clock stands an hour after the week closed."""
    return generate_org(seed=2026, week_start=WEEK, weeks=1, repos=REPOS, prs_per_repo=max(1, int(PRS * scale)),
                        reviews_per_pr=REVIEWS, issues_per_repo=max(1, int(ISSUES * scale)), channels=CHANNELS,
                        messages_per_channel=max(1, int(MESSAGES * scale * messages_multiplier)),
                        now=WEEK + timedelta(days=7, hours=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--messages-multiplier", type=float, default=1.0)
    parser.add_argument("--truth", required=True, help="file to write the ground truth's event ids to")
    parser.add_argument("--discord-bucket-limit", type=int, default=50, help="Discord requests per second (Discord's own: 50)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    org = large_week_org(args.scale, args.messages_multiplier)
    generated = time.perf_counter() - t0
    window = org.windows[0]
    with start_sandbox(org, github_token="bench", discord_token="bench", discord_bucket_limit=args.discord_bucket_limit) as sandbox:
        truth = sandbox.ground_truth(*window)
        kinds = Counter(x.event_type for x in truth.values())
        per_ref = Counter((x.event_type, x.repo or x.channel_id) for x in truth.values())
        with open(args.truth, "w") as out:
            for event_id in sorted(truth):
                out.write(event_id + "\n")
        info = {
            "env": sandbox.env(), "key": window[0].date().isoformat(), "start": window[0].isoformat(), "end": window[1].isoformat(),
            "sources": org.policy_sources(), "exclude": org.bot_accounts(), "kinds": dict(kinds), "truth": len(truth),
            "per_ref": [[k, str(r), n] for (k, r), n in sorted(per_ref.items(), key=lambda x: (x[0][0], str(x[0][1])))],
            "repos": len(org.repos), "channels": len(org.allow_listed_channels), "stats": org.stats(),
            "generated_seconds": round(generated, 1), "setup_seconds": round(time.perf_counter() - t0, 1),
        }
        del truth, per_ref
        print(json.dumps(info), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "requests":
                records = sandbox.log.records()
                print(json.dumps(dict(Counter(r.server for r in records))), flush=True)
            elif command == "reset":
                sandbox.log.reset()
                print("{}", flush=True)
            elif command == "rss":
                print(json.dumps({"maxrss_kib": own_peak_kib()}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
