//! The cloud providers a team can keep a key for. Adding one is adding an entry here.

#[derive(Debug, PartialEq, Eq)]
pub struct Provider {
    /// The path segment: `/api/v1/cloud-providers/{slug}`.
    pub slug: &'static str,
    /// `provider_name` in responses, and the name stored in D1.
    pub name: &'static str,
}

pub const PROVIDERS: &[Provider] = &[Provider {
    slug: "comfy-cloud",
    name: "comfy_cloud",
}];

pub fn by_slug(slug: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.slug == slug)
}

pub fn by_name(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfy_cloud_is_known_and_nothing_else() {
        assert_eq!(by_slug("comfy-cloud").unwrap().name, "comfy_cloud");
        assert_eq!(by_name("comfy_cloud").unwrap().slug, "comfy-cloud");
        assert!(by_slug("comfy_cloud").is_none());
        assert!(by_slug("aws").is_none());
    }
}
