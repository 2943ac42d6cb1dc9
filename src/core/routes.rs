//! The route table: which (method, path template) pairs exist. Pure, so the 404/405 rules
//! and the OpenAPI comparison are tested without a runtime.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
}

pub struct RouteSpec {
    pub method: &'static str,
    pub template: &'static str,
    pub route: Route,
}

pub const ROUTES: &[RouteSpec] = &[RouteSpec {
    method: "GET",
    template: "/healthz",
    route: Route::Healthz,
}];

#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: Route,
    pub template: &'static str,
    /// Values of the `{...}` segments, in order.
    pub params: Vec<&'p str>,
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
            Err(RouteError::MethodNotAllowed { allow: vec!["GET"] })
        );
        assert!(match_route("HEAD", "/healthz").is_ok());
    }

    #[test]
    fn templates_capture_non_empty_segments() {
        assert_eq!(match_template("/a/{x}/c", "/a/b/c"), Some(vec!["b"]));
        assert_eq!(match_template("/a/{x}/c", "/a//c"), None);
        assert_eq!(match_template("/a/{x}", "/a/b/c"), None);
    }
}
