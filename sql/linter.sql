-- pg_tenancy isolation linter.

-- Whether a policy expression (deparsed under search_path pg_catalog,
-- pg_temp) restricts rows to the tenant context: it is the comparison of the
-- tenant column with tenancy.current_tenant() / visible_tenants() (as
-- generated, or plain), or a top-level AND of which one conjunct is. Any
-- other shape is not accepted, whatever it mentions: `col = COALESCE(
-- current_tenant(), col)`, `(col = current_tenant()) IS NOT FALSE` (true
-- with no tenant set), the comparison inside an OR, a NOT or a function, or
-- in a string literal. Comparing with current_setting('tenancy.tenant_id')
-- is not accepted either: a role bound with bind_role can still SET that
-- setting; only current_tenant() honours the binding. A NULL expression (the
-- policy has no such clause) is accepted.
CREATE FUNCTION tenancy._restricts_by_tenant(expr text, col name) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e      text;
    cmps   text[];
    chars  text[];
    found  boolean := false;
    conjuncts int := 0;
    cur    text := '';
    cur_len int := 0;
    skip   int := 0;
    depth  int := 0;
    n      int;
    i      int;
    ch     text;
BEGIN
    IF expr IS NULL THEN
        RETURN true;
    END IF;
    -- string literals and quoted identifiers blanked (they can hold
    -- anything), but the tenant column itself, when it needs quotes
    -- ("TenantId"), becomes "@" (no other name does): read as one scan, so
    -- a quote inside one token does not start another
    SELECT pg_catalog.string_agg(
               CASE WHEN pg_catalog.left(x.m[1], 1) = '''' THEN ''''''
                    WHEN x.m[1] = pg_catalog.quote_ident(col) THEN '"@"'
                    WHEN pg_catalog.left(x.m[1], 1) = '"' THEN '""'
                    ELSE x.m[1] END, '' ORDER BY x.n)
      INTO e
      FROM pg_catalog.regexp_matches(expr, '(''(?:[^'']|'''')*''|"(?:[^"]|"")*"|[^''"]+|[''"])', 'g')
           WITH ORDINALITY AS x(m, n);
    e := COALESCE(e, '');
    cmps := ARRAY(SELECT '(' || CASE WHEN pg_catalog.quote_ident(col) = col::text THEN col::text ELSE '"@"' END || r || ')'
                    FROM pg_catalog.unnest(ARRAY[
                        ' = tenancy.current_tenant()',
                        ' = ( SELECT tenancy.current_tenant() AS current_tenant)',
                        ' = ANY (tenancy.visible_tenants())',
                        ' = ANY (( SELECT tenancy.visible_tenants() AS visible_tenants)::uuid[])']) r)
            -- the same comparison written the other way round
            || ARRAY(SELECT '(' || r || CASE WHEN pg_catalog.quote_ident(col) = col::text THEN col::text ELSE '"@"' END || ')'
                       FROM pg_catalog.unnest(ARRAY[
                           'tenancy.current_tenant() = ',
                           '( SELECT tenancy.current_tenant() AS current_tenant) = ']) r);
    IF e = ANY (cmps) THEN
        RETURN true;
    END IF;
    -- a top-level AND: '(' conjunct ' AND ' conjunct … ')', split at depth 1
    -- (over an array of the characters: substr(e, i, …) would take time
    -- linear in i in a multibyte database, and the scan quadratic time)
    chars := pg_catalog.regexp_split_to_array(e, '');
    n := pg_catalog.cardinality(chars);
    IF n < 2 OR chars[1] <> '(' OR chars[n] <> ')' THEN
        RETURN false;
    END IF;
    -- (each conjunct is collected as it is read, up to 200 characters — a
    -- comparison is shorter —, so the scan stays linear however many there are)
    FOR i IN 1 .. n LOOP
        IF skip > 0 THEN
            skip := skip - 1;
            CONTINUE;
        END IF;
        ch := chars[i];
        IF ch = '(' THEN
            depth := depth + 1;
        ELSIF ch = ')' THEN
            depth := depth - 1;
            IF depth = 0 AND i < n THEN
                RETURN false;            -- not one parenthesised expression
            END IF;
        ELSIF depth = 1 AND ch = ' ' AND chars[i + 1] = 'A' AND chars[i + 2] = 'N' AND chars[i + 3] = 'D' AND chars[i + 4] = ' ' THEN
            found := found OR (cur_len <= 200 AND cur = ANY (cmps));
            conjuncts := conjuncts + 1;
            cur := '';
            cur_len := 0;
            skip := 4;
            CONTINUE;
        ELSIF depth = 1 AND ((ch = ' ' AND chars[i + 1] = 'O' AND chars[i + 2] = 'R' AND chars[i + 3] = ' ')
                             OR (ch = 'N' AND chars[i + 1] = 'O' AND chars[i + 2] = 'T' AND chars[i + 3] = ' ' AND chars[i + 4] = '(')) THEN
            RETURN false;
        END IF;
        IF i > 1 AND i < n THEN
            IF cur_len <= 200 THEN
                cur := cur || ch;
            END IF;
            cur_len := cur_len + 1;
        END IF;
    END LOOP;
    IF conjuncts = 0 THEN
        RETURN false;
    END IF;
    RETURN found OR (cur_len <= 200 AND cur = ANY (cmps));
