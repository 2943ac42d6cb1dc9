//! The route table: which (method, path template) pairs exist. Pure, so the 404/405 rules
//! and the OpenAPI comparison are tested without a runtime.

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    OpenApi,
    CreateTeam,
    ListTeams,
    GetTeam,
    RenameTeam,
    DeleteTeam,
    ListMembers,
    SetMember,
    RemoveMember,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    ListCredentials,
    PutCredential,
    GetCredential,
    PatchCredential,
    DeleteCredential,
    VerifyCredential,
    ListAuditEvents,
    AgentHeartbeat,
    ListAgents,
    RouteTask,
}

impl Route {
    /// Whether a JWT caller must name the team in `X-Team-ID`.
    pub fn team_scoped(self) -> bool {
        !matches!(
            self,
            Route::Healthz
                | Route::OpenApi
                | Route::CreateTeam
                | Route::ListTeams
                // A device key carries its team; any other caller is refused (403).
                | Route::AgentHeartbeat
        )
    }

    pub fn authenticated(self) -> bool {
        !matches!(self, Route::Healthz | Route::OpenApi)
    }
}

pub struct RouteSpec {
    pub method: &'static str,
    pub template: &'static str,
    pub route: Route,
}

macro_rules! routes {
    ($($method:literal $template:literal => $route:ident,)*) => {
        pub const ROUTES: &[RouteSpec] = &[$(RouteSpec {
            method: $method,
            template: $template,
            route: Route::$route,
        },)*];
    };
}

routes! {
    "GET" "/healthz" => Healthz,
    "GET" "/openapi.json" => OpenApi,
    "POST" "/api/v1/teams" => CreateTeam,
    "GET" "/api/v1/teams" => ListTeams,
    "GET" "/api/v1/team" => GetTeam,
    "PATCH" "/api/v1/team" => RenameTeam,
    "DELETE" "/api/v1/team" => DeleteTeam,
    "GET" "/api/v1/team/members" => ListMembers,
    "PUT" "/api/v1/team/members/{user_id}" => SetMember,
    "DELETE" "/api/v1/team/members/{user_id}" => RemoveMember,
    "POST" "/api/v1/api-keys" => CreateApiKey,
    "GET" "/api/v1/api-keys" => ListApiKeys,
    "DELETE" "/api/v1/api-keys/{id}" => RevokeApiKey,
    "GET" "/api/v1/cloud-providers" => ListCredentials,
    "PUT" "/api/v1/cloud-providers/{provider}" => PutCredential,
    "GET" "/api/v1/cloud-providers/{provider}" => GetCredential,
    "PATCH" "/api/v1/cloud-providers/{provider}" => PatchCredential,
    "DELETE" "/api/v1/cloud-providers/{provider}" => DeleteCredential,
    "POST" "/api/v1/cloud-providers/{provider}/verify" => VerifyCredential,
    "GET" "/api/v1/audit-events" => ListAuditEvents,
    "POST" "/api/v1/agents/heartbeat" => AgentHeartbeat,
    "GET" "/api/v1/agents" => ListAgents,
    "POST" "/api/v1/tasks/route" => RouteTask,
}

/// `openapi.yaml` as JSON, converted by `build.rs`, for native tests: the worker serves the
/// same text from its assets (`public/openapi.json`), so the wasm does not carry it. Every
/// (method, path) of [`ROUTES`] is in it and nothing else (`tests/openapi.rs`).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: Route,
    pub template: &'static str,
    /// Values of the `{...}` segments, in order, still percent-encoded.
    pub params: Vec<&'p str>,
}

impl Matched<'_> {
    /// The first path parameter, percent-decoded; 404 when it does not decode to UTF-8.
    pub fn param(&self) -> Result<String, ApiError> {
        self.params
            .first()
            .and_then(|raw| percent_decode(raw))
            .ok_or_else(|| ApiError::not_found("No such resource"))
    }
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The query of a request URL as `application/x-www-form-urlencoded` pairs, decoded the
/// way browsers and the `url` crate do (`+` is a space, a broken escape stays as written,
/// invalid UTF-8 becomes U+FFFD), without linking a whole URL parser into the worker.
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists with other methods; `allow` lists them for the `Allow` header.
    MethodNotAllowed {
        allow: Vec<&'static str>,
    },
}

pub fn match_route<'p>(method: &str, path: &'p str) -> Result<Matched<'p>, RouteError> {
    let mut allow = Vec::new();
    for spec in ROUTES {
        let Some(params) = match_template(spec.template, path) else {
            continue;
        };
        if spec.method == method || (method == "HEAD" && spec.method == "GET") {
            return Ok(Matched {
                route: spec.route,
                template: spec.template,
                params,
            });
        }
        allow.push(spec.method);
    }
    if allow.is_empty() {
        Err(RouteError::NotFound)
    } else {
        // HEAD is served wherever GET is (RFC 9110 §9.3.2), so `Allow` names it too.
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        Err(RouteError::MethodNotAllowed { allow })
    }
}

fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params.push(g);
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exact_paths_only() {
        assert_eq!(
            match_route("GET", "/healthz").unwrap().route,
            Route::Healthz
        );
        assert_eq!(match_route("GET", "/healthz/"), Err(RouteError::NotFound));
        assert_eq!(match_route("GET", "/nope"), Err(RouteError::NotFound));
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        assert_eq!(
            match_route("POST", "/healthz"),
            Err(RouteError::MethodNotAllowed {
                allow: vec!["GET", "HEAD"]
            })
        );
        assert!(match_route("HEAD", "/healthz").is_ok());
        // Methods the route table does not know are 405 too, never read as another method.
        assert_eq!(
            match_route("QUERY", "/api/v1/teams"),
            Err(RouteError::MethodNotAllowed {
                allow: vec!["POST", "GET", "HEAD"]
            })
        );
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let m = match_route("DELETE", "/api/v1/team/members/auth0%7C42").unwrap();
        assert_eq!(
            (m.route, m.param().unwrap()),
            (Route::RemoveMember, "auth0|42".to_string())
        );
        let bad = match_route("DELETE", "/api/v1/team/members/%ff").unwrap();
        assert_eq!(bad.param().unwrap_err().status(), 404);
        assert!(percent_decode("%4").is_none());
    }

    #[test]
    fn templates_capture_non_empty_segments() {
        assert_eq!(match_template("/a/{x}/c", "/a/b/c"), Some(vec!["b"]));
        assert_eq!(match_template("/a/{x}/c", "/a//c"), None);
        assert_eq!(match_template("/a/{x}", "/a/b/c"), None);
    }

    #[test]
    fn query_pairs_decode_like_a_form() {
        let pairs = |url| query_pairs(url);
        assert_eq!(
            pairs("https://h/p?limit=2&cursor=01%2Dab+c&&flag#frag"),
            vec![
                ("limit".into(), "2".into()),
                ("cursor".into(), "01-ab c".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(pairs("https://h/p"), vec![]);
        assert_eq!(
            pairs("https://h/p?a=%zz%4"),
            vec![("a".into(), "%zz%4".into())]
        );
        assert_eq!(
            pairs("https://h/p?a=%ff"),
            vec![("a".into(), "\u{fffd}".into())]
        );
        assert_eq!(pairs("https://h/p?a=b=c"), vec![("a".into(), "b=c".into())]);
    }
}
