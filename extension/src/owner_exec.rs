//! Running the statements that read and write user tables on a super admin's
//! behalf — the copies of `clone_tenant` / `provision`, the reads of
//! `create_template`, the deletes of `drop_tenant` — as the owner of the
//! table they touch, not as the extension owner (a superuser).
//!
//! Those statements run whatever the table's owner attached to it: triggers,
//! rules, column defaults, check constraints, index expressions, domain
//! checks, casts. Run with the extension owner's rights, any table owner could
//! have code run as superuser. PostgreSQL solves the same problem for its own
//! maintenance commands (`VACUUM`, `ANALYZE`, `REINDEX`, `REFRESH MATERIALIZED
//! VIEW`) and foreign-key actions by switching to the table's owner, and so do
//! we: the owner's code runs with exactly the owner's rights.
//!
//! - `SECURITY_LOCAL_USERID_CHANGE`: the owner's code cannot `SET ROLE` or
//!   `SET SESSION AUTHORIZATION` its way back.
//! - `SECURITY_NOFORCE_RLS`: the owner is not held back by its own
//!   `FORCE ROW LEVEL SECURITY` (the copy reads one tenant and writes another).
//! - A GUC nest level, rolled back after the statement: a setting the owner's
//!   code changes (`search_path`, …) does not reach the extension's next
//!   statement.
//! - Not `SECURITY_RESTRICTED_OPERATION`: PostgreSQL then refuses to queue
//!   any deferred trigger, which would refuse every table with a
//!   `DEFERRABLE INITIALLY DEFERRED` foreign key (Django makes all of them
//!   so) and the deferred keys a cycle needs. What that flag protects
//!   against is checked around every statement instead (see
//!   `tenancy._session_objects()`): the session's temporary relations and
//!   types, named cursors, prepared statements and `LISTEN`
//!   channels must be the same after the statement as before (a temporary
//!   relation would be found before a permanent one of the same name, later,
//!   as the caller; `DISCARD TEMP` would drop the mapping tables for the
//!   owner to replace; a holdable cursor's query runs at commit), and no
//!   deferred trigger may have events pending — a user's constraint trigger,
//!   or the recheck of a deferrable unique or exclusion constraint, which
//!   evaluates the owner's index expressions: they would fire at commit with
//!   the caller's rights. Foreign-key checks are the exception: they switch
//!   to the tables' owners themselves.

use crate::error::{raise, raise_detail, select_one, OrRaise};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB, PgSqlErrorCode};

/// Run `f` as the owner of table `relid` (see the module documentation).
/// PostgreSQL restores the user and the settings itself if `f` raises an
/// error (transaction or subtransaction abort).
///
/// `before` is the session's objects (`tenancy._session_objects()`) as the
/// caller last saw them, when nothing changed them since (saves reading
/// them twice per statement); NULL: read them here.
fn as_table_owner<R>(relid: pg_sys::Oid, before: Option<Vec<String>>, f: impl FnOnce() -> R) -> R {
    let (owner, name) = table_owner(relid);
    as_user(owner, &name, before, pg_sys::SECURITY_NOFORCE_RLS as i32, f)
}

/// The owner of table `relid` and its name.
fn table_owner(relid: pg_sys::Oid) -> (pg_sys::Oid, String) {
    let (owner, name) = Spi::connect(|c| {
        let t = c.select(
            "SELECT c.relowner, c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.oid = $1",
            Some(1),
            &[relid.into()],
        )?;
        if t.is_empty() {
            Ok((None, None))
        } else {
            t.first().get_two::<pg_sys::Oid, String>()
        }
    })
    .or_raise("looking up the table's owner");
    let (Some(owner), Some(name)) = (owner, name) else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("no table with OID {}", relid.to_u32()),
            Some("The table was dropped while the operation ran; run it again."),
        )
    };
    (owner, name)
}

/// Run `f` as role `user` (adding `flags` to the security context), for a
/// statement on table `name`, refusing what its code leaves behind.
fn as_user<R>(
    user: pg_sys::Oid,
    name: &str,
    before: Option<Vec<String>>,
    flags: i32,
    f: impl FnOnce() -> R,
) -> R {
    let before = before.unwrap_or_else(session_objects);
    refuse_open_cursors();
    let (mut saved_user, mut saved_ctx) = (pg_sys::Oid::INVALID, 0i32);
    let nest = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::SetUserIdAndSecContext(
            user,
            saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | flags,
        );
        nest
    };
    let r = f();
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
    }
    refuse_leftovers(name, &before);
    r
}

