//! Pure logic of pg_tenancy, with no PostgreSQL dependency.
//!
//! Everything that is hard to get right and can be tested without a database
//! lives here: identifier quoting, tenant slug rules, the row-level-security
//! policy generator and the audit-log hash chain. The pgrx extension is thin
//! glue that reads catalog facts, calls into this crate and runs the result.

pub mod audit;
pub mod conninfo;
pub mod fkgraph;
pub mod ident;
pub mod jobs;
pub mod policy;
pub mod postgrest;
pub mod slug;
