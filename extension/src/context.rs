//! The tenant context: `tenancy.tenant_id` and `tenancy.current_tenant()`.
//!
//! Policies compare against `(SELECT tenancy.current_tenant())` once per
//! statement, so this function is on the hot path of every tenant query. It
//! keeps a small per-backend cache from (setting, session user, current user)
//! to the resolved tenant, so a hit costs a string compare and a hash lookup
//! instead of parsing the setting and reading the registry.
//!
//! The cache is dropped whenever a relcache invalidation arrives. Every change
//! to `tenancy.tenants` or `tenancy.role_bindings` fires one (a statement
//! trigger calls `tenancy._invalidate_context`), and PostgreSQL delivers it to
//! every backend before its next statement sees the change: a suspended
//! tenant, a new binding or a dropped tenant takes effect everywhere at commit.

use crate::error::{raise, raise_detail, OrRaise};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use tenancy_core::ident::quote_literal;

/// `tenancy.tenant_id`: the current tenant, as a uuid or a slug.
pub static TENANT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Most distinct (setting, role) keys one backend remembers; a pooled
/// connection serving many tenants stays fast, memory stays bounded.
const CACHE_LIMIT: usize = 4096;

type Key = (Option<CString>, u32, u32);

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// The local transaction id in which the last invalidation arrived.
    static INVALIDATED_IN: Cell<u32> = const { Cell::new(0) };
    static CACHE: RefCell<(u64, HashMap<Key, Context>)> = RefCell::new((0, HashMap::new()));
}

pub fn init() {
    GucRegistry::define_string_guc(
        c"tenancy.tenant_id",
        c"The current tenant: its uuid or slug. Empty means no tenant (no rows).",
        c"Set with tenancy.set_tenant() or SET. Ignored for login roles bound to a tenant with tenancy.bind_role().",
        &TENANT_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(
            Some(on_relcache_invalidation),
            pg_sys::Datum::from(0),
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    INVALIDATED_IN.with(|t| t.set(unsafe { current_lxid() }));
    // The extension may have been dropped and re-created by another owner.
    OWNER.with(|o| o.set(None));
}

/// This backend's local transaction id.
unsafe fn current_lxid() -> u32 {
    if pg_sys::MyProc.is_null() {
        0
    } else {
        (*pg_sys::MyProc).lxid
    }
}

/// The resolved context of one (setting, session user, current user): the
/// current tenant followed by its descendants, or empty when there is none.
#[derive(Clone, Default)]
struct Context {
    tenants: Vec<pgrx::Uuid>,
}

thread_local! {
    static OWNER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// The extension owner, who may execute the internal lookup functions.
fn extension_owner() -> pg_sys::Oid {
    if let Some(o) = OWNER.with(|o| o.get()) {
        return o;
    }
    let owner = crate::error::select_one::<pg_sys::Oid>(
        "SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_tenancy'",
        &[],
    )
    .or_raise("finding the extension owner")
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "extension pg_tenancy is not installed",
            None,
        )
    });
    OWNER.with(|o| o.set(Some(owner)));
    owner
}

/// Run `f` as the extension owner (like a SECURITY DEFINER function), so the
/// registry lookups need no privilege granted to PUBLIC. Like such a
/// function with `SET search_path = pg_catalog, pg_temp`, the path is pinned
/// while `f` runs: no name in the owner's SQL resolves through the caller's
/// schemas (a type `text` or `uuid` the caller put in `pg_temp` would
/// otherwise be found first, and its code run with the owner's rights).
/// PostgreSQL restores the user and the path itself if `f` raises an error
/// (transaction abort).
pub(crate) fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    let (mut saved_user, mut saved_ctx) = (pg_sys::Oid::INVALID, 0i32);
    let nest = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        // as fmgr_security_definer does for a function's SET clause
        // (GUC_ACTION_SAVE: allowed in parallel mode, undone below)
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in [
            (c"search_path", c"pg_catalog, pg_temp"),
            // names written the same whatever the caller set
            (c"quote_all_identifiers", c"off"),
        ] {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        nest
    };
    let r = f();
    unsafe {
        pg_sys::AtEOXact_GUC(true, nest);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
    }
    r
}

/// The invoker's session user and current user.
pub(crate) fn invoker() -> (pg_sys::Oid, pg_sys::Oid) {
    unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) }
}

