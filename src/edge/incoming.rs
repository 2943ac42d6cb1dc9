//! The request as the runtime hands it over. worker's `Request` reads the request's `cf`
//! object when it is made, a JS object of some thirty properties: 3% of the CPU of a GET
//! under load, for properties we never read. Only a body read needs worker's type, so it
//! is made there and nowhere else.

use wasm_bindgen::JsValue;
use worker::{
    js_sys::Uint8Array, wasm_bindgen_futures::JsFuture, ByteStream, FromRequest, Headers,
};

use crate::core::proxy::url_path_and_query;

pub struct Incoming {
    raw: web_sys::Request,
    headers: Headers,
    method: String,
    url: String,
    path: String,
}

impl FromRequest for Incoming {
    fn from_raw(
        raw: web_sys::Request,
    ) -> std::result::Result<Self, impl Into<Box<dyn std::error::Error>>> {
        Ok::<Incoming, worker::Error>(Incoming::new(raw))
    }
}

impl Incoming {
    pub fn new(raw: web_sys::Request) -> Incoming {
        let url = raw.url();
        // The runtime hands over a parsed, normalised URL: its path needs no second parser.
        let path = match url_path_and_query(&url).0 {
            "" => "/".to_string(),
            path => path.to_string(),
        };
        Incoming {
            headers: Headers(raw.headers()),
            method: raw.method(),
            raw,
            url,
            path,
        }
    }

    /// The method as sent: worker's `Method` reads any method it does not know (QUERY, ...)
    /// as GET.
    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    pub fn has_body(&self) -> bool {
        self.raw.body().is_some()
    }

    /// The whole body in one read: only for a body whose declared length bounds it
    /// (`core::body::declared_within`). A second read fails, as the body is used.
    pub async fn whole(&self) -> Result<Vec<u8>, JsValue> {
        let buffer = JsFuture::from(self.raw.array_buffer()?).await?;
        Ok(Uint8Array::new(&buffer).to_vec())
    }

    /// The body as a stream of chunks; a second call fails, as the body is locked.
    pub fn stream(&self) -> worker::Result<ByteStream> {
        // `Clone::clone`: the same JS object (web_sys's own `clone` is `Request.clone()`).
        worker::Request::from(Clone::clone(&self.raw)).stream()
    }
}
