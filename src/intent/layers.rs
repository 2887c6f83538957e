//! Rendering the desired state of one environment from its layers, remembering which layer set
//! every key and what it overrode.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Environment, Intent, Release};
use crate::hash::StableHasher;

/// What one environment should run for one release.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Desired {
    pub env: String,
    pub release: String,
    pub services: BTreeMap<String, DesiredService>,
}

/// One service's version and config in one environment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DesiredService {
    pub version: String,
    pub config: toml::Table,
    /// Content hash of version and config: applying the same revision twice is a no-op.
    pub revision: String,
    /// The dotted keys of `config` that hold secrets: masked when shown, sealed when stored.
    pub secrets: Vec<String>,
}

/// A leaf config key, the layer that set it and the values it overrode (oldest first).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: toml::Value,
    pub file: String,
    pub overrode: Vec<Overridden>,
}

/// A value a later layer replaced, and the file that had set it.
#[derive(Debug, Clone, Serialize)]
pub struct Overridden {
    pub file: String,
    pub value: toml::Value,
}

/// Desired state plus per-key provenance.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub desired: Desired,
    pub settings: Vec<Setting>,
}

impl Rendered {
    /// The same with every secret value masked (see [`crate::secrets`]): what `explain`
    /// and anything else that shows config prints.
    pub fn masked(mut self, intent: &Intent) -> Rendered {
        for svc in self.desired.services.values_mut() {
            svc.config = crate::secrets::mask(&svc.config, &svc.secrets);
        }
        let mask = toml::Value::String(crate::secrets::MASK.into());
        for s in &mut self.settings {
            let Some((service, path)) = s.key.split_once('.') else {
                continue;
            };
            let named = intent
                .services
                .iter()
                .find(|x| x.name == service)
                .map_or(&[][..], |x| &x.secret_keys[..]);
            if crate::secrets::is_secret(named, path) {
                s.value = mask.clone();
                for o in &mut s.overrode {
                    o.value = mask.clone();
                }
            }
        }
        self
    }
}

/// Renders `env` for `release`: release config < overlays by priority < environment config
/// < the environment's emergency layer.
pub fn render(intent: &Intent, release: &Release, env: &Environment) -> Rendered {
    render_with(intent, release, env, intent.emergency(&env.name))
}

/// What `env` should run for `release` ([`render`] without the provenance of each setting).
pub fn desired(intent: &Intent, release: &Release, env: &Environment) -> Desired {
    desired_with(intent, release, env, intent.emergency(&env.name))
}

/// Renders `env` for `release` with `emergency` as its emergency layer instead of the
/// intent's own: a running rollout takes an environment's layer from the commit that
/// adopted its live values.
pub fn render_with(
    intent: &Intent,
    release: &Release,
    env: &Environment,
    emergency: Option<&super::model::Emergency>,
) -> Rendered {
    let layers = layers_of(intent, release, env, emergency);
    let settings = merge(&layers, |key, file, value, replaced: Vec<Setting>| {
        // The loser of each clash is remembered, with what it had overridden.
        let mut overrode = Vec::new();
        for old in replaced {
            overrode.extend(old.overrode);
            overrode.push(Overridden {
                file: old.file,
                value: old.value,
            });
        }
        Setting {
            key: key.to_string(),
            value: value.clone(),
            file: file.to_string(),
            overrode,
        }
    });
    let leaves = settings.values().map(|s| (s.key.as_str(), &s.value));
    Rendered {
        desired: desired_of(intent, release, env, emergency, leaves),
        settings: settings.into_values().collect(),
    }
}

/// What [`render_with`] renders as desired state, without the provenance of each setting:
/// the engine needs only this, for every environment of a rollout.
pub fn desired_with(
    intent: &Intent,
    release: &Release,
    env: &Environment,
    emergency: Option<&super::model::Emergency>,
) -> Desired {
    let layers = layers_of(intent, release, env, emergency);
    let values = merge(&layers, |_, _, value, _| value);
    desired_of(
        intent,
        release,
        env,
        emergency,
        values.iter().map(|(k, v)| (k.as_str(), *v)),
    )
}

