//! The pure core: every rule of the service, with no `worker` types, no I/O and time
//! passed in. It builds and is unit-tested natively with `cargo test`.

pub mod access;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod beats;
pub mod body;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod ipgate;
pub mod json;
pub mod lease;
pub mod log;
pub mod messages;
pub mod pages;
pub mod presence;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod settings;
pub mod teams;
pub mod time;
pub mod ttl_cache;
pub mod upstream;
pub mod verify;
