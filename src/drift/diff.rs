//! Two configs of one service shown as a unified diff, secrets masked: how the console and
//! `flotilla drift` show what changed out of band.

use similar::{ChangeTag, TextDiff};

/// One line of a unified diff of a service's config, the old side (`-`) against the new
/// (`+`).
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

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn equal_configs_have_no_diff_and_a_changed_key_shows_both_sides() {
        let old = table("replicas = 3\nzone = \"a\"\n");
        assert!(config_diff(&old, &old.clone(), &[]).is_empty());
        let new = table("replicas = 5\nzone = \"a\"\n");
        assert_eq!(
            config_diff(&old, &new, &[]),
            [
                DiffLine::Hunk("@@ -1,2 +1,2 @@".into()),
                DiffLine::Live("replicas = 3".into()),
                DiffLine::Desired("replicas = 5".into()),
                DiffLine::Same("zone = \"a\"".into()),
            ]
        );
    }

    #[test]
    fn a_changed_secret_shows_as_changed_without_its_value() {
        let config = table("db_password = \"hunter2\"\nreplicas = 1\n");
        let secrets = crate::secrets::paths(&[], &config);
        let sealed = |config: &toml::Table| crate::secrets::seal(config, &secrets);
        assert!(config_diff(&config, &sealed(&config), &secrets).is_empty());
        let other = table("db_password = \"other\"\nreplicas = 1\n");
        let text = format!("{:?}", config_diff(&config, &sealed(&other), &secrets));
        assert!(text.contains("<secret, changed>"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("other"),
            "{text}"
        );
    }
}
