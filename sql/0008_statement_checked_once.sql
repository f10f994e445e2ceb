-- 0008: a statement's bundle is parsed once on insert (issue 13: finalize at scale). The 0002 check cast the
-- bundle text to jsonb four times in the BEFORE trigger, on top of the generated bundle_json column: about
-- 5 s of a 30 MB statement's insert. The chain, status and approval checks stay BEFORE the insert (they
-- read no bundle); the self-description check moves to an AFTER trigger that reads the generated column,
-- which PostgreSQL has computed by then. Either refusal aborts the insert, so nothing is written.
CREATE OR REPLACE FUNCTION check_statement_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    latest_revision int;
    latest_hash text;
BEGIN
    SELECT status INTO current_status FROM epochs WHERE epoch_key = NEW.epoch_key FOR UPDATE;
    SELECT revision, statement_hash INTO latest_revision, latest_hash FROM payout_statements
        WHERE epoch_key = NEW.epoch_key ORDER BY revision DESC LIMIT 1;
    latest_revision := coalesce(latest_revision, 0);
    IF NEW.revision <> latest_revision + 1 OR NEW.supersedes IS DISTINCT FROM latest_hash THEN
        RAISE EXCEPTION 'statement revision % of epoch % does not chain: the next revision is % and must supersede %',
            NEW.revision, NEW.epoch_key, latest_revision + 1, coalesce(latest_hash, 'nothing')
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.revision = 1 AND current_status IS DISTINCT FROM 'review')
            OR (NEW.revision > 1 AND current_status IS DISTINCT FROM 'finalized') THEN
        RAISE EXCEPTION 'epoch % is %: revision % needs a reviewed (1) or finalized (2 and later) epoch',
            NEW.epoch_key, coalesce(current_status, 'missing'), NEW.revision USING ERRCODE = 'check_violation';
    END IF;
    PERFORM 1 FROM epoch_approvals
        WHERE epoch_key = NEW.epoch_key AND revision = NEW.revision AND allocation_set_hash = NEW.allocation_set_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'statement revision % of epoch % has no recorded approval of allocation set %',
            NEW.revision, NEW.epoch_key, NEW.allocation_set_hash USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION check_statement_describes_itself() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb := NEW.bundle_json;  -- the generated column: the one parse of the bundle
BEGIN
    IF doc->>'statement_hash' IS DISTINCT FROM NEW.statement_hash
            OR doc->'epoch'->>'key' IS DISTINCT FROM NEW.epoch_key::text
            OR doc->>'allocation_set_hash' IS DISTINCT FROM NEW.allocation_set_hash
            OR coalesce((doc->>'revision')::int, 1) <> NEW.revision THEN
        RAISE EXCEPTION 'statement % does not describe itself: its bundle names another hash, epoch, allocation set or revision',
            NEW.statement_hash USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payout_statements_describe_themselves AFTER INSERT ON payout_statements
    FOR EACH ROW EXECUTE FUNCTION check_statement_describes_itself();
