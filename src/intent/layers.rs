//! Rendering the desired state of one environment from its layers, remembering which layer set
//! every key and what it overrode.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::model::{Emergency, Environment, Intent, Release, Service};
use crate::hash::StableHasher;

/// What one environment should run for one release.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Desired {
    pub env: String,
    pub release: String,
    pub services: BTreeMap<String, DesiredService>,
}

impl Desired {
    /// `env`'s desired state for `release`, each of the intent's services rendered by
    /// `render` from its index and itself.
    fn new(
        intent: &Intent,
        env: &Environment,
        release: &Release,
        mut render: impl FnMut(usize, &Service) -> DesiredService,
    ) -> Desired {
        Desired {
            env: env.name.clone(),
            release: release.name.clone(),
            services: intent
                .services
                .iter()
                .enumerate()
                .map(|(s, service)| (service.name.clone(), render(s, service)))
                .collect(),
        }
    }
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
    emergency: Option<&Emergency>,
) -> Rendered {
    let layers = layers_of(intent, release, env, emergency);
    let settings = merge(
        &layers,
        |_| true,
        |key, file, value, replaced: Vec<Setting>| {
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
        },
    );
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
    emergency: Option<&Emergency>,
) -> Desired {
    let layers = layers_of(intent, release, env, emergency);
    let values = merge(&layers, |_| true, |_, _, value, _| value);
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
    emergency: Option<&'a Emergency>,
) -> Vec<(&'a str, &'a toml::Table)> {
    layers_with(intent, release, env, &overlays_of(intent, env), emergency)
}

/// The overlays that select `env`, by index in the intent (so by priority).
fn overlays_of(intent: &Intent, env: &Environment) -> Vec<usize> {
    (0..intent.overlays.len())
        .filter(|&o| intent.overlays[o].select.matches(&env.labels))
        .collect()
}

/// [`layers_of`] with the overlays that select `env` already found.
fn layers_with<'a>(
    intent: &'a Intent,
    release: &'a Release,
    env: &'a Environment,
    overlays: &[usize],
    emergency: Option<&'a Emergency>,
) -> Vec<(&'a str, &'a toml::Table)> {
    let mut layers: Vec<(&str, &toml::Table)> = vec![(&release.file, &release.config)];
    layers.extend(overlays.iter().map(|&o| {
        let overlay = &intent.overlays[o];
        (overlay.file.as_str(), &overlay.config)
    }));
    layers.push((&env.file, &env.config));
    if let Some(e) = emergency {
        layers.push((&e.file, &e.config));
    }
    layers
}

/// The leaf settings of `layers` whose keys `keep` takes, the later layer winning: `setting`
/// makes each from its key, file and value and the settings it replaced. A leaf replaces
/// anything above or below it (a table replaced by a scalar, or the reverse).
fn merge<'a, S>(
    layers: &[(&'a str, &'a toml::Table)],
    keep: impl Fn(&str) -> bool,
    mut setting: impl FnMut(&str, &'a str, &'a toml::Value, Vec<S>) -> S,
) -> BTreeMap<String, S> {
    let mut settings: BTreeMap<String, S> = BTreeMap::new();
    for &(file, table) in layers {
        crate::keypath::each_leaf(table, &mut |key, value| {
            if !keep(key) {
                return;
            }
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

/// Whether the setting at dotted `path` can change `service`'s config: it is the service's
/// own key, under it, or above it (a table or value that a later one replaces whole). Only
/// such settings reach, or clash with, what [`desired_of`] takes for the service.
fn touches(service: &str, path: &str) -> bool {
    let (long, short) = if path.len() >= service.len() {
        (path, service)
    } else {
        (service, path)
    };
    long.starts_with(short) && matches!(long.as_bytes().get(short.len()), None | Some(b'.'))
}

/// Each service's version, config, revision and secret keys, from the merged `leaves`
/// (dotted keys, in key order).
fn desired_of<'a>(
    intent: &Intent,
    release: &Release,
    env: &Environment,
    emergency: Option<&Emergency>,
    leaves: impl Iterator<Item = (&'a str, &'a toml::Value)> + Clone,
) -> Desired {
    Desired::new(intent, env, release, |_, service| {
        service_desired(release, emergency, service, leaves.clone())
    })
}

/// One service's version, config, revision and secret keys, from the merged `leaves`: those
/// under the service's name make its config.
fn service_desired<'a>(
    release: &Release,
    emergency: Option<&Emergency>,
    service: &Service,
    leaves: impl Iterator<Item = (&'a str, &'a toml::Value)>,
) -> DesiredService {
    let version = emergency
        .and_then(|e| e.versions.get(&service.name))
        .or_else(|| release.services.get(&service.name))
        .cloned()
        .unwrap_or_default();
    let mut config = toml::Table::new();
    for (key, value) in leaves {
        let rest = key
            .strip_prefix(service.name.as_str())
            .and_then(|k| k.strip_prefix('.'));
        if let Some(rest) = rest {
            crate::keypath::insert(&mut config, rest, value.clone());
        }
    }
    let revision = revision_id(&service.name, &version, &config);
    let secrets = crate::secrets::paths(&service.secret_keys, &config);
    DesiredService {
        version,
        config,
        revision,
        secrets,
    }
}

/// Renders the desired states of many environments of one intent and release, as a
/// rollout does, one after another. A service that an environment's own file does not
/// configure renders alike in every environment the same overlays select: it is rendered
/// once for those overlays and copied. Rendering every service of every environment was
/// half of the engine's work at 100,000 environments.
#[derive(Debug, Default)]
pub struct DesiredCache {
    /// By the overlays that select an environment (their indices in the intent): each
    /// service (by index) as the release and those overlays render it, once rendered.
    shared: HashMap<Vec<usize>, Vec<Option<DesiredService>>>,
}

/// The merged leaves of `layers` that can reach the config of any of `services`.
fn merge_for<'a>(
    layers: &[(&'a str, &'a toml::Table)],
    services: &[&Service],
) -> BTreeMap<String, &'a toml::Value> {
    if services.is_empty() {
        return BTreeMap::new();
    }
    let keep = |key: &str| services.iter().any(|s| touches(&s.name, key));
    merge(layers, keep, |_, _, value, _| value)
}