/// The config layers of `env`, lowest first: release config < overlays by priority <
/// environment config < its emergency layer (live values adopted into Git win).
fn layers_of<'a>(
    intent: &'a Intent,
    release: &'a Release,
    env: &'a Environment,
    emergency: Option<&'a super::model::Emergency>,
) -> Vec<(&'a str, &'a toml::Table)> {
    let mut layers: Vec<(&str, &toml::Table)> = vec![(&release.file, &release.config)];
    layers.extend(
        intent
            .overlays
            .iter()
            .filter(|o| o.select.matches(&env.labels))
            .map(|o| (o.file.as_str(), &o.config)),
    );
    layers.push((&env.file, &env.config));
    if let Some(e) = emergency {
        layers.push((&e.file, &e.config));
    }
    layers
}

/// The leaf settings of `layers`, the later layer winning: `setting` makes each from its
/// key, file and value and the settings it replaced. A leaf replaces anything above or
/// below it (a table replaced by a scalar, or the reverse).
fn merge<'a, S>(
    layers: &[(&'a str, &'a toml::Table)],
    mut setting: impl FnMut(&str, &'a str, &'a toml::Value, Vec<S>) -> S,
) -> BTreeMap<String, S> {
    let mut settings: BTreeMap<String, S> = BTreeMap::new();
    for &(file, table) in layers {
        crate::keypath::each_leaf(table, &mut |key, value| {
            let replaced = clashing(&settings, key)
                .iter()
                .filter_map(|k| settings.remove(k))
                .collect();
            let made = setting(key, file, value, replaced);
            settings.insert(key.to_string(), made);
        });
    }
    settings
}

/// Each service's version, config, revision and secret keys, from the merged `leaves`
/// (dotted keys, in key order).
fn desired_of<'a>(
    intent: &Intent,
    release: &Release,
    env: &Environment,
    emergency: Option<&super::model::Emergency>,
    leaves: impl Iterator<Item = (&'a str, &'a toml::Value)> + Clone,
) -> Desired {
    let mut services = BTreeMap::new();
    for service in &intent.services {
        let version = emergency
            .and_then(|e| e.versions.get(&service.name))
            .or_else(|| release.services.get(&service.name))
            .cloned()
            .unwrap_or_default();
        let mut config = toml::Table::new();
        for (key, value) in leaves.clone() {
            let rest = key
                .strip_prefix(service.name.as_str())
                .and_then(|k| k.strip_prefix('.'));
            if let Some(rest) = rest {
                crate::keypath::insert(&mut config, rest, value.clone());
            }
        }
        let revision = revision_id(&service.name, &version, &config);
        let secrets = crate::secrets::paths(&service.secret_keys, &config);
        services.insert(
            service.name.clone(),
            DesiredService {
                version,
                config,
                revision,
                secrets,
            },
        );
    }
    Desired {
        env: env.name.clone(),
        release: release.name.clone(),
        services,
    }
}

/// The settings a new `key` replaces, in key order: the keys it is under, itself, and the
/// keys under it. Found by lookups and one range, not by comparing every key: an
/// environment's render is on the path of every rollout.
fn clashing<V>(settings: &BTreeMap<String, V>, key: &str) -> Vec<String> {
    use std::ops::Bound;
    let mut found: Vec<String> = key
        .match_indices('.')
        .map(|(at, _)| &key[..at])
        .chain(std::iter::once(key))
        .filter(|k| settings.contains_key(*k))
        .map(str::to_string)
        .collect();
    // The keys that start with `key` sort together, right after it.
    let after = settings.range::<str, _>((Bound::Excluded(key), Bound::Unbounded));
    found.extend(
        after
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(key))
            .filter(|k| k.as_bytes().get(key.len()) == Some(&b'.'))
            .cloned(),
    );
    found
}

