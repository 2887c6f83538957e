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

/// Prefix of a sealed value, `sealed:sha256:SALT:DIGEST`: the SHA-256 of a fresh salt and
/// the value, so equal secrets can still be compared (seal the other with the same salt)
/// but no table of digests made in advance finds them.
const SEALED: &str = "sealed:sha256:";

/// Whether the dotted `path` of a service's config is secret under `named` (the service's
/// `secret_keys`).
pub fn is_secret(named: &[String], path: &str) -> bool {
    // Without allocating: every key of every environment's render is asked.
    let by_default = path.split('.').any(|s| {
        DEFAULT_PATTERNS.iter().any(|p| {
            s.as_bytes()
                .windows(p.len())
                .any(|w| w.eq_ignore_ascii_case(p.as_bytes()))
        })
    });
    // A named key hides what is under it too.
    by_default || crate::keypath::any_covers(named, path)
}

/// The dotted paths of `config` that are secret (the topmost of each secret subtree).
pub fn paths(named: &[String], config: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    walk(named, &mut String::new(), config, &mut out);
    out
}

/// Walks `table` under the dotted `path` (one buffer for the whole walk: a copy is made
/// only of the paths found secret).
fn walk(named: &[String], path: &mut String, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let at = path.len();
        if at > 0 {
            path.push('.');
        }
        path.push_str(k);
        if is_secret(named, path) {
            out.push(path.clone());
        } else if let toml::Value::Table(t) = v {
            walk(named, path, t, out);
        }
        path.truncate(at);
    }
}

/// The value at dotted `path` of `config`, if there is one.
pub fn value_at<'a>(config: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut segments = path.split('.');
    let mut value = config.get(segments.next()?)?;
    for segment in segments {
        value = value.as_table()?.get(segment)?;
    }
    Some(value)
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A salt no other seal uses: unique, not secret.
fn fresh_salt() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!(
        "{now}:{}:{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex(&Sha256::digest(seed.as_bytes())[..8])
}

fn sealed_with(salt: &str, value: &toml::Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let digest = Sha256::digest(format!("{salt}:{text}").as_bytes());
    format!("{SEALED}{salt}:{}", hex(&digest))
}

/// The salt of a sealed value, if it is one.
fn salt_of(value: &toml::Value) -> Option<&str> {
    let rest = value.as_str()?.strip_prefix(SEALED)?;
    rest.split_once(':').map(|(salt, _)| salt)
}

/// A value as stored: sealed with a fresh salt (a sealed value stays as it is).
pub fn seal_value(value: &toml::Value) -> toml::Value {
    if salt_of(value).is_some() {
        return value.clone();
    }
    toml::Value::String(sealed_with(&fresh_salt(), value))
}

/// Whether two values are the same secret, either of them (or both) sealed.
pub fn same_secret(a: &toml::Value, b: &toml::Value) -> bool {
    match (salt_of(a), salt_of(b)) {
        (Some(_), Some(_)) | (None, None) => a == b,
        (Some(salt), None) => a.as_str() == Some(&sealed_with(salt, b)),
        (None, Some(salt)) => b.as_str() == Some(&sealed_with(salt, a)),
    }
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
    let masked_desired = replace(desired, secret, &|path, v| {
        let same = value_at(live, path).is_some_and(|l| same_secret(l, v));
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
        // Found at any depth, by the whole dotted path, any case.
        let nested = table("[a.b]\nmy_Secret = 1\nx = 2\n[a.c]\ny = 3\n");
        assert_eq!(paths(&[], &nested), ["a.b.my_Secret"]);
        assert_eq!(
            paths(&["a.c".to_string()], &nested),
            ["a.b.my_Secret", "a.c"]
        );
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
        // Salted: sealed again it reads differently, and is still the same secret.
        let again = seal(&desired, &secret);
        assert_ne!(again, stored);
        for sealed in [&again, &stored] {
            assert!(same_secret(&sealed["db_password"], &desired["db_password"]));
            assert!(!same_secret(
                &sealed["db_password"],
                &toml::Value::String("hunter3".into())
            ));
        }
        let (l, d) = mask_pair(&stored, &desired, &secret);
        assert_eq!(l, d, "the same secret is no difference");
        let changed = table("db_password = \"hunter3\"\n");
        let (l, d) = mask_pair(&stored, &changed, &secret);
        assert_ne!(l, d);
        assert_eq!(d["db_password"].as_str(), Some(MASK_CHANGED));
    }
}
