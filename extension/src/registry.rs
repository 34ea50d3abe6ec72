//! Tenant registry helpers written in Rust (the registry functions themselves
//! are SQL in `sql/registry.sql`).

use pgrx::prelude::*;

/// Why `slug` is not a valid tenant slug, or NULL when it is valid.
///
/// ```sql
/// SELECT tenancy.slug_problem('Acme!');  -- 'may contain only lowercase letters a-z, digits and hyphens, not ''A'''
/// ```
#[pg_extern(immutable, parallel_safe, strict)]
pub fn slug_problem(slug: &str) -> Option<String> {
    tenancy_core::slug::validate(slug)
        .err()
        .map(|e| e.to_string())
}
