//! Team API keys as records and as the API shows them.

use super::{
    access::{Actor, Scope},
    auth::api_key::KeyKind,
    body::{required, Fields, FromBody},
    error::ApiError,
    json::{self, Obj, ToJson},
    teams::validate_text,
    time::{parse_rfc3339, rfc3339, UnixMillis},
};

/// `last_used_at` is written at most this often per key, so use is not a D1 write each time.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// An optional field may be left out, but `null` is a wrong type (400), not "absent".
#[derive(Debug)]
pub struct CreateApiKey {
    pub name: String,
    pub kind: String,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<String>,
}

impl FromBody for CreateApiKey {
    const FIELDS: &'static [&'static str] = &["name", "kind", "scopes", "expires_at"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        let name = f.string("name")?;
        let kind = f.string("kind")?;
        let scopes = f.strings("scopes")?;
        let expires_at = f.string("expires_at")?;
        Ok(CreateApiKey {
            name: required("name", name)?,
            kind: required("kind", kind)?,
            scopes,
            expires_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: String,
    pub kind: KeyKind,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<UnixMillis>,
}

impl CreateApiKey {
    pub fn validate(self, now: UnixMillis) -> Result<NewApiKey, ApiError> {
        validate_text("name", &self.name, 100)?;
        let kind = KeyKind::parse(&self.kind)
            .ok_or_else(|| ApiError::invalid_request("`kind` must be secret or device"))?;
        let scopes = match (kind, self.scopes) {
            (KeyKind::Device, Some(_)) => {
                return Err(ApiError::invalid_request(
                    "`scopes` is for secret keys only; device keys are read-only",
                ))
            }
            (KeyKind::Device, None) => vec![Scope::CloudProvidersRead],
            (KeyKind::Secret, None) => Scope::SECRET_DEFAULT.to_vec(),
            (KeyKind::Secret, Some(names)) => {
                let named = names
                    .iter()
                    .map(|n| Scope::parse(n))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        ApiError::invalid_request(
                            "`scopes` may hold cloud_providers:read, cloud_providers:write and cloud_providers:use",
                        )
                    })?;
                // In their order, each once (no sort: its code is 4 KB of wasm per type).
                let scopes: Vec<Scope> = Scope::ALL
                    .into_iter()
                    .filter(|s| named.contains(s))
                    .collect();
                if scopes.is_empty() {
                    return Err(ApiError::invalid_request("`scopes` must not be empty"));
                }
                scopes
            }
        };
        let expires_at = match self.expires_at {
            None => None,
            Some(text) => {
                let at = parse_rfc3339(&text).ok_or_else(|| {
                    ApiError::invalid_request("`expires_at` must be an RFC 3339 timestamp")
                })?;
                if at <= now {
                    return Err(ApiError::invalid_request(
                        "`expires_at` must be in the future",
                    ));
                }
                Some(at)
            }
        };
        Ok(NewApiKey {
            name: self.name,
            kind,
            scopes,
            expires_at,
        })
    }
}

impl NewApiKey {
    /// The record to store for a key; the key itself is never stored, only its hash.
    pub fn into_record(
        self,
        id: String,
        team_id: &str,
        key_preview: String,
        now: UnixMillis,
    ) -> ApiKeyRecord {
        ApiKeyRecord {
            id,
            team_id: team_id.to_string(),
            name: self.name,
            kind: self.kind,
            key_preview,
            scopes: self.scopes,
            created_at: now,
            expires_at: self.expires_at,
            last_used_at: None,
            revoked_at: None,
        }
    }
}

/// A stored key, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub kind: KeyKind,
    pub key_preview: String,
    pub scopes: Vec<Scope>,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub last_used_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

impl ApiKeyRecord {
    pub fn is_usable(&self, now: UnixMillis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }

    pub fn needs_last_used_update(&self, now: UnixMillis) -> bool {
        self.last_used_at
            .is_none_or(|at| now - at >= LAST_USED_RESOLUTION_MS)
    }

    pub fn actor(&self) -> Actor {
        Actor::Key {
            key_id: self.id.clone(),
            team_id: self.team_id.clone(),
            kind: self.kind,
            scopes: self.scopes.clone(),
        }
    }

    /// `key` is `Some` only in the response that creates the key.
    /// `key` is `Some` only in the response that creates the key.
    pub fn view<'a>(&'a self, key: Option<&'a str>) -> ApiKeyView<'a> {
        ApiKeyView { record: self, key }
    }
}

/// A key as the API shows it; `key` (the secret) is left out when `None`.
pub struct ApiKeyView<'a> {
    record: &'a ApiKeyRecord,
    key: Option<&'a str>,
}

