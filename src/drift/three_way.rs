//! The three-way comparison of one service in one environment: desired (the intent at the
//! revision), last-applied (what flotilla last applied there successfully) and live (what
//! the driver observes). A pure function, tested without tokio or a terminal.
//!
//! - `in_sync`: live is what Git wants (whatever was applied before).
//! - `pending`: the intent changed since the last apply; live is still that apply.
//! - `drifted`: live differs from the last apply (an out-of-band change); the intent did not
//!   change.
//! - `conflict`: both: applying the intent would overwrite the out-of-band change.
//! - `unknown`: the driver cannot observe the environment.

use serde::Serialize;

use crate::keypath::{any_covers, leaves};
use crate::secrets::{is_secret, same_secret, MASK, MASK_CHANGED};

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    InSync,
    Pending,
    Drifted,
    Conflict,
    Unknown,
}

impl DriftState {
    pub fn name(self) -> &'static str {
        match self {
            DriftState::InSync => "in_sync",
            DriftState::Pending => "pending",
            DriftState::Drifted => "drifted",
            DriftState::Conflict => "conflict",
            DriftState::Unknown => "unknown",
        }
    }

    /// Whether something changed the environment behind flotilla's back.
    pub fn is_drift(self) -> bool {
        matches!(self, DriftState::Drifted | DriftState::Conflict)
    }
}

/// One side of the comparison: a version and a config.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub version: &'a str,
    pub config: &'a toml::Table,
}

/// One key that differs: its dotted path (`version` for the version), the value before and
/// after (none: absent). Secret values are shown masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub key: String,
    pub from: Option<toml::Value>,
    pub to: Option<toml::Value>,
}

impl Change {
    /// `key: old -> new`, as reports show it.
    pub fn line(&self) -> String {
        format!("{}: {} -> {}", self.key, value(&self.from), value(&self.to))
    }
}

/// A value as reports show it; `(none)` where there is none.
pub fn value(v: &Option<toml::Value>) -> String {
    v.as_ref().map_or("(none)".to_string(), |v| v.to_string())
}

/// How one service compares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub state: DriftState,
    /// Last-applied to live: what changed out of band.
    pub drift: Vec<Change>,
    /// Last-applied to desired: what the intent changed since (desired to live when
    /// flotilla never applied the service there).
    pub pending: Vec<Change>,
}

/// What the comparison needs to know about the service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// `drift_ignore`: keys something else owns (an autoscaler's replicas).
    pub ignore: &'a [String],
    /// `secret_keys`: compared, never shown.
    pub secret_keys: &'a [String],
}

/// Compares one service. `live` is `None` when the driver cannot observe; `Some(None)`
/// when it observes that the service does not run there.
pub fn compare(
    desired: Side,
    last_applied: Option<Side>,
    live: Option<Option<Side>>,
    rules: Rules,
) -> Comparison {
    let Some(live) = live else {
        return Comparison {
            state: DriftState::Unknown,
            drift: Vec::new(),
            pending: Vec::new(),
        };
    };
    let to_desired = changes(live, Some(desired), rules);
    // Live is what Git wants: nothing to apply and nothing to overwrite.
    if to_desired.is_empty() {
        return Comparison {
            state: DriftState::InSync,
            drift: Vec::new(),
            pending: Vec::new(),
        };
    }
    let Some(last) = last_applied else {
        // Never applied here by flotilla: there is nothing to have drifted from.
        return Comparison {
            state: DriftState::Pending,
            drift: Vec::new(),
            pending: to_desired,
        };
    };
    // Only keys where live is not what Git wants count: one changed by hand to what Git
    // now says (an adopted fix) is neither drift nor pending.
    let open: std::collections::BTreeSet<&str> =
        to_desired.iter().map(|c| c.key.as_str()).collect();
    let drift: Vec<Change> = changes(Some(last), live, rules)
        .into_iter()
        .filter(|c| open.contains(c.key.as_str()))
        .collect();
    let pending: Vec<Change> = changes(Some(last), Some(desired), rules)
        .into_iter()
        .filter(|c| open.contains(c.key.as_str()))
        .collect();
    let state = match (drift.is_empty(), pending.is_empty()) {
        (true, _) => DriftState::Pending,
        (false, true) => DriftState::Drifted,
        (false, false) => DriftState::Conflict,
    };
    Comparison {
        state,
        drift,
        pending,
    }
}

