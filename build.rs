//! The API description: `openapi.yaml` (the source, at the top of the repository) is
//! converted to JSON twice over: `public/openapi.json`, which the worker serves from its
//! static assets at `GET /openapi.json` (not embedded: it would add ~12 KB to the gzipped
//! wasm), and `OUT_DIR/openapi.json`, which native tests read with `include_str!`.
//! `public/openapi.json` is generated, not committed; it is rewritten only when it differs.

use std::{env, fs, path::Path};

fn main() {
    println!("cargo::rerun-if-changed=openapi.yaml");
    let yaml = fs::read_to_string("openapi.yaml").expect("read openapi.yaml");
    let doc: serde_json::Value = serde_norway::from_str(&yaml)
        .unwrap_or_else(|e| panic!("openapi.yaml is not valid YAML: {e}"));
    assert!(
        doc.get("openapi").and_then(|v| v.as_str()) == Some("3.1.0"),
        "openapi.yaml must be an OpenAPI 3.1.0 document"
    );
    let json = serde_json::to_string(&doc).expect("serialize openapi.json");
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("openapi.json");
    fs::write(out, &json).expect("write openapi.json");
    let served = Path::new("public/openapi.json");
    if fs::read_to_string(served).ok().as_deref() != Some(json.as_str()) {
        fs::write(served, &json).expect("write public/openapi.json");
    }
}