END
$$;

/*
 * Find what can leak rows across tenants or make tenant queries slow. Each
 * finding has a severity (error: rows can leak or policies are bypassed;
 * warning: slow or fragile), the object, the problem and a runnable fix.
 * Example: SELECT * FROM tenancy.check_isolation();
 */
CREATE FUNCTION tenancy.check_isolation()
RETURNS TABLE (severity text, object text, problem text, fix text)
LANGUAGE sql STABLE SECURITY DEFINER
-- the same findings whatever the caller's settings (deparsed expressions
-- and quoted names depend on these two)
SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off SET standard_conforming_strings = on AS $$
WITH RECURSIVE memberships (member, roleid) AS (
    -- direct and indirect role memberships (pg_has_role is true for every
    -- superuser, so it cannot tell who was actually granted a role)
    SELECT am.member, am.roleid FROM pg_auth_members am
    UNION
    SELECT ms.member, am.roleid FROM memberships ms JOIN pg_auth_members am ON am.member = ms.roleid
),
-- the roles requests run as: members of a tenancy role, and bound roles
request_roles (oid) AS (
    SELECT ms.member FROM memberships ms JOIN pg_roles g ON g.oid = ms.roleid
     WHERE g.rolname IN ('tenancy_superadmin', 'tenancy_admin', 'tenancy_member', 'tenancy_viewer', 'tenancy_analyst')
    UNION
    SELECT b.role::oid FROM tenancy.role_bindings b
),
-- managed tenant tables and the views (and views of views) that read them
readers (relid, reader, name) AS (
    SELECT m.relid, m.relid, m.relname::text FROM managed m WHERE m.kind = 'tenant'
    UNION
    SELECT r.relid, v.oid, v.relname::text
      FROM readers r
      JOIN pg_depend d ON d.refobjid = r.reader AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      JOIN pg_rewrite rw ON rw.oid = d.objid
      JOIN pg_class v ON v.oid = rw.ev_class AND v.relkind IN ('v', 'm') AND v.oid <> r.reader
),
-- per role name, the newest bind_role / unbind_role entry of the audit log
-- (whose chain verify_audit() vouches for)
-- per role (its OID as bind_role recorded it, else its name then), the
-- newest bind_role / unbind_role entry of the audit log (whose chain
-- verify_audit() vouches for); `role` is the role it concerns now: the one
-- with that OID and name, else (a dump restored into another cluster, where
-- OIDs differ) the one with that name
bind_history AS (
    SELECT h.*, COALESCE((SELECT r.oid FROM pg_roles r WHERE r.oid = h.oid AND r.rolname = h.target),
                         (SELECT r.oid FROM pg_roles r WHERE h.target !~ '^[0-9]+$' AND r.oid = to_regrole(h.target)::oid)) AS role
      FROM (SELECT DISTINCT ON (COALESCE(l.details->>'role_oid', l.target))
                   l.target, (l.details->>'role_oid')::oid AS oid, l.action, l.tenant_id, l.seq
              FROM tenancy.audit_log l
             WHERE l.action IN ('bind_role', 'unbind_role')
             ORDER BY COALESCE(l.details->>'role_oid', l.target), l.seq DESC) h
),
managed AS (
    SELECT m.relid::oid AS relid, m.relid::text AS tbl, m.kind, m.tenant_column, m.hierarchical,
           c.relrowsecurity, c.relforcerowsecurity, c.relnamespace, c.relname, c.relowner, c.relacl
      FROM tenancy.managed_tables m JOIN pg_class c ON c.oid = m.relid
),
policies AS (
    SELECT m.tbl, m.tenant_column, m.hierarchical, p.oid AS poloid, p.polcmd, p.polname, p.polpermissive, p.polroles,
           pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS chk,
           COALESCE(pg_get_expr(p.polqual, p.polrelid), '') || ' ' ||
           COALESCE(pg_get_expr(p.polwithcheck, p.polrelid), '') AS expr
      FROM managed m JOIN pg_policy p ON p.polrelid = m.relid
     WHERE m.kind = 'tenant'
),
findings AS (
    -- RLS off or not forced
    SELECT 'error' AS severity, tbl AS object,
           'row level security is not enabled: every grantee reads every tenant''s rows' AS problem,
           format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY;', tbl) AS fix
      FROM managed WHERE NOT relrowsecurity
    UNION ALL
    SELECT 'error', tbl, 'row level security is not forced: the table owner bypasses the policies',
           format('ALTER TABLE %s FORCE ROW LEVEL SECURITY;', tbl)
      FROM managed WHERE NOT relforcerowsecurity
    UNION ALL
    -- owned by a role requests run as (or one they can SET ROLE to): the
    -- owner can ALTER TABLE … NO FORCE ROW LEVEL SECURITY, read or change
    -- every tenant's rows, and put FORCE back
    -- (a login that is not a superuser owning it is the same: an application
    -- connecting as its tables' owner — row level security forced — lifts
    -- it with one statement; own tables by a NOLOGIN role that migrations
    -- SET ROLE to)
    SELECT 'error', m.tbl,
           CASE WHEN m.relowner IN (SELECT oid FROM request_roles)
                THEN format('owner %s is a role requests run as (%s): as owner it can lift row level security and read or write every tenant''s rows',
                            m.relowner::regrole,
                            CASE WHEN EXISTS (SELECT 1 FROM tenancy.role_bindings b WHERE b.role::oid = m.relowner)
                                 THEN 'bound to a tenant' ELSE 'member of a pg_tenancy role' END)
                ELSE format('owner %s can log in: a session as the owner can lift row level security and read or write every tenant''s rows',
                            m.relowner::regrole) END,
           CASE WHEN s.nspowner NOT IN (SELECT oid FROM request_roles)
                     -- (pg_database_owner is NOLOGIN, but the database's owner holds it)
                     AND s.nspowner <> 'pg_database_owner'::regrole
                     AND EXISTS (SELECT 1 FROM pg_roles so WHERE so.oid = s.nspowner AND (so.rolsuper OR NOT so.rolcanlogin))
                THEN format('ALTER TABLE %s OWNER TO %s;', m.tbl, s.nspowner::regrole)
                ELSE format('CREATE ROLE %I NOLOGIN; ALTER TABLE %s OWNER TO %I;  -- an owner no session logs in as (GRANT it to the role that runs migrations)',
                            s.nspname || '_owner', m.tbl, s.nspname || '_owner') END
      FROM managed m JOIN pg_namespace s ON s.oid = m.relnamespace
     WHERE m.relowner IN (SELECT oid FROM request_roles)
        OR EXISTS (SELECT 1 FROM pg_roles o WHERE o.oid = m.relowner AND o.rolcanlogin AND NOT o.rolsuper)
    UNION ALL
    SELECT DISTINCT 'error', m.tbl,
           format('role %s, which requests run as, is a member of its owner %s: it can act as the owner and lift row level security',
                  ms.member::regrole, m.relowner::regrole),
           format('REVOKE %s FROM %s;', m.relowner::regrole, ms.member::regrole)
      FROM managed m
      JOIN memberships ms ON ms.roleid = m.relowner
     WHERE ms.member IN (SELECT oid FROM request_roles)
       AND m.relowner NOT IN (SELECT oid FROM request_roles)
    UNION ALL
    -- a login (not a superuser, not a role requests run as: those are
    -- errors above) that can act as the owner: if the application connects
    -- as it, it can lift row level security (the database's owner holds
    -- pg_database_owner without a pg_auth_members row)
    SELECT DISTINCT 'warning', m.tbl,
           format('login %s can act as its owner %s: a session as %s can lift row level security, so the application must not connect as it',
                  l.oid::regrole, m.relowner::regrole, l.oid::regrole),
           CASE WHEN m.relowner = 'pg_database_owner'::regrole
                THEN format('ALTER TABLE %s OWNER TO %s;  -- a NOLOGIN owner role (CREATE ROLE … NOLOGIN)', m.tbl, quote_ident(s.nspname || '_owner'))
                ELSE format('REVOKE %s FROM %s;  -- unless only migrations log in as %s', m.relowner::regrole, l.oid::regrole, l.oid::regrole) END
      FROM managed m
      JOIN pg_namespace s ON s.oid = m.relnamespace
      JOIN pg_roles l ON l.rolcanlogin AND NOT l.rolsuper AND l.oid <> m.relowner
     WHERE l.oid NOT IN (SELECT oid FROM request_roles)
       AND (EXISTS (SELECT 1 FROM memberships ms WHERE ms.member = l.oid AND ms.roleid = m.relowner)
            OR (m.relowner = 'pg_database_owner'::regrole
                AND l.oid = (SELECT d.datdba FROM pg_database d WHERE d.datname = current_database())))
    UNION ALL
    -- generated policies missing
    SELECT 'error', tbl, format('generated policies are missing: %s', missing),
           CASE WHEN kind = 'tenant' THEN format('SELECT tenancy.enable(%L, %L);', tbl, tenant_column)
                ELSE format('SELECT tenancy.register_reference(%L);', tbl) END
      FROM (SELECT m.tbl, m.kind, m.tenant_column,
                   (SELECT string_agg(e.name, ', ' ORDER BY e.name)
                      FROM unnest(CASE WHEN m.kind = 'tenant' THEN ARRAY[
                               'tenancy_tenant_select', 'tenancy_tenant_insert', 'tenancy_tenant_update',
                               'tenancy_tenant_delete', 'tenancy_superadmin_select', 'tenancy_superadmin_insert',
                               'tenancy_superadmin_update', 'tenancy_superadmin_delete', 'tenancy_viewer_no_insert',
                               'tenancy_viewer_no_update', 'tenancy_viewer_no_delete', 'tenancy_analyst_no_rows']
                           ELSE ARRAY['tenancy_reference_select', 'tenancy_reference_insert',
                                      'tenancy_reference_update', 'tenancy_reference_delete'] END) AS e(name)
                     WHERE NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = m.relid AND p.polname = e.name)
                   ) AS missing
              FROM managed m) g
     WHERE missing IS NOT NULL
    UNION ALL
    -- generated policies changed since enable / register_reference made them
    -- (ALTER POLICY, or dropped and re-created by hand): whatever they say
    -- now, they are not what was generated and reviewed
    SELECT 'error', format('policy %I on %s', f.key, m.tbl),
           'generated policy was changed after pg_tenancy created it: its command, roles or expressions are no longer the generated ones',
           CASE WHEN m.kind = 'tenant' THEN format('SELECT tenancy.enable(%L, %L);  -- re-creates the generated policies', m.tbl, m.tenant_column)
                ELSE format('SELECT tenancy.register_reference(%L);  -- re-creates the generated policies', m.tbl) END
      FROM managed m
      JOIN tenancy.managed_tables mt ON mt.relid::oid = m.relid
      CROSS JOIN LATERAL jsonb_each(tenancy._policy_fingerprint(m.relid)) f
     WHERE mt.policies ? f.key AND f.value IS DISTINCT FROM mt.policies -> f.key
    UNION ALL
    -- a managed table under an unmanaged parent (a partition or inheritance
    -- child): reading through the parent applies the parent's policies, none
    SELECT 'error', m.tbl,
           format('is a partition or child of %s, which is not managed: reading through it skips this table''s policies', i.inhparent::regclass),
           format('SELECT tenancy.enable(%L, %L);', i.inhparent::regclass::text, m.tenant_column)
      FROM managed m JOIN pg_inherits i ON i.inhrelid = m.relid
     WHERE m.kind = 'tenant' AND i.inhparent NOT IN (SELECT relid FROM managed)
    UNION ALL
    -- rules on a managed table run their actions on every write (DO ALSO
    -- INSERT INTO an unmanaged table copies every tenant's rows out)
    SELECT 'error', format('rule %I on %s', r.rulename, m.tbl),
           'rule rewrites writes to a managed table: its actions can copy rows where row level security does not reach',
           format('DROP RULE %I ON %s;', r.rulename, m.tbl)
      FROM managed m JOIN pg_rewrite r ON r.ev_class = m.relid
     WHERE r.rulename <> '_RETURN'
    UNION ALL
    -- reference data is written by tenancy_superadmin only: a permissive write
    -- policy for other roles lets one tenant change every tenant's master data
    SELECT 'error', format('policy %I on %s', p.polname, m.tbl),
           'permissive write policy on a reference table: roles other than tenancy_superadmin can change the data every tenant shares',
           format('DROP POLICY %I ON %s;', p.polname, m.tbl)
      FROM managed m JOIN pg_policy p ON p.polrelid = m.relid
     WHERE m.kind = 'reference' AND p.polpermissive AND p.polcmd IN ('*', 'a', 'w', 'd')
       AND p.polname NOT IN ('tenancy_reference_insert', 'tenancy_reference_update', 'tenancy_reference_delete')
       AND p.polroles <> ARRAY[(SELECT r.oid FROM pg_roles r WHERE r.rolname = 'tenancy_superadmin')]
    UNION ALL
    -- unmanaged partitions of a managed table can be queried directly
    SELECT 'error', c.oid::regclass::text,
           format('partition of managed table %s without row level security: querying it directly skips the policies', m.tbl),
           format('SELECT tenancy.enable(%L, %L);', c.oid::regclass::text, m.tenant_column)
      FROM managed m JOIN pg_inherits i ON i.inhparent = m.relid JOIN pg_class c ON c.oid = i.inhrelid
     WHERE m.kind = 'tenant' AND c.oid NOT IN (SELECT relid FROM managed)
    UNION ALL
    -- tables with a tenant-looking column in a tenant schema, not managed
    SELECT DISTINCT 'warning', c.oid::regclass::text,
           format('has column %I like the managed tables of schema %I but is not managed', a.attname, n.nspname),
           format('SELECT tenancy.enable(%L, %L);', c.oid::regclass::text, a.attname)
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND c.relnamespace IN (SELECT relnamespace FROM managed)
       AND c.oid NOT IN (SELECT relid FROM managed)
       AND a.attname IN (SELECT tenant_column FROM managed WHERE kind = 'tenant' UNION SELECT 'tenant_id')
    UNION ALL
    -- user policies that do not restrict by tenant widen access (permissive = OR)
    SELECT 'error', format('policy %I on %s', polname, tbl),
           'permissive policy does not restrict by tenant: it widens what every role it applies to can see',
           CASE WHEN polname IN ('tenancy_tenant_select', 'tenancy_tenant_insert', 'tenancy_tenant_update',
                                 'tenancy_tenant_delete', 'tenancy_superadmin_select', 'tenancy_superadmin_insert',
                                 'tenancy_superadmin_update', 'tenancy_superadmin_delete')
                THEN format('SELECT tenancy.enable(%L, %L);  -- re-creates the generated policies', tbl, tenant_column)
                ELSE format('DROP POLICY %I ON %s;', polname, tbl) END
      FROM policies
     WHERE polpermissive
       -- the generated super-admin policies are the exception: audited, and
       -- for tenancy_superadmin only (one altered to reach other roles, or
       -- to skip the audit, is reported like any other)
       AND NOT (polname IN ('tenancy_superadmin_select', 'tenancy_superadmin_insert',
                            'tenancy_superadmin_update', 'tenancy_superadmin_delete')
                AND polroles = ARRAY[(SELECT r.oid FROM pg_roles r WHERE r.rolname = 'tenancy_superadmin')]
                AND expr ~ E'tenancy\\.superadmin_access\\(')
       -- each clause (USING, WITH CHECK) compares the tenant column with the
       -- context, as a conjunct (see tenancy._restricts_by_tenant)
       AND NOT (tenancy._restricts_by_tenant(qual, tenant_column)
                AND tenancy._restricts_by_tenant(chk, tenant_column))
    UNION ALL
    -- visible_tenants() (the tenant and its descendants) in a user policy:
    -- generated policies use it for reads of hierarchical tables only; in a
    -- write policy a parent writes its children's rows, on a table enabled
    -- without hierarchical => true a parent reads them
    SELECT 'error', format('policy %I on %s', polname, tbl),
           CASE WHEN polcmd <> 'r'
                THEN 'permissive write policy uses tenancy.visible_tenants(): a parent tenant can write its descendants'' rows'
                ELSE 'permissive policy uses tenancy.visible_tenants() on a table enabled without hierarchical => true: a parent tenant reads its descendants'' rows' END,
           format('DROP POLICY %I ON %s;', polname, tbl)
      FROM policies
     WHERE polpermissive
       AND (polcmd <> 'r' OR NOT hierarchical)
       AND EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_policy'::regclass AND d.objid = poloid
                      AND d.refclassid = 'pg_proc'::regclass AND d.refobjid = 'tenancy.visible_tenants()'::regprocedure)
    UNION ALL
    -- OR in a tenant policy defeats the tenant index
    SELECT 'warning', format('policy %I on %s', polname, tbl),
           'policy combines conditions with OR: the planner cannot use the tenant index for it',
           format('DROP POLICY %I ON %s; -- then create one policy per role (CREATE POLICY ... TO role)', polname, tbl)
      FROM policies
     WHERE expr ~* E'\\mOR\\M'
    UNION ALL
    -- no index leading with the tenant column
    SELECT 'warning', tbl,
           format('no index starts with tenant column %I: every tenant query scans the whole table', tenant_column),
           format('CREATE INDEX ON %s (%I);', tbl, tenant_column)
      FROM managed m
     WHERE kind = 'tenant' AND NOT EXISTS (
           SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = m.relid AND a.attname = m.tenant_column)
    UNION ALL
    -- nullable tenant column
    SELECT 'warning', tbl, format('tenant column %I allows NULL: such rows belong to no tenant', tenant_column),
           format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL;', tbl, tenant_column)
      FROM managed m JOIN pg_attribute a ON a.attrelid = m.relid AND a.attname = m.tenant_column
     WHERE kind = 'tenant' AND NOT a.attnotnull
    UNION ALL
    -- views that read managed tables with their owner's rights
    SELECT DISTINCT 'error', v.oid::regclass::text,
           format('view reads managed table %s without security_invoker: policies are checked against the view owner, not the caller', m.tbl),
           format('ALTER VIEW %s SET (security_invoker = true);', v.oid::regclass)
      FROM managed m
      JOIN pg_depend d ON d.refobjid = m.relid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class v ON v.oid = r.ev_class
     WHERE m.kind = 'tenant' AND v.oid <> m.relid AND v.relkind = 'v'
       AND NOT EXISTS (SELECT 1 FROM pg_options_to_table(v.reloptions) o
                        WHERE o.option_name = 'security_invoker' AND o.option_value IN ('true', 'on', '1', 'yes'))
    UNION ALL
    SELECT DISTINCT 'error', v.oid::regclass::text,
           format('materialized view stores rows of managed table %s for every tenant, outside row level security', m.tbl),
           format('DROP MATERIALIZED VIEW %s;', v.oid::regclass)
      FROM managed m
      JOIN pg_depend d ON d.refobjid = m.relid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class v ON v.oid = r.ev_class
     WHERE m.kind = 'tenant' AND v.relkind = 'm'
    UNION ALL
    -- SECURITY DEFINER functions that read managed tables
    SELECT DISTINCT 'warning', format('function %s', p.oid::regprocedure),
           format('SECURITY DEFINER function refers to managed table %s%s: it runs with its owner''s rights', m.tbl,
                  CASE WHEN r.reader <> r.relid THEN format(' (through view %s)', r.reader::regclass) ELSE '' END),
           format('ALTER FUNCTION %s SECURITY INVOKER;', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace
      JOIN readers r ON true
      JOIN managed m ON m.relid = r.relid
     WHERE p.prosecdef AND pn.nspname NOT IN ('tenancy', 'pg_catalog', 'information_schema')
       -- the table's (or a view's of it) name as a whole word of the body,
       -- quoted or not, in a string too (dynamic SQL): 'line_items' does not
       -- name items
       AND (p.prolang NOT IN (SELECT l.oid FROM pg_language l WHERE l.lanname IN ('c', 'internal'))
            AND lower(p.prosrc) ~ ('(^|[^[:alnum:]_$])' || regexp_replace(lower(r.name), '([^[:alnum:]_ ])', E'\\\\\\1', 'g') || '($|[^[:alnum:]_$])')
            OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                        AND d.objid = p.oid AND d.refobjid = r.reader))
    UNION ALL
    -- SECURITY DEFINER trigger functions on managed tables: they see every
    -- row written with their owner's rights and can copy it anywhere
    SELECT DISTINCT 'warning', format('trigger %I on %s', t.tgname, m.tbl),
           format('trigger calls SECURITY DEFINER function %s: it runs with its owner''s rights on every row written, and whatever it writes elsewhere is outside this table''s row level security',
                  p.oid::regprocedure),
           format('ALTER FUNCTION %s SECURITY INVOKER;', p.oid::regprocedure)
      FROM managed m
      JOIN pg_trigger t ON t.tgrelid = m.relid AND NOT t.tgisinternal
      JOIN pg_proc p ON p.oid = t.tgfoid
      JOIN pg_namespace pn ON pn.oid = p.pronamespace
     WHERE p.prosecdef AND pn.nspname NOT IN ('tenancy', 'pg_catalog')
    UNION ALL
    -- trigger functions on managed tables that write to a table that is not
    -- managed (a history or queue table): each row they copy there is
    -- outside row level security — a heuristic over the function's body
    -- (INSERT INTO / UPDATE / DELETE FROM / MERGE INTO a name that is no
    -- managed table's); dynamic SQL is not followed
    SELECT DISTINCT 'warning', format('trigger %I on %s', t.tgname, m.tbl),
           format('trigger function %s writes to %s, which is not managed: the rows it copies there are outside row level security',
                  p.oid::regprocedure, w.target),
           format('SELECT tenancy.enable(%L);  -- if %s holds tenant rows; else make the trigger write none', w.target, w.target)
      FROM managed m
      JOIN pg_trigger t ON t.tgrelid = m.relid AND NOT t.tgisinternal
      JOIN pg_proc p ON p.oid = t.tgfoid
      JOIN pg_namespace pn ON pn.oid = p.pronamespace
      CROSS JOIN LATERAL (
          SELECT x[2] AS target, pg_catalog.replace(pg_catalog.regexp_replace(x[2], E'^.*\\.\\s*', ''), '"', '') AS relname
            FROM regexp_matches(lower(p.prosrc),
                     E'(insert\\s+into|update|delete\\s+from|merge\\s+into)\\s+((?:"[^"]+"|[a-z_][a-z0-9_$]*)(?:\\s*\\.\\s*(?:"[^"]+"|[a-z_][a-z0-9_$]*))?)',
                     'g') AS x) w
     WHERE pn.nspname NOT IN ('tenancy', 'pg_catalog')
       AND p.prolang NOT IN (SELECT l.oid FROM pg_language l WHERE l.lanname IN ('c', 'internal'))
       AND w.relname NOT IN ('of', 'set', 'skip', 'nowait', 'only')
       AND w.relname NOT IN (SELECT lower(mm.relname) FROM managed mm)
    UNION ALL
    -- bindings of roles that were dropped (a bound role cannot be dropped,
    -- but DROP OWNED BY takes the grant that prevents it): they block
    -- drop_tenant, and a role that gets the OID later — or has it in a
    -- cluster the database is restored into — is bound to the tenant
    SELECT 'error', format('role binding %s', b.role::oid),
           format('the bound role (OID %s) no longer exists: a role that gets this OID, here or in a cluster this database is restored into, is bound to the tenant', b.role::oid),
           format('SELECT tenancy.unbind_role(%L);', b.role::oid::text)
      FROM tenancy.role_bindings b
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = b.role::oid)
    UNION ALL
    -- a binding to a tenant that does not exist (role_bindings has no
    -- foreign key, for parallel restores): the role sees nothing
    SELECT 'warning', format('role binding %s', b.role),
           format('is bound to tenant %s, which does not exist: the role sees nothing', b.tenant_id),
           format('SELECT tenancy.unbind_role(%L);', b.role::oid::text)
      FROM tenancy.role_bindings b
     WHERE NOT EXISTS (SELECT 1 FROM tenancy.tenants t WHERE t.id = b.tenant_id)
    UNION ALL
    -- a role the audit log says is bound has no binding (a restore whose
    -- COPY of role_bindings failed on one missing role loses them all): it
    -- can choose any tenant
    -- (a role renamed since is still bound under its OID: not reported, and
    -- neither is a new role that took its old name)
    SELECT 'error', format('role %s', h.role::regrole),
           format('was bound to tenant %s by bind_role (audit entry %s) but has no binding now: it can choose any tenant',
                  (SELECT t.slug FROM tenancy.tenants t WHERE t.id = h.tenant_id), h.seq),
           format('SELECT tenancy.bind_role(%L, %L);', h.role::regrole::text,
                  (SELECT t.slug FROM tenancy.tenants t WHERE t.id = h.tenant_id))
      FROM bind_history h
     WHERE h.action = 'bind_role' AND h.role IS NOT NULL
       AND EXISTS (SELECT 1 FROM tenancy.tenants t WHERE t.id = h.tenant_id)
       AND NOT EXISTS (SELECT 1 FROM tenancy.role_bindings b WHERE b.role::oid = h.oid AND b.tenant_id = h.tenant_id)
       AND NOT EXISTS (SELECT 1 FROM tenancy.role_bindings b WHERE b.role::oid = h.role)
    UNION ALL
    -- a binding the audit log does not show for this role: the role was
    -- renamed since, or the binding came in a dump restored into a cluster
    -- where its OID is another role's
    SELECT 'warning', format('role %s', b.role),
           format('is bound to tenant %s, but the audit log has no bind_role of %s to it: the role was renamed since, or the binding came with a dump from a cluster where its OID was another role''s',
                  (SELECT t.slug FROM tenancy.tenants t WHERE t.id = b.tenant_id), b.role),
           format('SELECT tenancy.bind_role(%L, %L);  -- if it belongs there (records it); else SELECT tenancy.unbind_role(%L);',
                  b.role::text, (SELECT t.slug FROM tenancy.tenants t WHERE t.id = b.tenant_id), b.role::text)
      FROM tenancy.role_bindings b
     WHERE EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = b.role::oid)
       AND NOT EXISTS (SELECT 1 FROM bind_history h
                        WHERE h.role = b.role::oid AND h.action = 'bind_role' AND h.tenant_id = b.tenant_id)
    UNION ALL
    -- the grants enable() / register_reference() give are missing (a
    -- restore with --no-acl, a REVOKE): fails closed, but the application
    -- breaks
    SELECT 'warning', m.tbl,
           format('%s has no %s: the grants pg_tenancy gives are missing (a restore with --no-acl, or a REVOKE)', g.rolname,
                  CASE WHEN NOT has_schema_privilege(g.oid, m.relnamespace, 'USAGE')
                       THEN format('USAGE on schema %I', (SELECT n.nspname FROM pg_namespace n WHERE n.oid = m.relnamespace))
                       ELSE 'SELECT on it' END),
           CASE WHEN m.kind = 'tenant' THEN format('SELECT tenancy.enable(%L, %L);', m.tbl, m.tenant_column)
                ELSE format('SELECT tenancy.register_reference(%L);', m.tbl) END
      FROM managed m
      JOIN pg_roles g ON g.rolname IN ('tenancy_superadmin', 'tenancy_admin', 'tenancy_member', 'tenancy_viewer')
                      OR (g.rolname = 'tenancy_analyst' AND m.kind = 'reference')
     WHERE NOT has_schema_privilege(g.oid, m.relnamespace, 'USAGE')
        OR NOT has_table_privilege(g.oid, m.relid, 'SELECT')
    UNION ALL
    -- roles that RLS never applies to, yet are in a tenancy role
    SELECT DISTINCT 'error', format('role %I', r.rolname),
           format('role has %s and is a member of %s: row level security never applies to it',
                  CASE WHEN r.rolsuper THEN 'SUPERUSER' ELSE 'BYPASSRLS' END, g.rolname),
           format('ALTER ROLE %I %s;', r.rolname, CASE WHEN r.rolsuper THEN 'NOSUPERUSER' ELSE 'NOBYPASSRLS' END)
      FROM memberships ms
      JOIN pg_roles r ON r.oid = ms.member
      JOIN pg_roles g ON g.oid = ms.roleid
     WHERE g.rolname IN ('tenancy_superadmin', 'tenancy_admin', 'tenancy_member', 'tenancy_viewer', 'tenancy_analyst')
       AND (r.rolbypassrls OR r.rolsuper)
    UNION ALL
    -- CREATEROLE: grants itself any non-superuser role (tenancy_superadmin)
    SELECT 'error', format('role %s', r.oid::regrole),
           'role has CREATEROLE and requests run as it: it can grant itself tenancy_superadmin and read every tenant',
           format('ALTER ROLE %s NOCREATEROLE;', r.oid::regrole)
      FROM pg_roles r
     WHERE r.oid IN (SELECT oid FROM request_roles) AND r.rolcreaterole AND NOT r.rolsuper
    UNION ALL
    -- a binding that confines nothing: the bound role is a super admin
    -- (its policies read every tenant), or members that inherit it use its
    -- rights unbound (a membership granted after bind_role warned)
    SELECT 'error', format('role %s', b.role),
           'is bound to a tenant and a member of tenancy_superadmin: the super-admin policies read every tenant, so the binding confines nothing',
           format('REVOKE tenancy_superadmin FROM %s;', b.role)
      FROM tenancy.role_bindings b
     WHERE EXISTS (SELECT 1 FROM memberships ms JOIN pg_roles g ON g.oid = ms.roleid
                    WHERE ms.member = b.role::oid AND g.rolname = 'tenancy_superadmin')
    UNION ALL
    SELECT 'warning', format('role %s', b.role),
           format('is bound to a tenant, but its member %s inherits it without being bound: it uses the role''s rights in any tenant it chooses',
                  r.oid::regrole),
           format('SELECT tenancy.bind_role(%L, %L);  -- or ALTER ROLE %s NOINHERIT', r.oid::regrole::text,
                  (SELECT t.slug FROM tenancy.tenants t WHERE t.id = b.tenant_id), r.oid::regrole)
      FROM tenancy.role_bindings b
      JOIN pg_auth_members am ON am.roleid = b.role::oid
      JOIN pg_roles r ON r.oid = am.member AND r.rolinherit
     WHERE NOT EXISTS (SELECT 1 FROM tenancy.role_bindings b2 WHERE b2.role::oid = r.oid)
    UNION ALL
    -- BYPASSRLS roles (not superusers, not the owner) with privileges on a tenant table
    SELECT DISTINCT 'error', format('role %I', r.rolname),
           format('role has BYPASSRLS and privileges on managed table %s: it reads and writes every tenant''s rows', m.tbl),
           format('ALTER ROLE %I NOBYPASSRLS;', r.rolname)
      FROM managed m CROSS JOIN pg_roles r
     WHERE m.kind = 'tenant' AND r.rolbypassrls AND NOT r.rolsuper AND r.oid <> m.relowner
       AND has_table_privilege(r.oid, m.relid, 'SELECT, INSERT, UPDATE, DELETE')
       AND NOT EXISTS (SELECT 1 FROM memberships ms JOIN pg_roles g ON g.oid = ms.roleid
                        WHERE ms.member = r.oid
                          AND g.rolname IN ('tenancy_superadmin', 'tenancy_admin', 'tenancy_member', 'tenancy_viewer', 'tenancy_analyst'))
    UNION ALL
    -- foreign keys between tenant tables that leave the tenant column out
    SELECT 'error', format('constraint %I on %s', fk.conname, fk.tbl),
           format('foreign key to tenant table %s does not include the tenant column: a tenant can point at another tenant''s row (learning which ids exist), which that tenant then cannot delete', fk.ref),
           CASE WHEN fk.has_unique THEN '' ELSE format('ALTER TABLE %s ADD UNIQUE (%I, %s); ', fk.ref, fk.ref_tenant, fk.refcols) END
           || format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I FOREIGN KEY (%I, %s) REFERENCES %s (%I, %s);',
                     fk.tbl, fk.conname, fk.conname, fk.tenant_column, fk.cols, fk.ref, fk.ref_tenant, fk.refcols)
      FROM (SELECT k.conname, m.tbl, m.tenant_column, r.tbl AS ref, r.tenant_column AS ref_tenant,
                   (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.n)
                      FROM unnest(k.conkey) WITH ORDINALITY u(att, n)
                      JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.att) AS cols,
                   (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.n)
                      FROM unnest(k.confkey) WITH ORDINALITY u(att, n)
                      JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.att) AS refcols,
                   EXISTS (SELECT 1 FROM pg_index i
                            WHERE i.indrelid = k.confrelid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                              AND (SELECT array_agg(x ORDER BY x) FROM unnest(i.indkey::int2[]) x)
                                = (SELECT array_agg(x ORDER BY x) FROM unnest(k.confkey || ta.attnum) x)) AS has_unique
              FROM managed m
              JOIN pg_constraint k ON k.conrelid = m.relid AND k.contype = 'f' AND k.conparentid = 0
              JOIN managed r ON r.relid = k.confrelid
              JOIN pg_attribute ta ON ta.attrelid = r.relid AND ta.attname = r.tenant_column
             WHERE m.kind = 'tenant' AND r.kind = 'tenant'
               AND NOT EXISTS (SELECT 1 FROM unnest(k.conkey, k.confkey) AS u(a, b)
                                 JOIN pg_attribute aa ON aa.attrelid = k.conrelid AND aa.attnum = u.a
                                 JOIN pg_attribute bb ON bb.attrelid = k.confrelid AND bb.attnum = u.b
                                WHERE aa.attname = m.tenant_column AND bb.attname = r.tenant_column)) fk
    UNION ALL
    -- volatile context functions are re-evaluated per row and block index use
    SELECT DISTINCT 'error', format('function %s', p.oid::regprocedure),
           'function used for the tenant context is VOLATILE: it is evaluated for every row and the tenant index cannot be used',
           format('ALTER FUNCTION %s STABLE;', p.oid::regprocedure)
      FROM pg_proc p
     WHERE p.provolatile = 'v'
       AND p.oid <> 'tenancy.superadmin_access(oid, text)'::regprocedure
       AND (p.oid IN ('tenancy.current_tenant()'::regprocedure, 'tenancy.visible_tenants()'::regprocedure)
            OR p.oid IN (SELECT d.refobjid FROM pg_depend d JOIN pg_policy pol ON pol.oid = d.objid
                          WHERE d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_proc'::regclass
                            AND pol.polrelid IN (SELECT relid FROM managed WHERE kind = 'tenant')))
    UNION ALL
    -- TRUNCATE ignores row level security
    SELECT 'error', m.tbl,
           format('role %s can TRUNCATE it: TRUNCATE ignores row level security and empties %s',
                  CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END,
                  CASE WHEN m.kind = 'tenant' THEN 'every tenant' ELSE 'the data every tenant shares' END),
           format('REVOKE TRUNCATE ON %s FROM %s;', m.tbl,
                  CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END)
      FROM managed m, LATERAL aclexplode(m.relacl) acl
     WHERE acl.privilege_type = 'TRUNCATE' AND acl.grantee <> m.relowner
)
SELECT severity, object, problem, fix FROM findings
 ORDER BY severity, object, problem
$$;
