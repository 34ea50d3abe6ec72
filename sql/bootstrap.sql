-- pg_tenancy bootstrap: the group roles. Roles are cluster-wide objects, so
-- they survive DROP EXTENSION and are created only when missing.
DO $bootstrap$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tenancy_superadmin', 'tenancy_admin', 'tenancy_member',
                             'tenancy_viewer', 'tenancy_analyst'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$bootstrap$;

COMMENT ON ROLE tenancy_superadmin IS 'pg_tenancy: sees and changes every tenant''s rows; every such access is audited';
COMMENT ON ROLE tenancy_admin IS 'pg_tenancy: reads and writes its own tenant''s rows';
COMMENT ON ROLE tenancy_member IS 'pg_tenancy: reads and writes its own tenant''s rows';
COMMENT ON ROLE tenancy_viewer IS 'pg_tenancy: reads its own tenant''s rows, never writes';
COMMENT ON ROLE tenancy_analyst IS 'pg_tenancy: no raw tenant rows at all; anonymized views only';