fn leaves<'a>(
    values: &'a BTreeMap<String, &'a toml::Value>,
) -> impl Iterator<Item = (&'a str, &'a toml::Value)> {
    values.iter().map(|(k, v)| (k.as_str(), *v))
}

/// Sets of overlays a [`DesiredCache`] remembers at most: a fleet where most environments
/// had a set of their own would only fill memory with renders used once.
const SHARED_SETS: usize = 1024;

impl DesiredCache {
    /// What [`desired_with`] renders for `env`. The cache serves one intent and release.
    pub fn desired(
        &mut self,
        intent: &Intent,
        release: &Release,
        env: &Environment,
        emergency: Option<&Emergency>,
    ) -> Desired {
        if emergency.is_some() {
            // Only environments whose live values were adopted have one: rare, and theirs.
            return desired_with(intent, release, env, emergency);
        }
        let selected = overlays_of(intent, env);
        let layers = layers_with(intent, release, env, &selected, None);
        let room = self.shared.len() < SHARED_SETS || self.shared.contains_key(&selected);
        let mut shared = room.then(|| {
            self.shared
                .entry(selected)
                .or_insert_with(|| vec![None; intent.services.len()])
        });
        // The services rendered here: those the environment's file configures, and all of
        // them when the cache has no room. One merge serves them all.
        let cached = shared.is_some();
        let shareable =
            |service: &Service| cached && !env.config.keys().any(|k| touches(&service.name, k));
        let here: Vec<&Service> = intent.services.iter().filter(|s| !shareable(s)).collect();
        let values = merge_for(&layers, &here);
        Desired::new(intent, env, release, |s, service| {
            match shared.as_mut() {
                Some(shared) if shareable(service) => shared[s]
                    .get_or_insert_with(|| {
                        // The environment's file has nothing for it: the release and the
                        // overlays alone render it.
                        let values = merge_for(&layers, &[service]);
                        service_desired(release, None, service, leaves(&values))
                    })
                    .clone(),
                _ => service_desired(release, None, service, leaves(&values)),
            }
        })
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

    /// Keys a layer may set: services' own keys, keys above a service with a dot in its
    /// name, a scalar where another layer has a table and the reverse. The last is set as
    /// one key with a dot in it, as `"a.b" = 1` in TOML.
    const KEYS: [&str; 10] = [
        "a",
        "a.x",
        "a.b",
        "a.b.y",
        "api",
        "api.replicas",
        "api.db.pool",
        "api.token",
        "web.x",
        "a.b",
    ];

    fn layer() -> impl proptest::strategy::Strategy<Value = toml::Table> {
        use proptest::prelude::*;
        proptest::collection::vec((0..KEYS.len(), 0..3i64), 0..4).prop_map(|sets| {
            let mut table = toml::Table::new();
            for (k, v) in sets {
                let value = toml::Value::Integer(v);
                if k == KEYS.len() - 1 {
                    table.insert(KEYS[k].into(), value);
                } else {
                    crate::keypath::insert(&mut table, KEYS[k], value);
                }
            }
            table
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        #[test]
        fn the_cache_renders_what_rendering_each_environment_alone_does(
            release in layer(),
            overlays in proptest::collection::vec((layer(), 0..3usize), 0..4),
            envs in proptest::collection::vec((layer(), 0..3usize), 1..10),
        ) {
            let mut intent = intent();
            let service = intent.services[0].clone();
            intent.services = ["a", "a.b", "api", "web"]
                .map(|name| crate::intent::Service {
                    name: name.into(),
                    secret_keys: vec!["token".into()],
                    ..service.clone()
                })
                .to_vec();
            intent.releases[0].config = release;
            intent.overlays = overlays
                .into_iter()
                .enumerate()
                .map(|(i, (config, region))| crate::intent::Overlay {
                    name: format!("o{i}"),
                    file: format!("overlays/o{i}.toml"),
                    select: crate::selector::Selector::parse(&format!("region=r{region}"))
                        .expect("selector"),
                    priority: i as i64,
                    config,
                })
                .collect();
            let env = intent.environments[0].clone();
            intent.environments = envs
                .into_iter()
                .enumerate()
                .map(|(i, (config, region))| {
                    let name = format!("env-{i}");
                    crate::intent::Environment {
                        labels: [("name", name.clone()), ("region", format!("r{region}"))]
                            .map(|(k, v)| (k.to_string(), v))
                            .into(),
                        file: format!("environments/{name}.toml"),
                        name,
                        config,
                        ..env.clone()
                    }
                })
                .collect();
            let release = &intent.releases[0];
            let mut cache = DesiredCache::default();
            // Twice: the second time every shared service comes from the cache.
            for _ in 0..2 {
                for env in &intent.environments {
                    let alone = desired_with(&intent, release, env, None);
                    proptest::prop_assert_eq!(cache.desired(&intent, release, env, None), alone);
                }
            }
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
