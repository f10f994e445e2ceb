-- credit_pipeline ledger, version 2: the approve → finalize → verify chain (SPEC §9, §10).
--
-- * A ledger_id made once per ledger, which approval message v2 names, so a signature
--   cannot be replayed on another deployment.
-- * The pinned policy kept as the exact canonical JSON text that was hashed.
-- * Approvals unique per (epoch, exact message, signer), with the revision they approve.
-- * Correction adjustments for finalized epochs, and statements that must chain:
--   revision n+1 supersedes revision n, and needs a recorded approval of its set.

CREATE TABLE ledger_identity (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    ledger_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger_identity DEFAULT VALUES;
CREATE TRIGGER ledger_identity_append_only BEFORE UPDATE OR DELETE ON ledger_identity
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER ledger_identity_no_truncate BEFORE TRUNCATE ON ledger_identity
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The pinned policy: the exact canonical JSON text whose SHA-256 is policy_hash.
ALTER TABLE epochs ADD COLUMN policy_text text;
ALTER TABLE epochs ADD CONSTRAINT epoch_policy_text_hashes CHECK (
    policy_text IS NULL OR encode(sha256(convert_to(policy_text, 'UTF8')), 'hex') = policy_hash);

CREATE OR REPLACE FUNCTION guard_epoch_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rank_old int := array_position(ARRAY['open', 'review', 'finalized'], OLD.status);
    rank_new int := array_position(ARRAY['open', 'review', 'finalized'], NEW.status);
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'epoch % cannot be deleted', OLD.epoch_key USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status = 'finalized' THEN
        RAISE EXCEPTION 'epoch % is finalized and frozen; issue a superseding statement instead', OLD.epoch_key
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF rank_new < rank_old THEN
        RAISE EXCEPTION 'epoch % cannot move back from % to % (status moves forward only)',
            OLD.epoch_key, OLD.status, NEW.status USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.policy_hash IS NOT NULL AND (NEW.policy_hash IS DISTINCT FROM OLD.policy_hash
            OR NEW.policy IS DISTINCT FROM OLD.policy OR NEW.approvers IS DISTINCT FROM OLD.approvers
            OR (OLD.policy_text IS NOT NULL AND NEW.policy_text IS DISTINCT FROM OLD.policy_text)) THEN
        RAISE EXCEPTION 'epoch % has a pinned policy %; it cannot be changed', OLD.epoch_key, OLD.policy_hash
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.epoch_key <> OLD.epoch_key OR NEW.window_start <> OLD.window_start THEN
        RAISE EXCEPTION 'epoch % cannot be re-keyed', OLD.epoch_key USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

-- Approvals: one per (epoch, exact message, signer). The message names the pool, the
-- revision and the ledger, so re-approving after a top-up or for a correction is a new row.
ALTER TABLE epoch_approvals DROP CONSTRAINT epoch_approvals_epoch_key_allocation_set_hash_signer_key;
ALTER TABLE epoch_approvals ADD COLUMN revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1);
ALTER TABLE epoch_approvals ADD COLUMN ledger_id uuid;
ALTER TABLE epoch_approvals ADD COLUMN supersedes text CHECK (supersedes ~ '^[0-9a-f]{64}$');
ALTER TABLE epoch_approvals ADD CONSTRAINT approval_once_per_message UNIQUE (epoch_key, message, signer);
ALTER TABLE epoch_approvals ADD CONSTRAINT approval_signature_normalized
    CHECK (signature ~ '^0x[0-9a-f]{130}$') NOT VALID;  -- rows from before normalization stay as written
ALTER TABLE epoch_approvals ADD CONSTRAINT approval_revision_chain CHECK ((revision = 1) = (supersedes IS NULL));

