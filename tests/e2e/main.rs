//! End-to-end tests: the real worker under `wrangler dev`, over HTTP. One binary, so one
//! shared worker serves every module here.

mod support;

mod credentials;
mod faults;
mod foundation;
mod identity;
mod ratelimit;
mod rotation;
mod schemathesis;
