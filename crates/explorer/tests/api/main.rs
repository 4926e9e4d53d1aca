//! The explorer's API suite. Every test runs twice: on SQLite and on PostgreSQL.

mod common;

mod cockpit;
mod directory;
mod feed;
mod input;
mod notify;
mod openapi;
mod paging;
mod security;
mod workloads;
