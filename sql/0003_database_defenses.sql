-- credit_pipeline ledger, version 3: the database defends itself, not only the app's code
-- (SPEC §3, §5, §7, §9, §10; docs/database.md says who may do what).
--
-- * No TRUNCATE of any table that holds facts (the append-only triggers are row triggers,
--   which TRUNCATE never fires).
-- * user_bindings is no longer a table anyone can re-point: it is a view of the latest
--   identity event per account, and a trigger keeps the identity log itself consistent.
-- * The recipient id grammar (SPEC §5) as CHECKs, so no two allocation sets share a hash.
-- * credit_pipeline_app, a least-privilege role for the application: it writes what the
--   pipeline writes and nothing else, and owns nothing (so it cannot disable a trigger).

-- 1. TRUNCATE is refused on every table of facts. source_cursors (a position, rewritten by
--    design) and schema_migrations (the migrator's bookkeeping) are the only tables without.
CREATE TRIGGER epochs_no_truncate BEFORE TRUNCATE ON epochs
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER activity_curation_no_truncate BEFORE TRUNCATE ON activity_curation
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER epoch_allocations_no_truncate BEFORE TRUNCATE ON epoch_allocations
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER epoch_pool_components_no_truncate BEFORE TRUNCATE ON epoch_pool_components
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER epoch_approvals_no_truncate BEFORE TRUNCATE ON epoch_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER identity_events_no_truncate BEFORE TRUNCATE ON identity_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- 2. Bindings are derived from the identity log only.
--
-- Every ledger written by this code kept user_bindings equal to the replay of its log.
-- If this one does not, someone changed the table without an identity event: refuse to
-- upgrade (replacing the table by the view would silently change who is paid) and name
-- the accounts, so a person decides which side is right.
DO $$
DECLARE
    differing text;
    how_many int;
BEGIN
    WITH latest AS (
        SELECT DISTINCT ON (provider, external_id) provider, external_id, action, user_id
        FROM identity_events ORDER BY provider, external_id, identity_event_id DESC
    ), replayed AS (
        SELECT provider, external_id, user_id FROM latest WHERE action IN ('bind', 'merge')
    ), mismatch AS (
        SELECT provider, external_id, b.user_id AS in_table, r.user_id AS in_log
        FROM user_bindings b FULL JOIN replayed r USING (provider, external_id)
        WHERE b.user_id IS DISTINCT FROM r.user_id
    )
    SELECT count(*), string_agg(format('%s:%s (user_bindings: %s, identity_events: %s)', provider, external_id,
                                       coalesce(in_table, 'unbound'), coalesce(in_log, 'unbound')), '; '
                                ORDER BY provider, external_id)
        INTO how_many, differing FROM mismatch;
    IF how_many > 0 THEN
        RAISE EXCEPTION 'user_bindings disagrees with the identity log for % account(s): %', how_many, differing
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'identity_events is the record (SPEC §5) and user_bindings becomes a view of it. If the log is right, '
                      || 'make user_bindings agree with it in psql; if the table is right, append the missing bind/revoke/merge '
                      || 'to identity_events in psql. Then run `credit-pipeline db upgrade` again.';
    END IF;
END $$;

DROP TABLE user_bindings;

-- The latest event of an account decides: bind and merge bind it to user_id, revoke unbinds it.
-- (Same columns as the table it replaces, so readers keep working.)
CREATE INDEX identity_events_account ON identity_events (provider, external_id, identity_event_id);
CREATE VIEW user_bindings AS
    SELECT provider, external_id, user_id, identity_event_id, created_at AS bound_at
    FROM (SELECT DISTINCT ON (provider, external_id) provider, external_id, action, user_id, identity_event_id, created_at
          FROM identity_events ORDER BY provider, external_id, identity_event_id DESC) latest
    WHERE action IN ('bind', 'merge');
COMMENT ON VIEW user_bindings IS 'account -> person: the latest bind/merge of each account in identity_events (a revoke unbinds)';

-- Each identity event must follow from the account's current state, so the log (and the
-- view) never holds a re-pointing without a revoke, or a revoke or merge of the wrong person.
CREATE FUNCTION check_identity_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account text := NEW.provider || ' account ' || NEW.external_id;
    holder text;