/// A cursor the caller declared and left open can be read (`FETCH`) or moved
/// by any code in the session — portals have no owner —, a table's code
/// included: refuse to run that code while one is open. (The portals of
/// PL/pgSQL loops, named `<unnamed portal N>`, are not refused: a function
/// looping over a query to clone tenant after tenant is a normal use.)
fn refuse_open_cursors() {
    let open = select_one::<String>(
        "SELECT k.name FROM pg_catalog.pg_cursors k \
          WHERE k.name <> '' AND k.name NOT LIKE '<unnamed portal %' ORDER BY k.name LIMIT 1",
        &[],
    )
    .or_raise("listing the session's cursors");
    if let Some(cursor) = open {
        raise_detail(
            PgSqlErrorCode::ERRCODE_INVALID_CURSOR_STATE,
            format!("cursor {cursor:?} is open"),
            "pg_tenancy is about to run the code of a table (as the table's owner), and any code in a session can FETCH from or MOVE an open cursor.",
            "CLOSE the cursor (or finish with it) before the call.",
        );
    }
}

/// The session objects that must not change under a table owner's code.
fn session_objects() -> Vec<String> {
    select_one::<Vec<String>>("SELECT tenancy._session_objects()", &[])
        .or_raise("listing the session's objects")
        .unwrap_or_default()
}

/// Refuse what the owner's code of table `name` left behind: session
/// objects created or dropped, deferred constraint triggers pending.
fn refuse_leftovers(name: &str, before: &[String]) {
    let after = session_objects();
    let change = after
        .iter()
        .find(|x| !before.contains(x))
        .map(|x| format!("created {x}"))
        .or_else(|| {
            before
                .iter()
                .find(|x| !after.contains(x))
                .map(|x| format!("dropped {x}"))
        });
    if let Some(change) = change {
        raise_detail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("code of table {name} {change} while pg_tenancy ran a statement as the table's owner"),
            "The table's triggers, rules, defaults or constraints changed the session: what they leave would act later with the caller's rights (a temporary relation is found before a permanent one of the same name, a holdable cursor runs at commit), and what they drop may be the caller's or pg_tenancy's own (DISCARD TEMP, DEALLOCATE, CLOSE).",
            "Have that code use permanent tables and no PREPARE, DECLARE, LISTEN or DISCARD, then call again.",
        );
    }
    let deferrable = Spi::connect(|c| {
        c.select(
            "SELECT DISTINCT t.tgrelid, t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t \
             WHERE t.tgdeferrable AND NOT (t.tgisinternal AND t.tgfoid IN ( \
                 SELECT p.oid FROM pg_catalog.pg_proc p \
                  WHERE p.pronamespace = 'pg_catalog'::regnamespace AND pg_catalog.starts_with(p.proname, 'RI_FKey_')))",
            None,
            &[],
        )?
        .map(|row| Ok((row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?)))
        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .or_raise("listing deferrable constraint triggers");
    for (rel, rel_name) in deferrable {
        let Some(rel) = rel else { continue };
        // SAFETY: reads the transaction's trigger event queue; no side effect.
        if unsafe { pg_sys::AfterTriggerPendingOnRel(rel) } {
            raise_detail(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "a deferred constraint trigger or uniqueness check on {} has events pending after pg_tenancy wrote {name} as its owner",
                    rel_name.unwrap_or_default()
                ),
                "Deferred trigger events (a constraint trigger, or the recheck of a deferrable unique or exclusion constraint, which evaluates its index expressions) fire at commit with the rights of whoever commits, not the table owner's.",
                "Declare the constraint trigger or constraint INITIALLY IMMEDIATE (or NOT DEFERRABLE), or commit pending work before the call.",
            );
        }
    }
}

fn uuid_array(v: Option<Vec<Option<pgrx::Uuid>>>) -> DatumWithOid<'static> {
    match v {
        Some(v) => v.into(),
        None => DatumWithOid::null_oid(pg_sys::UUIDARRAYOID),
    }
}