/// The keys (and the version) that differ from `a` to `b`, ignored keys left out.
fn changes(a: Option<Side>, b: Option<Side>, rules: Rules) -> Vec<Change> {
    let mut out = Vec::new();
    let (va, vb) = (a.map(|s| s.version), b.map(|s| s.version));
    if va != vb {
        out.push(Change {
            key: "version".into(),
            from: va.map(|v| toml::Value::String(v.into())),
            to: vb.map(|v| toml::Value::String(v.into())),
        });
    }
    let empty = toml::Table::new();
    let la = leaves(a.map_or(&empty, |s| s.config));
    let lb = leaves(b.map_or(&empty, |s| s.config));
    let keys: std::collections::BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
    for key in keys {
        if any_covers(rules.ignore, key) {
            continue;
        }
        let (x, y) = (la.get(key).copied(), lb.get(key).copied());
        let equal = match (x, y) {
            (Some(x), Some(y)) => same_secret(x, y),
            (None, None) => true,
            _ => false,
        };
        if equal {
            continue;
        }
        let secret = is_secret(rules.secret_keys, key);
        let shown = |v: Option<&toml::Value>| {
            v.map(|v| {
                if secret {
                    toml::Value::String(
                        if x.is_some() && y.is_some() {
                            MASK_CHANGED
                        } else {
                            MASK
                        }
                        .into(),
                    )
                } else {
                    v.clone()
                }
            })
        };
        out.push(Change {
            key: key.clone(),
            from: shown(x),
            to: shown(y),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn side<'a>(version: &'a str, config: &'a toml::Table) -> Side<'a> {
        Side { version, config }
    }

    #[test]
    fn live_as_desired_is_in_sync_and_an_intent_change_is_pending() {
        let (a, b) = (table("replicas = 3"), table("replicas = 4"));
        let same = compare(
            side("1", &a),
            Some(side("1", &a)),
            Some(Some(side("1", &a))),
            Rules::default(),
        );
        assert_eq!(same.state, DriftState::InSync);
        let pending = compare(
            side("2", &b),
            Some(side("1", &a)),
            Some(Some(side("1", &a))),
            Rules::default(),
        );
        assert_eq!(pending.state, DriftState::Pending);
        assert!(pending.drift.is_empty());
        let keys: Vec<&str> = pending.pending.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["version", "replicas"]);
    }

    #[test]
    fn an_out_of_band_change_is_drift_and_with_an_intent_change_a_conflict() {
        let applied = table("replicas = 3\n[db]\nhost = \"a\"");
        let tampered = table("replicas = 3\n[db]\nhost = \"b\"");
        let drifted = compare(
            side("1", &applied),
            Some(side("1", &applied)),
            Some(Some(side("1", &tampered))),
            Rules::default(),
        );
        assert_eq!(drifted.state, DriftState::Drifted);
        assert_eq!(
            drifted.drift,
            [Change {
                key: "db.host".into(),
                from: Some(toml::Value::String("a".into())),
                to: Some(toml::Value::String("b".into())),
            }]
        );
        let newer = table("replicas = 5\n[db]\nhost = \"a\"");
        let conflict = compare(
            side("1", &newer),
            Some(side("1", &applied)),
            Some(Some(side("1", &tampered))),
            Rules::default(),
        );
        assert_eq!(conflict.state, DriftState::Conflict);
        assert_eq!(conflict.drift.len(), 1);
        assert_eq!(conflict.pending[0].key, "replicas");
        // A hand-made change that is what Git now wants is no conflict.
        let caught_up = compare(
            side("1", &tampered),
            Some(side("1", &applied)),
            Some(Some(side("1", &tampered))),
            Rules::default(),
        );
        assert_eq!(caught_up.state, DriftState::InSync);
    }

    #[test]
    fn a_version_changed_by_hand_is_drift_and_unknown_when_unobservable() {
        let c = table("");
        let hand = compare(
            side("1", &c),
            Some(side("1", &c)),
            Some(Some(side("1-hotfix", &c))),
            Rules::default(),
        );
        assert_eq!(hand.state, DriftState::Drifted);
        assert_eq!(hand.drift[0].key, "version");
        let gone = compare(
            side("1", &c),
            Some(side("1", &c)),
            Some(None),
            Rules::default(),
        );
        assert_eq!(gone.state, DriftState::Drifted, "removed by hand");
        let blind = compare(side("1", &c), Some(side("1", &c)), None, Rules::default());
        assert_eq!(blind.state, DriftState::Unknown);
    }

    #[test]
    fn an_adopted_fix_is_no_drift_when_the_intent_changes_something_else() {
        let applied = table("replicas = 3\nlog = \"info\"");
        let fixed = table("replicas = 9\nlog = \"info\"");
        // Git adopted replicas = 9, then changed log: only log is pending.
        let desired = table("replicas = 9\nlog = \"debug\"");
        let r = compare(
            side("1", &desired),
            Some(side("1", &applied)),
            Some(Some(side("1", &fixed))),
            Rules::default(),
        );
        assert_eq!(r.state, DriftState::Pending, "{r:?}");
        let keys: Vec<&str> = r.pending.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["log"]);
    }

    #[test]
    fn ignored_keys_never_report() {
        let applied = table("replicas = 3\nimage = \"x\"\n[hpa]\nmin = 1");
        let scaled = table("replicas = 9\nimage = \"x\"\n[hpa]\nmin = 4");
        let ignore = vec!["replicas".to_string(), "hpa".to_string()];
        let rules = Rules {
            ignore: &ignore,
            secret_keys: &[],
        };
        let r = compare(
            side("1", &applied),
            Some(side("1", &applied)),
            Some(Some(side("1", &scaled))),
            rules,
        );
        assert_eq!(r.state, DriftState::InSync, "{r:?}");
    }

    #[test]
    fn secrets_are_compared_sealed_and_shown_masked() {
        let applied = table("db_password = \"hunter2\"");
        let sealed = crate::secrets::seal(&applied, &["db_password".to_string()]);
        let same = compare(
            side("1", &applied),
            Some(side("1", &applied)),
            Some(Some(side("1", &sealed))),
            Rules::default(),
        );
        assert_eq!(same.state, DriftState::InSync);
        let changed = crate::secrets::seal(
            &table("db_password = \"rotated\""),
            &["db_password".to_string()],
        );
        let r = compare(
            side("1", &applied),
            Some(side("1", &applied)),
            Some(Some(side("1", &changed))),
            Rules::default(),
        );
        assert_eq!(r.state, DriftState::Drifted);
        let shown = format!("{:?}", r.drift);
        assert!(
            !shown.contains("hunter2") && shown.contains(MASK_CHANGED),
            "{shown}"
        );
    }

    #[test]
    fn never_applied_by_flotilla_is_pending_not_drift() {
        let (live, want) = (table("replicas = 1"), table("replicas = 2"));
        let r = compare(
            side("1", &want),
            None,
            Some(Some(side("1", &live))),
            Rules::default(),
        );
        assert_eq!(r.state, DriftState::Pending);
        assert!(r.drift.is_empty());
    }
}
