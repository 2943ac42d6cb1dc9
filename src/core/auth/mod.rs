//! Who is calling: bearer parsing, session JWTs and team API keys.

pub mod api_key;
pub mod bearer;
pub mod jwt;
pub mod session_cache;
pub mod writer_cache;
