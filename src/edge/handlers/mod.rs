//! One function per route: authenticate, authorize, validate, call the repository, shape
//! the response. The rules themselves live in `core`.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod credentials;
pub mod health;
pub mod openapi;
pub mod teams;
