-- credit_pipeline ledger, version 1 (SPEC §2-§10).
-- Invariants live here where the database can keep them: append-only triggers,
-- UNIQUE keys for every idempotency rule, CHECKs for non-negative amounts, a
-- forward-only epoch status and a freeze on every row of a finalized epoch.

CREATE TABLE epochs (
    epoch_key            date PRIMARY KEY,
    window_start         timestamptz NOT NULL,
    window_end           timestamptz NOT NULL,
    status               text NOT NULL DEFAULT 'open',
    policy               jsonb,           -- pinned when the epoch enters review
    policy_hash          text,
    approvers            jsonb,
    completeness         jsonb,           -- per (source, stream, ref) stored vs source totals
    completeness_waiver  jsonb,           -- {by, reason, at} when a shortfall is waived
    final_collection_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    review_at            timestamptz,
    finalized_at         timestamptz,
    CONSTRAINT epoch_starts_monday CHECK (extract(isodow FROM epoch_key) = 1),
    CONSTRAINT epoch_window_utc_week CHECK (
        window_start = (epoch_key::timestamp AT TIME ZONE 'UTC')
        AND window_end = window_start + interval '7 days'),
    CONSTRAINT epoch_status_known CHECK (status IN ('open', 'review', 'finalized')),
    CONSTRAINT epoch_pinned_after_open CHECK (
        status = 'open' OR (policy IS NOT NULL AND policy_hash ~ '^[0-9a-f]{64}$' AND approvers IS NOT NULL))
);

CREATE TABLE activity_events (
    event_id          text PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('github', 'discord')),
    event_type        text NOT NULL,
    platform_user_id  text CHECK (platform_user_id ~ '^[0-9]+$'),  -- NULL: deleted account
    platform_login    text,
    is_bot            boolean NOT NULL DEFAULT false,
    artifact_url      text,
    event_time        timestamptz NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}',
    payload           jsonb NOT NULL,
    payload_hash      text NOT NULL CHECK (payload_hash ~ '^[0-9a-f]{64}$'),
    producer          text NOT NULL,
    producer_version  text NOT NULL,
    retrieved_at      timestamptz NOT NULL,
    ingested_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_id_names_source CHECK (starts_with(event_id, source || ':'))
);
CREATE INDEX activity_events_time ON activity_events (event_time);
CREATE INDEX activity_events_account ON activity_events (source, platform_user_id);

-- One curation row per event: an event is in at most one epoch.
CREATE TABLE activity_curation (
    event_id         text PRIMARY KEY REFERENCES activity_events (event_id),
    epoch_key        date NOT NULL REFERENCES epochs (epoch_key),
    recipient_id     text,            -- person, claimant provider:external_id, or NULL (credits no one)
    resolution       text NOT NULL CHECK (resolution IN
                        ('bound', 'claimant', 'bot', 'excluded', 'unattributable', 'unresolved_excluded')),
    resolved_at      timestamptz NOT NULL DEFAULT now(),
    -- admin fields: written only by curation commands, never by resolution
    included         boolean NOT NULL DEFAULT true,
    weight_override  bigint CHECK (weight_override >= 0),
    note             text,
    curated_by       text,
    curated_at       timestamptz
);
CREATE INDEX activity_curation_epoch ON activity_curation (epoch_key, recipient_id);

CREATE TABLE epoch_allocations (
    epoch_key          date NOT NULL REFERENCES epochs (epoch_key),
    recipient_id       text NOT NULL,
    proposed_units     bigint NOT NULL CHECK (proposed_units >= 0),
    activity_count     integer NOT NULL CHECK (activity_count >= 0),
    algorithm_version  text NOT NULL,
    proposed_at        timestamptz NOT NULL DEFAULT now(),
    -- admin adjustment: final units with a reason, or neither
    final_units        bigint CHECK (final_units >= 0),
    reason             text,
    adjusted_by        text,
    adjusted_at        timestamptz,
    PRIMARY KEY (epoch_key, recipient_id),
    CONSTRAINT adjustment_needs_reason CHECK ((final_units IS NULL) = (reason IS NULL)),
    CONSTRAINT reason_not_blank CHECK (reason IS NULL OR length(btrim(reason)) > 0)
);

