import sqlalchemy as sa
import pytest

from credit_pipeline.ledger import tables
from credit_pipeline.ledger.migrations import MigrationError, discover, sql_dir, status, upgrade


def copy_sql(tmp_path):
    target = tmp_path / "sql"
    target.mkdir()
    for m in discover():
        (target / m.path.name).write_bytes(m.path.read_bytes())
    return target


def test_upgrade_is_idempotent_and_recorded(ledger_url):
    engine = sa.create_engine(ledger_url)
    assert upgrade(engine) == []  # the template is already migrated
    states = status(engine)
    assert [(s.version, s.state) for s in states] == [(m.version, "applied") for m in discover()]
    engine.dispose()


def test_edited_applied_migration_is_refused(ledger_url, tmp_path):
    sql = copy_sql(tmp_path)
    first = sorted(sql.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    engine = sa.create_engine(ledger_url)
    with pytest.raises(MigrationError, match=rf"{first.name} was edited after it was applied.*new numbered migration"):
        upgrade(engine, sql)
    assert [s.state for s in status(engine, sql)][0] == "edited"
    engine.dispose()


def test_new_migration_applies_in_its_own_transaction(ledger_url, tmp_path):
    sql = copy_sql(tmp_path)
    (sql / "9998_good.sql").write_text("CREATE TABLE extra_good (id int);")
    (sql / "9999_bad.sql").write_text("CREATE TABLE extra_bad (id int);\nSELECT no_such_function();")
    engine = sa.create_engine(ledger_url)
    with pytest.raises(MigrationError, match="9999_bad.sql failed and was rolled back.*no_such_function"):
        upgrade(engine, sql)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('extra_good') IS NOT NULL")).scalar()
        assert not conn.execute(sa.text("SELECT to_regclass('extra_bad') IS NOT NULL")).scalar()
    assert {s.version: s.state for s in status(engine, sql)}["9999"] == "pending"
    engine.dispose()


def test_bad_file_names_and_unknown_versions_are_refused(ledger_url, tmp_path):
    sql = copy_sql(tmp_path)
    (sql / "2_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_snake_case.sql"):
        discover(sql)
    (sql / "2_oops.sql").unlink()
    for path in sql.glob("*.sql"):
        path.unlink()
    engine = sa.create_engine(ledger_url)
    with pytest.raises(MigrationError, match="this code is older than the database"):
        upgrade(engine, sql)
    engine.dispose()


def test_table_descriptions_match_the_migrated_schema(ledger_url):
    engine = sa.create_engine(ledger_url)
    inspector = sa.inspect(engine)
    for table in tables.metadata.sorted_tables:
        actual = {c["name"] for c in inspector.get_columns(table.name)}
        described = {c.name for c in table.columns}
        assert described <= actual, f"{table.name}: {described - actual} not in the database"
    engine.dispose()


def test_sql_dir_is_the_projects():
    assert (sql_dir() / "0001_ledger.sql").is_file()
