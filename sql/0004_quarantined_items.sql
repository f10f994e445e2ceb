-- 0004: items a source returned that cannot be read, kept aside so their stream moves on (issue 8).
--
-- An item whose fields do not parse (a timestamp that is not one, an id that is not a number) used to
-- stop its stream at that page on every run, so the week never completed. Such an item is now stored
-- here with the reason, its hash and an excerpt, and the stream goes on. A quarantined item is not
-- credited; completeness counts it, so a week holding one cannot enter review until the item is read
-- on a later pass (resolved_event_id is then set) or an admin waives it with a reason.
CREATE TABLE quarantined_items (
    source            text NOT NULL,
    stream            text NOT NULL,
    source_ref        text NOT NULL,
    raw_sha256        text NOT NULL CHECK (raw_sha256 ~ '^[0-9a-f]{64}$'),  -- of the item's ASCII-escaped JSON text
    item_key          text,                                               -- the event id it would have had, when readable
    reason            text NOT NULL CHECK (length(reason) <= 2000),
    excerpt           text NOT NULL CHECK (length(excerpt) <= 2000),      -- the start of that JSON text
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    times_seen        integer NOT NULL DEFAULT 1 CHECK (times_seen >= 1),
    resolved_event_id text REFERENCES activity_events (event_id),
    PRIMARY KEY (source, stream, source_ref, raw_sha256)
);
CREATE INDEX quarantined_items_unresolved ON quarantined_items (source, stream, source_ref) WHERE resolved_event_id IS NULL;
CREATE INDEX quarantined_items_key ON quarantined_items (item_key) WHERE resolved_event_id IS NULL;

CREATE TRIGGER quarantined_items_no_delete BEFORE DELETE ON quarantined_items
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER quarantined_items_no_truncate BEFORE TRUNCATE ON quarantined_items
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The least-privilege role: the 0003 grants plus this table (read, append, mark seen and resolved).
ALTER FUNCTION credit_pipeline_app_grants() RENAME TO credit_pipeline_app_grants_0003;
CREATE FUNCTION credit_pipeline_app_grants() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM credit_pipeline_app_grants_0003();
    REVOKE ALL ON quarantined_items FROM credit_pipeline_app;
    GRANT SELECT, INSERT, UPDATE ON quarantined_items TO credit_pipeline_app;
END;
$$;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants_0003() FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'credit_pipeline_app') THEN
        GRANT SELECT, INSERT, UPDATE ON quarantined_items TO credit_pipeline_app;
    END IF;
END;
$$;