/// Apply `f` to the resolved context, without copying it on a cache hit.
fn with_context<R>(f: impl FnOnce(&Context) -> R) -> R {
    // Process pending invalidations first: inside an open transaction block
    // they would otherwise wait for the next lock this backend takes, and a
    // tenant suspended by another session must vanish at our next statement.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let setting = TENANT_ID.get().filter(|s| !s.as_bytes().is_empty());
    let (session, current) = invoker();
    let key: Key = (setting, session.to_u32(), current.to_u32());
    let generation = GENERATION.with(|g| g.get());
    let mut f = Some(f);
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != generation {
            c.0 = generation;
            c.1.clear();
        }
        c.1.get(&key)
            .map(|ctx| (f.take().expect("called once"))(ctx))
    });
    if let Some(r) = hit {
        return r;
    }
    let f = f.take().expect("called once");
    let text = key.0.as_ref().map(|s| s.to_string_lossy().into_owned());
    let tenants: Vec<pgrx::Uuid> = as_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT tenancy._context($1, $2, $3)",
                    Some(1),
                    &[session.into(), current.into(), text.clone().into()],
                )?
                .first()
                .get_one::<Vec<pgrx::Uuid>>()
        })
    })
    .or_raise("resolving the tenant context")
    .unwrap_or_default();
    if tenants.is_empty() {
        if let Some(t) = text.as_deref() {
            if tenancy_core::slug::classify(t).is_err() {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("tenancy.tenant_id is set to {t:?}, which is neither a tenant uuid nor a valid slug"),
                    Some("Use SELECT tenancy.set_tenant('<slug or uuid>'), or RESET tenancy.tenant_id."),
                );
            }
        }
    }
    let ctx = Context { tenants };
    // Only remember the answer if nothing invalidated the cache meanwhile,
    // and not when an invalidation arrived during this transaction: its
    // snapshot (all of a REPEATABLE READ transaction, or a statement that
    // was running when another session committed) may predate the change
    // that sent it — a suspension or binding would otherwise never reach
    // this backend's later transactions.
    // Nor under REPEATABLE READ / SERIALIZABLE: the transaction's snapshot
    // may be older than the transaction (`SET TRANSACTION SNAPSHOT` imports
    // one exported before a suspension), so what it shows is only good for
    // this transaction; READ COMMITTED statements see every committed change.
    if GENERATION.with(|g| g.get()) == generation
        && INVALIDATED_IN.with(|t| t.get()) != unsafe { current_lxid() }
        && unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32
    {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.1.len() >= CACHE_LIMIT {
                c.1.clear();
            }
            c.1.insert(key, ctx.clone());
        });
    }
    f(&ctx)
}

/// The current tenant's id, or NULL when there is none (no rows visible).
///
/// Resolution order: a tenant bound to the session user, then one bound to
/// the current role (see `tenancy.bind_role`), then the `tenancy.tenant_id`
/// setting (uuid or slug). NULL when nothing is set, when the tenant does not
/// exist, or when it is not active (suspended or archived): fail closed.
///
/// ```sql
/// SELECT tenancy.set_tenant('acme');
/// SELECT tenancy.current_tenant();
/// ```
#[pg_extern(stable, parallel_safe)]
pub fn current_tenant() -> Option<pgrx::Uuid> {
    with_context(|c| c.tenants.first().copied())
}

/// The value of setting `key` for the current tenant: its own settings win,
/// then its parent's, up the tenant tree. NULL when no tenant is current or
/// no tenant on the chain has the key. The tenant is [`current_tenant`]'s,
/// resolved the same way (a bound role, else `tenancy.tenant_id`) — also
/// inside a SECURITY DEFINER function owned by a bound role.
///
/// Errors: 22004 key is NULL.
///
/// ```sql
/// SELECT tenancy.set_tenant('acme-europe');
/// SELECT tenancy.setting('locale');   -- acme-europe's, else acme's
/// ```
#[pg_extern(stable, parallel_safe)]
pub fn setting(key: Option<&str>) -> Option<pgrx::JsonB> {
    let Some(key) = key else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "setting key must not be NULL",
            Some("Name a settings key, e.g. SELECT tenancy.setting('locale')."),
        )
    };
    let tenant = current_tenant()?;
    as_owner(|| {
        crate::error::select_one::<pgrx::JsonB>(
            "SELECT tenancy._setting_of($1, $2)",
            &[tenant.into(), key.into()],
        )
    })
    .or_raise("reading the tenant's settings")
}

