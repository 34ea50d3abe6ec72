-- pg_tenancy audit log: writing entries, refusing edits, verifying the chain.

-- The hash of one entry: its content fields, then the previous hash.
-- Field order is the contract with tenancy_core::audit::entry_hash.
CREATE FUNCTION tenancy._audit_entry_hash(
    seq bigint, at timestamptz, actor name, role name, tenant_id uuid,
    action text, target text, details jsonb, prev_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT tenancy.audit_digest(ARRAY[
        seq::text,
        (EXTRACT(epoch FROM at) * 1000000)::bigint::text,
        actor::text, role::text, tenant_id::text, action, target, details::text,
        prev_hash])
$$;

-- Append one entry. Locks the chain head until commit, so concurrent writers
-- are serialized and each links to the entry committed before it.
CREATE FUNCTION tenancy._audit(action text, tenant_id uuid, target text, details jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq   bigint;
    v_prev  text;
    v_at    timestamptz := pg_catalog.clock_timestamp();
    v_actor name := session_user;
    v_role  name := COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), session_user);
    v_hash  text;
BEGIN
    IF action IS NULL OR action = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit action must not be empty';
    END IF;
    INSERT INTO tenancy.audit_head (id, seq, hash)
        VALUES (true, 0, pg_catalog.repeat('0', 64)) ON CONFLICT (id) DO NOTHING;
    SELECT h.seq, h.hash INTO v_seq, v_prev FROM tenancy.audit_head h WHERE h.id FOR UPDATE;
    v_seq := v_seq + 1;
    details := COALESCE(details, '{}');
    v_hash := tenancy._audit_entry_hash(v_seq, v_at, v_actor, v_role, tenant_id, action, target, details, v_prev);
    INSERT INTO tenancy.audit_log (seq, at, actor, role, tenant_id, action, target, details, prev_hash, hash)
        VALUES (v_seq, v_at, v_actor, v_role, tenant_id, action, target, details, v_prev, v_hash);
    UPDATE tenancy.audit_head SET seq = v_seq, hash = v_hash WHERE id;
    RETURN v_seq;
END
$$;

-- Append-only: no UPDATE, DELETE or TRUNCATE but by the table owner (the
-- extension owner). Even those are caught by tenancy.verify_audit().
CREATE FUNCTION tenancy._audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                   WHERE c.oid = TG_RELID AND c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s on %s is not allowed: the audit log is append-only', TG_OP, TG_TABLE_NAME),
            HINT = 'Audit entries are written by pg_tenancy functions only.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON tenancy.audit_log
    FOR EACH ROW EXECUTE FUNCTION tenancy._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON tenancy.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tenancy._audit_append_only();
CREATE TRIGGER audit_head_append_only BEFORE UPDATE OR DELETE ON tenancy.audit_head
    FOR EACH ROW EXECUTE FUNCTION tenancy._audit_append_only();

/*
 * Walk the whole chain and report the first broken link.
 *   ok               true when every entry is intact
 *   entries          how many entries were verified before the break
 *   first_broken_seq the sequence number of the first bad entry (NULL if ok)
 *   problem          what is wrong there
 * Example: SELECT * FROM tenancy.verify_audit();
 */
CREATE FUNCTION tenancy.verify_audit()
RETURNS TABLE (ok boolean, entries bigint, first_broken_seq bigint, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r          record;
    v_prev     text := pg_catalog.repeat('0', 64);
    v_expected bigint := 1;
    v_head     record;
BEGIN
    FOR r IN SELECT * FROM tenancy.audit_log l ORDER BY l.seq LOOP
        IF r.seq <> v_expected THEN
            RETURN QUERY SELECT false, v_expected - 1, v_expected,
                pg_catalog.format('entry %s is missing (the next entry is %s): entries were deleted', v_expected, r.seq);
            RETURN;
        END IF;
        IF r.prev_hash <> v_prev THEN
            RETURN QUERY SELECT false, v_expected - 1, r.seq,
                pg_catalog.format('entry %s does not link to entry %s: the chain was rewritten', r.seq, r.seq - 1);
            RETURN;
        END IF;
        IF tenancy._audit_entry_hash(r.seq, r.at, r.actor, r.role, r.tenant_id, r.action, r.target, r.details, r.prev_hash) <> r.hash THEN
            RETURN QUERY SELECT false, v_expected - 1, r.seq,
                pg_catalog.format('entry %s was modified after it was written', r.seq);
            RETURN;
        END IF;
        v_prev := r.hash;
        v_expected := v_expected + 1;
    END LOOP;
    SELECT h.seq, h.hash INTO v_head FROM tenancy.audit_head h;
    IF NOT FOUND AND v_expected > 1 THEN
        RETURN QUERY SELECT false, v_expected - 1, v_expected - 1,
            'the chain head is missing: the newest entries cannot be vouched for'::text;
        RETURN;
    END IF;
    IF FOUND AND (v_head.seq <> v_expected - 1 OR v_head.hash <> v_prev) THEN
        RETURN QUERY SELECT false, v_expected - 1, v_expected,
            pg_catalog.format('the chain head records %s entries but the log ends at %s: the newest entries were removed',
                              v_head.seq, v_expected - 1);
        RETURN;
    END IF;
    RETURN QUERY SELECT true, v_expected - 1, NULL::bigint, NULL::text;
END
$$;