CREATE TABLE epoch_pool_components (
    epoch_key          date NOT NULL REFERENCES epochs (epoch_key),
    component_id       text NOT NULL CHECK (component_id IN ('base_issuance', 'kpi_bonus', 'top_up')),
    amount             numeric(78, 0) NOT NULL CHECK (amount >= 0),
    algorithm_version  text NOT NULL,
    inputs             jsonb NOT NULL DEFAULT '{}',
    evidence_ref       text,
    recorded_by        text,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (epoch_key, component_id)
);

CREATE TABLE epoch_approvals (
    approval_id          bigserial PRIMARY KEY,
    epoch_key            date NOT NULL REFERENCES epochs (epoch_key),
    allocation_set_hash  text NOT NULL CHECK (allocation_set_hash ~ '^[0-9a-f]{64}$'),
    policy_hash          text NOT NULL,
    pool_total           numeric(78, 0) NOT NULL CHECK (pool_total >= 0),
    message              text NOT NULL,
    signer               text NOT NULL CHECK (signer ~ '^0x[0-9a-f]{40}$'),
    signature            text NOT NULL UNIQUE,
    approved_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (epoch_key, allocation_set_hash, signer)
);

CREATE TABLE payout_statements (
    statement_hash       text PRIMARY KEY CHECK (statement_hash ~ '^[0-9a-f]{64}$'),
    epoch_key            date NOT NULL REFERENCES epochs (epoch_key),
    revision             integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
    supersedes           text REFERENCES payout_statements (statement_hash),
    allocation_set_hash  text NOT NULL,
    pool_total           numeric(78, 0) NOT NULL CHECK (pool_total >= 0),
    bundle               text NOT NULL,   -- the exact canonical bytes that were hashed
    bundle_json          jsonb GENERATED ALWAYS AS (bundle::jsonb) STORED,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (epoch_key, revision),
    CONSTRAINT revision_chain CHECK ((revision = 1) = (supersedes IS NULL))
);

CREATE TABLE source_cursors (
    source      text NOT NULL,
    stream      text NOT NULL,
    source_ref  text NOT NULL,
    position    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, stream, source_ref)
);

CREATE TABLE identity_events (
    identity_event_id  bigserial PRIMARY KEY,
    action             text NOT NULL CHECK (action IN ('bind', 'revoke', 'merge')),
    provider           text NOT NULL CHECK (provider IN ('github', 'discord')),
    external_id        text NOT NULL CHECK (external_id ~ '^[0-9]+$'),
    user_id            text NOT NULL CHECK (length(user_id) > 0),
    previous_user_id   text,
    evidence           jsonb NOT NULL DEFAULT '{}',
    actor              text,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- The current-state index of identity_events: one person per account.
CREATE TABLE user_bindings (
    provider           text NOT NULL,
    external_id        text NOT NULL,
    user_id            text NOT NULL CHECK (length(user_id) > 0),
    identity_event_id  bigint NOT NULL REFERENCES identity_events (identity_event_id),
    bound_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, external_id)
);
CREATE INDEX user_bindings_user ON user_bindings (user_id);

