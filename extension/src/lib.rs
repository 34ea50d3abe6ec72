//! pg_tenancy: multi-tenant data management inside PostgreSQL.
//!
//! This crate is glue. The logic that must be exactly right lives in
//! `tenancy-core`; the catalog tables, roles and most SQL-facing functions are
//! hand-written SQL in `sql/`, pulled in below in dependency order.
//! Rust provides what SQL cannot do well: a cached, parsed tenant context
//! (`current_tenant`), the policy generator glue, and the audit hash.

use pgrx::prelude::*;

mod audit;
mod context;
mod error;
mod owner_exec;
mod policy;
mod provision;
mod registry;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../../sql/catalog.sql",
    name = "catalog",
    requires = [
        "bootstrap",
        registry::slug_problem,
        context::current_tenant,
        context::visible_tenants,
        context::bound_tenant,
        context::resolve,
        context::invalidate_context,
        audit::audit_digest,
    ]
);
extension_sql_file!(
    "../../sql/audit.sql",
    name = "audit_sql",
    requires = ["catalog"]
);
extension_sql_file!(
    "../../sql/registry.sql",
    name = "registry_sql",
    requires = [
        "audit_sql",
        context::checked_tenant,
        context::in_transaction_block,
        owner_exec::exec_as_owner,
        owner_exec::query_as_owner
    ]
);
extension_sql_file!(
    "../../sql/policy.sql",
    name = "policy_sql",
    requires = [
        "registry_sql",
        policy::policy_ddl,
        policy::registry_write,
        audit::superadmin_access
    ]
);
extension_sql_file!(
    "../../sql/linter.sql",
    name = "linter_sql",
    requires = ["policy_sql"]
);
extension_sql_file!(
    "../../sql/provision.sql",
    name = "provision_sql",
    requires = ["policy_sql", provision::copy_steps_sql]
);
extension_sql_file!("../../sql/grants.sql", name = "grants", finalize);

/// Called once when a backend loads the library.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    context::init();
}
