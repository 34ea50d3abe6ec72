//! The PostgREST query grammar and SQL building, pure and unit-tested.
//!
//! [`parse`] turns a query string (`select=`, filters, `or=`, `order=`,
//! `limit=` …) into an AST; [`schema`] models what the proxy reads from the
//! catalog (tables, columns, keys, relationships, functions); [`sql`] turns
//! an AST plus a schema into one parameterised statement. Every value a client
//! sends becomes a bind parameter (sent as an untyped text literal, so the
//! server infers its type exactly as PostgREST does) and every identifier is
//! quoted with [`crate::ident::quote_ident`]: no client text ever reaches the
//! SQL text.

pub mod ast;
pub mod claims;
pub mod csv;
pub mod error;
pub mod fuzzy;
pub mod parse;
pub mod payload;
pub mod prefer;
pub mod schema;
pub mod sql;

pub use error::ApiError;