impl ToJson for ApiKeyView<'_> {
    fn to_json(&self) -> String {
        let (r, key) = (self.record, self.key);
        let mut o = Obj::new()
            .str("id", &r.id)
            .str("name", &r.name)
            .str("kind", r.kind.as_str());
        if let Some(key) = key {
            o = o.str("key", key);
        }
        let scopes = json::array(&r.scopes, |out, s| json::quote(out, s.as_str()));
        let at = |t: Option<UnixMillis>| t.map(rfc3339);
        o.str("key_preview", &r.key_preview)
            .raw("scopes", &scopes)
            .str("created_at", &rfc3339(r.created_at))
            .opt_str("expires_at", at(r.expires_at).as_deref())
            .opt_str("last_used_at", at(r.last_used_at).as_deref())
            .opt_str("revoked_at", at(r.revoked_at).as_deref())
            .done()
    }
}

/// Scopes as stored in D1: space-separated names.
pub fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn scopes_from_text(text: &str) -> Vec<Scope> {
    text.split_whitespace().filter_map(Scope::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000_000;

    fn create(json: serde_json::Value) -> Result<NewApiKey, ApiError> {
        crate::core::body::parse::<CreateApiKey>(json.to_string().as_bytes())?.validate(NOW)
    }

    #[test]
    fn secret_keys_default_to_both_scopes_and_devices_read_only() {
        let k = create(serde_json::json!({"name": "ci", "kind": "secret"})).unwrap();
        assert_eq!(k.scopes, Scope::SECRET_DEFAULT.to_vec());
        let d = create(serde_json::json!({"name": "gpu-box", "kind": "device"})).unwrap();
        assert_eq!(d.scopes, vec![Scope::CloudProvidersRead]);
        let r = create(serde_json::json!({"name": "r", "kind": "secret", "scopes": ["cloud_providers:read", "cloud_providers:read"]})).unwrap();
        assert_eq!(r.scopes, vec![Scope::CloudProvidersRead]);
    }

    #[test]
    fn invalid_requests_are_400() {
        for body in [
            serde_json::json!({"name": "x", "kind": "root"}),
            serde_json::json!({"name": "", "kind": "secret"}),
            serde_json::json!({"name": "x", "kind": "device", "scopes": ["cloud_providers:read"]}),
            serde_json::json!({"name": "x", "kind": "secret", "scopes": []}),
            serde_json::json!({"name": "x", "kind": "secret", "scopes": ["admin"]}),
            serde_json::json!({"name": "x", "kind": "secret", "expires_at": "2020-01-01T00:00:00Z"}),
            serde_json::json!({"name": "x", "kind": "secret", "expires_at": "soon"}),
            serde_json::json!({"name": "x", "kind": "secret", "expires_at": null}),
            serde_json::json!({"name": "x", "kind": "secret", "scopes": null}),
        ] {
            assert_eq!(create(body.clone()).unwrap_err().status(), 400, "{body}");
        }
    }

    #[test]
    fn usability_and_last_used_throttling() {
        let mut k = ApiKeyRecord {
            id: "k".into(),
            team_id: "t".into(),
            name: "n".into(),
            kind: KeyKind::Secret,
            key_preview: "sk-abcde...wxyz".into(),
            scopes: Scope::SECRET_DEFAULT.to_vec(),
            created_at: NOW,
            expires_at: Some(NOW + 1_000),
            last_used_at: None,
            revoked_at: None,
        };
        assert!(k.is_usable(NOW + 999));
        assert!(!k.is_usable(NOW + 1_000), "expired at its expiry instant");
        assert!(k.needs_last_used_update(NOW));
        k.last_used_at = Some(NOW);
        assert!(!k.needs_last_used_update(NOW + 59_999));
        assert!(k.needs_last_used_update(NOW + 60_000));
        k.revoked_at = Some(NOW);
        assert!(!k.is_usable(NOW));
        let view = serde_json::from_str::<serde_json::Value>(&k.view(None).to_json()).unwrap();
        assert!(view.get("key").is_none());
        let created = k.view(Some("sk-new")).to_json();
        let created = serde_json::from_str::<serde_json::Value>(&created).unwrap();
        assert_eq!(created["key"], "sk-new");
        assert_eq!(created["revoked_at"], view["revoked_at"]);
        assert_eq!(
            view["scopes"],
            serde_json::json!(["cloud_providers:read", "cloud_providers:write"])
        );
    }

    #[test]
    fn scopes_round_trip_through_text() {
        assert_eq!(
            scopes_from_text(&scopes_to_text(&Scope::ALL)),
            Scope::ALL.to_vec()
        );
    }
}