BEGIN
    -- Held shared by every identity write and exclusively by finalize (0x69646C67,
    -- credit_pipeline.ledger.payout_rows.IDENTITY_LOG_LOCK): a statement hashes the log finalize saw.
    PERFORM pg_advisory_xact_lock_shared(1768189031);
    -- One writer per account at a time; taken in this order by the app too.
    PERFORM pg_advisory_xact_lock(hashtext(NEW.provider || ':' || NEW.external_id));
    -- A REPEATABLE READ snapshot predates the lock and could miss the event it waited for.
    IF current_setting('transaction_isolation') = 'repeatable read' THEN
        RAISE EXCEPTION 'identity events are written in READ COMMITTED or SERIALIZABLE transactions, not REPEATABLE READ'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- The id is the log's order. Assigned here, under both locks, it is larger than the id of
    -- every event this account already has and of every event a finalize has already seen.
    NEW.identity_event_id := nextval(pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'identity_event_id'));
    SELECT b.user_id INTO holder FROM user_bindings b WHERE b.provider = NEW.provider AND b.external_id = NEW.external_id;

    IF NEW.action <> 'merge' AND NEW.previous_user_id IS NOT NULL THEN
        RAISE EXCEPTION 'a % event has no previous_user_id (only a merge moves an account from one person to another)', NEW.action
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.action = 'bind' AND holder = NEW.user_id THEN
        RAISE EXCEPTION '% is already bound to %; nothing to bind', account, holder
            USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.action = 'bind' AND holder IS NOT NULL THEN
        RAISE EXCEPTION '% is already bound to %; revoke that binding first (credit-pipeline identity revoke % %)',
            account, holder, NEW.provider, NEW.external_id USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.action = 'revoke' AND holder IS NULL THEN
        RAISE EXCEPTION '% is not bound to anyone', account USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.action = 'revoke' AND holder <> NEW.user_id THEN
        RAISE EXCEPTION '% is bound to %, not %; a revoke names the person the account is bound to', account, holder, NEW.user_id
            USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.action = 'merge' AND (NEW.previous_user_id IS NULL OR NEW.previous_user_id = NEW.user_id) THEN
        RAISE EXCEPTION 'a merge of % needs previous_user_id, the person it moves from, different from user_id %',
            account, NEW.user_id USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.action = 'merge' AND holder IS NULL THEN
        RAISE EXCEPTION '% is not bound to anyone, so it cannot be merged from %; bind it instead', account, NEW.previous_user_id
            USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.action = 'merge' AND holder <> NEW.previous_user_id THEN
        RAISE EXCEPTION '% is bound to %, not %; a merge moves only the accounts of the person it merges from',
            account, holder, NEW.previous_user_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER identity_events_consistent BEFORE INSERT ON identity_events
    FOR EACH ROW EXECUTE FUNCTION check_identity_event();

-- 3. The recipient id grammar (SPEC §5). PostgreSQL's `$` (without the n flag) matches only at
--    the very end, never before a trailing newline. NOT VALID: rows written before this
--    migration are not re-checked (verify reports them); every new or updated row is.
ALTER TABLE activity_curation ADD CONSTRAINT curation_recipient_grammar CHECK (
    recipient_id ~ '^([a-z0-9][a-z0-9._-]{0,63}|(github|discord):[0-9]+)$') NOT VALID;
ALTER TABLE epoch_allocations ADD CONSTRAINT allocation_recipient_grammar CHECK (
    recipient_id ~ '^([a-z0-9][a-z0-9._-]{0,63}|(github|discord):[0-9]+)$') NOT VALID;
