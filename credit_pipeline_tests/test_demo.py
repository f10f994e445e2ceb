"""`credit-pipeline demo` on the embedded default: no server configured, a fresh home, run twice; what it
leaves in Dagster is what the UI shows (real job runs, tagged as the demo's)."""

import os

import dagster as dg
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from credit_pipeline.ledger.engine import stop_embedded_server

RUNS = """
query DemoRuns($tag: String!) {
  runsOrError(filter: {tags: [{key: $tag, value: "true"}]}) {
    ... on Runs { results { jobName status tags { key value } } }
  }
}"""

CONFIG_SCHEMA = """
query ApproveSchema($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema { allConfigTypes { key ... on CompositeConfigType { fields { name description isRequired } } } }
  }
}"""


def _demo_runs_through_graphql(env: dict[str, str], week: str) -> None:
    from credit_pipeline.demo import DEMO_TAG, EPOCH_TAG

    saved = dict(os.environ)
    os.environ.update(env)  # the code server loads the Definitions the way `credit-pipeline dev` would
    try:
        with dg.DagsterInstance.get() as instance, \
                define_out_of_process_context(os.path.join(env["DAGSTER_HOME"], "workspace.yaml"), None, instance) as context:
            runs = execute_dagster_graphql(context, RUNS, {"tag": DEMO_TAG}).data["runsOrError"]["results"]
            by_job = {}
            for r in runs:
                tags = {t["key"]: t["value"] for t in r["tags"]}
                assert tags[EPOCH_TAG] == week and r["status"] == "SUCCESS", r
                by_job.setdefault(r["jobName"], []).append(tags)
            assert by_job["weekly_epoch_job"][0]["dagster/partition"] == week
            assert "approve_epoch" in by_job
            assert by_job["__ASSET_JOB"][0]["dagster/partition"] == week  # the admin's payout_statements materialization
            assert not any(name.startswith("__ephemeral") for name in by_job), by_job.keys()
            location = context.code_location_names[0]
            selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "pipelineName": "approve_epoch"}
            schema = execute_dagster_graphql(context, CONFIG_SCHEMA, {"selector": selector}).data["runConfigSchemaOrError"]
            assert schema["__typename"] == "RunConfigSchema", schema
            approval = [t for t in schema["allConfigTypes"]
                        if any(f["name"] == "allocation_set_hash" for f in t.get("fields") or [])]
            assert approval, "the approve_epoch op config is in the schema"
            for field in approval[0]["fields"]:
                assert (field["description"] or "").strip(), f"config field {field['name']} has no description"
    finally:
        os.environ.clear()
        os.environ.update(saved)


SPAMMER = "Airdrop Hunter"  # sample_gaming's spam account (username airdrop.hunter), shown by its display name


