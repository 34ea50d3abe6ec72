-- pg_tenancy catalog: the tenant registry, role bindings, managed tables and
-- the audit log. All are dumped by pg_dump with their data.

-- Why a tenant label (name, plan, industry) would mislead whoever lists
-- tenants, or NULL: control characters (a terminal escape recolours or
-- clears psql's screen), bidirectional overrides and isolates (U+202A-202E,
-- U+2066-2069: 'Acme' can display as another name), or nothing visible once
-- spaces and invisible characters (no-break and ideographic spaces,
-- zero-width characters, U+FEFF) are taken out. Letters of every script are
-- fine (no character class that depends on the locale is used).
CREATE FUNCTION tenancy._label_problem(label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- (ASCII controls by code: in a single-byte encoding with a libc locale
    -- [[:cntrl:]] also matches bytes of other scripts' letters)
    IF label ~ E'[\\x01-\\x1f\\x7f]' THEN
        RETURN 'contains control characters';
    END IF;
    IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        -- (the characters below exist only in UTF8; chr() of them fails
        -- elsewhere, so they are built only in this branch's own block)
        IF pg_catalog.btrim(label) = '' THEN
            RETURN 'has no visible character';
        END IF;
        RETURN NULL;
    END IF;
    IF label ~ ('[' || pg_catalog.chr(128) || '-' || pg_catalog.chr(159) || ']') THEN
        RETURN 'contains control characters';
    END IF;
    -- bidirectional overrides and isolates; tag characters (invisible text)
    IF label ~ ('[' || pg_catalog.chr(8234) || '-' || pg_catalog.chr(8238)
                    || pg_catalog.chr(8294) || '-' || pg_catalog.chr(8297)
                    || pg_catalog.chr(917504) || '-' || pg_catalog.chr(917631) || ']') THEN
        RETURN 'contains bidirectional override, isolate or tag characters';
    END IF;
    IF pg_catalog.regexp_replace(label,
           '[[:space:]' || pg_catalog.chr(160) || pg_catalog.chr(4447) || pg_catalog.chr(4448)
                        || pg_catalog.chr(5760) || pg_catalog.chr(6158)
                        || pg_catalog.chr(8192) || '-' || pg_catalog.chr(8207)
                        || pg_catalog.chr(8232) || '-' || pg_catalog.chr(8239)
                        || pg_catalog.chr(8287) || '-' || pg_catalog.chr(8292)
                        || pg_catalog.chr(8294) || '-' || pg_catalog.chr(8303)
                        || pg_catalog.chr(10240) || pg_catalog.chr(12288) || pg_catalog.chr(12644)
                        || pg_catalog.chr(65279) || pg_catalog.chr(65440) || ']', '', 'g') = '' THEN
        RETURN 'has no visible character';
    END IF;
    RETURN NULL;
END
$$;

CREATE TABLE tenancy.tenants (
    id                uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    slug              text NOT NULL UNIQUE
                      CONSTRAINT tenants_slug_valid CHECK (tenancy.slug_problem(slug) IS NULL),
    name              text NOT NULL
                      CONSTRAINT tenants_name_valid CHECK (pg_catalog.length(pg_catalog.btrim(name, E' \t\n\r\f\x0b')) BETWEEN 1 AND 200
                                                           AND tenancy._label_problem(name) IS NULL),
    parent_id         uuid REFERENCES tenancy.tenants (id),
    status            text NOT NULL DEFAULT 'active'
                      CONSTRAINT tenants_status_valid CHECK (status IN ('active', 'suspended', 'archived')),
    plan              text CONSTRAINT tenants_plan_valid CHECK (tenancy._label_problem(plan) IS NULL),
    industry          text CONSTRAINT tenants_industry_valid CHECK (tenancy._label_problem(industry) IS NULL),
    settings          jsonb NOT NULL DEFAULT '{}'
                      CONSTRAINT tenants_settings_object CHECK (pg_catalog.jsonb_typeof(settings) = 'object'),
    benchmark_opt_out boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT tenants_not_own_parent CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX tenants_parent_id_idx ON tenancy.tenants (parent_id);
COMMENT ON TABLE tenancy.tenants IS 'pg_tenancy: the tenant registry. Change it through tenancy.create_tenant() and friends.';

CREATE TABLE tenancy.role_bindings (
    role      regrole PRIMARY KEY,
    -- No foreign key to tenants: pg_restore -j copies the configuration
    -- tables in parallel, and a binding copied before its tenant made the
    -- whole COPY fail — every binding lost. bind_role checks the tenant,
    -- drop_tenant refuses while roles are bound, the linter reports orphans.
    tenant_id uuid NOT NULL,
    bound_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX role_bindings_tenant_id_idx ON tenancy.role_bindings (tenant_id);
COMMENT ON TABLE tenancy.role_bindings IS 'pg_tenancy: login roles pinned to one tenant (tenancy.bind_role)';

CREATE TABLE tenancy.managed_tables (
    relid         regclass PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('tenant', 'reference')),
    tenant_column name,
    hierarchical  boolean NOT NULL DEFAULT false,
    managed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    managed_by    name NOT NULL DEFAULT session_user,
    -- the generated policies as enable / register_reference left them
    -- (tenancy._policy_fingerprint): the linter reports any changed since
    policies      jsonb,
    CHECK ((kind = 'tenant') = (tenant_column IS NOT NULL))
);
COMMENT ON TABLE tenancy.managed_tables IS 'pg_tenancy: tables under tenant isolation (kind tenant) or shared master data (kind reference)';

-- The registry says which tables drop_tenant, clone_tenant and templates
-- write and read with the extension owner's rights, so a row may only be
-- written by a role that owns its table — what enable / register_reference /
-- disable need anyway for their DDL. (The super admin has write access for
-- those functions, which run as the caller; without this check it could
-- register a table it cannot read, say hr.payroll, and copy it into a
-- template, or unregister one to keep its rows through drop_tenant.) A row
-- whose table no longer exists may go (the sql_drop event trigger).
CREATE FUNCTION tenancy._managed_tables_owner_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rel regclass;
BEGIN
    -- the new row must name a permanent table that exists now (not an oid
    -- claimed ahead of a table someone else will create, not a temporary
    -- relation or a view)
    IF TG_OP <> 'DELETE' AND NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_class c
            WHERE c.oid = NEW.relid AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('tenancy.managed_tables: relation %s is not a permanent table', NEW.relid::oid),
            HINT = 'Use tenancy.enable() or tenancy.register_reference() on an existing table.';
    END IF;
    FOREACH v_rel IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY[NEW.relid]
                                      WHEN 'DELETE' THEN ARRAY[OLD.relid]
                                      ELSE ARRAY[OLD.relid, NEW.relid] END LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = v_rel
                      AND NOT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')) THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = pg_catalog.format('only the owner of %s can change its entry in tenancy.managed_tables', v_rel),
                HINT = 'Use tenancy.enable(), tenancy.register_reference() or tenancy.disable() as the table''s owner.';
        END IF;
    END LOOP;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER managed_tables_owner_only BEFORE INSERT OR UPDATE OR DELETE ON tenancy.managed_tables
    FOR EACH ROW EXECUTE FUNCTION tenancy._managed_tables_owner_only();

-- The audit log: append-only, hash-chained. audit_head holds the newest
-- entry's sequence number and hash; writers lock it, so the chain never forks.
CREATE TABLE tenancy.audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
CREATE TABLE tenancy.audit_log (
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     name NOT NULL,
    role      name NOT NULL,
    tenant_id uuid,
    action    text NOT NULL,
    target    text,
    details   jsonb NOT NULL DEFAULT '{}',
    prev_hash text NOT NULL,
    hash      text NOT NULL
);
CREATE INDEX audit_log_tenant_id_idx ON tenancy.audit_log (tenant_id, seq);
COMMENT ON TABLE tenancy.audit_log IS 'pg_tenancy: append-only audit trail; each entry carries SHA-256 of its content and of the previous entry (tenancy.verify_audit)';

SELECT pg_catalog.pg_extension_config_dump('tenancy.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('tenancy.role_bindings', '');
SELECT pg_catalog.pg_extension_config_dump('tenancy.managed_tables', '');
SELECT pg_catalog.pg_extension_config_dump('tenancy.audit_head', '');
SELECT pg_catalog.pg_extension_config_dump('tenancy.audit_log', '');

-- Any change to who-is-which-tenant drops every backend's cached context.
CREATE FUNCTION tenancy._on_context_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tenancy._invalidate_context(TG_RELID);
    RETURN NULL;
END
$$;
CREATE TRIGGER tenants_context_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenancy.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION tenancy._on_context_change();
CREATE TRIGGER role_bindings_context_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenancy.role_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION tenancy._on_context_change();

-- Members see their own tenant (and its descendants) in the registry.
ALTER TABLE tenancy.tenants ENABLE ROW LEVEL SECURITY;
