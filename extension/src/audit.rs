//! Audit log support: the entry hash, and the audit of super-admin access.

use crate::error::{raise, OrRaise};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;
use std::collections::HashSet;

/// SHA-256 (hex) of length-prefixed fields, NULL-aware: the hash of one
/// audit-log entry is `audit_digest(ARRAY[seq, at, actor, ..., prev_hash])`.
///
/// ```sql
/// SELECT tenancy.audit_digest(ARRAY['1', 'create_tenant', NULL]);
/// ```
#[pg_extern(immutable, parallel_safe, strict)]
pub fn audit_digest(fields: Vec<Option<String>>) -> String {
    let refs: Vec<Option<&str>> = fields.iter().map(|f| f.as_deref()).collect();
    tenancy_core::audit::digest(&refs)
}

thread_local! {
    /// (local transaction id, set of (table oid, command)) already audited.
    static AUDITED: RefCell<(u32, HashSet<(u32, String)>)> = RefCell::new((0, HashSet::new()));
    /// Whether [`forget_audited`] is registered in this backend.
    static CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A rolled-back subtransaction (`ROLLBACK TO SAVEPOINT`, a PL/pgSQL
/// exception block) takes the audit entries written in it along: forget
/// what was audited, so the next access in the transaction writes its entry
/// again. (Forgetting entries that survive only costs a duplicate entry.)
#[pg_guard]
unsafe extern "C-unwind" fn forget_audited(
    event: pg_sys::SubXactEvent::Type,
    _my_subid: pg_sys::SubTransactionId,
    _parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::os::raw::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        AUDITED.with(|a| {
            if let Ok(mut a) = a.try_borrow_mut() {
                a.1.clear();
            }
        });
    }
}

/// Register [`forget_audited`] once per backend.
fn forget_on_subtransaction_abort() {
    CALLBACK.with(|done| {
        if !done.get() {
            unsafe { pg_sys::RegisterSubXactCallback(Some(forget_audited), std::ptr::null_mut()) };
            done.set(true);
        }
    });
}

/// Policy helper for `tenancy_superadmin`: records one audit entry per
/// transaction, table and command, then allows the access. Used by the
/// generated `tenancy_superadmin_*` policies; not meant to be called directly.
///
/// Because every cross-tenant access is audited, a super admin cannot read
/// managed tables in a read-only transaction (the audit entry cannot be
/// written): fail closed.
#[pg_extern(volatile, parallel_unsafe)]
pub fn superadmin_access(tbl: pg_sys::Oid, command: &str) -> bool {
    forget_on_subtransaction_abort();
    let lxid = unsafe { (*pg_sys::MyProc).lxid };
    let key = (tbl.to_u32(), command.to_string());
    let first = AUDITED.with(|a| {
        let mut a = a.borrow_mut();
        if a.0 != lxid {
            a.0 = lxid;
            a.1.clear();
        }
        a.1.insert(key)
    });
    if first {
        if unsafe { pg_sys::XactReadOnly } {
            AUDITED.with(|a| a.borrow_mut().1.clear());
            raise(
                PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
                "tenancy_superadmin cannot read managed tables in a read-only transaction",
                Some("Every cross-tenant access by a super admin writes an audit entry; use a read-write transaction."),
            );
        }
        // Only what the generated policies ask, and only what happens: one
        // of the four commands on a table with the generated super-admin
        // policy for it, which this transaction holds open in that command's
        // lock mode (the parser locks every table a statement touches before
        // any policy runs). A direct call, or a policy planted on another
        // table naming this one, cannot file an access that did not happen.
        // (UPDATE policies also guard SELECT … FOR UPDATE / FOR SHARE, which
        // holds the table in RowShareLock)
        let mode = match command {
            "SELECT" => Some(pg_sys::AccessShareLock as pg_sys::LOCKMODE),
            "UPDATE" => Some(pg_sys::RowShareLock as pg_sys::LOCKMODE),
            "INSERT" | "DELETE" => Some(pg_sys::RowExclusiveLock as pg_sys::LOCKMODE),
            _ => None,
        };
        // The table's name — schema-qualified under the owner's pinned
        // search_path, whatever the reader's — if it has the policy, in one
        // query as the owner.
        let target = mode
            .is_some_and(|mode| unsafe { pg_sys::CheckRelationOidLockedByMe(tbl, mode, true) })
            .then(|| {
                crate::context::as_owner(|| {
                    Spi::get_one_with_args::<String>(
                        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_policy p \
                                                   WHERE p.polrelid = $1 AND p.polname = $2) \
                                     THEN $1::pg_catalog.regclass::pg_catalog.text END",
                        &[
                            tbl.into(),
                            format!("tenancy_superadmin_{}", command.to_lowercase()).into(),
                        ],
                    )
                })
                .or_raise("checking the table's policies")
            })
            .flatten();
        let Some(target) = target else {
            AUDITED.with(|a| a.borrow_mut().1.clear());
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "tenancy.superadmin_access is for the generated super-admin policies",
                Some("It audits SELECT, INSERT, UPDATE or DELETE by the statement that runs it, on a table enabled with tenancy.enable()."),
            );
        };
        // The tenant context, resolved as the caller (it depends on the
        // current user).
        let tenant = crate::context::current_tenant();
        // The server log keeps what a rolled-back transaction takes from
        // the audit log along with it: written first, outside the
        // transaction's reach. Control characters in names are escaped, so
        // a role or table name cannot add lines of its own.
        let line = Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.format('%s on %s by role %I (session user %I), tenant %s', \
             $1, $2, current_user, session_user, COALESCE($3, 'none'))",
            &[
                command.into(),
                target.as_str().into(),
                tenant.map(|t| t.to_string()).into(),
            ],
        )
        .or_raise("describing the super-admin access")
        .unwrap_or_default();
        pgrx::log!(
            "pg_tenancy super-admin access: {}",
            tenancy_core::audit::escape_controls(&line)
        );
        // The entry, as the extension owner: one call of the owner's writer,
        // every argument a typed parameter (no name in this text resolves
        // through the caller's schemas; as_owner pins search_path too).
        let details = pgrx::JsonB(serde_json::json!({ "command": command }));
        crate::context::as_owner(|| {
            Spi::run_with_args(
                "SELECT tenancy._audit($1, $2, $3, $4)",
                &[
                    "superadmin_access".into(),
                    tenant.into(),
                    target.as_str().into(),
                    details.into(),
                ],
            )
        })
        .or_raise("writing the super-admin audit entry");
    }
    true
}
