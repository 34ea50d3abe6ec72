-- Objects only the postgrest-py suite needs, loaded after demo/schema.sql,
-- demo/data.sql and the shared ../postgrest-js/setup.sql.
-- psql variable :anon is the anon role's name.

-- A reference table with a range column, for the range operators
-- (sl/sr/nxl/nxr/adj and range contains/containedBy/overlaps).
CREATE TABLE esg.reporting_periods (
    code text PRIMARY KEY,
    span daterange NOT NULL
);
INSERT INTO esg.reporting_periods (code, span) VALUES
    ('2025-Q1', '[2025-01-01,2025-04-01)'),
    ('2025-Q2', '[2025-04-01,2025-07-01)'),
    ('2025-Q3', '[2025-07-01,2025-10-01)'),
    ('2025-Q4', '[2025-10-01,2026-01-01)'),
    ('2025-H1', '[2025-01-01,2025-07-01)'),
    ('FY2025',  '[2025-01-01,2026-01-01)');
SELECT tenancy.register_reference('esg.reporting_periods');
GRANT SELECT ON esg.reporting_periods TO :"anon";

-- Functions for rpc() beyond the shared ones: array and jsonb arguments (sent
-- in the query string by GET), a void function, and the caller's tenant.
CREATE FUNCTION esg.sum_all(xs int[]) RETURNS int LANGUAGE sql IMMUTABLE
    AS 'SELECT sum(x)::int FROM unnest(xs) x';
CREATE FUNCTION esg.echo(j jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS 'SELECT j';
CREATE FUNCTION esg.noop() RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION esg.my_tenant() RETURNS uuid LANGUAGE sql STABLE AS 'SELECT tenancy.current_tenant()';
GRANT EXECUTE ON FUNCTION esg.sum_all(int[]), esg.echo(jsonb), esg.noop(), esg.my_tenant() TO PUBLIC;