ALTER TABLE statement_corrections ADD CONSTRAINT correction_recipient_grammar CHECK (
    recipient_id ~ '^([a-z0-9][a-z0-9._-]{0,63}|(github|discord):[0-9]+)$') NOT VALID;
-- A revoke names the account's current holder (the trigger insists), so it is exempt: a binding
-- made before this grammar under an id outside it can still be revoked, then bound again properly.
ALTER TABLE identity_events ADD CONSTRAINT identity_user_grammar CHECK (
    action = 'revoke' OR user_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$') NOT VALID;
ALTER TABLE identity_events ADD CONSTRAINT identity_previous_user_grammar CHECK (
    previous_user_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$') NOT VALID;

-- 4. The application's role. What it may do, table by table; a later migration that adds
--    or changes a table replaces this function with the new lists and calls it again.
CREATE FUNCTION credit_pipeline_app_grants() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'credit_pipeline_app') THEN
        RAISE EXCEPTION 'role credit_pipeline_app does not exist'
            USING HINT = 'as a role with CREATEROLE: CREATE ROLE credit_pipeline_app NOLOGIN; then as the ledger owner: SELECT credit_pipeline_app_grants();';
    END IF;
    -- Exactly these privileges, whatever was granted by hand before.
    REVOKE ALL ON epochs, activity_events, activity_curation, epoch_allocations, epoch_pool_components, epoch_approvals,
                  payout_statements, source_cursors, identity_events, user_bindings, ledger_identity, statement_corrections,
                  schema_migrations FROM credit_pipeline_app;
    REVOKE ALL ON SEQUENCE epoch_approvals_approval_id_seq, identity_events_identity_event_id_seq,
                  statement_corrections_correction_id_seq FROM credit_pipeline_app;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO credit_pipeline_app', current_database());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO credit_pipeline_app', current_schema());
    -- PostgreSQL 15 makes this the default; a database created earlier may still let PUBLIC create tables.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());

    -- Reading: everything (ensure_current reads schema_migrations).
    GRANT SELECT ON epochs, activity_events, activity_curation, epoch_allocations, epoch_pool_components, epoch_approvals,
                    payout_statements, source_cursors, identity_events, user_bindings, ledger_identity, statement_corrections,
                    schema_migrations TO credit_pipeline_app;
    GRANT USAGE, SELECT ON SEQUENCE epoch_approvals_approval_id_seq, identity_events_identity_event_id_seq,
                    statement_corrections_correction_id_seq TO credit_pipeline_app;
    -- Appending: every ledger table the pipeline writes (ledger_identity is written once, by 0002).
    GRANT INSERT ON epochs, activity_events, activity_curation, epoch_allocations, epoch_pool_components, epoch_approvals,
                    payout_statements, source_cursors, identity_events, statement_corrections TO credit_pipeline_app;
    -- Changing: epochs move forward (their trigger guards how), resolution and curation rewrite
    -- curation rows, allocations are re-proposed and adjusted, cursors advance.
    GRANT UPDATE ON epochs, activity_curation, epoch_allocations, source_cursors TO credit_pipeline_app;
    -- Removing: only allocation rows no longer proposed and never adjusted (CurationStore.upsert_allocations).
    GRANT DELETE ON epoch_allocations TO credit_pipeline_app;
END $$;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants() FROM PUBLIC;

-- Roles belong to the cluster: another ledger database may have made it already, or be making
-- it right now. A migrating user without CREATEROLE skips this part and is told what to run.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'credit_pipeline_app') THEN
        BEGIN
            CREATE ROLE credit_pipeline_app NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- a concurrent migration of another database created it first
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role credit_pipeline_app was not created: % cannot create roles. As a role with CREATEROLE run '
                    'CREATE ROLE credit_pipeline_app NOLOGIN; then, as %, connected to database %: SELECT credit_pipeline_app_grants();',
                    current_user, current_user, current_database();
                RETURN;
        END;
    END IF;
    PERFORM credit_pipeline_app_grants();
END $$;
