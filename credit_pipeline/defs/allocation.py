"""The allocation stage: the policy applied to the curated events; closed epochs move to review."""


from datetime import UTC, datetime

import dagster as dg

from credit_pipeline.defs.checks import partitioned_check
from credit_pipeline.defs.metadata import TABLE_ROW_LIMIT, ints, markdown_table, table
from credit_pipeline.defs.resources import LedgerResource, PolicyResource
from credit_pipeline.stages.allocate import AllocationState, allocate_epoch, allocation_lines
from credit_pipeline.stages.explain import RulesView, rules_view
from credit_pipeline.stages.resolve import effective_policy


def build_allocation_asset(partitions: dg.PartitionsDefinition, upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions, group_name="allocation", owners=["team:credit-pipeline"], code_version="1",
        kinds={"postgres"}, deps=[upstream],
        check_specs=[partitioned_check("units_match_events", asset="epoch_allocations", partitions=partitions, blocking=True,
                                       description="Each recipient's proposed units equal the sum of its counted events' weights")],
    )
    def epoch_allocations(context: dg.AssetExecutionContext, ledger: LedgerResource, policy: PolicyResource) -> dg.MaterializeResult:
        """Proposed units per person (or claimant): the sum of their counted events' integer weights under the
        policy (``weight-sum-v1``), or under a policy with ``rules`` the units each rule leaves them
        (``weight-rules-v1``: review states, labels, dedupe, daily cap, caps; docs/policy.md); admin
        adjustments are kept with their reasons. Once the week has closed
        and its final collection has run without a completeness shortfall, the epoch enters review: the
        policy, its hash and the approver set are pinned and the base issuance is recorded as the pool.
        The metadata carries the allocation set hash, the exact approval message to sign, and the
        ``allocations`` table: every recipient with its last-known login, counted events, events the rules
        did not count, units the caps took, proposed and final units and the credits finalize would pay
        now (the pool split by finalize's own largest-remainder code), most credits first, then at zero
        the recipients whose every event a rule stopped (they are not in the allocation set); the ``rules``
        table (events and units per rule and outcome) and, under rules, ``without_rules``: the recipients
        whose credits the rules change most."""
        store = ledger.store()
        rules = policy.load()
        key = context.partition_key
        report = allocate_epoch(store, key, rules, datetime.now(UTC))
        state = report.state
        for reason in report.review_blocked:
            context.log.info(f"epoch {key} stays open: {reason}")
        # One streamed read of the curation (a recipient at a time) for the rules, the logins and the check.
        pinned = effective_policy(store.get_epoch(key), rules)
        view = rules_view(store, key, pinned)
        lines = allocation_lines(state, view.logins)
        rows = [{"recipient": line.recipient_id, "login": line.login, "events": line.events,
                 "not_counted": view.not_counted.get(line.recipient_id, 0), "capped": view.capped.get(line.recipient_id, 0),
                 "proposed": line.proposed_units, "final": line.final_units, "credits": line.credits, "reason": line.reason}
                for line in lines]
        # A recipient whose every event a rule stopped has no line in the allocation set (nothing to sign or
        # pay) but is shown, at zero, so the table says who the rules left out and how many events each lost.
        logins, listed = view.logins, {line.recipient_id for line in lines}
        rows += [{"recipient": rid, "login": logins.get(rid), "events": 0, "not_counted": n, "capped": 0, "proposed": 0,
                  "final": 0, "credits": 0, "reason": None}
                 for rid, n in sorted(view.not_counted.items(), key=lambda kv: (-kv[1], kv[0])) if rid not in listed and n]
        mismatches = _unit_mismatches(view.proposed, state.allocations)
        return dg.MaterializeResult(
            metadata={
                **ints(recipients=len(state.allocations), total_final_units=sum(r["final"] for r in rows),
                       pool_total=state.pool_total, projected_credits_total=sum(r["credits"] for r in rows),
                       adjusted_recipients=sum(1 for a in state.allocations if a["reason"] is not None)),
                "credits_basis": _credits_basis(state, sum(r["final"] for r in rows)),
                "epoch_status": state.status,
                "entered_review": report.entered_review,
                # a delta pass: the curation, identity log and policy of the last pass, so nothing was recomputed or written
                "proposals_unchanged": report.unchanged,
                "review_blocked_by": "; ".join(report.review_blocked) or "nothing",
                "allocation_set_hash": state.allocation_set_hash,
                "revision": state.revision,
                "ledger_id": state.ledger_id,
                "completeness_waiver": str((store.get_epoch(key).completeness_waiver or {}).get("reason") or "none"),
                "derivation_drift": "; ".join(state.drift) or "none",
                "policy_hash": state.policy_hash,
                "approval_message": dg.MetadataValue.md(f"```\n{state.approval_message}\n```"),
                "allocations": table(rows, ALLOCATION_COLUMNS),
                "allocations_preview": markdown_table(rows, [c.name for c in ALLOCATION_COLUMNS], limit=25),
                **rules_metadata(view),
            },
            check_results=[dg.AssetCheckResult(check_name="units_match_events", passed=not mismatches,
                                               metadata={"mismatched_recipients": len(mismatches), "examples": str(mismatches[:5])})],
        )

    return epoch_allocations


