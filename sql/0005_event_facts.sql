-- 0005: the facts the policy's rules read, derived once from each event's raw payload (issue 10).
--
-- A rule (review state, self-review, labels, issue reason, Discord message type, length, dedupe)
-- reads facts of the raw payload: the PR's labels, the review's state and the PR's author, the
-- issue's closing reason and closer, the message's type and the hash of its words. They are a pure
-- function of the immutable payload (credit_pipeline.sources.parsing.event_facts, at facts_version),
-- so they are derived once, when the event is first resolved, and kept append-only here; resolution
-- and allocation then never read payloads again. verify re-derives them from the payload.
CREATE TABLE event_facts (
    event_id      text NOT NULL REFERENCES activity_events (event_id),
    facts_version integer NOT NULL CHECK (facts_version >= 1),
    facts         jsonb NOT NULL CHECK (jsonb_typeof(facts) = 'object'),
    derived_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, facts_version)
);

CREATE TRIGGER event_facts_append_only BEFORE UPDATE OR DELETE ON event_facts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER event_facts_no_truncate BEFORE TRUNCATE ON event_facts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The least-privilege role: the 0004 grants plus this table (read and append).
ALTER FUNCTION credit_pipeline_app_grants() RENAME TO credit_pipeline_app_grants_0004;
CREATE FUNCTION credit_pipeline_app_grants() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM credit_pipeline_app_grants_0004();
    REVOKE ALL ON event_facts FROM credit_pipeline_app;
    GRANT SELECT, INSERT ON event_facts TO credit_pipeline_app;
END;
$$;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants_0004() FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'credit_pipeline_app') THEN
        GRANT SELECT, INSERT ON event_facts TO credit_pipeline_app;
    END IF;
END;
$$;
