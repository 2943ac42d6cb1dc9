//! The team settings page (`/settings`, Workers Static Assets): which asset a path names,
//! and the headers every page response carries. The page itself is `public/settings/`.

use super::config::ConfigError;

/// `frame-ancestors` when `SETTINGS_FRAME_ANCESTORS` is not set: the page is never framed.
pub const DEFAULT_FRAME_ANCESTORS: &str = "'none'";

/// What `GET` of `path` serves from the assets: `/settings` and `/settings/` are the page,
/// `/settings/<file>` is one of its files; any other path is not the page's (`None`).
/// A file name is letters, digits, `-`, `_` and one `.` before its extension, so no path
/// reaches outside `public/settings/`.
pub fn asset_path(path: &str) -> Option<String> {
    match path {
        "/settings" | "/settings/" => Some("/settings/index.html".to_string()),
        _ => {
            let file = path.strip_prefix("/settings/")?;
            let (stem, ext) = file.rsplit_once('.')?;
            let plain = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            (plain(stem) && plain(ext)).then(|| path.to_string())
        }
    }
}

/// Whether `path` belongs to the page at all (so a miss is the page's 404, not the API's).
pub fn is_settings_path(path: &str) -> bool {
    path == "/settings" || path.starts_with("/settings/")
}

/// `SETTINGS_FRAME_ANCESTORS`: the host product's origins that may frame the page, as CSP
/// sources separated by spaces: `'none'` (alone), `'self'`, or `https://host[:port]`
/// (a leading `*.` for subdomains). Anything else is a config error naming the var.
pub fn parse_frame_ancestors(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_FRAME_ANCESTORS.to_string());
    };
    let sources: Vec<&str> = value.split_ascii_whitespace().collect();
    let valid = |s: &str| {
        if s == "'self'" {
            return true;
        }
        let Some(host) = s.strip_prefix("https://") else {
            return false;
        };
        let (host, port) = host.split_once(':').unwrap_or((host, ""));
        let host = host.strip_prefix("*.").unwrap_or(host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        !host.is_empty()
            && host.split('.').all(label_ok)
            && (port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())))
    };
    let none_alone = sources == ["'none'"];
    if none_alone || sources.iter().all(|s| valid(s)) {
        Ok(sources.join(" "))
    } else {
        Err(ConfigError::invalid(
            "SETTINGS_FRAME_ANCESTORS",
            "must be 'none', or CSP sources ('self', https://host[:port]) separated by spaces",
        ))
    }
}

/// The headers of every settings page response. The Content-Security-Policy allows our own
/// scripts, styles and API only: no inline script, no other origin, no plugin, no form
/// posting anywhere, and framing only by `frame_ancestors`.
pub fn security_headers(frame_ancestors: &str) -> [(&'static str, String); 6] {
    [
        (
            "Content-Security-Policy",
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'none'; base-uri 'none'; \
                 frame-ancestors {frame_ancestors}"
            ),
        ),
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("Cross-Origin-Opener-Policy", "same-origin".into()),
        (
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=()".into(),
        ),
        // Revalidated on every load (the assets answer with an ETag), so a deploy's page
        // and its script never mix with a cached older pair.
        ("Cache-Control", "no-cache".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_and_its_plain_files_are_served() {
        assert_eq!(
            asset_path("/settings").as_deref(),
            Some("/settings/index.html")
        );
        assert_eq!(
            asset_path("/settings/").as_deref(),
            Some("/settings/index.html")
        );
        assert_eq!(
            asset_path("/settings/app.js").as_deref(),
            Some("/settings/app.js")
        );
        for refused in [
            "/settings/../wrangler.toml",
            "/settings/a/b.js",
            "/settings/.js",
            "/settings/app",
            "/settings/app.js.",
            "/settings/%2e%2e.js",
            "/settingsx",
            "/api/v1/teams",
        ] {
            assert_eq!(asset_path(refused), None, "{refused}");
        }
        assert!(is_settings_path("/settings/nope") && !is_settings_path("/settingsx"));
        use crate::core::proxy::url_origin;
        assert_eq!(
            url_origin("http://127.0.0.1:8787/settings?x#y"),
            Some("http://127.0.0.1:8787")
        );
        assert_eq!(url_origin("https://a.example"), Some("https://a.example"));
        assert_eq!(url_origin("https:///x"), None);
        assert_eq!(url_origin("/settings"), None);
    }

    #[test]
    fn frame_ancestors_are_csp_sources_or_a_clear_error() {
        assert_eq!(parse_frame_ancestors(None).unwrap(), "'none'");
        assert_eq!(parse_frame_ancestors(Some("  ")).unwrap(), "'none'");
        assert_eq!(
            parse_frame_ancestors(Some(
                "'self'  https://app.example.com https://*.example.org:8443"
            ))
            .unwrap(),
            "'self' https://app.example.com https://*.example.org:8443"
        );
        for bad in [
            "*",
            "http://app.example.com",
            "https://",
            "'none' https://a.example",
            "https://a.example; script-src *",
            "https://a.example/path",
            "'unsafe-inline'",
        ] {
            let e = parse_frame_ancestors(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("SETTINGS_FRAME_ANCESTORS"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_policy_allows_nothing_inline_and_no_other_origin() {
        let headers = security_headers("https://app.example.com");
        let csp = &headers[0].1;
        assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe"));
        assert!(csp.contains("connect-src 'self';"));
        assert!(csp.ends_with("frame-ancestors https://app.example.com"));
        assert!(headers
            .iter()
            .any(|(n, v)| *n == "Referrer-Policy" && v == "no-referrer"));
    }
}
