-- pg_tenancy demo: an ESG-reporting SaaS.
-- Organisations (with subsidiaries) own reporting entities (sites, plants);
-- each tenant defines metrics; data points are measured values per entity,
-- metric and period. Units are shared master data (a reference table).
--
-- Key shapes: organisations and metrics use composite (tenant_id, id) keys
-- (the Citus style); reporting_entities a single uuid key and data_points a
-- single bigserial key. Foreign keys include tenant_id, so a row can never
-- point at another tenant's row, whatever ids a client sends.

CREATE EXTENSION IF NOT EXISTS pg_tenancy;
CREATE SCHEMA esg;

CREATE TABLE esg.units (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE esg.organisations (
    tenant_id     uuid NOT NULL DEFAULT tenancy.current_tenant(),
    id            bigint GENERATED ALWAYS AS IDENTITY,
    parent_org_id bigint,
    name          text NOT NULL,
    country       text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_org_id) REFERENCES esg.organisations (tenant_id, id)
);

CREATE TABLE esg.reporting_entities (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL DEFAULT tenancy.current_tenant(),
    organisation_id bigint NOT NULL,
    name            text NOT NULL,
    kind            text NOT NULL DEFAULT 'site',
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, organisation_id) REFERENCES esg.organisations (tenant_id, id)
);

CREATE TABLE esg.metrics (
    tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(),
    id        bigint GENERATED ALWAYS AS IDENTITY,
    code      text NOT NULL,
    name      text NOT NULL,
    unit      text NOT NULL REFERENCES esg.units (code),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, code)
);

CREATE TABLE esg.data_points (
    id        bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(),
    entity_id uuid NOT NULL,
    metric_id bigint NOT NULL,
    period    date NOT NULL,
    value     numeric NOT NULL,
    FOREIGN KEY (tenant_id, entity_id) REFERENCES esg.reporting_entities (tenant_id, id),
    FOREIGN KEY (tenant_id, metric_id) REFERENCES esg.metrics (tenant_id, id)
);

-- Isolation: one call per table. A parent organisation reads its
-- subsidiaries' organisations, entities and data points (hierarchical).
SELECT tenancy.register_reference('esg.units');
SELECT tenancy.enable('esg.organisations', hierarchical => true);
SELECT tenancy.enable('esg.reporting_entities', hierarchical => true);
SELECT tenancy.enable('esg.metrics');
SELECT tenancy.enable('esg.data_points', hierarchical => true);
