//! Per-tenant rate limits: a token bucket per tenant, sized by its plan.

use governor::{clock::DefaultClock, state::keyed::DefaultKeyedStateStore, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Limits per tenant; refreshed from the database without a restart.
pub struct Limits {
    default_rps: u32,
    plan_rps: HashMap<String, u32>,
    /// tenant key (uuid or slug) → (slug, requests per second).
    tenants: RwLock<HashMap<String, (Arc<str>, u32)>>,
    /// One keyed limiter per distinct rate (so each tenant has its own bucket).
    limiters: RwLock<HashMap<u32, Arc<Keyed>>>,
    /// The same for requests without a tenant, keyed by role.
    anon: RwLock<HashMap<u32, Arc<Keyed>>>,
}

impl Limits {
    pub fn new(default_rps: u32, plan_rps: HashMap<String, u32>) -> Self {
        Limits {
            default_rps,
            plan_rps,
            tenants: RwLock::new(HashMap::new()),
            limiters: RwLock::new(HashMap::new()),
            anon: RwLock::new(HashMap::new()),
        }
    }

    /// Replace the tenant table: (id, slug, plan, per-tenant override).
    pub fn set_tenants(&self, rows: Vec<(String, String, Option<String>, Option<u32>)>) {
        let mut map = HashMap::new();
        for (id, slug, plan, over) in rows {
            let rps = over
                .or_else(|| plan.as_ref().and_then(|p| self.plan_rps.get(p).copied()))
                .unwrap_or(self.default_rps);
            let s: Arc<str> = slug.as_str().into();
            map.insert(id, (s.clone(), rps));
            map.insert(slug, (s, rps));
        }
        *self.tenants.write().expect("limits lock") = map;
    }

    pub fn rate_for(&self, tenant: &str) -> u32 {
        self.tenants
            .read()
            .expect("limits lock")
            .get(tenant)
            .map_or(self.default_rps, |t| t.1)
    }

    /// The tenant's slug when the claim (uuid or slug) names a known tenant:
    /// one bucket and one metrics label per tenant however its tokens name it.
    /// A uuid counts however it is spelt (PostgreSQL takes upper case,
    /// braces, no hyphens, hyphens after any group of four digits): else
    /// each spelling of one tenant's uuid would get a bucket of its own.
    pub fn canonical(&self, tenant: &str) -> String {
        let key = uuid_key(tenant);
        let key = key.as_deref().unwrap_or(tenant);
        self.tenants
            .read()
            .expect("limits lock")
            .get(key)
            .map_or_else(|| key.to_string(), |t| t.0.to_string())
    }

    /// The `tenant` label of a request's metrics: the tenant's slug; `unknown`
    /// for a claim no tenant known here matches (validly signed tokens with
    /// made-up claims must not mint series without bound — a tenant created
    /// since the last refresh shows so until `limits-refresh-secs`); `none`
    /// without a claim.
    pub fn label(&self, claim: Option<&str>) -> String {
        let Some(claim) = claim else {
            return "none".to_string();
        };
        let key = uuid_key(claim);
        let key = key.as_deref().unwrap_or(claim);
        self.tenants
            .read()
            .expect("limits lock")
            .get(key)
            .map_or_else(|| "unknown".to_string(), |t| t.0.to_string())
    }

    /// Forget buckets that are full again (idle keys): made-up tenant claims
    /// and idle tenants cost no memory once their bucket has refilled.
    pub fn shed_idle(&self) {
        for l in self.limiters.read().expect("limits lock").values() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in self.anon.read().expect("limits lock").values() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// `Ok` or the time to wait before retrying; `tenant` as [`Limits::canonical`]
    /// gives it (an unknown key has a bucket of its own at the default rate).
    pub fn check(&self, tenant: &str) -> Result<(), Duration> {
        take(&self.limiters, tenant, self.rate_for(tenant))
    }

    /// A request without a tenant (anonymous, or a token without
    /// `tenant_id`): one bucket per role of `rps` requests per second (0 =
    /// unlimited), apart from the tenants' buckets.
    pub fn check_anon(&self, role: &str, rps: u32) -> Result<(), Duration> {
        take(&self.anon, role, rps)
    }
}

/// The lowercase hyphenated form of a uuid in any spelling PostgreSQL's
/// `uuid` input accepts (`{…}`, upper case, hyphens after any group of four
/// hex digits or none); `None` for anything else (a slug).
fn uuid_key(claim: &str) -> Option<String> {
    let inner = claim
        .strip_prefix('{')
        .and_then(|c| c.strip_suffix('}'))
        .unwrap_or(claim);
    let hex: String = inner.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    uuid::Uuid::parse_str(&hex)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// Take one request from `key`'s bucket in the limiter for `rps`.
fn take(limiters: &RwLock<HashMap<u32, Arc<Keyed>>>, key: &str, rps: u32) -> Result<(), Duration> {
    let Some(n) = NonZeroU32::new(rps) else {
        return Ok(());
    };
    let existing = limiters.read().expect("limits lock").get(&rps).cloned();
    let limiter = match existing {
        Some(l) => l,
        None => limiters
            .write()
            .expect("limits lock")
            .entry(rps)
            .or_insert_with(|| Arc::new(RateLimiter::keyed(Quota::per_second(n))))
            .clone(),
    };
    limiter
        .check_key(&key.to_string())
        .map_err(|nu| nu.wait_time_from(governor::clock::Clock::now(limiter.clock())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_per_tenant_and_plan() {
        let l = Limits::new(2, HashMap::from([("pro".to_string(), 5)]));
        l.set_tenants(vec![("u1".into(), "acme".into(), Some("pro".into()), None)]);
        assert_eq!(l.rate_for("acme"), 5);
        assert_eq!(l.rate_for("u1"), 5);
        assert_eq!(l.rate_for("other"), 2);
        assert_eq!(l.canonical("u1"), "acme");
        assert_eq!(l.canonical("acme"), "acme");
        assert_eq!(l.canonical("other"), "other");
        assert!(l.check("other").is_ok());
        assert!(l.check("other").is_ok());
        assert!(l.check("other").is_err());
        // another tenant has its own bucket
        for _ in 0..5 {
            assert!(l.check("acme").is_ok());
        }
        assert!(l.check("acme").is_err());
    }

    #[test]
    fn every_spelling_of_a_uuid_is_one_tenant() {
        let u = "5f58792f-1c2b-4d3e-8f90-a1b2c3d4e5f6";
        let l = Limits::new(2, HashMap::new());
        l.set_tenants(vec![(u.into(), "initech".into(), None, None)]);
        for spelt in [
            u.to_string(),
            u.to_uppercase(),
            u.replace('-', ""),
            format!("{{{u}}}"),
            "5f58-792f-1c2b-4d3e-8f90-a1b2-c3d4-e5f6".to_string(),
        ] {
            assert_eq!(l.canonical(&spelt), "initech", "{spelt}");
        }
        // an unknown uuid: one key for all its spellings; slugs as they are
        let other = "00000000-0000-4000-8000-00000000000A";
        assert_eq!(l.canonical(other), other.to_lowercase());
        assert_eq!(l.canonical(&other.replace('-', "")), other.to_lowercase());
        assert_eq!(l.canonical("acme"), "acme");
        assert_eq!(l.canonical("deadbeef"), "deadbeef");
        // metrics labels: known tenants by slug, any other claim one label
        assert_eq!(l.label(Some(&u.to_uppercase())), "initech");
        assert_eq!(l.label(Some("initech")), "initech");
        assert_eq!(l.label(Some(other)), "unknown");
        assert_eq!(l.label(Some("made-up")), "unknown");
        assert_eq!(l.label(None), "none");
        // idle buckets are shed
        for i in 0..100 {
            let _ = l.check(&format!("claim-{i}"));
        }
        l.shed_idle();
    }

    #[test]
    fn buckets_without_a_tenant_per_role() {
        let l = Limits::new(2, HashMap::new());
        assert!(l.check_anon("web_anon", 2).is_ok());
        assert!(l.check_anon("web_anon", 2).is_ok());
        assert!(l.check_anon("web_anon", 2).is_err());
        // another role, and a tenant of the same name, have their own buckets
        assert!(l.check_anon("viewer", 2).is_ok());
        assert!(l.check("web_anon").is_ok());
        // 0 = unlimited
        for _ in 0..100 {
            assert!(l.check_anon("free", 0).is_ok());
        }
    }
}
