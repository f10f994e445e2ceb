"""`credit-pipeline demo` on the embedded default: no server configured, a fresh home, run twice."""


from credit_pipeline.ledger.engine import stop_embedded_server


def test_demo_runs_end_to_end_twice_on_the_embedded_default(monkeypatch, tmp_path):
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
        lines.clear()
        second = run_demo(lines.append)
        assert second["statement_hash"] == first["statement_hash"]
        assert "0 new events" in "\n".join(lines)
    finally:
        stop_embedded_server((tmp_path / "home" / "pgdata"))
