-- 0006: payout wallets (issue 11). A person's payout wallet is an account of provider 'wallet' in the
-- identity log, bound like any other (bind / revoke / merge, with evidence): the evidence of a bind is an
-- EIP-191 signature by that wallet over a message naming the person and this ledger
-- (credit_pipeline.core.wallets.binding_message), so the binding proves control of the wallet.
-- external_id of a wallet is its address in lower case (EIP-55's case is only a checksum: one wallet,
-- one account); the checksummed form is shown and paid.
ALTER TABLE identity_events DROP CONSTRAINT identity_events_provider_check;
ALTER TABLE identity_events ADD CONSTRAINT identity_events_provider_check
    CHECK (provider IN ('github', 'discord', 'wallet'));
ALTER TABLE identity_events DROP CONSTRAINT identity_events_external_id_check;
ALTER TABLE identity_events ADD CONSTRAINT identity_events_external_id_check CHECK (
    (provider IN ('github', 'discord') AND external_id ~ '^[0-9]+$')
    OR (provider = 'wallet' AND external_id ~ '^0x[0-9a-f]{40}$'));

-- One payout wallet per person at a time: a second wallet (by bind or by merge) is refused until the
-- first is revoked, so a statement line pays exactly one address. Fires after identity_events_consistent
-- (triggers run in name order), which has taken the log and account locks; this one also serialises the
-- writes of one person's wallet.
CREATE FUNCTION check_one_wallet() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held text;
BEGIN
    IF NEW.provider <> 'wallet' OR NEW.action = 'revoke' THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('wallet-of:' || NEW.user_id));
    SELECT b.external_id INTO held FROM user_bindings b
        WHERE b.provider = 'wallet' AND b.user_id = NEW.user_id AND b.external_id <> NEW.external_id LIMIT 1;
    IF held IS NOT NULL THEN
        RAISE EXCEPTION '% already has payout wallet %; revoke it first (credit-pipeline identity revoke wallet %)',
            NEW.user_id, held, held USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER identity_one_wallet_per_person BEFORE INSERT ON identity_events
    FOR EACH ROW EXECUTE FUNCTION check_one_wallet();
