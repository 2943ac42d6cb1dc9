//! Embeds the API description: `openapi.yaml` (the source, at the top of the repository) is
//! converted to JSON in `OUT_DIR`, which `GET /openapi.json` serves with `include_str!`.

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
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("openapi.json");
    fs::write(
        out,
        serde_json::to_string(&doc).expect("serialize openapi.json"),
    )
    .expect("write openapi.json");
}