def _the_rules_cut_the_spammer(env: dict[str, str], week: str, tmp_path, capsys) -> None:
    """Issue 10's acceptance on the demo week: `simulate` of the shipped demo policy against the same policy
    without its rules shows the spammer's share fall, on the CLI and in epoch_allocations' metadata."""
    import json

    import yaml

    from credit_pipeline.cli import main

    doc = yaml.safe_load(open(env["CREDIT_PIPELINE_POLICY"]).read())
    assert doc.get("rules"), "the demo policy ships with rules"
    doc.pop("rules")
    plain = tmp_path / "policy-without-rules.yaml"
    plain.write_text(yaml.safe_dump(doc))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        capsys.readouterr()
        assert main(["simulate", "--epoch", week, "--policy", str(plain), "--json"]) == 0
        sim = json.loads(capsys.readouterr().out)
        spam = next((r for r in sim["rows"] if r["login"] == SPAMMER), None)
        assert spam is not None, repr([(r["recipient_id"], r["login"]) for r in sim["rows"]])
        pool = sim["current"]["pool_total"]
        assert pool == sim["simulated"]["pool_total"] > 0
        # with the rules (current) the spammer holds a smaller share of the same pool than without them
        assert 0 <= spam["current_credits"] < spam["simulated_credits"], spam
        stopped = {(r["rule"], r["outcome"]): r["current_events"] for r in sim["by_rule"]}
        assert stopped.get(("min_length", "not counted"), 0) > 0 and stopped.get(("dedupe", "not counted"), 0) > 0, stopped
        assert main(["simulate", "--epoch", week, "--policy", str(plain)]) == 0
        table = capsys.readouterr().out
        assert SPAMMER in table and "per rule" in table
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey("epoch_allocations"))
            meta = event.asset_materialization.metadata
            assert SPAMMER in meta["without_rules"].value  # among the recipients the rules changed most
            row = next(r.data for r in meta["allocations"].records if r.data["login"] == SPAMMER)
            assert row["not_counted"] > 0
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _what_the_treasury_and_the_contributors_get(result: dict, text: str) -> None:
    """Issue 11's acceptance on the demo week: the Safe CSV parses with the Safe app's columns and, with the held
    lines, sums to the pool in token units; the report's chart is a real PNG; the site built from the demo's ledger
    opens in headless Chromium (index, epoch page, lookup); the demo says where each of them is."""
    import csv
    import json
    from decimal import Decimal
    from pathlib import Path

    from credit_pipeline.demo import DEMO_PAYOUT
    from credit_pipeline_tests.stages.test_site import dump_dom
    from credit_pipeline_tests.stages.test_weekly_report import png_size

    for path in (result["airdrop"], result["report"], str(Path(result["site"]) / "index.html")):
        assert path in text, f"the demo does not say where {path} is"
    bundle = json.loads(Path(result["bundle_path"]).read_text())
    rows = list(csv.DictReader(open(result["airdrop"])))
    assert rows and list(rows[0]) == ["token_type", "token_address", "receiver", "amount", "id"]
    assert {r["token_type"] for r in rows} == {"erc20"} and {r["token_address"] for r in rows} == {DEMO_PAYOUT["token_address"]}
    held = list(csv.DictReader(open(Path(result["airdrop"]).with_suffix(".held.csv"))))
    assert held and all(r["held_reason"] for r in held)
    unit = 10 ** DEMO_PAYOUT["decimals"]
    paid = sum(int(Decimal(r["amount"]) * unit) for r in rows) + sum(int(r["token_amount"]) for r in held)
    assert paid == bundle["pool"]["total"] * DEMO_PAYOUT["token_units_per_credit"]
    assert png_size(Path(result["report"]).with_suffix(".png").read_bytes()) == (1200, 600)
    site = Path(result["site"])
    key = bundle["epoch"]["key"]
    assert key in dump_dom((site / "index.html").as_uri())
    page = dump_dom((site / "epochs" / f"{key}.html").as_uri())
    assert bundle["statement_hash"] in page and "<table" in page and "carol" in page
    found = dump_dom((site / "lookup.html").as_uri() + "?q=carol")
    assert "carol" in found and key in found and "0 contributors found" not in found


def test_demo_runs_end_to_end_twice_on_the_embedded_default(monkeypatch, tmp_path, capsys):
    from credit_pipeline.demo import run_demo

    monkeypatch.delenv("CREDIT_PIPELINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CREDIT_PIPELINE_DAGSTER_DATABASE_URL", raising=False)
    monkeypatch.setenv("CREDIT_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))
    lines: list[str] = []
    try:
        first = run_demo(lines.append)
        assert first["verified"]
        text = "\n".join(lines)
        assert "embedded PostgreSQL" in text and "statement hash: " + first["statement_hash"] in text
        assert "verify from the ledger: OK" in text and "offline from" in text
        # the reconciliation adds up: every event in the window is accounted for exactly once
        shown = text.splitlines()
        recon = next(i for i, line in enumerate(shown) if "reconciliation:" in line)
        in_window = int(shown[recon].split("; ")[1].split(" ")[0])
        parts = [int(p.strip().split(" ")[0]) for p in shown[recon + 1].split(", ")]
        assert sum(parts) == in_window > 0
        _demo_runs_through_graphql(first["env"], first["epoch"])
        _the_rules_cut_the_spammer(first["env"], first["epoch"], tmp_path, capsys)
        _what_the_treasury_and_the_contributors_get(first, text)
        lines.clear()
        second = run_demo(lines.append)
        assert second["statement_hash"] == first["statement_hash"]
        assert "0 new events" in "\n".join(lines)
    finally:
        stop_embedded_server((tmp_path / "home" / "pgdata"))
