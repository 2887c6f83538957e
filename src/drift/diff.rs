//! Drift: how an environment's live state (from the driver's observe) differs from what Git
//! says it should run. Comparing is a pure function; the console and `flotilla drift` show
//! its result as a unified diff.

use similar::{ChangeTag, TextDiff};

use crate::drivers::LiveState;
use crate::intent::layers::Desired;

/// One line of a unified diff of a service's config, live (`-`) against desired (`+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    /// `@@ ... @@`: where a hunk starts.
    Hunk(String),
    Same(String),
    /// Only in the desired state: what applying would add.
    Desired(String),
    /// Only in the live state: what applying would remove.
    Live(String),
}

/// One service's comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDrift {
    pub service: String,
    pub desired_version: String,
    /// None when the service is not running there at all.
    pub live_version: Option<String>,
    /// Empty when the configs are equal.
    pub diff: Vec<DiffLine>,
}

impl ServiceDrift {
    /// Whether live differs from desired at all.
    pub fn drifted(&self) -> bool {
        self.live_version.as_deref() != Some(self.desired_version.as_str()) || !self.diff.is_empty()
    }
}

/// Compares every desired service with what runs live, in service name order.
pub fn compare(desired: &Desired, live: &LiveState) -> Vec<ServiceDrift> {
    desired
        .services
        .iter()
        .map(|(name, want)| {
            let have = live.get(name);
            // Secrets are compared, never shown: equal ones look equal, changed ones say so.
            let empty = toml::Table::new();
            let (have_config, want_config) = crate::secrets::mask_pair(
                have.map_or(&empty, |h| &h.config),
                &want.config,
                &want.secrets,
            );
            let want_text = config_text(&want_config);
            let have_text = have.map(|_| config_text(&have_config)).unwrap_or_default();
            ServiceDrift {
                service: name.clone(),
                desired_version: want.version.clone(),
                live_version: have.map(|h| h.version.clone()),
                diff: unified(&have_text, &want_text),
            }
        })
        .collect()
}

/// A unified diff of two configs of one service, `old` (`-`, [`DiffLine::Live`]) to `new`
/// (`+`, [`DiffLine::Desired`]), with secrets masked (marked changed where they differ).
pub fn config_diff(old: &toml::Table, new: &toml::Table, secrets: &[String]) -> Vec<DiffLine> {
    let (old, new) = crate::secrets::mask_pair(old, new, secrets);
    unified(&config_text(&old), &config_text(&new))
}

fn config_text(config: &toml::Table) -> String {
    // toml's Table is ordered by key, so equal configs give equal text.
    toml::to_string(config).unwrap_or_else(|e| format!("# cannot show this config: {e}\n"))
}

/// A unified diff with three lines of context; empty when the texts are equal.
fn unified(live: &str, desired: &str) -> Vec<DiffLine> {
    let diff = TextDiff::from_lines(live, desired);
    let mut out = Vec::new();
    for group in diff.grouped_ops(3) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        out.push(DiffLine::Hunk(format!(
            "@@ -{},{} +{},{} @@",
            old.start + 1,
            old.len(),
            new.start + 1,
            new.len()
        )));
        for op in &group {
            for change in diff.iter_changes(op) {
                let text = change.value().trim_end_matches('\n').to_string();
                out.push(match change.tag() {
                    ChangeTag::Equal => DiffLine::Same(text),
                    ChangeTag::Insert => DiffLine::Desired(text),
                    ChangeTag::Delete => DiffLine::Live(text),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::LiveService;
    use crate::intent::layers::DesiredService;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    /// Environment `e` to run api 2.0 with `config`, `secrets` its secret keys.
    fn desired(config: toml::Table, secrets: Vec<String>) -> Desired {
        Desired {
            env: "e".into(),
            release: "r".into(),
            services: [(
                "api".to_string(),
                DesiredService {
                    version: "2.0".into(),
                    config,
                    revision: "x".into(),
                    secrets,
                },
            )]
            .into(),
        }
    }

    /// Environment `e` running api 2.0 with `config`.
    fn live(config: toml::Table) -> LiveState {
        [(
            "api".to_string(),
            LiveService {
                version: "2.0".into(),
                config,
                revision: "x".into(),
            },
        )]
        .into()
    }

    #[test]
    fn equal_state_has_no_drift_and_a_changed_key_shows_both_sides() {
        let desired = desired(table("replicas = 3\nzone = \"a\"\n"), Vec::new());
        let same = live(table("replicas = 3\nzone = \"a\"\n"));
        let report = compare(&desired, &same);
        assert!(!report[0].drifted());
        assert!(report[0].diff.is_empty());

        let mut changed = same.clone();
        changed.get_mut("api").unwrap().config = table("replicas = 5\nzone = \"a\"\n");
        let report = compare(&desired, &changed);
        assert!(report[0].drifted());
        assert_eq!(
            report[0].diff,
            [
                DiffLine::Hunk("@@ -1,2 +1,2 @@".into()),
                DiffLine::Live("replicas = 5".into()),
                DiffLine::Desired("replicas = 3".into()),
                DiffLine::Same("zone = \"a\"".into()),
            ]
        );

        let report = compare(&desired, &LiveState::new());
        assert_eq!(report[0].live_version, None);
        assert!(report[0].drifted());
    }

    #[test]
    fn a_changed_secret_shows_as_changed_without_its_value() {
        let config = table("db_password = \"hunter2\"\nreplicas = 1\n");
        let secrets = crate::secrets::paths(&[], &config);
        let desired = desired(config.clone(), secrets.clone());
        let live = |config: toml::Table| live(crate::secrets::seal(&config, &secrets));
        assert!(compare(&desired, &live(config))
            .iter()
            .all(|d| !d.drifted()));
        let report = compare(
            &desired,
            &live(table("db_password = \"other\"\nreplicas = 1\n")),
        );
        let text = format!("{:?}", report[0].diff);
        assert!(text.contains("<secret, changed>"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("other"),
            "{text}"
        );
    }
}
