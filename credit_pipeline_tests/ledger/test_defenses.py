"""What the database itself refuses (sql/0003, docs/database.md), to the application's role
and to the superuser, and that the application still works with nothing more than that role.

Every refusal is checked against the real PostgreSQL, and so is what it leaves: each table's
rows are the same before and after.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from credit_pipeline.core.storable import QuarantinedItem
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy.engine import make_url

from credit_pipeline.core.allocation import ProposedAllocation
from credit_pipeline.ledger.migrations import MigrationError, discover, ensure_current, status, upgrade
from credit_pipeline.ledger.payout_rows import IDENTITY_LOG_LOCK
from credit_pipeline.ledger.store import CurationProposal, CursorAdvance, IdentityConflict, LedgerError, LedgerStore

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.ledger.factories import pr_event

APP = "credit_pipeline_app"
KEY, OPEN = "2026-02-16", "2026-02-23"  # a finalized epoch (with a pending correction) and an open one
START = datetime(2026, 2, 16, tzinfo=UTC)
CURSOR = CursorAdvance("github", "pull_requests", "acme/widgets", {"updated_at": "2026-02-24T00:00:00Z"})
POLICY_TEXT = '{"weights":{}}'
POLICY_HASH = hashlib.sha256(POLICY_TEXT.encode()).hexdigest()
SIGNER = "0x" + "1" * 40
SET_HASH = "e" * 64

# Tables of facts: a BEFORE TRUNCATE trigger on each. Mutable by design: source_cursors, schema_migrations, and
# epoch_pass_marks (sql/0007: a cache of what the last pass read; losing it only makes the next pass a full one).
FACT_TABLES = ["epochs", "activity_events", "activity_curation", "epoch_allocations", "epoch_pool_components", "epoch_approvals",
               "payout_statements", "statement_corrections", "identity_events", "ledger_identity", "quarantined_items",
               "event_facts"]
MUTABLE = ["source_cursors", "schema_migrations", "epoch_pass_marks"]
ALL_TABLES = FACT_TABLES + MUTABLE
APPEND_ONLY = ["activity_events", "epoch_pool_components", "epoch_approvals", "payout_statements", "statement_corrections",
               "identity_events", "ledger_identity", "event_facts"]
# What the app role may change, and nothing else (sql/0003, credit_pipeline_app_grants).
APP_UPDATES = {"epochs", "activity_curation", "epoch_allocations", "source_cursors", "quarantined_items",  # + sql/0004
               "epoch_pass_marks"}  # + sql/0007
APP_DELETES = {"epoch_allocations", "epoch_pass_marks"}

PERSON = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
BAD_IDS = ["alice\n", "alice:x", ":x", "", "Alice", " alice", "alice bob", "al\tice", "ali\u00e9", "a" * 65, "-alice",
           "github:", "github:12a", "gitlab:1", "github:1\n", "discord:1:2"]
GOOD_IDS = ["alice", "user-a.b_c", "0day", "a" * 64, "github:583231", "discord:81384788765712384"]


# -- connections ----------------------------------------------------------------


def superuser(url: str) -> sa.Engine:
    return sa.create_engine(url)


def as_app_role(url: str) -> sa.Engine:
    """An engine whose every connection runs ``SET ROLE credit_pipeline_app`` (the superuser's session underneath)."""
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _set_role(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {APP}")
        dbapi_connection.commit()

    return engine


@pytest.fixture(scope="session")
def app_login(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A LOGIN role that is only a member of credit_pipeline_app, as docs/database.md says to make one."""
    name = f"cp_app_login_{os.getpid()}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE ROLE "{name}" LOGIN IN ROLE {APP}')
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
    admin.dispose()


def login_url(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture
def owner(ledger_url: str) -> Iterator[LedgerStore]:
    engine = superuser(ledger_url)
    yield LedgerStore(engine)
    engine.dispose()


@pytest.fixture
def app(ledger_url: str) -> Iterator[sa.Engine]:
    engine = as_app_role(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app_store(ledger_url: str, app_login: str) -> Iterator[LedgerStore]:
    """The store as the application runs it under least privilege: a login that is a member of the app role."""
    engine = sa.create_engine(login_url(ledger_url, app_login))
    ensure_current(engine)
    yield LedgerStore(engine)
    engine.dispose()


# -- a ledger with a row in every table -------------------------------------------


def seed(store: LedgerStore) -> None:
    """A finalized epoch with a pending correction, and an open one with curation and allocations."""
    done, open_1, open_2 = (pr_event(1, START + timedelta(hours=1), user_id="100"),
                            pr_event(2, START + timedelta(days=7, hours=1), user_id="200"),
                            pr_event(3, START + timedelta(days=7, hours=2), user_id="200"))
    store.record_page([done, open_1, open_2], CURSOR, [QuarantinedItem.of({"number": "x"}, "field 'number' is not a whole number")])
    store.record_facts({done.event_id: {"labels": []}, open_1.event_id: {"labels": []}}, 1)
    store.bind("github", "100", "alice")
    store.bind("github", "200", "bob")
    for key in (KEY, OPEN):
        store.ensure_epoch(key)
        store.add_pool_component(key, "base_issuance", 100, algorithm_version="v1")
    store.curate(KEY, [CurationProposal(done.event_id, "alice", "bound")])
    store.curate(OPEN, [CurationProposal(open_1.event_id, "bob", "bound")])
    store.upsert_allocations(KEY, [ProposedAllocation("alice", 1000, 1)], "v1")
    store.upsert_allocations(OPEN, [ProposedAllocation("bob", 500, 1)], "v1")
    store.record_pass_mark(OPEN, "resolve", {"inputs": {"facts": 2}}, None)
    store.enter_review(KEY, POLICY_TEXT, POLICY_HASH, [SIGNER])
    store.record_approval(KEY, allocation_set_hash=SET_HASH, policy_hash=POLICY_HASH, pool_total=100, message="m",
                          signer=SIGNER, signature="0x" + "a" * 130)
    bundle = {"statement_hash": "d" * 64, "epoch": {"key": KEY}, "revision": 1, "supersedes": None,
              "allocation_set_hash": SET_HASH, "pool": {"total": 100}}
    store.finalize(KEY, lambda conn, epoch, revision, issued_at: bundle)
    store.add_correction(KEY, "alice", 900, "late fix", actor="admin")


@pytest.fixture
def seeded(owner: LedgerStore) -> LedgerStore:
    seed(owner)
    return owner


def snapshot(store: LedgerStore) -> dict[str, tuple[int, str]]:
    """Every table's (and the bindings view's) row count and a digest of its rows."""
    with store.engine.connect() as conn:
        return {table: tuple(conn.execute(sa.text(
            f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {table} x")).one())
            for table in ALL_TABLES + ["user_bindings"]}


def refused(engine: sa.Engine, statement: str, match: str, **params) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match):
        with engine.begin() as conn:
            if params:
                conn.execute(sa.text(statement), params)
            else:
                conn.exec_driver_sql(statement)


# -- as the application's role ------------------------------------------------------


@pytest.mark.parametrize("table", ALL_TABLES)
def test_app_role_cannot_truncate_anything(seeded, app, table):
    before = snapshot(seeded)
    for statement in (f"TRUNCATE {table}", f"TRUNCATE {table} CASCADE"):
        refused(app, statement, f"permission denied for table {table}")
    assert snapshot(seeded) == before and before[table][0] > 0


@pytest.mark.parametrize("table", APPEND_ONLY + ["schema_migrations"])
def test_app_role_cannot_update_or_delete_append_only_rows(seeded, app, table):
    before = snapshot(seeded)
    column = {"activity_events": "platform_login", "epoch_pool_components": "recorded_by", "epoch_approvals": "message",
              "payout_statements": "bundle", "statement_corrections": "reason", "identity_events": "actor",
              "ledger_identity": "created_at", "schema_migrations": "checksum", "event_facts": "derived_at"}[table]
    refused(app, f"UPDATE {table} SET {column} = {column}", f"permission denied for table {table}")
    refused(app, f"DELETE FROM {table}", f"permission denied for table {table}")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("table", ["epochs", "activity_curation", "source_cursors"])
def test_app_role_deletes_only_allocations(seeded, app, table):
    before = snapshot(seeded)
    refused(app, f"DELETE FROM {table}", f"permission denied for table {table}")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("statement", [
    "UPDATE user_bindings SET user_id = 'mallory'",
    "DELETE FROM user_bindings",
    "INSERT INTO user_bindings (provider, external_id, user_id, identity_event_id) VALUES ('github', '300', 'mallory', 1)",
    "TRUNCATE user_bindings",
])
def test_nobody_writes_user_bindings(seeded, app, owner, statement):
    before = snapshot(seeded)
    refused(app, statement, "cannot (update|delete from|insert into) view|permission denied|is not a table")
    refused(owner.engine, statement, "cannot (update|delete from|insert into) view|is not a table")
    assert snapshot(seeded) == before and seeded.bindings() == {("github", "100"): "alice", ("github", "200"): "bob"}


@pytest.mark.parametrize("table", ALL_TABLES)
def test_app_role_owns_nothing_so_cannot_disable_triggers_or_change_the_schema(seeded, app, table):
    before = snapshot(seeded)
    refused(app, f"ALTER TABLE {table} DISABLE TRIGGER ALL", f"must be owner of table {table}")
    refused(app, f"ALTER TABLE {table} ADD COLUMN sneaky text", f"must be owner of table {table}")
    refused(app, f"DROP TABLE {table} CASCADE", f"must be owner of table {table}")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("statement, match", [
    ("CREATE TABLE sneaky (id int)", "permission denied for schema"),
    ("DROP VIEW user_bindings", "must be owner of view user_bindings"),
    ("CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
     "permission denied for schema|must be owner of function refuse_change"),
    ("DROP TRIGGER identity_events_consistent ON identity_events", "must be owner of (table|relation) identity_events"),
    ("SELECT setval('identity_events_identity_event_id_seq', 1)", "permission denied for sequence"),
    ("SELECT credit_pipeline_app_grants()", "permission denied for function credit_pipeline_app_grants"),
])
def test_app_role_runs_no_ddl(seeded, app, statement, match):
    before = snapshot(seeded)
    refused(app, statement, match)
    assert snapshot(seeded) == before


def test_the_app_roles_privileges_are_exactly_the_documented_ones(ledger_url):
    engine = superuser(ledger_url)
    in_schema = "c.relnamespace = current_schema()::regnamespace"
    with engine.connect() as conn:
        owned = conn.execute(sa.text(
            f"SELECT count(*) FROM pg_class c WHERE {in_schema} AND c.relowner = CAST(:r AS regrole)"), {"r": APP}).scalar()
        privileges = {(r.relname, r.privilege_type) for r in conn.execute(sa.text(
            f"SELECT c.relname, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
            f"WHERE {in_schema} AND c.relkind IN ('r', 'v') AND a.grantee = CAST(:r AS regrole)"), {"r": APP})}
        relations = set(conn.execute(sa.text(f"SELECT relname FROM pg_class c WHERE {in_schema} AND relkind IN ('r', 'v')")).scalars())
    engine.dispose()
    assert owned == 0
    assert {t for t, p in privileges if p == "SELECT"} == relations  # a migration that adds a table must grant it
    assert {t for t, p in privileges if p == "UPDATE"} == APP_UPDATES
    assert {t for t, p in privileges if p == "DELETE"} == APP_DELETES
    assert {t for t, p in privileges if p == "INSERT"} == set(ALL_TABLES) - {"ledger_identity", "schema_migrations"}
    assert not {p for _, p in privileges} & {"TRUNCATE", "TRIGGER", "REFERENCES"}


BAD_RECIPIENT_INSERTS = {
    "activity_curation": "INSERT INTO activity_curation (event_id, epoch_key, recipient_id, resolution) "
                         f"VALUES ('github:pr:acme/widgets:3', '{OPEN}', :r, 'bound')",
    "epoch_allocations": "INSERT INTO epoch_allocations (epoch_key, recipient_id, proposed_units, activity_count, algorithm_version) "
                         f"VALUES ('{OPEN}', :r, 1, 1, 'v1')",
    "statement_corrections": "INSERT INTO statement_corrections (epoch_key, revision, recipient_id, final_units, reason) "
                             f"VALUES ('{KEY}', 2, :r, 1, 'fix')",
    "identity_events": "INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('bind', 'github', '300', :r)",
}


@pytest.mark.parametrize("table", list(BAD_RECIPIENT_INSERTS))
def test_recipient_ids_outside_the_grammar_are_refused(seeded, app, table):
    before = snapshot(seeded)
    person_only = table == "identity_events"
    for bad in BAD_IDS + (["github:583231"] if person_only else []):
        refused(app, BAD_RECIPIENT_INSERTS[table], "violates check constraint .*(_grammar|user_id_check)", r=bad)
    assert snapshot(seeded) == before
    for good in (g for g in GOOD_IDS if not person_only or PERSON.match(g)):
        with app.connect() as conn:
            conn.execute(sa.text(BAD_RECIPIENT_INSERTS[table]), {"r": good})
            conn.rollback()


def test_trailing_newline_is_not_matched_by_the_end_anchor(ledger_url):
    engine = superuser(ledger_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT ('alice' || chr(10)) ~ '^[a-z0-9][a-z0-9._-]{0,63}$'")).scalar() is False
    engine.dispose()


def test_app_role_cannot_rebind_an_account_held_by_another_person(seeded, app):
    before = snapshot(seeded)
    refused(app, "INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('bind', 'github', '100', 'mallory')",
            "github account 100 is already bound to alice; revoke that binding first")
    refused(app, "INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('revoke', 'github', '100', 'bob')",
            "github account 100 is bound to alice, not bob")
    refused(app, "INSERT INTO identity_events (action, provider, external_id, user_id, previous_user_id) "
                 "VALUES ('merge', 'github', '100', 'mallory', 'bob')", "github account 100 is bound to alice, not bob")
    refused(app, "INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('merge', 'github', '100', 'mallory')",
            "needs previous_user_id")
    refused(app, "INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('revoke', 'github', '300', 'bob')",
            "github account 300 is not bound to anyone")
    assert snapshot(seeded) == before


# -- as the superuser ---------------------------------------------------------------


@pytest.mark.parametrize("table", FACT_TABLES)
def test_superuser_truncate_is_refused_by_the_trigger(seeded, table):
    before = snapshot(seeded)
    # Without CASCADE a table that others reference is refused before any trigger runs; with it, by the trigger.
    refused(seeded.engine, f"TRUNCATE {table}", f"{table} is append-only: TRUNCATE is not allowed|referenced in a foreign key")
    refused(seeded.engine, f"TRUNCATE {table} CASCADE", "is append-only: TRUNCATE is not allowed")
    assert snapshot(seeded) == before and before[table][0] > 0


def test_every_table_of_facts_has_a_truncate_trigger(ledger_url):
    """A later migration that adds a table of facts must add one too (docs/database.md)."""
    engine = superuser(ledger_url)
    with engine.connect() as conn:
        guarded = set(conn.execute(sa.text(
            "SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE c.relnamespace = current_schema()::regnamespace "
            "AND NOT g.tgisinternal AND g.tgtype & 32 <> 0 AND g.tgenabled <> 'D'")).scalars())  # 32: TRUNCATE
        tables = set(conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")).scalars())
    engine.dispose()
    assert guarded == tables - set(MUTABLE)


def test_the_identity_trigger_assigns_ids_in_log_order(owner):
    owner.bind("github", "100", "alice")
    with owner.engine.begin() as conn:  # an explicit, older id does not put the event before the bind
        conn.exec_driver_sql("INSERT INTO identity_events (identity_event_id, action, provider, external_id, user_id) "
                             "VALUES (1, 'revoke', 'github', '100', 'alice')")
    log = owner.identity_log()
    assert [e["action"] for e in log] == ["bind", "revoke"] and log[1]["identity_event_id"] > log[0]["identity_event_id"]
    assert owner.bindings() == {}


def test_concurrent_binds_of_one_account_serialize_and_the_second_is_refused(owner):
    first = owner.engine.connect()
    first.begin()
    first.exec_driver_sql("INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('bind', 'github', '100', 'alice')")
    outcome: list[object] = []

    def second() -> None:
        try:
            with owner.engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO identity_events (action, provider, external_id, user_id) "
                                     "VALUES ('bind', 'github', '100', 'bob')")
            outcome.append("written")
        except sa.exc.DBAPIError as exc:
            outcome.append(str(exc.orig))

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()  # waits on the account's lock
    first.commit()
    first.close()
    thread.join(10)
    assert "already bound to alice" in str(outcome)
    assert owner.bindings() == {("github", "100"): "alice"} and len(owner.identity_log()) == 1


def test_identity_writes_wait_for_a_finalize_holding_the_log(app_store, owner):
    finalize = owner.engine.connect()
    finalize.begin()
    finalize.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": IDENTITY_LOG_LOCK})
    done = threading.Event()
    thread = threading.Thread(target=lambda: (app_store.bind("github", "100", "alice"), done.set()))
    thread.start()
    time.sleep(0.5)
    assert not done.is_set()
    finalize.rollback()
    finalize.close()
    thread.join(10)
    assert done.is_set() and app_store.bindings() == {("github", "100"): "alice"}


def test_repeatable_read_identity_writes_are_refused(owner):
    with pytest.raises(sa.exc.DBAPIError, match="not REPEATABLE READ"):
        with owner.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            conn.exec_driver_sql("INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('bind', 'github', '1', 'a')")
    assert owner.identity_log() == []


# -- the store: refusals by the database become the store's own errors --------------


def test_a_stale_check_is_caught_by_the_database_with_the_same_errors(owner, monkeypatch):
    owner.bind("github", "100", "alice")
    owner.bind("github", "200", "bob")
    owner.revoke("github", "200")
    before = owner.identity_log()
    monkeypatch.setattr(owner, "_holders", lambda conn, accounts: {})  # "nobody holds anything"
    with pytest.raises(IdentityConflict, match="github account 100 is already bound to alice; revoke that binding first"):
        owner.bind("github", "100", "bob")
    monkeypatch.setattr(owner, "_holders", lambda conn, accounts: {a: "bob" for a in accounts})  # "bob holds everything"
    with pytest.raises(LedgerError, match="github account 100 is bound to alice, not bob"):
        owner.revoke("github", "100")
    monkeypatch.setattr(owner, "_holders", lambda conn, accounts: {("github", "200"): "bob"})  # "bob still holds 200"
    with pytest.raises(LedgerError, match="github account 200 is not bound to anyone, so it cannot be merged from bob"):
        owner.merge_users("bob", "carol")
    assert owner.identity_log() == before and owner.bindings() == {("github", "100"): "alice"}


def test_a_refused_identity_write_leaves_the_enclosing_transaction_usable(owner):
    owner.bind("github", "100", "alice")
    with owner.atomic():
        with pytest.raises(IdentityConflict):
            owner.bind("github", "100", "bob")
        assert owner.bind("github", "200", "bob")
    assert owner.bindings() == {("github", "100"): "alice", ("github", "200"): "bob"}


def test_a_person_id_outside_the_grammar_is_a_ledger_error(owner):
    with pytest.raises(LedgerError, match="'Alice' is not a person id"):
        owner.bind("github", "100", "Alice")
    assert owner.identity_log() == []


# -- the application under least privilege -------------------------------------------


def test_ensure_current_as_the_app_role_only_reads(ledger_url, app_login):
    engine = sa.create_engine(login_url(ledger_url, app_login))
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: statements.append(statement))
    ensure_current(engine)
    assert upgrade(engine) == []
    writes = re.compile(r"^\s*(CREATE|ALTER|DROP|GRANT|REVOKE|INSERT|UPDATE|DELETE|TRUNCATE|COMMENT|LOCK)\b", re.IGNORECASE)
    assert statements and not [s for s in statements if writes.match(s) or "advisory" in s], statements
    engine.dispose()


def test_pending_migrations_as_the_app_role_name_the_fix(ledger_url, app_login, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    for m in discover():
        (sql / m.path.name).write_bytes(m.path.read_bytes())
    (sql / "9999_extra.sql").write_text("CREATE TABLE extra (id int);")
    engine = sa.create_engine(login_url(ledger_url, app_login))
    for attempt in (ensure_current, upgrade):
        with pytest.raises(MigrationError, match=r"1 migration is pending; run `credit-pipeline db upgrade` as the database owner"
                                                 rf" \({app_login} cannot change the schema; pending: 9999_extra.sql\)"):
            attempt(engine, sql)
    owner_engine = superuser(ledger_url)
    assert {s.version: s.state for s in status(owner_engine, sql)}["9999"] == "pending"
    assert upgrade(owner_engine, sql) == ["9999"]  # the owner applies it; then the app opens again
    ensure_current(engine, sql)
    engine.dispose()
    owner_engine.dispose()


def test_an_unmigrated_database_as_the_app_role_is_refused(pg_server_url, app_login):
    with scratch_database(pg_server_url, f"cp_empty_{os.getpid()}") as url:
        engine = sa.create_engine(login_url(url, app_login))
        with pytest.raises(MigrationError, match=f"{len(discover())} migrations are pending; run `credit-pipeline db upgrade`"):
            ensure_current(engine)
        engine.dispose()


def test_the_store_works_with_only_the_app_role(app_store, owner):
    store = app_store
    events = [pr_event(i, START + timedelta(hours=i), user_id=str(100 + i % 2)) for i in range(1, 7)]
    assert store.record_page(events, CURSOR).new == 6 and store.record_page(events, CURSOR).new == 0
    assert store.get_cursor(CURSOR.source, CURSOR.stream, CURSOR.source_ref) == CURSOR.position
    assert store.bind("github", "100", "alice-old", actor="admin", evidence={"note": "gist"})
    assert not store.bind("github", "100", "alice-old")
    assert store.bind("github", "101", "bob")
    with pytest.raises(IdentityConflict, match="already bound to bob"):
        store.bind("github", "101", "mallory")
    assert store.revoke("github", "101", actor="admin") == "bob"
    assert store.bind("github", "101", "alice-old")
    assert store.merge_users("alice-old", "alice", actor="admin") == 2
    assert store.bindings() == {("github", "100"): "alice", ("github", "101"): "alice"}

    assert store.ensure_epoch(KEY).status == "open"
    bindings = store.bindings()
    proposals = [CurationProposal(e.event_id, bindings[("github", e.platform_user_id)], "bound") for e in events]
    assert store.curate(KEY, proposals) == 6
    store.set_curation(events[0].event_id, actor="admin", included=False, note="duplicate")
    store.upsert_allocations(KEY, [ProposedAllocation("alice", 5000, 5), ProposedAllocation("github:999", 10, 1)], "v1")
    store.upsert_allocations(KEY, [ProposedAllocation("alice", 5000, 5)], "v1")  # deletes the unadjusted claimant row
    store.adjust_allocation(KEY, "alice", 4000, "mentoring", actor="admin")
    assert [(a["recipient_id"], a["final_units"]) for a in store.allocations(KEY)] == [("alice", 4000)]
    assert store.add_pool_component(KEY, "base_issuance", 100, algorithm_version="v1", actor="admin")
    store.record_completeness(KEY, {"github:acme/widgets": {"stored": 6, "source": 6, "shortfall": 0}}, START + timedelta(days=8))
    assert store.enter_review(KEY, POLICY_TEXT, POLICY_HASH, [SIGNER]).status == "review"
    store.record_approval(KEY, allocation_set_hash=SET_HASH, policy_hash=POLICY_HASH, pool_total=100, message="m",
                          signer=SIGNER, signature="0x" + "b" * 130, ledger_id=store.ledger_id())
    bundle = {"statement_hash": "d" * 64, "epoch": {"key": KEY}, "revision": 1, "supersedes": None,
              "allocation_set_hash": SET_HASH, "pool": {"total": 100}}
    assert store.finalize(KEY, lambda conn, epoch, revision, issued_at: bundle) == (bundle, True)
    assert store.get_epoch(KEY).status == "finalized"
    assert store.add_correction(KEY, "alice", 3000, "late fix", actor="admin") == 2
    assert store.statement(KEY) == bundle and store.epoch_summaries()[0]["statement_hash"] == "d" * 64
    assert len(store.identity_log_through(None)) == len(owner.identity_log()) == 6


def test_a_week_through_the_stages_with_only_the_app_role(app_store):
    """resolve → bind → allocate → approve → finalize → verify, all as the app's login."""
    from credit_pipeline.core.hashing import sign_message
    from credit_pipeline.stages.admin import bind_account
    from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
    from credit_pipeline.stages.approve import approve_epoch
    from credit_pipeline.stages.finalize import finalize_epoch
    from credit_pipeline.stages.resolve import resolve_epoch
    from credit_pipeline.stages.verify import verify_stored

    from credit_pipeline_tests.stages.test_flow import AFTER, APPROVER_KEY, KEY as FLOW_KEY, POLICY, ready_for_review

    store = app_store
    store.record_page([pr_event(1, START, user_id="100"), pr_event(2, START + timedelta(days=2), user_id="200")], None)
    resolve_epoch(store, FLOW_KEY, POLICY)
    bind_account(store, "github", "100", "alice", POLICY, actor="admin")
    ready_for_review(store)
    allocate_epoch(store, FLOW_KEY, POLICY, now=AFTER)
    state = allocation_state(store, FLOW_KEY, POLICY)
    approve_epoch(store, FLOW_KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), POLICY)
    assert finalize_epoch(store, FLOW_KEY).written
    assert verify_stored(store, FLOW_KEY).ok


def test_a_ledger_owner_without_superuser_or_createrole_migrates_and_grants(pg_server_url, app_login):
    """The usual production setup: a plain owner role runs `db upgrade`; the app role already exists."""
    owner_role = f"cp_owner_{os.getpid()}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{owner_role}"')
        conn.exec_driver_sql(f'CREATE ROLE "{owner_role}" LOGIN NOCREATEROLE')
    name = f"cp_owned_{os.getpid()}"
    try:
        with scratch_database(pg_server_url, name) as url:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" OWNER TO "{owner_role}"')
            engine = sa.create_engine(login_url(url, owner_role))
            assert upgrade(engine) == [m.version for m in discover()]
            engine.dispose()
            app_engine = sa.create_engine(login_url(url, app_login))
            ensure_current(app_engine)
            store = LedgerStore(app_engine)
            assert store.bind("github", "1", "alice") and store.ensure_epoch(KEY).status == "open"
            refused(app_engine, "TRUNCATE identity_events", "permission denied")
            app_engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{owner_role}"')
        admin.dispose()


# -- ledgers written before 0003 ------------------------------------------------------


@contextmanager
def ledger_at_0002(pg_server_url: str, tmp_path) -> Iterator[tuple[sa.Engine, object]]:
    """A fresh database migrated through 0002 only, and the folder with 0001-0002."""
    old = tmp_path / "sql_0002"
    old.mkdir()
    for m in discover():
        if m.version <= "0002":
            (old / m.path.name).write_bytes(m.path.read_bytes())
    with scratch_database(pg_server_url, f"cp_old_{os.getpid()}_{next(_old)}") as url:
        engine = sa.create_engine(url)
        assert upgrade(engine, old) == ["0001", "0002"]
        yield engine, old
        engine.dispose()


_old = itertools.count()


def old_style_identity(conn, action: str, provider: str, external_id: str, user_id: str, previous: str | None = None) -> None:
    """What IdentityStore wrote before 0003: the event, and the bindings table beside it."""
    event_id = conn.execute(sa.text(
        "INSERT INTO identity_events (action, provider, external_id, user_id, previous_user_id) VALUES (:a, :p, :e, :u, :v) "
        "RETURNING identity_event_id"), {"a": action, "p": provider, "e": external_id, "u": user_id, "v": previous}).scalar()
    key = {"p": provider, "e": external_id}
    if action == "bind":
        conn.execute(sa.text("INSERT INTO user_bindings (provider, external_id, user_id, identity_event_id) VALUES (:p, :e, :u, :i)"),
                     {**key, "u": user_id, "i": event_id})
    elif action == "revoke":
        conn.execute(sa.text("DELETE FROM user_bindings WHERE provider = :p AND external_id = :e"), key)
    else:
        conn.execute(sa.text("UPDATE user_bindings SET user_id = :u, identity_event_id = :i, bound_at = now() "
                             "WHERE provider = :p AND external_id = :e"), {**key, "u": user_id, "i": event_id})


def test_upgrading_a_consistent_ledger_keeps_every_binding_exactly(pg_server_url, tmp_path):
    with ledger_at_0002(pg_server_url, tmp_path) as (engine, _):
        with engine.begin() as conn:
            for step in [("bind", "github", "1", "alice"), ("bind", "github", "2", "bob"), ("bind", "discord", "3", "bob"),
                         ("revoke", "github", "2", "bob"), ("bind", "github", "2", "carol"), ("merge", "discord", "3", "alice", "bob"),
                         ("bind", "github", "4", "Dave")]:  # an id outside the grammar, from before it
                old_style_identity(conn, *step)
            conn.exec_driver_sql("INSERT INTO epochs (epoch_key, window_start, window_end) VALUES "
                                 "('2026-02-16', '2026-02-16T00:00:00Z', '2026-02-23T00:00:00Z')")
            conn.exec_driver_sql("INSERT INTO epoch_allocations (epoch_key, recipient_id, proposed_units, activity_count, algorithm_version) "
                                 "VALUES ('2026-02-16', E'alice\\n', 1, 1, 'v1')")
        query = "SELECT provider, external_id, user_id, identity_event_id, bound_at FROM user_bindings ORDER BY 1, 2"
        with engine.connect() as conn:
            table = conn.execute(sa.text(query)).all()
        assert upgrade(engine) == ["0003", "0004", "0005", "0006", "0007", "0008"]
        with engine.connect() as conn:
            assert conn.execute(sa.text(query)).all() == table
            assert conn.execute(sa.text("SELECT count(*) FROM epoch_allocations")).scalar() == 1  # old rows stay as written
            assert conn.execute(sa.text("SELECT table_type FROM information_schema.tables WHERE table_name = 'user_bindings'")).scalar() == "VIEW"
        refused(engine, "INSERT INTO epoch_allocations (epoch_key, recipient_id, proposed_units, activity_count, algorithm_version) "
                        "VALUES ('2026-02-16', E'bob\\n', 1, 1, 'v1')", "allocation_recipient_grammar")
        store = LedgerStore(engine)
        assert store.revoke("github", "4") == "Dave"  # a binding from before the grammar can still be cleaned up
        assert store.bind("github", "4", "dave")


def test_upgrading_a_ledger_whose_bindings_were_repointed_is_refused(pg_server_url, tmp_path):
    with ledger_at_0002(pg_server_url, tmp_path) as (engine, _):
        with engine.begin() as conn:
            old_style_identity(conn, "bind", "github", "1", "alice")
            old_style_identity(conn, "bind", "github", "2", "bob")
            conn.exec_driver_sql("UPDATE user_bindings SET user_id = 'mallory' WHERE external_id = '1'")  # the re-pointing
            conn.exec_driver_sql("DELETE FROM user_bindings WHERE external_id = '2'")
        with pytest.raises(MigrationError, match=r"0003_database_defenses.sql failed and was rolled back.*2 account\(s\): "
                                                 r"github:1 \(user_bindings: mallory, identity_events: alice\); "
                                                 r"github:2 \(user_bindings: unbound, identity_events: bob\)"):
            upgrade(engine)
        assert {s.version: s.state for s in status(engine)}["0003"] == "pending"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT table_type FROM information_schema.tables WHERE table_name = 'user_bindings'")).scalar() == "BASE TABLE"


# -- bind / revoke / merge, against a model, on the real database ---------------------


ACCOUNTS = [("github", "1"), ("github", "2"), ("discord", "3"), ("discord", "4")]
PEOPLE = ["alice", "bob", "carol"]
_machines = itertools.count()


def replay(log: list[dict]) -> dict[tuple[str, str], str]:
    bindings: dict[tuple[str, str], str] = {}
    for event in sorted(log, key=lambda e: e["identity_event_id"]):
        account = (event["provider"], event["external_id"])
        if event["action"] == "revoke":
            bindings.pop(account, None)
        else:
            bindings[account] = event["user_id"]
    return bindings


class IdentityLog(RuleBasedStateMachine):
    """Each example gets its own ledger; the store runs as the app role's login."""

    server_url: str = ""
    template: str = ""
    login: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"cp_hyp_{os.getpid()}_{next(_machines)}"
        self.admin = sa.create_engine(make_url(self.server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')
        self.engine = sa.create_engine(login_url(make_url(self.server_url).set(database=self.name).render_as_string(False), self.login))
        self.store = LedgerStore(self.engine)
        self.model: dict[tuple[str, str], str] = {}
        self.events = 0

    def teardown(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()

    @rule(account=st.sampled_from(ACCOUNTS), person=st.sampled_from(PEOPLE))
    def bind(self, account, person):
        holder = self.model.get(account)
        if holder is not None and holder != person:
            with pytest.raises(IdentityConflict, match=f"already bound to {holder}; revoke that binding first"):
                self.store.bind(*account, person)
            return
        assert self.store.bind(*account, person, actor="admin") is (holder is None)
        if holder is None:
            self.model[account] = person
            self.events += 1

    @rule(account=st.sampled_from(ACCOUNTS))
    def revoke(self, account):
        if account not in self.model:
            with pytest.raises(LedgerError, match="is not bound to anyone"):
                self.store.revoke(*account)
            return
        assert self.store.revoke(*account) == self.model.pop(account)
        self.events += 1

    @rule(source=st.sampled_from(PEOPLE), into=st.sampled_from(PEOPLE))
    def merge(self, source, into):
        moving = [a for a, p in self.model.items() if p == source]
        if source == into or not moving:
            with pytest.raises(LedgerError, match="merged into themselves|no bound accounts"):
                self.store.merge_users(source, into)
            return
        assert self.store.merge_users(source, into) == len(moving)
        self.model.update({a: into for a in moving})
        self.events += len(moving)

    @rule(action=st.sampled_from(["bind", "revoke", "merge"]), account=st.sampled_from(ACCOUNTS),
          person=st.sampled_from(PEOPLE), previous=st.none() | st.sampled_from(PEOPLE))
    def raw_event(self, action, account, person, previous):
        """An identity event written straight to the table: the trigger alone decides."""
        holder = self.model.get(account)
        consistent = {"bind": holder is None and previous is None,
                      "revoke": holder == person and previous is None,
                      "merge": previous is not None and previous != person and holder == previous}[action]
        statement = sa.text("INSERT INTO identity_events (action, provider, external_id, user_id, previous_user_id) "
                            "VALUES (:a, :p, :e, :u, :v)")
        params = {"a": action, "p": account[0], "e": account[1], "u": person, "v": previous}
        if not consistent:
            with pytest.raises(sa.exc.IntegrityError):
                with self.engine.begin() as conn:
                    conn.execute(statement, params)
            return
        with self.engine.begin() as conn:
            conn.execute(statement, params)
        if action == "revoke":
            del self.model[account]
        else:
            self.model[account] = person
        self.events += 1

    @invariant()
    def the_view_is_the_log_replayed(self):
        log = self.store.identity_log()
        assert len(log) == self.events  # a refused operation wrote nothing
        assert self.store.bindings() == self.model == replay(log)
        latest = {}
        for e in log:
            latest[(e["provider"], e["external_id"])] = e["identity_event_id"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT provider, external_id, identity_event_id FROM user_bindings")).all()
        assert all(latest[(p, x)] == i for p, x, i in rows)


def test_bindings_always_equal_the_replayed_log(pg_server_url, template_db, app_login):
    IdentityLog.server_url, IdentityLog.template, IdentityLog.login = pg_server_url, template_db, app_login
    run_state_machine_as_test(IdentityLog, settings=settings(max_examples=25, stateful_step_count=20, deadline=None))


def test_a_migrations_notices_reach_the_operator(ledger_url, tmp_path, caplog):
    """0003 tells a migrating user without CREATEROLE what to run with a NOTICE; the migrator logs it as a warning."""
    sql = tmp_path / "sql"
    sql.mkdir()
    for m in discover():
        (sql / m.path.name).write_bytes(m.path.read_bytes())
    (sql / "9999_notice.sql").write_text("DO $$ BEGIN RAISE NOTICE 'as a role with CREATEROLE run: CREATE ROLE x'; END $$;")
    engine = superuser(ledger_url)
    with caplog.at_level("WARNING", logger="credit_pipeline.ledger.migrations"):
        assert upgrade(engine, sql) == ["9999"]
    engine.dispose()
    assert "9999_notice.sql: as a role with CREATEROLE run: CREATE ROLE x" in caplog.text
