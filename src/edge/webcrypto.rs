//! Signatures of `JWT_JWKS` keys, checked by the runtime's WebCrypto (`crypto.subtle`).
//! The core decides everything else about a token (`core/auth/jwt.rs`: the header's rules,
//! which key, the signature's length, the claims); this only answers whether the signature
//! holds. The curve and RSA arithmetic stays in the runtime, out of the wasm.

use std::{cell::RefCell, collections::HashMap};

use js_sys::{Array, Object, Promise, Reflect, Uint8Array, JSON};
use wasm_bindgen::{prelude::*, JsCast};
use worker::wasm_bindgen_futures::JsFuture;

use crate::core::auth::jwt::{KeyAlg, PublicKey};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = importKey)]
    fn import_key(
        format: &str,
        key: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = verify)]
    fn subtle_verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
}

/// Keys this isolate imported, by their public JWK: one per configured key.
const MAX_IMPORTED: usize = 64;

thread_local! {
    static IMPORTED: RefCell<HashMap<String, JsValue>> = RefCell::new(HashMap::new());
}

/// WebCrypto's algorithm objects for a key: `importKey`'s, then `verify`'s.
fn algorithms(alg: KeyAlg) -> (JsValue, JsValue) {
    let object = |members: &[(&str, &str)]| {
        let o = Object::new();
        for (name, value) in members {
            let _ = Reflect::set(&o, &(*name).into(), &(*value).into());
        }
        JsValue::from(o)
    };
    match alg {
        KeyAlg::Es256 => (
            object(&[("name", "ECDSA"), ("namedCurve", "P-256")]),
            object(&[("name", "ECDSA"), ("hash", "SHA-256")]),
        ),
        KeyAlg::EdDsa => (
            object(&[("name", "Ed25519")]),
            object(&[("name", "Ed25519")]),
        ),
        KeyAlg::Rs256 => (
            object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")]),
            object(&[("name", "RSASSA-PKCS1-v1_5")]),
        ),
    }
}

async fn imported(key: &PublicKey) -> Result<JsValue, JsValue> {
    if let Some(k) = IMPORTED.with(|keys| keys.borrow().get(&key.jwk).cloned()) {
        return Ok(k);
    }
    let jwk = JSON::parse(&key.jwk)?;
    let usages = Array::of1(&"verify".into());
    let promise = import_key("jwk", &jwk, &algorithms(key.alg).0, false, &usages)?;
    let crypto_key = JsFuture::from(promise).await?;
    IMPORTED.with(|keys| {
        let mut keys = keys.borrow_mut();
        if keys.len() >= MAX_IMPORTED {
            keys.clear();
        }
        keys.insert(key.jwk.clone(), crypto_key.clone());
    });
    Ok(crypto_key)
}

/// Whether `signature` over `message` holds for `key`. A key WebCrypto refuses to import
/// verifies nothing, and the log says so (the key is public; nothing secret is logged).
pub async fn verify(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    let checked = async {
        let crypto_key = imported(key).await?;
        let promise = subtle_verify(
            &algorithms(key.alg).1,
            &crypto_key,
            &Uint8Array::from(signature),
            &Uint8Array::from(message),
        )?;
        JsFuture::from(promise).await
    }
    .await;
    match checked {
        Ok(valid) => valid.as_bool() == Some(true),
        Err(e) => {
            worker::console_error!(
                "{}",
                crate::core::json::Obj::new()
                    .str("error", "WebCrypto could not check a JWT_JWKS signature")
                    .str("alg", key.alg.name())
                    .opt_str(
                        "detail",
                        e.dyn_ref::<js_sys::Error>()
                            .map(|e| String::from(e.message()))
                            .as_deref(),
                    )
                    .done()
            );
            false
        }
    }
}