/// The current tenant and all its descendants (subsidiaries, departments):
/// what a parent reads on tables enabled with `hierarchical => true`. Empty
/// without a current tenant.
///
/// ```sql
/// SELECT tenancy.visible_tenants();
/// ```
#[pg_extern(stable, parallel_safe)]
pub fn visible_tenants() -> Vec<pgrx::Uuid> {
    with_context(|c| c.tenants.clone())
}

/// The tenant the caller's login (or current role) is bound to with
/// `tenancy.bind_role`, or NULL when it is not bound.
///
/// ```sql
/// SELECT tenancy.bound_tenant();
/// ```
#[pg_extern(stable, parallel_safe)]
pub fn bound_tenant() -> Option<pgrx::Uuid> {
    let (session, current) = invoker();
    as_owner(|| {
        crate::error::select_one::<pgrx::Uuid>(
            "SELECT tenancy._bound_tenant($1, $2)",
            &[session.into(), current.into()],
        )
    })
    .or_raise("reading the role binding")
}

/// The uuid of a tenant given by uuid or slug. A login bound to a tenant can
/// resolve only its own tenant and its descendants (others look unknown, so
/// bound logins cannot enumerate tenants).
///
/// Errors: 22004 NULL, 22023 neither a uuid nor a valid slug, P0002 unknown.
///
/// ```sql
/// SELECT tenancy.resolve('acme');
/// ```
#[pg_extern(stable, parallel_safe)]
pub fn resolve(tenant: Option<&str>) -> pgrx::Uuid {
    let Some(tenant) = tenant else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "tenant must not be NULL",
            Some("Pass the tenant's uuid or slug."),
        )
    };
    if let Err(e) = tenancy_core::slug::classify(tenant) {
        raise_detail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "{} is neither a tenant uuid nor a valid tenant slug",
                quote_literal(tenant)
            ),
            format!("As a slug it {e}."),
            "Slugs are 2-63 lowercase letters, digits and hyphens, e.g. 'acme-europe'.",
        )
    }
    let (session, current) = invoker();
    let found = as_owner(|| {
        crate::error::select_one::<pgrx::Uuid>(
            "SELECT tenancy._find_visible($1, $2, $3)",
            &[tenant.into(), session.into(), current.into()],
        )
    })
    .or_raise("looking up the tenant");
    found.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("tenant {} does not exist", quote_literal(tenant)),
            Some("List tenants with: SELECT id, slug, status FROM tenancy.tenants;"),
        )
    })
}

/// Internal, behind `tenancy.set_tenant()`: validate a switch to `tenant` for
/// the invoker's own session user and current role, and return its uuid.
///
/// `tenancy._check_set_tenant(text, oid, oid)` does the work as the extension
/// owner; it trusts the role oids it is given, so it is not executable by
/// PUBLIC (any caller could ask about another role's binding with a forged
/// oid). This entry point passes the real ones.
///
/// Errors: 22004 NULL, 22023 malformed, P0002 unknown, 55000 not active,
/// 42501 the login or role is bound to another tenant.
///
/// ```sql
/// SELECT tenancy._checked_tenant('acme');  -- what set_tenant('acme') would set
/// ```
#[pg_extern(stable, parallel_safe, name = "_checked_tenant")]
pub fn checked_tenant(tenant: Option<&str>) -> Option<pgrx::Uuid> {
    let (session, current) = invoker();
    as_owner(|| {
        crate::error::select_one::<pgrx::Uuid>(
            "SELECT tenancy._check_set_tenant($1, $2, $3)",
            &[tenant.into(), session.into(), current.into()],
        )
    })
    .or_raise("checking the tenant to switch to")
}

/// Internal, behind `set_tenant(…, is_local => true)` and
/// `clear_tenant(true)`: whether the caller is inside a transaction block
/// (`BEGIN … COMMIT`, or a multi-statement query string), where a
/// transaction-local setting outlives the statement making it.
///
/// ```sql
/// SELECT tenancy._in_transaction_block();  -- false in autocommit
/// ```
#[pg_extern(stable, parallel_safe, name = "_in_transaction_block")]
pub fn in_transaction_block() -> bool {
    unsafe { pg_sys::IsTransactionBlock() }
}

/// Trigger helper: send a relcache invalidation for `rel`, which makes every
/// backend drop its cached tenant context before its next statement.
#[pg_extern(volatile, parallel_unsafe, name = "_invalidate_context")]
pub fn invalidate_context(rel: pg_sys::Oid) {
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(rel) }
}
