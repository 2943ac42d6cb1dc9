//! End-to-end tests: the real worker under `wrangler dev`, over HTTP. One binary, so one
//! shared worker serves every module here.

mod support;

mod agents;
mod credentials;
mod faults;
mod foundation;
mod identity;
mod lifecycle;
mod proxy;
mod ratelimit;
mod rotation;
mod schemathesis;
mod settings;
mod uploads;
mod verify;
