import pytest
import sqlalchemy as sa

from credit_pipeline.ledger.engine import DatabaseConfigError, normalize_url, resolve_database, stop_embedded_server
from credit_pipeline.ledger.store import LedgerStore

from credit_pipeline_tests.ledger.factories import pr_event
from datetime import UTC, datetime


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgresql://u:p@db:5432/ledger", "postgresql+psycopg2://u:p@db:5432/ledger"),
        ("postgres://u@db/ledger", "postgresql+psycopg2://u@db/ledger"),
        ("postgresql+psycopg://u@db/ledger", "postgresql+psycopg2://u@db/ledger"),
    ],
)
def test_urls_always_use_psycopg2(given, expected):
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad, message", [("mysql://u@db/x", "needs PostgreSQL"), ("not a url", "is not a database URL")])
def test_bad_urls_name_the_variable(bad, message):
    with pytest.raises(DatabaseConfigError, match=f"CREDIT_PIPELINE_DATABASE_URL.*{message}|{message}"):
        normalize_url(bad)


def test_environment_url_wins(monkeypatch, ledger_url):
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    target = resolve_database()
    assert not target.embedded and target.url == ledger_url
    assert "external PostgreSQL" in target.describe()


def test_embedded_default_with_no_server_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("CREDIT_PIPELINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("CREDIT_PIPELINE_HOME", str(tmp_path / "home"))
    target = resolve_database()
    try:
        assert target.embedded and target.data_dir == (tmp_path / "home" / "pgdata").resolve()
        assert sa.engine.make_url(target.url).query["host"] == str(target.data_dir)
        store = LedgerStore.open()
        event = pr_event(7, datetime(2026, 2, 17, tzinfo=UTC))
        assert store.record_page([event], None).new == 1
        assert store.get_event(event.event_id)["payload"] == event.payload
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == "credit_pipeline"
        # A second resolution in the same folder reuses the running server.
        assert resolve_database().url == target.url
        store.engine.dispose()
    finally:
        stop_embedded_server(target.data_dir)