/// Run one statement of a copy (`tenancy._copy_steps`) as the owner of table
/// `relid`, with `$1`/`$2` the source and new tenant ids and `$3` the
/// template snapshot's rows (jsonb, or NULL). `objects`: the session's
/// objects before, if the caller has them (see `as_table_owner`). Returns the
/// rows it processed.
/// Internal: called by `tenancy._run_copy`; no role but the extension owner
/// may execute it (it runs any statement as any table's owner).
///
/// ```sql
/// SELECT tenancy._exec_as_owner('esg.metrics'::regclass, 'INSERT …', ARRAY[src], ARRAY[dst], NULL::jsonb, NULL);
/// ```
#[pg_extern(volatile, parallel_unsafe, name = "_exec_as_owner")]
fn exec_as_owner(
    relid: Option<pg_sys::Oid>,
    statement: Option<&str>,
    old_ids: Option<Vec<Option<pgrx::Uuid>>>,
    new_ids: Option<Vec<Option<pgrx::Uuid>>>,
    rows: Option<AnyElement>,
    objects: Option<Vec<String>>,
) -> i64 {
    let (Some(relid), Some(statement)) = (relid, statement) else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "relid and statement must not be NULL",
            Some("tenancy._exec_as_owner is internal; call tenancy.clone_tenant() or tenancy.provision()."),
        )
    };
    let rows = match rows {
        // SAFETY: the datum and its type come from the call's own argument.
        Some(r) => unsafe { DatumWithOid::new(r.datum(), r.oid()) },
        None => DatumWithOid::null_oid(pg_sys::JSONBOID),
    };
    let args = [uuid_array(old_ids), uuid_array(new_ids), rows];
    as_table_owner(relid, objects, || {
        Spi::connect_mut(|c| c.update(statement, None, &args).map(|t| t.len() as i64))
            .or_raise("running a copy statement as the table's owner")
    })
}

/// Run a query as the owner of table `relid`, with `$1` tenant ids, and
/// return the first column of its first row (jsonb; NULL for no row).
/// Internal: called by `tenancy.drop_tenant` and `tenancy.create_template`;
/// no role but the extension owner may execute it.
///
/// ```sql
/// SELECT tenancy._query_as_owner('esg.metrics'::regclass, 'SELECT pg_catalog.jsonb_agg(…) …', ARRAY[id], NULL);
/// ```
#[pg_extern(volatile, parallel_unsafe, name = "_query_as_owner")]
fn query_as_owner(
    relid: Option<pg_sys::Oid>,
    statement: Option<&str>,
    ids: Option<Vec<Option<pgrx::Uuid>>>,
    objects: Option<Vec<String>>,
) -> Option<JsonB> {
    let (Some(relid), Some(statement)) = (relid, statement) else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "relid and statement must not be NULL",
            Some("tenancy._query_as_owner is internal; call tenancy.drop_tenant() or tenancy.create_template()."),
        )
    };
    let args = [uuid_array(ids)];
    as_table_owner(relid, objects, || {
        Spi::connect_mut(|c| {
            let t = c.update(statement, None, &args)?;
            if t.is_empty() {
                Ok(None)
            } else {
                t.first().get_one::<JsonB>()
            }
        })
        .or_raise("running a query as the table's owner")
    })
}

/// How many rows of tenant `tenant` in table `relid` (tenant column
/// `tenant_column`) the calling role sees — the role in effect outside the
/// extension's SECURITY DEFINER functions, with its privileges and row level
/// security (the table's policies run as it, as in any read of the table).
/// Internal: `tenancy.create_template` compares it with the rows it stores,
/// which every super admin reads; no role but the extension owner may
/// execute it.
///
/// ```sql
/// SELECT tenancy._count_as_caller('esg.metrics'::regclass, 'tenant_id', id, NULL);
/// ```
#[pg_extern(volatile, parallel_unsafe, name = "_count_as_caller")]
fn count_as_caller(
    relid: Option<pg_sys::Oid>,
    tenant_column: Option<&str>,
    tenant: Option<pgrx::Uuid>,
    objects: Option<Vec<String>>,
) -> i64 {
    let (Some(relid), Some(column)) = (relid, tenant_column) else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "relid and tenant_column must not be NULL",
            Some("tenancy._count_as_caller is internal; call tenancy.create_template()."),
        )
    };
    let (_, name) = table_owner(relid);
    let caller = unsafe { pg_sys::GetOuterUserId() };
    let sql = format!(
        "SELECT pg_catalog.count(*) FROM {name} s WHERE s.{} = $1",
        tenancy_core::ident::quote_ident(column)
    );
    as_user(caller, &name, objects, 0, || {
        Spi::connect(|c| {
            let t = c.select(&sql, Some(1), &[tenant.into()])?;
            t.first().get_one::<i64>()
        })
        .or_raise("counting the rows the caller sees")
        .unwrap_or(0)
    })
}
