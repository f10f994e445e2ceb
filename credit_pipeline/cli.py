"""The ``credit-pipeline`` command. Thin: parse arguments, call a stage, print.

Exit codes: 0 success, 1 a check failed (verify FAIL), 2 bad input or a refused
operation. Messages go to stderr and name what to fix.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from credit_pipeline.core.epochs import EpochKeyError
from credit_pipeline.core.policy import PolicyError
from credit_pipeline.ledger.engine import DatabaseConfigError, resolve_database
from credit_pipeline.ledger.migrations import MigrationError
from credit_pipeline.sources.base import SourceError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
FREE_TEXT_OPTIONS = {"--reason", "--note", "--evidence"}


class UsageError(ValueError):
    """Arguments that do not make a command (exit 2)."""


class CheckFailed(Exception):
    """A verification that ran and found a mismatch (exit 1)."""


def _store():
    from credit_pipeline.ledger.store import LedgerStore

    return LedgerStore.open()


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


# -- db ----------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from credit_pipeline.ledger.engine import get_engine
    from credit_pipeline.ledger.migrations import upgrade

    target = resolve_database()
    print(f"database: {target.describe()}")
    applied = upgrade(get_engine())
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ' (already up to date)'}")
    return EXIT_OK


def cmd_db_status(args: argparse.Namespace) -> int:
    from credit_pipeline.ledger.engine import get_engine
    from credit_pipeline.ledger.migrations import status

    target = resolve_database()
    engine = get_engine()
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
    print(f"database: {target.describe()}")
    print(f"server:   PostgreSQL {version} ({'embedded' if target.embedded else 'external'})")
    states = status(engine)
    _print_table([{"version": s.version, "name": s.name, "state": s.state, "applied_at": s.applied_at or ""} for s in states],
                 ["version", "name", "state", "applied_at"])
    bad = [s for s in states if s.state != "applied"]
    if bad:
        print(f"{len(bad)} migration(s) not applied as on disk: run `credit-pipeline db upgrade`", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def cmd_db_stop(args: argparse.Namespace) -> int:
    from credit_pipeline.ledger.engine import credit_home, stop_embedded_server

    data_dir = credit_home() / "pgdata"
    print(f"embedded server in {data_dir}: " + ("stopped" if stop_embedded_server(data_dir) else "not running"))
    return EXIT_OK


# -- policy ------------------------------------------------------------------


def cmd_policy_check(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.settings import load_policy, policy_path

    policy = load_policy(args.policy)
    print(f"{policy_path(args.policy)}: valid (version {policy.version})")
    print(f"policy hash: {policy.policy_hash}")
    return EXIT_OK


# -- epochs ------------------------------------------------------------------


def cmd_epochs(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.report import epoch_overview

    rows = epoch_overview(_store())
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif not rows:
        print("no epochs yet: collect activity first (credit-pipeline collect --epoch KEY)")
    else:
        _print_table(rows, ["key", "window", "status", "events", "late_events", "completeness", "pool", "revision", "statement_hash"])
        for row in rows:
            if row["revision"] and row["revision"] > 1:
                print(f"{row['key']}: revision {row['revision']} supersedes the earlier ones: {row['chain']}")
    return EXIT_OK


# -- identity ------------------------------------------------------------------


def _rederived(keys: list[str]) -> str:
    return f"; re-derived epoch(s) {', '.join(keys)}" if keys else ""


def cmd_identity_bind(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.admin import bind_account
    from credit_pipeline.stages.settings import current_actor

    if args.provider == "wallet":
        return _bind_wallet(args)
    if args.signature or args.key_env or args.print_message:
        raise UsageError(f"--signature, --key-env and --print-message are for wallets; a {args.provider} account is bound by its id")
    evidence = {"note": args.evidence} if args.evidence else {}
    new, keys = bind_account(_store(), args.provider, args.external_id, args.user_id, _load_policy(args),
                             actor=current_actor(), evidence=evidence)
    print(f"{args.provider}:{args.external_id} -> {args.user_id}" + ("" if new else " (already bound)") + _rederived(keys))
    return EXIT_OK


def _bind_wallet(args: argparse.Namespace) -> int:
    """A payout wallet: bound with the wallet's own EIP-191 signature over the binding message (proof of control)."""
    import os

    from credit_pipeline.core.hashing import sign_message
    from credit_pipeline.stages.admin import bind_wallet, wallet_binding_message
    from credit_pipeline.stages.settings import current_actor

    store = _store()
    message = wallet_binding_message(store, args.external_id, args.user_id)
    if args.print_message:
        print(message)
        return EXIT_OK
    if bool(args.signature) == bool(args.key_env):
        raise UsageError("a wallet is bound with its own signature over the binding message: give --signature 0x... "
                         "(print the message with --print-message and sign it in the wallet, EIP-191 personal_sign) or --key-env VAR")
    signature = args.signature
    if args.key_env:
        key = os.environ.get(args.key_env)
        if not key:
            raise UsageError(f"environment variable {args.key_env} is not set: export the wallet's private key in it, or sign "
                             "the --print-message text in the wallet and pass --signature")
        signature = sign_message(message, key)
    new = bind_wallet(store, args.external_id, args.user_id, signature, actor=current_actor(), note=args.evidence)
    print(f"payout wallet of {args.user_id}: {args.external_id}" + ("" if new else " (already bound)"))
    return EXIT_OK


