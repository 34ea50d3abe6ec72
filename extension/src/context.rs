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

use crate::error::{raise, OrRaise};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;

/// `tenancy.tenant_id`: the current tenant, as a uuid or a slug.
pub static TENANT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Most distinct (setting, role) keys one backend remembers; a pooled
/// connection serving many tenants stays fast, memory stays bounded.
const CACHE_LIMIT: usize = 4096;

type Key = (Option<CString>, u32, u32);

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static CACHE: RefCell<(u64, HashMap<Key, Option<pgrx::Uuid>>)> = RefCell::new((0, HashMap::new()));
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
    let setting = TENANT_ID.get().filter(|s| !s.as_bytes().is_empty());
    let (session, current) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) };
    let key: Key = (setting, session.to_u32(), current.to_u32());
    let generation = GENERATION.with(|g| g.get());
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != generation {
            c.0 = generation;
            c.1.clear();
        }
        c.1.get(&key).copied()
    });
    if let Some(found) = hit {
        return found;
    }
    let text = key.0.as_ref().map(|s| s.to_string_lossy().into_owned());
    let resolved: Option<pgrx::Uuid> = Spi::connect(|client| {
        client
            .select(
                "SELECT tenancy._resolve_context($1, $2, $3)",
                Some(1),
                &[session.into(), current.into(), text.clone().into()],
            )?
            .first()
            .get_one::<pgrx::Uuid>()
    })
    .or_raise("resolving the tenant context");
    if resolved.is_none() {
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
    // Only remember the answer if nothing invalidated the cache meanwhile.
    if GENERATION.with(|g| g.get()) == generation {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.1.len() >= CACHE_LIMIT {
                c.1.clear();
            }
            c.1.insert(key, resolved);
        });
    }
    resolved
}

/// Trigger helper: send a relcache invalidation for `rel`, which makes every
/// backend drop its cached tenant context before its next statement.
#[pg_extern(volatile, parallel_unsafe, name = "_invalidate_context")]
pub fn invalidate_context(rel: pg_sys::Oid) {
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(rel) }
}