/// The id of one (service, version, config): equal content gives an equal id.
pub fn revision_id(service: &str, version: &str, config: &toml::Table) -> String {
    // The config's JSON is hashed as it is written, not kept: ids are made for every
    // service of every environment a rollout renders.
    let mut h = StableHasher::new();
    h.part(service.as_bytes());
    h.part(version.as_bytes());
    // A table always serializes to JSON (its keys are strings), and the hasher never fails.
    let _ = serde_json::to_writer(&mut h, config);
    h.end_part();
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::load::parse;
    use crate::intent::source::SourceFile;
    use crate::intent::Revision;

    fn intent() -> Intent {
        let files = [
            ("flotilla.toml", "[fleet]\nname = \"t\"\n[[service]]\nname = \"api\"\n"),
            ("environments/eu-1.toml", "labels = { region = \"eu\" }\n[config]\napi.replicas = 4\n"),
            ("environments/us-1.toml", "labels = { region = \"us\" }\n"),
            ("overlays/eu.toml", "select = \"region=eu\"\npriority = 10\n[config]\napi.residency = \"eu\"\napi.replicas = 3\n"),
            ("overlays/low.toml", "select = \"*\"\npriority = 1\n[config]\napi.residency = \"any\"\n"),
            ("releases/1.toml", "[services]\napi = \"1.0\"\n[config]\napi.replicas = 2\napi.log = \"info\"\n"),
        ];
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(p, t)| SourceFile {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect();
        let rev = Revision {
            commit: "c".into(),
            short: "c".into(),
            subject: "s".into(),
        };
        parse(rev, &files).unwrap().0
    }

    #[test]
    fn revision_ids_stay_the_hash_of_the_config_s_json_text() {
        // Ids are kept in journals and in what drivers run: hashing the JSON as it is
        // written must give the ids that hashing its text gave.
        let config: toml::Table =
            toml::from_str("replicas = 3\nlog = \"info\"\n[db]\npool = { size = 5, tls = true }\n")
                .expect("toml");
        let text = serde_json::to_string(&config).expect("json");
        let before = crate::hash::stable_hash(&[b"api", b"1.2", text.as_bytes()]);
        assert_eq!(revision_id("api", "1.2", &config), format!("{before:016x}"));
        assert_ne!(
            revision_id("api", "1.3", &config),
            revision_id("api", "1.2", &config)
        );
    }

    #[test]
    fn environment_beats_overlays_beat_release_with_provenance() {
        let intent = intent();
        let env = intent.environment("eu-1").unwrap();
        let r = render(&intent, &intent.releases[0], env);
        let api = &r.desired.services["api"];
        assert_eq!(api.config["replicas"].as_integer(), Some(4));
        assert_eq!(api.config["residency"].as_str(), Some("eu"));
        assert_eq!(api.config["log"].as_str(), Some("info"));
        let replicas = r.settings.iter().find(|s| s.key == "api.replicas").unwrap();
        assert_eq!(replicas.file, "environments/eu-1.toml");
        let chain: Vec<&str> = replicas.overrode.iter().map(|o| o.file.as_str()).collect();
        assert_eq!(chain, ["releases/1.toml", "overlays/eu.toml"]);
    }

    #[test]
    fn a_key_replaces_the_keys_it_is_under_and_the_keys_under_it_only() {
        let settings: BTreeMap<String, ()> =
            ["api", "api-x", "api.a", "api.a.b", "api.b", "apis", "web.a"]
                .iter()
                .map(|k| (k.to_string(), ()))
                .collect();
        assert_eq!(clashing(&settings, "api.a"), ["api", "api.a", "api.a.b"]);
        assert_eq!(
            clashing(&settings, "api"),
            ["api", "api.a", "api.a.b", "api.b"]
        );
        assert_eq!(
            clashing(&settings, "api.a.b.c"),
            ["api", "api.a", "api.a.b"]
        );
        assert!(clashing(&settings, "ap").is_empty());
    }

    #[test]
    fn the_engine_s_render_without_provenance_gives_the_same_desired_state() {
        let intent = intent();
        for env in &intent.environments {
            let r = render(&intent, &intent.releases[0], env);
            let d = desired_with(&intent, &intent.releases[0], env, None);
            assert_eq!(d, r.desired, "{}", env.name);
        }
    }

    #[test]
    fn overlays_apply_only_where_their_selector_matches() {
        let intent = intent();
        let env = intent.environment("us-1").unwrap();
        let r = render(&intent, &intent.releases[0], env);
        assert_eq!(
            r.desired.services["api"].config["residency"].as_str(),
            Some("any")
        );
        assert_eq!(
            r.desired.services["api"].config["replicas"].as_integer(),
            Some(2)
        );
    }

    #[test]
    fn revision_changes_with_config_and_not_otherwise() {
        let intent = intent();
        let eu = render(
            &intent,
            &intent.releases[0],
            intent.environment("eu-1").unwrap(),
        );
        let again = render(
            &intent,
            &intent.releases[0],
            intent.environment("eu-1").unwrap(),
        );
        let us = render(
            &intent,
            &intent.releases[0],
            intent.environment("us-1").unwrap(),
        );
        let rev = |r: &Rendered| r.desired.services["api"].revision.clone();
        assert_eq!(rev(&eu), rev(&again));
        assert_ne!(rev(&eu), rev(&us));
    }
}