-- Approvals are taken while the epoch is in review (revision 1) or, for a correction,
-- while it is finalized and the approved revision is not yet written.
CREATE FUNCTION check_approval_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    latest int;
BEGIN
    SELECT status INTO current_status FROM epochs WHERE epoch_key = NEW.epoch_key FOR SHARE;
    SELECT coalesce(max(revision), 0) INTO latest FROM payout_statements WHERE epoch_key = NEW.epoch_key;
    IF NEW.revision <> latest + 1 THEN
        RAISE EXCEPTION 'epoch % has statement revision %; an approval now can only be for revision %, not %',
            NEW.epoch_key, latest, latest + 1, NEW.revision USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.revision = 1 AND current_status <> 'review') OR (NEW.revision > 1 AND current_status <> 'finalized') THEN
        RAISE EXCEPTION 'epoch % is %: revision % cannot be approved now', NEW.epoch_key, current_status, NEW.revision
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER epoch_approvals_frozen ON epoch_approvals;
CREATE TRIGGER epoch_approvals_for_next_revision BEFORE INSERT ON epoch_approvals
    FOR EACH ROW EXECUTE FUNCTION check_approval_epoch();

-- Corrections of a finalized epoch: adjustments that revision n+1 applies, with reasons.
CREATE TABLE statement_corrections (
    correction_id  bigserial PRIMARY KEY,
    epoch_key      date NOT NULL REFERENCES epochs (epoch_key),
    revision       integer NOT NULL CHECK (revision >= 2),
    recipient_id   text NOT NULL,
    final_units    bigint NOT NULL CHECK (final_units >= 0),
    reason         text NOT NULL CHECK (length(btrim(reason)) > 0),
    corrected_by   text,
    corrected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX statement_corrections_epoch ON statement_corrections (epoch_key, revision);
CREATE TRIGGER statement_corrections_append_only BEFORE UPDATE OR DELETE ON statement_corrections
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER statement_corrections_no_truncate BEFORE TRUNCATE ON statement_corrections
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE FUNCTION check_correction_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    latest int;
BEGIN
    SELECT status INTO current_status FROM epochs WHERE epoch_key = NEW.epoch_key FOR SHARE;
    IF current_status IS DISTINCT FROM 'finalized' THEN
        RAISE EXCEPTION 'epoch % is %: corrections are for finalized epochs (adjust an epoch in review instead)',
            NEW.epoch_key, coalesce(current_status, 'missing') USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT coalesce(max(revision), 0) INTO latest FROM payout_statements WHERE epoch_key = NEW.epoch_key;
    IF NEW.revision <> latest + 1 THEN
        RAISE EXCEPTION 'epoch % has statement revision %: a correction now belongs to revision %, not %',
            NEW.epoch_key, latest, latest + 1, NEW.revision USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER statement_corrections_for_next_revision BEFORE INSERT ON statement_corrections
    FOR EACH ROW EXECUTE FUNCTION check_correction_epoch();

-- Statements chain: revision n+1 supersedes the epoch's latest statement, names itself
-- consistently in its bundle, and needs a recorded approval of its allocation set.
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
    IF (NEW.bundle::jsonb)->>'statement_hash' IS DISTINCT FROM NEW.statement_hash
            OR (NEW.bundle::jsonb)->'epoch'->>'key' IS DISTINCT FROM NEW.epoch_key::text
            OR (NEW.bundle::jsonb)->>'allocation_set_hash' IS DISTINCT FROM NEW.allocation_set_hash
            OR coalesce(((NEW.bundle::jsonb)->>'revision')::int, 1) <> NEW.revision THEN
        RAISE EXCEPTION 'statement % does not describe itself: its bundle names another hash, epoch, allocation set or revision',
            NEW.statement_hash USING ERRCODE = 'check_violation';
    END IF;
    PERFORM 1 FROM epoch_approvals
        WHERE epoch_key = NEW.epoch_key AND revision = NEW.revision AND allocation_set_hash = NEW.allocation_set_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'statement revision % of epoch % has no recorded approval of allocation set %',
            NEW.revision, NEW.epoch_key, NEW.allocation_set_hash USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