-- Append-only tables: facts are never updated or deleted.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed (% are never changed; record a new row instead)',
        TG_TABLE_NAME, TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER activity_events_append_only BEFORE UPDATE OR DELETE ON activity_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER activity_events_no_truncate BEFORE TRUNCATE ON activity_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER epoch_pool_components_append_only BEFORE UPDATE OR DELETE ON epoch_pool_components
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER epoch_approvals_append_only BEFORE UPDATE OR DELETE ON epoch_approvals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER identity_events_append_only BEFORE UPDATE OR DELETE ON identity_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER payout_statements_append_only BEFORE UPDATE OR DELETE ON payout_statements
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER payout_statements_no_truncate BEFORE TRUNCATE ON payout_statements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Epoch status moves forward only; pinned policy never changes; a finalized epoch is frozen.
CREATE FUNCTION guard_epoch_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
            OR NEW.policy IS DISTINCT FROM OLD.policy OR NEW.approvers IS DISTINCT FROM OLD.approvers) THEN
        RAISE EXCEPTION 'epoch % has a pinned policy %; it cannot be changed', OLD.epoch_key, OLD.policy_hash
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.epoch_key <> OLD.epoch_key OR NEW.window_start <> OLD.window_start THEN
        RAISE EXCEPTION 'epoch % cannot be re-keyed', OLD.epoch_key USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER epochs_forward_only BEFORE UPDATE OR DELETE ON epochs
    FOR EACH ROW EXECUTE FUNCTION guard_epoch_update();

-- Rows of a finalized epoch are frozen.
CREATE FUNCTION refuse_if_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key date := CASE WHEN TG_OP = 'DELETE' THEN OLD.epoch_key ELSE NEW.epoch_key END;
    current_status text;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.epoch_key <> NEW.epoch_key THEN
        RAISE EXCEPTION 'curated rows never move between epochs (% -> %)', OLD.epoch_key, NEW.epoch_key
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- FOR SHARE waits for a concurrent finalize (which holds the epoch FOR UPDATE) and
    -- then sees its committed status, so no write slips in under a statement being built.
    SELECT status INTO current_status FROM epochs WHERE epoch_key = key FOR SHARE;
    IF current_status = 'finalized' THEN
        RAISE EXCEPTION 'epoch % is finalized: its % rows are frozen', key, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER activity_curation_frozen BEFORE INSERT OR UPDATE OR DELETE ON activity_curation
    FOR EACH ROW EXECUTE FUNCTION refuse_if_finalized();
CREATE TRIGGER epoch_allocations_frozen BEFORE INSERT OR UPDATE OR DELETE ON epoch_allocations
    FOR EACH ROW EXECUTE FUNCTION refuse_if_finalized();
CREATE TRIGGER epoch_pool_components_frozen BEFORE INSERT ON epoch_pool_components
    FOR EACH ROW EXECUTE FUNCTION refuse_if_finalized();
CREATE TRIGGER epoch_approvals_frozen BEFORE INSERT ON epoch_approvals
    FOR EACH ROW EXECUTE FUNCTION refuse_if_finalized();

-- A curated event must lie inside its epoch's half-open window.
CREATE FUNCTION check_curation_window() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ts timestamptz;
BEGIN
    SELECT event_time INTO ts FROM activity_events WHERE event_id = NEW.event_id;
    IF ts < NEW.epoch_key::timestamp AT TIME ZONE 'UTC'
       OR ts >= (NEW.epoch_key::timestamp AT TIME ZONE 'UTC') + interval '7 days' THEN
        RAISE EXCEPTION 'event % at % is outside epoch % [start, end)', NEW.event_id, ts, NEW.epoch_key
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER activity_curation_in_window BEFORE INSERT OR UPDATE OF epoch_key, event_id ON activity_curation
    FOR EACH ROW EXECUTE FUNCTION check_curation_window();

-- Statements are written while the epoch is in review (finalize) or finalized (a superseding revision).
CREATE FUNCTION check_statement_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM epochs WHERE epoch_key = NEW.epoch_key AND status IN ('review', 'finalized');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'epoch % is not in review: a statement needs a reviewed, approved epoch', NEW.epoch_key
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payout_statements_need_review BEFORE INSERT ON payout_statements
    FOR EACH ROW EXECUTE FUNCTION check_statement_epoch();
