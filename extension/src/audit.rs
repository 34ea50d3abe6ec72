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
        // Only what the generated policies ask: one of the four commands on
        // a table that has such a policy (a direct call cannot put an entry
        // for another table or action into the audit log).
        let policed = ["SELECT", "INSERT", "UPDATE", "DELETE"].contains(&command)
            && Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p \
                  WHERE p.polrelid = $1 AND pg_catalog.strpos(pg_catalog.pg_get_expr( \
                        COALESCE(p.polqual, p.polwithcheck), p.polrelid), 'superadmin_access(') > 0)",
                &[tbl.into()],
            )
            .or_raise("checking the table's policies")
            .unwrap_or(false);
        if !policed {
            AUDITED.with(|a| a.borrow_mut().1.clear());
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "tenancy.superadmin_access is for the generated super-admin policies",
                Some("It audits SELECT, INSERT, UPDATE or DELETE on a table enabled with tenancy.enable()."),
            );
        }
        // The caller's tenant context, resolved once and before acting as
        // the owner (the context depends on the current user).
        let tenant = crate::context::current_tenant();
        // The server log keeps what a rolled-back transaction takes from
        // the audit log along with it: written first, outside the
        // transaction's reach. Control characters in names are escaped, so
        // a role or table name cannot add lines of its own.
        let line = Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.format('%s on %s by role %I (session user %I), tenant %s', \
             $2::text, $1::regclass, current_user, session_user, COALESCE($3::text, 'none'))",
            &[tbl.into(), command.into(), tenant.into()],
        )
        .or_raise("describing the super-admin access")
        .unwrap_or_default();
        pgrx::log!("pg_tenancy super-admin access: {}", tenancy_core::audit::escape_controls(&line));
        crate::context::as_owner(|| {
            Spi::run_with_args(
                "SELECT tenancy._audit('superadmin_access', $3, $1::regclass::text, \
                 pg_catalog.jsonb_build_object('command', $2::text))",
                &[tbl.into(), command.into(), tenant.into()],
            )
        })
        .or_raise("writing the super-admin audit entry");
    }
    true
}

