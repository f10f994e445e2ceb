-- 0007: delta passes (issue 13). After a resolution or allocation pass of an epoch, the pass records what it
-- read: the number of facts in the window (facts are append-only, so the count grows with every new one), the
-- head of the identity log, the effective policy hash, the epoch's status, the facts version and a digest of
-- the admins' curation. A later pass that finds the same inputs writes nothing and returns the recorded
-- summary; one that finds only new facts resolves only those. A mark is a cache, never a fact: deleting it
-- (or a pass of a newer version) only makes the next pass a full one.
CREATE TABLE epoch_pass_marks (
    epoch_key date NOT NULL REFERENCES epochs (epoch_key),
    stage text NOT NULL CHECK (stage IN ('resolve', 'allocate')),
    mark jsonb NOT NULL,
    summary jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (epoch_key, stage)
);

-- The least-privilege role: the 0005 grants plus this table (a pass records and replaces its mark).
ALTER FUNCTION credit_pipeline_app_grants() RENAME TO credit_pipeline_app_grants_0005;
CREATE FUNCTION credit_pipeline_app_grants() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM credit_pipeline_app_grants_0005();
    REVOKE ALL ON epoch_pass_marks FROM credit_pipeline_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON epoch_pass_marks TO credit_pipeline_app;
END;
$$;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION credit_pipeline_app_grants_0005() FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'credit_pipeline_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON epoch_pass_marks TO credit_pipeline_app;
    END IF;
END;
$$;
