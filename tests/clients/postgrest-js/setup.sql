-- Test-only objects for the postgrest-js suite, loaded after demo/schema.sql
-- and demo/data.sql. psql variable :anon is the anon role's name.
GRANT USAGE ON SCHEMA esg TO :"anon", tenancy_member, tenancy_viewer, tenancy_admin;
GRANT SELECT ON esg.units TO :"anon";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA esg TO tenancy_member, tenancy_admin;

-- A tenant-managed table with array, jsonb and full-text columns, for the
-- contains/containedBy/overlaps and textSearch filters.
CREATE TABLE esg.notes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(),
    title     text NOT NULL,
    tags      text[] NOT NULL DEFAULT '{}',
    attrs     jsonb NOT NULL DEFAULT '{}',
    body      text NOT NULL DEFAULT '',
    fts       tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
    UNIQUE (tenant_id, title)
);
SELECT tenancy.enable('esg.notes');
GRANT USAGE ON SEQUENCE esg.notes_id_seq TO tenancy_member, tenancy_admin;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['acme', 'globex'] LOOP
        PERFORM tenancy.set_tenant(t, true);
        INSERT INTO esg.notes (title, tags, attrs, body) VALUES
            (t || ' audit', '{audit,scope1}', '{"status": "open", "priority": 1}',
             'The auditors reviewed scope one emissions at the main plant'),
            (t || ' water', '{water}', '{"status": "closed", "priority": 2}',
             'Water withdrawal dropped after the new cooling towers'),
            (t || ' energy', '{energy,scope2}', '{"status": "open", "priority": 3}',
             'Energy consumption rose during the cold winter months');
    END LOOP;
END $$;
SELECT tenancy.clear_tenant();

-- Functions for rpc().
CREATE FUNCTION esg.add(a int, b int DEFAULT 2) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE FUNCTION esg.metric_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM esg.metrics';
CREATE FUNCTION esg.entities_of(k text) RETURNS SETOF esg.reporting_entities LANGUAGE sql STABLE
    AS 'SELECT * FROM esg.reporting_entities WHERE kind = k';
CREATE FUNCTION esg.new_metric(code text, name text) RETURNS esg.metrics LANGUAGE sql VOLATILE
    AS 'INSERT INTO esg.metrics (code, name, unit) VALUES (code, name, ''t'') RETURNING *';
CREATE FUNCTION esg.fail(code text) RETURNS void LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'failed on purpose' USING ERRCODE = code, HINT = 'a hint'; END $$;
-- A computed field and computed relationships (functions of one metrics row).
CREATE FUNCTION esg.label(esg.metrics) RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT $1.code || ': ' || $1.name $$;
CREATE FUNCTION esg.points(esg.metrics) RETURNS SETOF esg.data_points LANGUAGE sql STABLE
    AS $$ SELECT * FROM esg.data_points WHERE metric_id = $1.id AND tenant_id = $1.tenant_id $$;
CREATE FUNCTION esg.latest_point(esg.metrics) RETURNS SETOF esg.data_points ROWS 1 LANGUAGE sql STABLE
    AS $$ SELECT * FROM esg.data_points WHERE metric_id = $1.id AND tenant_id = $1.tenant_id
          ORDER BY period DESC, id DESC LIMIT 1 $$;
-- Overloads PostgREST cannot choose between without arguments, one taking
-- its single unnamed parameter.
CREATE FUNCTION esg.pick() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'none' $$;
CREATE FUNCTION esg.pick(text DEFAULT 'd') RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'got ' || $1 $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO PUBLIC;