ALLOCATION_COLUMNS = [
    dg.TableColumn("recipient", "string", description="Recipient id: a person, or a claimant provider:external_id for an unbound account"),
    dg.TableColumn("login", "string", description="Last-known login or display name, from the latest curated event of each account"),
    dg.TableColumn("events", "int", description="Counted events (included, not bots, and counted by the policy's rules) this epoch"),
    dg.TableColumn("not_counted", "int", description="Events of this recipient a policy rule did not count (see the rules table; "
                                                     "credit-pipeline explain lists them)"),
    dg.TableColumn("capped", "int", description="Milli-units the policy's caps took from this recipient's counted events"),
    dg.TableColumn("proposed", "int", description="Proposed units: the sum of the counted events' integer weights"),
    dg.TableColumn("final", "int", description="Final units: the admin's adjustment (or correction) when there is one, else the proposal"),
    dg.TableColumn("credits", "int", description="Credits finalize would pay now: the pool split over final units, integer largest remainder"),
    dg.TableColumn("reason", "string", description="The reason recorded with an adjustment or correction"),
]


RULE_COLUMNS = [
    dg.TableColumn("rule", "string", description="The policy rule: weights, override, review_weights, pr_labels, pr_size_floor "
                                                 "(counted); self_review, one_review_per_pr, issue_reasons, self_closed_issues, "
                                                 "message_types, min_length, dedupe, daily_cap (not counted); units_per_person, "
                                                 "pool_share (capped); excluded events are not in it"),
    dg.TableColumn("outcome", "string", description="counted: events counted with the weight it set; not counted: events it "
                                                    "stopped; capped: counted events a cap cut"),
    dg.TableColumn("events", "int", description="Events it decided (or cut)"),
    dg.TableColumn("units", "int", description="Milli-units: counted, their units after the caps; not counted, 0; capped, the "
                                               "units the cap took"),
]
SUMMARY_RULES = 3  # stopping rules named in rules_summary
WITHOUT_RULES_ROWS = 10


def rules_metadata(view: RulesView) -> dict[str, dg.MetadataValue]:
    """The rules table, a one-line summary, and (with rules) what the same policy would pay without them."""
    stopped, caps = view.stopped, view.caps
    parts = []
    if stopped:
        named = [f"{r.events} by `{r.rule}`" for r in stopped[:SUMMARY_RULES]]
        rest = sum(r.events for r in stopped[SUMMARY_RULES:])
        parts.append("not counted: " + ", ".join(named) + (f", {rest} by {len(stopped) - SUMMARY_RULES} more rules" if rest else ""))
    if caps:
        parts.append("capped: " + ", ".join(f"{r.units} milli-units by `{r.rule}`" for r in caps))
    out: dict[str, dg.MetadataValue] = {
        "rules": table([r.__dict__ for r in view.summary], RULE_COLUMNS),
        "rules_summary": dg.MetadataValue.md("; ".join(parts) or "every candidate event counted, nothing capped"),
        **ints(events_not_counted_by_rules=sum(r.events for r in stopped), units_capped_by_rules=sum(r.units for r in caps)),
    }
    if view.without_rules is not None:
        out["without_rules"] = dg.MetadataValue.md(_without_rules_markdown(view.without_rules))
    return out


def _without_rules_markdown(changed: list) -> str:
    intro = ("Credits and units with the policy's rules and with the same policy without its `rules` section "
             "(`credit-pipeline simulate`; adjustments kept)")
    if not changed:
        return intro + ": the rules change no recipient's credits or units."
    rows = [{"recipient": r.recipient_id, "login": r.login, "credits_with_rules": r.current_credits,
             "credits_without_rules": r.simulated_credits, "credits_change": f"{r.current_credits - r.simulated_credits:+d}",
             "units_with_rules": r.current_units, "units_without_rules": r.simulated_units} for r in changed]
    shown = min(len(rows), WITHOUT_RULES_ROWS)
    return (f"{intro}; the {shown} recipients of {len(rows)} they change most:\n\n"
            + markdown_table(rows, list(rows[0]), limit=WITHOUT_RULES_ROWS).value)


def _credits_basis(state: AllocationState, total_final: int) -> str:
    """What the credits column was computed from, in words (and why it is all 0 when it is)."""
    if state.pool_total <= 0:
        return f"the pool is {state.pool_total}: finalize would pay no credits"
    if total_final == 0:
        return f"no final units: finalize would pay none of the pool of {state.pool_total} credits"
    if state.status == "finalized" and not state.pending:
        basis = f"what revision {state.revision}'s statement paid from the pool of {state.pool_total} credits"
    elif state.pool_recorded:
        basis = f"the recorded pool of {state.pool_total} credits, split as finalize will split it"
    else:
        basis = (f"a projection: the pool is not recorded until the epoch enters review; the policy's base issuance "
                 f"of {state.pool_total} credits, split as finalize would split it")
    more = f"; the table shows the first {TABLE_ROW_LIMIT} recipients" if len(state.allocations) > TABLE_ROW_LIMIT else ""
    return basis + more


def _unit_mismatches(sums: dict[str, int], allocations) -> list[str]:
    """Recipients whose stored proposed units differ from what the rules decide over the curated rows now."""
    stored = {a["recipient_id"]: a["proposed_units"] for a in allocations}
    return sorted(r for r in set(sums) | set(stored) if sums.get(r, 0) != stored.get(r, 0))
