-- pg_tenancy privileges. Runs last, after every function exists.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tenancy FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA tenancy FROM PUBLIC;
GRANT USAGE ON SCHEMA tenancy TO PUBLIC;

-- Context: every role may ask for and set its tenant.
-- Internal lookups (_context, _find, _descendants, ...) stay private: the
-- Rust entry points run them as the extension owner, so no role can query
-- other tenants' ids or bindings through them.
GRANT EXECUTE ON FUNCTION
    tenancy.current_tenant(), tenancy.visible_tenants(), tenancy.bound_tenant(),
    tenancy.set_tenant(text, boolean), tenancy.clear_tenant(boolean), tenancy.resolve(text),
    tenancy.slug_problem(text), tenancy.audit_digest(text[]), tenancy._is_uuid(text),
    tenancy._checked_tenant(text), tenancy._in_transaction_block()
TO PUBLIC;

-- Administration: the super admin.
GRANT EXECUTE ON FUNCTION
    tenancy.create_tenant(text, text, text, text, text, jsonb),
    tenancy.suspend_tenant(text), tenancy.resume_tenant(text), tenancy._set_status(text, text, text, text),
    tenancy.drop_tenant(text, text, boolean),
    tenancy.bind_role(regrole, text), tenancy.unbind_role(regrole),
    tenancy.enable(regclass, name, boolean), tenancy.disable(regclass),
    tenancy.register_reference(regclass), tenancy.policy_sql(regclass, name, boolean),
    tenancy._policy_ddl(oid, text, text, boolean), tenancy._check_table(regclass), tenancy._policy_fingerprint(oid),
    tenancy.check_isolation(), tenancy.verify_audit(),
    tenancy.superadmin_access(oid, text), tenancy._registry_write(oid, text, text, boolean),
    tenancy._audit_entry_hash(bigint, timestamptz, name, name, uuid, text, text, jsonb, text)
TO tenancy_superadmin;

GRANT SELECT ON tenancy.tenants TO tenancy_superadmin, tenancy_admin, tenancy_member, tenancy_viewer;
GRANT SELECT ON tenancy.managed_tables, tenancy.role_bindings TO tenancy_superadmin;
GRANT SELECT ON tenancy.audit_log TO tenancy_superadmin;

-- Provisioning (sql/provision.sql): clone, templates, provisioning are the
-- super admin's; every tenant may read its inherited settings.
GRANT EXECUTE ON FUNCTION
    tenancy.clone_tenant(text, text, text, regclass[], boolean), tenancy.clone_plan(regclass[]),
    tenancy.create_template(text, text, regclass[], text, text), tenancy.drop_template(text),
    tenancy.provision(text, text, text, text, text, jsonb), tenancy.provision_many(text, jsonb),
    tenancy._copy_steps(oid[], boolean, jsonb), tenancy._tenant_tables(regclass[]), tenancy._table_key(oid),
    tenancy._without_covered_partitions(oid[]), tenancy._refuse_inheritance(oid[]),
    tenancy._template_checksum(jsonb)
TO tenancy_superadmin;
-- Settings are tenant data: only the tenancy roles may read them (for their
-- own tenant and its ancestors), not every role on the server.
GRANT EXECUTE ON FUNCTION tenancy.setting(text) TO tenancy_superadmin, tenancy_admin, tenancy_member, tenancy_viewer;
GRANT SELECT ON tenancy.templates, tenancy.template_store, tenancy.template_uses TO tenancy_superadmin;