def cmd_identity_revoke(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.admin import revoke_account
    from credit_pipeline.stages.settings import current_actor

    evidence = {"note": args.evidence} if args.evidence else {}
    user, keys = revoke_account(_store(), args.provider, args.external_id, _load_policy(args), actor=current_actor(), evidence=evidence)
    print(f"{args.provider}:{args.external_id} is no longer bound to {user}{_rederived(keys)}")
    return EXIT_OK


def cmd_identity_merge(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.admin import merge_people
    from credit_pipeline.stages.settings import current_actor

    evidence = {"note": args.evidence} if args.evidence else {}
    moved, keys = merge_people(_store(), args.from_user, args.into_user, _load_policy(args), actor=current_actor(), evidence=evidence)
    print(f"moved {moved} account(s) from {args.from_user} to {args.into_user}{_rederived(keys)}")
    return EXIT_OK


def cmd_identity_sync(args: argparse.Namespace) -> int:
    """identities.yaml -> the identity log: the diff first; written only with --apply."""
    from credit_pipeline.stages.identities_file import apply_sync, load_identities, plan_sync
    from credit_pipeline.stages.settings import current_actor

    store = _store()
    wanted = load_identities(args.file)
    plan = plan_sync(store, wanted, prune=args.prune)
    for line in plan.lines():
        print(line)
    if not plan.changes:
        print(f"{args.file}: nothing to change" + (f" ({len(plan.unlisted)} binding(s) not in the file kept)" if plan.unlisted else ""))
        return EXIT_OK
    if not args.apply:
        print(f"{plan.changes} change(s); nothing written: run again with --apply to record them")
        return EXIT_OK
    keys = apply_sync(store, wanted, plan, _load_policy(args), actor=current_actor())
    print(f"recorded {plan.changes} identity change(s){_rederived(keys)}")
    return EXIT_OK


def cmd_identity_list(args: argparse.Namespace) -> int:
    from eth_utils import to_checksum_address

    if args.unresolved:
        from credit_pipeline.stages.report import unresolved_accounts

        found = unresolved_accounts(_store())
        if args.json:
            print(json.dumps(found, indent=2))
        elif not found:
            print("no unresolved accounts: every credited account is bound to a person")
        else:
            _print_table(found, ["claimant", "login", "credits_held", "units_pending", "epochs", "bind"])
        return EXIT_OK
    rows = [{"provider": p, "external_id": to_checksum_address(e) if p == "wallet" else e, "user_id": u}
            for (p, e), u in sorted(_store().bindings().items())]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["provider", "external_id", "user_id"])
    return EXIT_OK


# -- collect / sandbox --------------------------------------------------------------


def cmd_collect(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from credit_pipeline.core.epochs import parse_epoch_key
    from credit_pipeline.stages.collect import collect_epoch
    from credit_pipeline.stages.settings import load_policy
    from credit_pipeline.stages.sources_config import build_source, configured_sources

    parse_epoch_key(args.epoch)
    policy = load_policy(args.policy)
    names = [args.source] if args.source else configured_sources(policy)
    store = _store()
    now = datetime.now(UTC)
    for name in names:
        source = build_source(name, policy)

        def progress(page, write, report) -> None:
            stats = report.streams[str(page.stream)]
            line = (f"{page.stream}  page {stats.pages}  +{stats.new} new, {stats.seen} seen  "
                    f"({source.telemetry.requests} requests, {len(source.telemetry.waits)} waits)")
            end = "\n" if page.last or not sys.stderr.isatty() else "\r"
            print(line.ljust(100), end=end, file=sys.stderr, flush=True)

        report = collect_epoch(store, source, args.epoch, now=now, full=True if args.full else None, on_page=progress)
        mode = "full window" if report.full else "incremental"
        print(f"{name}: epoch {args.epoch} ({mode}): {report.new} new events, {report.seen} already stored, "
              f"{report.requests} requests, {len(report.waits)} rate-limit waits ({report.waited_seconds} s)")
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        if report.late_events:
            print(f"{len(report.late_events)} late event(s) for epochs already in review or finalized: "
                  f"{', '.join(report.late_events[:5])}{' ...' if len(report.late_events) > 5 else ''}")
        for stream, result in sorted(report.shortfalls.items()):
            why = "".join([" (the source called its own count partial)" if result.get("incomplete") else "",
                           f" ({result['quarantined']} unreadable item(s) quarantined)" if result.get("quarantined") else ""])
            print(f"completeness shortfall: {stream}: stored {result['stored']}, source says {result['source']}{why}", file=sys.stderr)
    return EXIT_OK


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from credit_pipeline.sandbox.runner import serve

    serve(args.host, args.github_port, args.discord_port, args.seed)
    return EXIT_OK


# -- review, approval, statements ----------------------------------------------------


def _load_policy(args: argparse.Namespace):
    """The policy file, or None when none is named and ./policy.yaml is absent.

    Epochs in review or finalized use their pinned policy; only an open epoch needs the
    current one, and the stages say so when it is missing.
    """
    import os

    from credit_pipeline.stages.settings import ENV_POLICY, load_policy, policy_path

    explicit = getattr(args, "policy", None) or os.environ.get(ENV_POLICY)
    if not explicit and not policy_path().is_file():
        return None
    return load_policy(getattr(args, "policy", None))


def cmd_approve(args: argparse.Namespace) -> int:
    import os

    from credit_pipeline.core.hashing import sign_message
    from credit_pipeline.stages.approve import approvable_state, approve_epoch, sign_approval

    if args.sign_only and not args.key_env:
        raise UsageError("--sign-only signs with a key: give --key-env VAR (the variable holding the approver's private key)")

    def private_key() -> str:
        key = os.environ.get(args.key_env or "")
        if not key:
            raise UsageError(f"environment variable {args.key_env} is not set: export the approver's private key in it, "
                             "or pass --signature")
        return key

    store = _store()
    policy = _load_policy(args)
    if args.sign_only:  # only the signature on stdout, for pasting into the Launchpad; nothing recorded
        print(sign_approval(store, args.epoch, private_key(), policy, reviewed_hash=args.hash))
        return EXIT_OK
    state = approvable_state(store, args.epoch, policy)
    print(f"epoch {args.epoch} ({state.status}), revision {state.revision}: {len(state.allocations)} recipients, pool {state.pool_total}")
    print(f"allocation set hash: {state.allocation_set_hash}")
    print("approval message (EIP-191 personal_sign):")
    print("  " + state.approval_message.replace("\n", "\n  "))
    if args.print_message:
        print(f"to approve: credit-pipeline approve --epoch {args.epoch} --hash {state.allocation_set_hash} --key-env VAR "
              "(or --signature 0x...)")
        print(f"for the Launchpad (approve_epoch): credit-pipeline approve --epoch {args.epoch} --sign-only --key-env VAR "
              "prints only the signature, recording nothing")
        return EXIT_OK
    if not args.hash:
        raise UsageError(f"give --hash {state.allocation_set_hash[:12]}... (the allocation set hash you reviewed) so that "
                         "what you sign is what you saw; print it with --print-message")
    signature = args.signature if args.signature else sign_message(state.approval_message, private_key())
    record = approve_epoch(store, args.epoch, args.hash, signature, policy)
    print(f"approved by {record.signer}: revision {record.revision}, allocation set {record.allocation_set_hash}")
    print(f"next: materialize payout_statements for partition {args.epoch} (the admin's finalize)")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from credit_pipeline.core.verification import Expectations
    from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

    if bool(args.epoch) == bool(args.bundle):
        raise UsageError("give either --epoch KEY (verify against the ledger) or a BUNDLE.json file (offline)")
    expectations = Expectations.of(args.expect_approver or (), args.expect_policy_hash, args.expect_ledger)
    if args.bundle:
        path = Path(args.bundle)
        if not path.is_file():
            raise UsageError(f"{path} is not a file; export one with credit-pipeline export --epoch KEY --format json")
        report, what = verify_file_bytes(path.read_bytes(), expectations), str(path)
    else:
        report, what = verify_stored(_store(), args.epoch, expectations), f"epoch {args.epoch} (ledger)"
    if not report.ok:
        raise CheckFailed(f"{what}: {report.mismatch}")
    proved = report.proved
    print(f"OK: {what}: {len(report.checks)} checks recomputed and matched")
    print(f"  epoch {proved['epoch']} revision {proved['revision']}"
          + (f" (supersedes {proved['supersedes']})" if proved.get("supersedes") else "")
          + f", ledger {proved.get('ledger_id') or 'not named (v1 statement)'}")
    print(f"  statement {proved['statement_hash']}; policy {proved['policy_hash']}")
    print(f"  {proved['recipients']} recipients, {proved['credited_events']} credited events, pool {proved['pool_total']}")
    print(f"  signed by {', '.join(proved['signers'])}; the pinned policy names approvers {', '.join(proved['approvers'])}")
    if args.bundle:
        checked = [n for n, given in (("approvers", args.expect_approver), ("policy hash", args.expect_policy_hash),
                                      ("ledger", args.expect_ledger)) if given]
        print("  offline, this proves the bundle is internally consistent and signed by keys its own policy names"
              + (f"; checked against what you expect: {', '.join(checked)}" if checked else
                 "; pass --expect-approver ADDR (and --expect-policy-hash, --expect-ledger) to check those against what you trust"))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from credit_pipeline.ledger.store import LedgerError
    from credit_pipeline.stages.export import ExportRefused, export_statement, held_csv

    rows = _store().statement_rows(args.epoch)
    if not rows:
        raise LedgerError(f"epoch {args.epoch} has no statement yet; finalize it first (materialize payout_statements)")
    chosen = [r for r in rows if r["revision"] == args.revision] if args.revision else rows[-1:]
    if not chosen:
        raise UsageError(f"epoch {args.epoch} has revisions 1 to {rows[-1]['revision']}; --revision {args.revision} is not one of them")
    bundle = json.loads(chosen[0]["bundle"])
    if args.format == "report":
        return _export_report(args, bundle)
    try:
        data = export_statement(bundle, args.format)
    except ExportRefused as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        with open(args.output, "wb") as handle:
            handle.write(data)
        print(f"wrote {args.output}: epoch {args.epoch} revision {chosen[0]['revision']} of {rows[-1]['revision']} ({args.format}), "
              f"statement {chosen[0]['statement_hash']}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if args.format == "safe-airdrop":
        dist = bundle["distribution"]
        held = [line for line in dist["lines"] if line["status"] == "held"]
        say = print if args.output else (lambda text: print(text, file=sys.stderr))
        if args.output:
            held_path = Path(args.output).with_suffix(".held.csv")
            held_path.write_bytes(held_csv(bundle))
            say(f"wrote {held_path}: {len(held)} line(s) held, {dist['held_credits']} credits carried (claimants and people without a wallet)")
        else:
            say(f"{len(held)} line(s) held, {dist['held_credits']} credits carried (export with -o FILE to write them to FILE.held.csv)")
    return EXIT_OK


def _export_report(args: argparse.Namespace, bundle: dict[str, Any]) -> int:
    """The weekly report: Markdown for the forum, and its PNG chart beside it (FILE.png)."""
    from pathlib import Path

    from credit_pipeline.stages.report import report_extras
    from credit_pipeline.stages.weekly_report import report_chart_png, weekly_report_markdown

    extras = report_extras(_store(), args.epoch)
    if not args.output:
        sys.stdout.write(weekly_report_markdown(bundle, chart_name=f"report-{args.epoch}.png", extras=extras))
        print("(the chart is written with -o FILE, as FILE.png beside it)", file=sys.stderr)
        return EXIT_OK
    out = Path(args.output)
    chart = out.with_suffix(".png")
    chart.write_bytes(report_chart_png(bundle))
    out.write_text(weekly_report_markdown(bundle, chart_name=chart.name, extras=extras), encoding="utf-8")
    print(f"wrote {out} and its chart {chart}: epoch {args.epoch} revision {bundle['revision']}, statement {bundle['statement_hash']}")
    return EXIT_OK


def cmd_site(args: argparse.Namespace) -> int:
    """The static transparency site of every finalized epoch: plain files any static host serves."""
    from pathlib import Path

    from credit_pipeline.stages.report import finalized_bundles
    from credit_pipeline.stages.site import build_site

    bundles = finalized_bundles(_store())
    if not bundles:
        raise UsageError("no epoch is finalized yet, so there is nothing to publish; finalize one first (materialize payout_statements)")
    written = build_site(bundles, Path(args.output))
    epochs = len({b["epoch"]["key"] for b in bundles})
    print(f"wrote {len(written)} files to {args.output}: {epochs} finalized epoch(s), {len(bundles)} statement revision(s); "
          f"open {Path(args.output) / 'index.html'}")
    return EXIT_OK


def cmd_proof(args: argparse.Namespace) -> int:
    """One payable line's Merkle proof, as JSON; refuses a recipient the statement does not pay to a wallet."""
    from credit_pipeline.ledger.store import LedgerError

    rows = _store().statement_rows(args.epoch)
    if not rows:
        raise LedgerError(f"epoch {args.epoch} has no statement yet; finalize it first (materialize payout_statements)")
    bundle = json.loads(rows[-1]["bundle"])
    dist = bundle.get("distribution")
    line = next((x for x in (dist or {}).get("lines", []) if x["recipient_id"] == args.recipient), None)
    if line is None:
        raise UsageError(f"{args.recipient} has no line in epoch {args.epoch}'s statement (revision {rows[-1]['revision']}); "
                         "credit-pipeline export --epoch KEY --format csv lists its recipients")
    if line["status"] != "payable" or not dist["merkle"]:
        why = line["held_reason"] or ("its line pays 0 credits" if line["status"] == "nothing" else "the policy names no payout token")
        raise UsageError(f"{args.recipient} has no Merkle claim in epoch {args.epoch}: {why}")
    print(json.dumps({"epoch": args.epoch, "revision": rows[-1]["revision"], "statement_hash": bundle["statement_hash"],
                      "root": dist["merkle"]["root"], "recipient_id": args.recipient, "wallet": line["wallet"],
                      "amount": line["token_amount"], "proof": line["proof"]}, indent=2))
    return EXIT_OK


def cmd_adjust(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.admin import adjust_recipient
    from credit_pipeline.stages.settings import current_actor

    units = None if args.clear else args.units
    if units is None and not args.clear:
        raise UsageError("give --units N with a --reason, or --clear to go back to the proposal")
    adjust_recipient(_store(), args.epoch, args.recipient, units, args.reason, _load_policy(args), actor=current_actor())
    print(f"epoch {args.epoch}: {args.recipient} " + (f"set to {units} units ({args.reason})" if units is not None else "back to the proposal"))
    print("the allocation set hash changed: earlier approvals no longer apply; approve again")
    return EXIT_OK


def cmd_curate(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.admin import curate_event
    from credit_pipeline.stages.settings import current_actor

    included = False if args.exclude else (True if args.include else None)
    key = curate_event(_store(), args.event, _load_policy(args), actor=current_actor(), included=included,
                       weight_override=args.weight, clear_override=args.clear_weight, note=args.note)
    print(f"curated {args.event}; epoch {key}'s allocations are re-derived (earlier approvals of it no longer apply)")
    return EXIT_OK


def cmd_pool_add(args: argparse.Namespace) -> int:
    from credit_pipeline.core.epochs import parse_epoch_key
    from credit_pipeline.stages.admin import add_pool
    from credit_pipeline.stages.settings import current_actor

    parse_epoch_key(args.epoch)
    new = add_pool(_store(), args.epoch, args.component, args.amount, actor=current_actor(), note=args.note, evidence=args.evidence)
    print(f"epoch {args.epoch}: {args.component} = {args.amount}" + ("" if new else " (already recorded)"))
    return EXIT_OK


def cmd_waive(args: argparse.Namespace) -> int:
    from credit_pipeline.core.epochs import parse_epoch_key
    from credit_pipeline.stages.admin import waive_shortfall
    from credit_pipeline.stages.settings import current_actor

    parse_epoch_key(args.epoch)
    waiver = waive_shortfall(_store(), args.epoch, args.reason, actor=current_actor())
    print(f"epoch {args.epoch}: shortfall in {', '.join(waiver['streams'])} waived by {waiver['by']} ({waiver['reason']}); "
          "it is recorded in the epoch and in its statement. Materialize epoch_allocations to enter review")
    return EXIT_OK


def cmd_correct(args: argparse.Namespace) -> int:
    from credit_pipeline.core.epochs import parse_epoch_key
    from credit_pipeline.stages.admin import correct_recipient
    from credit_pipeline.stages.settings import current_actor

    parse_epoch_key(args.epoch)
    revision = correct_recipient(_store(), args.epoch, args.recipient, args.units, args.reason, actor=current_actor())
    print(f"epoch {args.epoch}: {args.recipient} corrected to {args.units} units for revision {revision} ({args.reason})")
    print(f"next: an approver signs revision {revision} (credit-pipeline approve --epoch {args.epoch} --print-message), "
          f"then materialize payout_statements for {args.epoch}; revision {revision - 1} stays as it was")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from credit_pipeline.stages.settings import load_policy
    from credit_pipeline.stages.simulate import simulate_epoch

    store = _store()
    other = load_policy(args.policy)
    epoch = store.get_epoch(args.epoch)
    baseline = load_policy(None) if epoch is not None and epoch.policy_hash is None else None  # an open epoch follows the file
    sim = simulate_epoch(store, args.epoch, other, baseline, policy_source=args.policy)
    for warning in sim.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(sim.as_dict(), indent=2))
        return EXIT_OK

    def signed(n: int) -> str:
        return f"{n:+d}" if n else "0"

    now, then = sim.current, sim.simulated
    print(f"epoch {sim.epoch} ({sim.status}): {sim.compared}")
    print(f"current policy    {now.policy_hash}  {now.policy_source}")
    print(f"simulated policy  {then.policy_hash}  {then.policy_source}")
    if not sim.warnings:
        print("the other policy differs from the current one in its weights or rules only" if now.policy_hash != then.policy_hash
              else "the other policy is the current one")
    print()
    _print_table([{"": name, "current": a, "simulated": b, "difference": signed(b - a)} for name, a, b in (
        ("pool", now.pool_total, then.pool_total), ("units", now.total_units, then.total_units),
        ("credits paid", now.total_credits, then.total_credits), ("recipients paid", now.recipients, then.recipients))],
        ["", "current", "simulated", "difference"])
    print()
    rows = [{**r.__dict__, "units_difference": signed(r.units_difference), "credits_difference": signed(r.credits_difference)}
            for r in sim.rows]
    _print_table(rows, ["recipient_id", "login", "current_units", "simulated_units", "units_difference",
                        "current_credits", "simulated_credits", "credits_difference"])
    if sim.by_rule:
        print()
        print("per rule (counted: events counted with it and their units; not counted: events it stopped; capped: units it took)")
        _print_table([{**r.__dict__, "events_difference": signed(r.simulated_events - r.current_events),
                       "units_difference": signed(r.simulated_units - r.current_units)} for r in sim.by_rule],
                     ["rule", "outcome", "current_events", "simulated_events", "events_difference", "current_units",
                      "simulated_units", "units_difference"])
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from credit_pipeline.core.epochs import parse_epoch_key
    from credit_pipeline.stages.escaping import _CONTROL
    from credit_pipeline.stages.explain import explain_recipient

    parse_epoch_key(args.epoch)
    ex = explain_recipient(_store(), args.epoch, _load_policy(args), args.recipient)
    for line in ex.drift:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(ex.as_dict(), indent=2))
        return EXIT_OK

    def plain(value: Any) -> str:  # details quote outside text (a PR's label): one line, no terminal control codes
        return _CONTROL.sub(" ", str(value)).strip()

    print(f"{ex.recipient_id} in epoch {ex.epoch} ({ex.status}): policy {ex.policy_hash}, {ex.algorithm_version}"
          + ("" if ex.rules else " (the policy has no rules: every included event counts with its weight)"))
    print()
    if ex.events:
        _print_table([{"event_id": e.event_id, "event_type": e.event_type, "event_time": e.event_time,
                       "counted": "yes" if e.counted else "no", "rule": e.rule, "detail": plain(e.detail),
                       "weight": e.weight, "units": e.units,
                       "capped": " ".join(f"{taken} ({cap})" for cap, taken in e.caps.items()) if e.capped else ""}
                      for e in ex.events],
                     ["event_id", "event_type", "event_time", "counted", "rule", "detail", "weight", "units", "capped"])
    else:
        print("no events in this epoch (an allocation line set by an admin)")
    print()
    stopped = ", ".join(f"{rule} {n}" for rule, n in ex.not_counted_by_rule.items())
    print(f"counted      {ex.counted_events} events, {ex.units} milli-units")
    print(f"not counted  {ex.not_counted_events} events" + (f" ({stopped})" if stopped else ""))
    print("capped       " + (", ".join(f"{units} milli-units by {rule}" for rule, units in ex.capped.items()) or "nothing"))
    if ex.stored_proposed_units is None:
        stored = "the stored allocation set has no line for this recipient"
    else:
        stored = f"stored proposal {ex.stored_proposed_units} milli-units over {ex.stored_activity_count} events"
        stored += " (differs: see the warning)" if ex.drift else " (equal)"
        if ex.stored_final_units is not None:
            stored += f"; final {ex.stored_final_units} milli-units, set by an admin: {plain(ex.adjustment_reason or '')}"
    print(f"total        {ex.units} milli-units over {ex.counted_events} counted events; {stored}")
    return EXIT_OK


# -- demo / dev ----------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from credit_pipeline.demo import run_demo

    try:
        run_demo(lambda line: print(line, flush=True))
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def cmd_dev(args: argparse.Namespace) -> int:
    from credit_pipeline.demo import run_dev

    return run_dev(lambda line: print(line, flush=True), port=args.port, github_port=args.github_port, discord_port=args.discord_port)


# -- parser --------------------------------------------------------------------


def _identity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("provider", choices=["github", "discord", "wallet"])
    p.add_argument("external_id", help="GitHub numeric user id or Discord user snowflake (never a login), or a payout wallet "
                                       "address, EIP-55 checksummed")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, and where the help is), exit 2, like every refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {_excerpt(message)} (see {self.prog} --help)\n")


def whole_number(text: str) -> int:
    """An integer written in plain decimal digits (an optional leading '-'), nothing around it."""
    if not re.fullmatch(r"-?[0-9]{1,100}", text):
        raise argparse.ArgumentTypeError(f"{_excerpt(repr(text))} is not a whole number written in at most 100 decimal digits")
    return int(text)


def _excerpt(text: str, limit: int = 48) -> str:
    """``text`` with every run of more than ``limit`` non-space characters cut short: no error echoes a huge value."""
    return re.sub(r"\S{%d,}" % (limit + 1), lambda m: m.group(0)[:limit] + "…", text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="credit-pipeline", description="Transparent weekly contributor payouts on Dagster.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    db = sub.add_parser("db", help="ledger database: upgrade, status, stop").add_subparsers(dest="db_command", required=True, parser_class=OneLineParser)
    db.add_parser("upgrade", help="apply pending sql/ migrations").set_defaults(func=cmd_db_upgrade)
    db.add_parser("status", help="show the database, the server and applied migrations").set_defaults(func=cmd_db_status)
    db.add_parser("stop", help="stop the embedded server of $CREDIT_PIPELINE_HOME (it is restarted on next use)").set_defaults(func=cmd_db_stop)

    policy = sub.add_parser("policy", help="the weight policy").add_subparsers(dest="policy_command", required=True, parser_class=OneLineParser)
    check = policy.add_parser("check", help="validate a policy file and print its hash")
    check.add_argument("--policy", help="policy file (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    check.set_defaults(func=cmd_policy_check)

    epochs = sub.add_parser("epochs", help="list epochs: key, window, status, events, late events, completeness, pool, statement hash")
    epochs.add_argument("--json", action="store_true")
    epochs.set_defaults(func=cmd_epochs)

    identity = sub.add_parser("identity", help="bind platform accounts to people").add_subparsers(dest="identity_command", required=True, parser_class=OneLineParser)
    bind = identity.add_parser("bind", help="bind an account to a person")
    _identity_args(bind)
    bind.add_argument("user_id", help="the person's id in your DAO (e.g. alice)")
    bind.add_argument("--evidence", help="why this binding is right (a link, a signed message)")
    bind.add_argument("--signature", help="wallet: the wallet's EIP-191 signature (0x...) over the message --print-message shows")
    bind.add_argument("--key-env", help="wallet: name of an environment variable holding the wallet's private key (signs here)")
    bind.add_argument("--print-message", action="store_true", help="wallet: print the binding message to sign; nothing is written")
    bind.add_argument("--policy", help="policy file for re-resolving open epochs (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    bind.set_defaults(func=cmd_identity_bind)
    revoke = identity.add_parser("revoke", help="remove an account's binding (logged)")
    _identity_args(revoke)
    revoke.add_argument("--evidence")
    revoke.add_argument("--policy", help="policy file for re-resolving open epochs (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    revoke.set_defaults(func=cmd_identity_revoke)
    merge = identity.add_parser("merge", help="move every account of one person to another (logged)")
    merge.add_argument("from_user")
    merge.add_argument("into_user")
    merge.add_argument("--evidence")
    merge.add_argument("--policy", help="policy file for re-resolving open epochs (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    merge.set_defaults(func=cmd_identity_merge)
    sync = identity.add_parser("sync", help="make identities.yaml true: the diff first, recorded with --apply")
    sync.add_argument("--file", default="identities.yaml", help="the identities file (default ./identities.yaml)")
    sync.add_argument("--apply", action="store_true", help="record the changes (without it nothing is written)")
    sync.add_argument("--prune", action="store_true", help="also revoke bindings the file does not list (kept otherwise)")
    sync.add_argument("--policy", help="policy file for re-resolving open epochs (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    sync.set_defaults(func=cmd_identity_sync)
    listing = identity.add_parser("list", help="current bindings (payout wallets checksummed), or --unresolved accounts")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--unresolved", action="store_true",
                         help="the accounts paid as claimants and not bound: credits held in finalized epochs, units pending in others")
    listing.set_defaults(func=cmd_identity_list)
    collect = sub.add_parser("collect", help="collect one epoch's activity into the ledger (no Dagster needed)")
    collect.add_argument("--epoch", required=True, help="epoch key: the Monday that starts it, YYYY-MM-DD")
    collect.add_argument("--source", choices=["github", "discord"], help="one source only (default: every source in the policy)")
    collect.add_argument("--full", action="store_true", help="re-read the whole window even if it is still open")
    collect.add_argument("--policy", help="policy file (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    collect.set_defaults(func=cmd_collect)

    sandbox = sub.add_parser("sandbox", help="local stand-ins for the GitHub and Discord APIs").add_subparsers(dest="sandbox_command", required=True, parser_class=OneLineParser)
    serve = sandbox.add_parser("serve", help="serve a generated sample org until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--github-port", type=int, default=8765)
    serve.add_argument("--discord-port", type=int, default=8766)
    serve.add_argument("--seed", type=int, default=7)
    serve.set_defaults(func=cmd_sandbox_serve)
    approve = sub.add_parser("approve", help="sign and record an approval of an epoch's current allocation set")
    approve.add_argument("--epoch", required=True)
    how = approve.add_mutually_exclusive_group(required=True)
    how.add_argument("--signature", help="an EIP-191 signature of the approval message, made elsewhere")
    how.add_argument("--key-env", help="name of an environment variable holding the approver's private key")
    how.add_argument("--print-message", action="store_true", help="only print the hash and the message to sign")
    approve.add_argument("--sign-only", action="store_true",
                         help="with --key-env: print only the signature (0x...) of the approval message, for the approve_epoch "
                              "Launchpad; records nothing")
    approve.add_argument("--hash", help="the allocation set hash you reviewed (required to approve; --print-message shows it; "
                                        "with --sign-only, refused unless it is the current one)")
    approve.add_argument("--policy")
    approve.set_defaults(func=cmd_approve)

    verify = sub.add_parser("verify", help="recompute a statement: --epoch KEY from the ledger, or BUNDLE.json offline")
    verify.add_argument("bundle", nargs="?", help="an exported statement bundle (JSON)")
    verify.add_argument("--epoch")
    verify.add_argument("--expect-approver", action="append", metavar="ADDR",
                        help="an approver address you trust (repeatable): FAIL if the statement is signed by anyone else")
    verify.add_argument("--expect-policy-hash", metavar="HASH", help="FAIL unless the statement pins this policy hash")
    verify.add_argument("--expect-ledger", metavar="UUID", help="FAIL unless the statement was issued by this ledger")
    verify.set_defaults(func=cmd_verify)

    export = sub.add_parser("export", help="write a finalized statement: json (the signed bytes), csv, safe-csv, md")
    export.add_argument("--epoch", required=True)
    export.add_argument("--format", choices=["json", "csv", "safe-csv", "md", "safe-airdrop", "merkle", "report"], default="json",
                        help="safe-csv neutralizes cells a spreadsheet would run as formulas; md is a report for people "
                             "(lines by credits, with logins, and the commands that verify it); safe-airdrop is the Safe{Wallet} "
                             "CSV Airdrop file of the wallet-bound lines (held lines go to FILE.held.csv); merkle is OpenZeppelin's "
                             "StandardMerkleTree JSON of the claims; report is the weekly Markdown report (its chart: FILE.png)")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    export.add_argument("--revision", type=whole_number, help="an earlier statement revision (default: the latest, the one that pays)")
    export.set_defaults(func=cmd_export)

    site = sub.add_parser("site", help="build the static transparency site of every finalized epoch (plain files)")
    site.add_argument("--output", "-o", required=True, help="folder to write (index.html, one page per epoch, the lookup)")
    site.set_defaults(func=cmd_site)

    proof = sub.add_parser("proof", help="one recipient's Merkle claim: wallet, token amount, proof and root (JSON)")
    proof.add_argument("--epoch", required=True)
    proof.add_argument("--recipient", required=True, help="the recipient id of the line (a person id)")
    proof.set_defaults(func=cmd_proof)

    adjust = sub.add_parser("adjust", help="set a recipient's final units in an epoch, with a reason")
    adjust.add_argument("--epoch", required=True)
    adjust.add_argument("--recipient", required=True, help="a person's id or a claimant provider:external_id")
    adjust.add_argument("--units", type=whole_number, help="final units (milli-units, integer >= 0)")
    adjust.add_argument("--reason")
    adjust.add_argument("--clear", action="store_true", help="drop the adjustment (back to the proposal)")
    adjust.add_argument("--policy")
    adjust.set_defaults(func=cmd_adjust)

    curate = sub.add_parser("curate", help="exclude/include an event, override its weight, add a note")
    curate.add_argument("--event", required=True, help="event id, e.g. github:pr:acme/widgets:42")
    state = curate.add_mutually_exclusive_group()
    state.add_argument("--exclude", action="store_true")
    state.add_argument("--include", action="store_true")
    weight = curate.add_mutually_exclusive_group()
    weight.add_argument("--weight", type=whole_number, help="override weight in milli-units (>= 0)")
    weight.add_argument("--clear-weight", action="store_true")
    curate.add_argument("--note")
    curate.add_argument("--policy")
    curate.set_defaults(func=cmd_curate)

    waive = sub.add_parser("waive", help="waive an open epoch's completeness shortfall, with a reason (recorded)")
    waive.add_argument("--epoch", required=True)
    waive.add_argument("--reason", required=True, help="why the missing items may be left out")
    waive.set_defaults(func=cmd_waive)

    correct = sub.add_parser("correct", help="correct a finalized epoch: set a recipient's units for the next statement revision")
    correct.add_argument("--epoch", required=True)
    correct.add_argument("--recipient", required=True, help="a person's id or a claimant provider:external_id")
    correct.add_argument("--units", required=True, type=whole_number, help="corrected final units (milli-units, integer >= 0)")
    correct.add_argument("--reason", required=True)
    correct.set_defaults(func=cmd_correct)

    pool = sub.add_parser("pool", help="pool components").add_subparsers(dest="pool_command", required=True, parser_class=OneLineParser)
    pool_add = pool.add_parser("add", help="record a kpi_bonus or top_up component (append-only)")
    pool_add.add_argument("--epoch", required=True)
    pool_add.add_argument("--component", required=True, choices=["kpi_bonus", "top_up", "base_issuance"])
    pool_add.add_argument("--amount", required=True, type=whole_number)
    pool_add.add_argument("--evidence", help="a reference to the decision (vote, proposal URL)")
    pool_add.add_argument("--note")
    pool_add.set_defaults(func=cmd_pool_add)

    simulate = sub.add_parser("simulate", help="an epoch's allocation and payouts under another policy (writes nothing)",
                              description="Compare what epoch KEY pays (the latest statement revision of a finalized epoch, else "
                                          "its stored allocation set) with the same curated events re-weighed under another "
                                          "policy and its rules; adjustments and corrections are kept. Prints both policy hashes, the totals, "
                                          "a per-recipient difference, a per-rule comparison, and a warning for each difference other than the weights and rules "
                                          "that a re-weighing does not apply (sources, anchor, excludes, unresolved, approvers).")
    simulate.add_argument("--epoch", required=True)
    simulate.add_argument("--policy", required=True, help="the other policy file (the epoch's pinned policy is the baseline)")
    simulate.add_argument("--json", action="store_true", help="the comparison as JSON: compared, current, simulated, warnings, rows, by_rule")
    simulate.set_defaults(func=cmd_simulate)

    explain = sub.add_parser("explain", help="a recipient's events in an epoch: counted or not, the rule that decided each, caps",
                             description="List recipient R's events in epoch KEY, in time order, with the decision the policy's "
                                         "rules give each (the same decisions allocation, finalize and verify use): counted or "
                                         "not, the rule and why, weight, units and what each cap took; then the totals and the "
                                         "stored proposal they must equal (a difference is a warning on stderr). An open epoch "
                                         "follows the current policy; one in review or finalized its pinned one.")
    explain.add_argument("--epoch", required=True)
    explain.add_argument("--recipient", required=True, help="a person id or a claimant provider:external_id (e.g. github:583231)")
    explain.add_argument("--policy", help="policy file for an open epoch (default $CREDIT_PIPELINE_POLICY or ./policy.yaml)")
    explain.add_argument("--json", action="store_true", help="the explanation as JSON: events, totals, capped, stored_*, drift")
    explain.set_defaults(func=cmd_explain)

    sub.add_parser("demo", help="run one full sample week end to end on the embedded default and verify it").set_defaults(func=cmd_demo)
    dev = sub.add_parser("dev", help="the demo environment in the Dagster UI, with the sensor and schedule live")
    dev.add_argument("--port", type=int, default=3000, help="the Dagster UI's port (default 3000)")
    dev.add_argument("--github-port", type=int, default=8765, help="the sandbox GitHub's port (default 8765)")
    dev.add_argument("--discord-port", type=int, default=8766, help="the sandbox Discord's port (default 8766)")
    dev.set_defaults(func=cmd_dev)
    return parser


def _redact(text: str) -> str:
    """Hide the password of any URL in a message."""
    import re

    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return _redact(text.splitlines()[0] if text else type(exc).__name__)


def _database_hint() -> str:
    import os

    from credit_pipeline.ledger.engine import ENV_DATABASE_URL

    try:
        where = resolve_database().describe() if os.environ.get(ENV_DATABASE_URL) else "the embedded server"
    except Exception:  # the URL itself is unusable; say so without it
        where = "the configured database"
    return (f"the ledger database ({_redact(where)}) does not answer; check CREDIT_PIPELINE_DATABASE_URL "
            "(credit-pipeline db status), or unset it to use the embedded server")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every refusal is exit 2 with one message naming the fix; exit 1 is only a failed check."""
    import traceback

    import sqlalchemy as sa

    from credit_pipeline.ledger.store import LedgerError

    argv = list(sys.argv[1:] if argv is None else argv)
    for position, value in enumerate(argv, 1):
        free_text = position > 1 and argv[position - 2] in FREE_TEXT_OPTIONS  # a reason or note may span lines
        if "\x00" in value or (not free_text and any(c in value for c in "\r\n")):
            where = f"the value of {argv[position - 2]}" if position > 1 and argv[position - 2].startswith("--") else f"argument {position}"
            print(f"error: {where} ({_excerpt(repr(value))}) contains a control character; retype it", file=sys.stderr)
            return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)

    def refuse(message: str) -> int:
        if args.debug:
            traceback.print_exc()
        # One line: a list of problems (a policy file's) is joined with '; '.
        one_line = "; ".join(line.strip().removeprefix("- ") for line in message.splitlines() if line.strip())
        print(f"error: {_excerpt(one_line, 80)}", file=sys.stderr)
        return EXIT_BAD_INPUT

    try:
        return args.func(args)
    except CheckFailed as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except (PolicyError, EpochKeyError, LedgerError, MigrationError, DatabaseConfigError, SourceError, UsageError) as exc:
        return refuse(_redact(str(exc)))
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "pgcode", None):  # the server answered: a deadlock victim, serialization failure, timeout
            return refuse(f"the ledger aborted this transaction (PostgreSQL {exc.orig.pgcode}), nothing was written: "
                          f"{_first_line(exc)}; run the command again")
        return refuse(f"{_database_hint()} ({_first_line(exc)})")
    except sa.exc.DBAPIError as exc:  # a trigger or constraint said no: nothing was written
        return refuse(f"the ledger refused this, nothing was written: {_first_line(exc)}")
    except (ValueError, OverflowError) as exc:
        return refuse(_first_line(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, and the traceback on request
        return refuse(f"unexpected {type(exc).__name__}: {_first_line(exc)} (run again with --debug for the traceback)")


if __name__ == "__main__":
    sys.exit(main())
