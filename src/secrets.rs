//! Config keys that hold secrets: which they are, how they are shown (masked) and how they
//! are kept where flotilla stores config (sealed: a digest, never the value).
//!
//! A key is secret when a service's `secret_keys` names it (dotted paths within the
//! service's config, `*` for one segment) or when any segment of its path contains
//! `password`, `token` or `secret` (any case). A secret table hides everything under it.

use sha2::{Digest, Sha256};

/// Segments containing one of these are secret without being named.
const DEFAULT_PATTERNS: [&str; 3] = ["password", "token", "secret"];

/// What a masked value shows.
pub const MASK: &str = "<secret>";

/// What a masked value shows where it differs from the other side of a comparison.
pub const MASK_CHANGED: &str = "<secret, changed>";

/// Prefix of a sealed value: the value's SHA-256, so equal secrets still compare equal.
const SEALED: &str = "sealed:sha256:";

/// Whether the dotted `path` of a service's config is secret under `named` (the service's
/// `secret_keys`).
pub fn is_secret(named: &[String], path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    let by_default = segments.iter().any(|s| {
        let s = s.to_ascii_lowercase();
        DEFAULT_PATTERNS.iter().any(|p| s.contains(p))
    });
    by_default
        || named.iter().any(|pattern| {
            let parts: Vec<&str> = pattern.split('.').collect();
            // A named key hides what is under it too.
            parts.len() <= segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| *p == "*" || p == s)
        })
}

/// The dotted paths of `config` that are secret (the topmost of each secret subtree).
pub fn paths(named: &[String], config: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    walk(named, "", config, &mut out);
    out
}

fn walk(named: &[String], prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if is_secret(named, &path) {
            out.push(path);
        } else if let toml::Value::Table(t) = v {
            walk(named, &path, t, out);
        }
    }
}

/// `config` with the values at `secret` paths replaced by what `with` makes of them.
fn replace(
    config: &toml::Table,
    secret: &[String],
    with: &dyn Fn(&str, &toml::Value) -> toml::Value,
) -> toml::Table {
    let mut out = config.clone();
    for path in secret {
        let mut table = &mut out;
        let mut segments = path.split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                if let Some(v) = table.get_mut(segment) {
                    *v = with(path, v);
                }
                break;
            }
            match table.get_mut(segment) {
                Some(toml::Value::Table(t)) => table = t,
                _ => break,
            }
        }
    }
    out
}

/// `config` as shown: every secret value masked.
pub fn mask(config: &toml::Table, secret: &[String]) -> toml::Table {
    replace(config, secret, &|_, _| toml::Value::String(MASK.into()))
}

/// A value as stored: its digest (a sealed value stays as it is).
pub fn seal_value(value: &toml::Value) -> toml::Value {
    if let toml::Value::String(s) = value {
        if s.starts_with(SEALED) {
            return value.clone();
        }
    }
    let text = serde_json::to_string(value).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    toml::Value::String(format!("{SEALED}{hex}"))
}

/// `config` as stored: every secret value sealed.
pub fn seal(config: &toml::Table, secret: &[String]) -> toml::Table {
    replace(config, secret, &|_, v| seal_value(v))
}

/// Two configs (live, desired) as shown side by side: secrets masked, and marked changed
/// where they differ (a sealed value equals the value it seals), so a diff shows that a
/// secret changed without showing it. `secret` are the desired state's secret paths; keys
/// only live has are masked when named like a secret.
pub fn mask_pair(
    live: &toml::Table,
    desired: &toml::Table,
    secret: &[String],
) -> (toml::Table, toml::Table) {
    let mut secret = secret.to_vec();
    for path in paths(&[], live) {
        if !secret.contains(&path) {
            secret.push(path);
        }
    }
    let secret = &secret[..];
    let at = |config: &toml::Table, path: &str| -> Option<toml::Value> {
        let mut value = toml::Value::Table(config.clone());
        for segment in path.split('.') {
            value = value.as_table()?.get(segment)?.clone();
        }
        Some(value)
    };
    let masked_desired = replace(desired, secret, &|path, v| {
        let same = at(live, path).is_some_and(|l| seal_value(&l) == seal_value(v));
        toml::Value::String(if same { MASK } else { MASK_CHANGED }.into())
    });
    (mask(live, secret), masked_desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn default_patterns_and_named_keys_are_secret() {
        let named = vec!["dsn".to_string(), "vault.*".to_string()];
        assert!(is_secret(&[], "db_password"));
        assert!(is_secret(&[], "auth.API_TOKEN"));
        assert!(is_secret(&[], "client_secret"));
        assert!(is_secret(&named, "dsn"));
        assert!(is_secret(&named, "vault.role"));
        assert!(!is_secret(&named, "vault"));
        assert!(!is_secret(&named, "replicas"));
    }

    #[test]
    fn masking_hides_values_and_keeps_the_rest() {
        let config = table("replicas = 2\ndb_password = \"hunter2\"\n[auth]\ntoken = \"t0k\"\n");
        let secret = paths(&[], &config);
        assert_eq!(secret, ["auth.token", "db_password"]);
        let shown = toml::to_string(&mask(&config, &secret)).unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains("t0k"),
            "{shown}"
        );
        assert!(shown.contains("replicas = 2"), "{shown}");
    }

    #[test]
    fn a_sealed_value_compares_equal_to_what_it_seals_and_shows_nothing() {
        let desired = table("db_password = \"hunter2\"\n");
        let secret = paths(&[], &desired);
        let stored = seal(&desired, &secret);
        let text = toml::to_string(&stored).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            seal(&stored, &secret),
            stored,
            "sealing twice changes nothing"
        );
        let (l, d) = mask_pair(&stored, &desired, &secret);
        assert_eq!(l, d, "the same secret is no difference");
        let changed = table("db_password = \"hunter3\"\n");
        let (l, d) = mask_pair(&stored, &changed, &secret);
        assert_ne!(l, d);
        assert_eq!(d["db_password"].as_str(), Some(MASK_CHANGED));
    }
}
