//! The live-state document: what an exec driver's `observe` command prints and what an
//! agent's `GET /v1/state` answers, `{"services": {"api": {"version", "config", "revision"}}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text::excerpt;
use super::{LiveService, LiveState};

/// The document's shape, for error messages.
pub const SHAPE: &str =
    r#"{"services": {"NAME": {"version": "..", "config": {..}, "revision": ".."}}}"#;

#[derive(Serialize, Deserialize)]
struct Doc {
    services: BTreeMap<String, DocService>,
}

#[derive(Serialize, Deserialize)]
struct DocService {
    version: String,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    revision: String,
}

/// Reads a live-state document. What is wrong is said without quoting JSON of another
/// shape (it may hold config values, secrets among them); what is not JSON at all is quoted
/// in a short excerpt, so the operator sees what came instead (an HTML error page, a
/// shell's complaint).
pub fn parse(text: &str) -> Result<LiveState, String> {
    match serde_json::from_str::<Doc>(text) {
        Ok(doc) => Ok(doc
            .services
            .into_iter()
            .map(|(name, s)| {
                let live = LiveService {
                    version: s.version,
                    config: s.config,
                    revision: s.revision,
                };
                (name, live)
            })
            .collect()),
        Err(e) if serde_json::from_str::<serde_json::Value>(text).is_ok() => {
            Err(format!("JSON that is not live state: {e}"))
        }
        Err(e) => Err(format!(
            "what is not live state ({e}): \"{}\"",
            excerpt(text)
        )),
    }
}

/// The document for `live`.
pub fn render(live: &LiveState) -> serde_json::Value {
    let doc = Doc {
        services: live
            .iter()
            .map(|(name, s)| {
                let service = DocService {
                    version: s.version.clone(),
                    config: s.config.clone(),
                    revision: s.revision.clone(),
                };
                (name.clone(), service)
            })
            .collect(),
    };
    serde_json::to_value(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_document_reads_back_the_same() {
        let mut live = LiveState::new();
        let mut config = toml::Table::new();
        config.insert("replicas".into(), toml::Value::Integer(3));
        live.insert(
            "api".into(),
            LiveService {
                version: "4.2.0".into(),
                config,
                revision: "abc".into(),
            },
        );
        assert_eq!(parse(&render(&live).to_string()).unwrap(), live);
    }

    #[test]
    fn json_of_another_shape_is_not_quoted_and_other_text_is() {
        let wrong = parse(r#"{"password": "hunter2"}"#).unwrap_err();
        assert!(wrong.starts_with("JSON that is not live state"), "{wrong}");
        assert!(!wrong.contains("hunter2"), "{wrong}");
        let html = parse("<html>502 Bad Gateway</html>").unwrap_err();
        assert!(html.contains("\"<html>502 Bad Gateway</html>\""), "{html}");
    }
}
