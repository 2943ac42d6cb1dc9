//! The served API description against the route table: every (method, path) in `ROUTES` is
//! an operation of `openapi.yaml` (as converted by build.rs), and every operation is a route.

use std::collections::BTreeSet;

use edge_credentials::core::{
    proxy::{DOCUMENTED_METHODS, PATH_MOUNT_ROUTE},
    routes::{match_route, Route, OPENAPI_JSON, ROUTES},
};
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("the converted openapi.json parses")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for (key, _) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                ops.insert((key.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn document_and_route_table_list_the_same_operations() {
    let doc = doc();
    let documented = operations(&doc);
    let mut routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_string()))
        .collect();
    let proxied: BTreeSet<(String, String)> = DOCUMENTED_METHODS
        .iter()
        .map(|m| (m.to_string(), PATH_MOUNT_ROUTE.to_string()))
        .collect();
    routed.extend(proxied.iter().cloned());
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}\n\
         operations in openapi.yaml with no route: {unrouted:?}"
    );
    assert_eq!(
        routed.len(),
        ROUTES.len() + proxied.len(),
        "ROUTES repeats an operation"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let id = op["operationId"]
                .as_str()
                .expect("every operation has an id");
            assert!(ids.insert(id.to_string()), "operationId {id} repeats");
        }
    }
}

/// Open routes declare no security, and every authenticated one declares 401; every
/// operation documents the rate limiter's 429 and the 503 it can give.
#[test]
fn security_and_limiter_responses_match_the_routes() {
    let doc = doc();
    for spec in ROUTES {
        let op = &doc["paths"][spec.template][spec.method.to_ascii_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        let label = format!("{} {}", spec.method, spec.template);
        for status in ["429", "503"] {
            assert!(responses.contains_key(status), "{label} lacks {status}");
        }
        let security = op["security"].as_array().expect("explicit security");
        if spec.route.authenticated() {
            assert!(!security.is_empty(), "{label} is authenticated");
            assert!(responses.contains_key("401"), "{label} lacks 401");
        } else {
            assert!(security.is_empty(), "{label} is open");
        }
        let team_header = op["parameters"].as_array().is_some_and(|params| {
            params
                .iter()
                .any(|p| p["$ref"] == "#/components/parameters/TeamId")
        });
        assert_eq!(
            team_header,
            spec.route.team_scoped(),
            "{label}: X-Team-ID is declared exactly on team-scoped operations"
        );
    }
    let served = match_route("GET", "/openapi.json").expect("GET /openapi.json is routed");
    assert_eq!(served.route, Route::OpenApi);
}

/// The audit `action` filter accepts exactly the actions the document lists, in the
/// parameter and in the event schema alike.
#[test]
fn audit_actions_match_the_document() {
    let doc = doc();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("an enum")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let ours: Vec<String> = edge_credentials::core::audit::ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    let in_schema =
        strings(&doc["components"]["schemas"]["AuditEvent"]["properties"]["action"]["enum"]);
    assert_eq!(in_schema, ours);
    let parameter = doc["paths"]["/api/v1/audit-events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "action")
        .expect("the action parameter");
    assert_eq!(strings(&parameter["schema"]["enum"]), ours);
}
