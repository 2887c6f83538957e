//! The demo intent repo behind `flotilla demo`: a realistic fleet, overlays and three
//! releases, the last of which is broken in one region so the demo shows a failure budget
//! stopping a bad release after the canary.
//!
//! This module only generates file contents, commit by commit; the caller writes them into a
//! real Git repository. Everything is built with `format!` rather than by serializing, so
//! 10,000 environments take a few milliseconds, and a fixed-seed PRNG keeps the output
//! identical for the same number of environments.

/// Number of environments `flotilla demo` creates when `--envs` is not given.
pub const DEFAULT_ENVS: usize = 48;

/// One commit of the demo history: its message and the files it writes (full contents; paths
/// relative to the repo root, '/'-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCommit {
    /// The commit message (one line).
    pub message: String,
    /// `(path, contents)` of every file this commit adds or changes.
    pub files: Vec<(String, String)>,
}

/// The release that breaks environments in ap-south (see its `[sim]` table).
const BROKEN_RELEASE: &str = "2026.11.3";

/// Regions with the short code used in environment names, and a weight out of 100 for
/// environments outside the canary ring.
const REGIONS: [(&str, &str, u64); 4] = [
    ("eu-west", "eu", 35),
    ("us-east", "us", 30),
    ("us-west", "usw", 15),
    ("ap-south", "ap", 20),
];
const EU_WEST: usize = 0;
const US_EAST: usize = 1;
const AP_SOUTH: usize = 3;

/// Customers and their contract tier. Tier belongs to the customer, not the environment, as
/// it would in real life; enterprise is the rare one (3 of 24).
const CUSTOMERS: [(&str, &str); 24] = [
    ("acme", "enterprise"),
    ("globex", "pro"),
    ("initech", "free"),
    ("umbrella", "enterprise"),
    ("hooli", "pro"),
    ("stark", "free"),
    ("wayne", "pro"),
    ("wonka", "pro"),
    ("tyrell", "free"),
    ("cyberdyne", "pro"),
    ("soylent", "free"),
    ("aperture", "pro"),
    ("vandelay", "free"),
    ("oscorp", "pro"),
    ("nakatomi", "enterprise"),
    ("dunder", "free"),
    ("monarch", "pro"),
    ("gringotts", "free"),
    ("massive", "pro"),
    ("krusty", "free"),
    ("zorg", "pro"),
    ("bluth", "free"),
    ("sterling", "pro"),
    ("prestige", "free"),
];
/// Index of the customer with its own overlay; env 1 is always this customer, so it exists
/// whenever there are at least two environments.
const SPECIAL_CUSTOMER: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    Canary,
    Early,
    Beta,
    General,
}

impl Ring {
    fn label(self) -> &'static str {
        match self {
            Ring::Canary => "canary",
            Ring::Early => "early",
            Ring::Beta => "beta",
            Ring::General => "general",
        }
    }
}

/// One generated environment.
struct Env {
    name: String,
    region: usize,
    customer: usize,
    ring: Ring,
    /// Environment-level `[config]` lines, if any.
    config: &'static str,
}

/// splitmix64: tiny, good enough for demo data, and stable forever (unlike a crate's RNG,
/// whose stream may change between versions and would reshuffle the demo fleet).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (the modulo bias is irrelevant for demo data).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The demo intent repo for `envs` environments as 5 commits, deterministic for `envs`.
///
/// `envs` is raised to 1 if it is 0: a fleet needs at least its canary.
pub fn demo_commits(envs: usize) -> Vec<DemoCommit> {
    let envs = envs.max(1);
    let fleet = fleet(envs);
    let special = if envs >= 2 {
        SPECIAL_CUSTOMER
    } else {
        fleet[0].customer
    };
    let special_name = CUSTOMERS[special].0;

    let env_files = fleet
        .iter()
        .map(|env| (format!("environments/{}.toml", env.name), env_file(env)))
        .collect();

    vec![
        DemoCommit {
            message: "Add fleet definition and services".into(),
            files: vec![("flotilla.toml".into(), fleet_file(envs))],
        },
        DemoCommit {
            message: if envs == 1 {
                "Add 1 environment".into()
            } else {
                format!("Add {envs} environments")
            },
            files: env_files,
        },
        DemoCommit {
            message: format!("Add overlays for EU residency, compliance and {special_name}"),
            files: overlay_files(special_name),
        },
        DemoCommit {
            message: "Release 2026.11.1".into(),
            files: vec![release_file("2026.11.1")],
        },
        DemoCommit {
            message: format!("Releases 2026.11.2 and {BROKEN_RELEASE}"),
            files: vec![release_file("2026.11.2"), release_file(BROKEN_RELEASE)],
        },
    ]
}

/// One more commit: the fleet reached through flotilla agents at `urls` (one per
/// environment, in the fleet's order) with the token in `token_file`, instead of simulated.
pub fn over_agents(commits: &mut Vec<DemoCommit>, urls: &[String], token_file: &str) {
    let latest = |path: &str| {
        commits
            .iter()
            .rev()
            .flat_map(|c| &c.files)
            .find(|(p, _)| p == path)
            .map(|(_, text)| text.clone())
    };
    let mut files = Vec::new();
    if let Some(fleet) = latest("flotilla.toml") {
        let start = fleet.find("[driver]").unwrap_or(0);
        let end = fleet.find("[[service]]").unwrap_or(fleet.len());
        let driver = format!(
            "[driver]\nkind = \"http\"                    # a flotilla agent in each environment\n[driver.http]\ntoken_file = {}\nrequest_timeout = \"10s\"\n\n",
            toml::Value::String(token_file.into())
        );
        let fleet = format!("{}{driver}{}", &fleet[..start], &fleet[end..])
            .replace("on a simulated driver", "reached through local agents");
        files.push(("flotilla.toml".to_string(), fleet));
    }
    let envs: Vec<String> = commits
        .iter()
        .flat_map(|c| &c.files)
        .map(|(p, _)| p.clone())
        .filter(|p| p.starts_with("environments/"))
        .collect();
    for (path, url) in envs.iter().zip(urls) {
        let Some(text) = latest(path) else { continue };
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("target = ") {
                    format!("target = \"{url}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        files.push((path.clone(), text));
    }
    commits.push(DemoCommit {
        message: "Reach the fleet through flotilla agents".into(),
        files,
    });
}

/// `flotilla.toml`. Only keys from the format contract: the parser rejects unknown ones.
fn fleet_file(envs: usize) -> String {
    // The rollout-wide budget is 5% of the fleet, but at least one failure is tolerated so a
    // single transient loss in a tiny fleet does not halt the demo.
    let max_failures = (envs * 5 / 100).max(1);
    format!(
        r#"# The acme-cloud fleet: single-tenant environments on a simulated driver.
[fleet]
name = "acme-cloud"

[driver]
kind = "sim"
[driver.sim]
success_rate = 0.995             # transient failures, so retries have something to do
latency = "20ms..200ms"
seed = 7

[[service]]
name = "schema"
rollback = "forward-only"        # migrations are never rolled back automatically
[[service]]
name = "api"
depends_on = ["schema"]
[[service]]
name = "worker"
depends_on = ["schema"]
[[service]]
name = "web"
depends_on = ["api"]

[strategy]
max_parallel = 20
expected_success_rate = 0.995    # risk per wave until the fleet has a history of its own
retries = 2
backoff = "2s"
step_timeout = "5m"
max_failures = {max_failures:<18}# 5% of the {envs}-environment fleet

[[strategy.wave]]
name = "canary"
select = "ring=canary"
gate = "approval"
failure_budget = 0

[[strategy.wave]]
name = "early"
select = "ring in (early, beta)"
soak = "15s"                     # short so the demo keeps moving; real fleets soak for minutes
failure_budget = "5%"

[[strategy.wave]]
name = "general"
select = "*"
failure_budget = "5%"

[policy]
require_approval = "tier=enterprise"
block_on_drift = true
"#
    )
}

/// Builds the fleet: ring sizes are exact counts (so the canary always exists), the rest of
/// the labels come from the PRNG.
fn fleet(envs: usize) -> Vec<Env> {
    let mut rng = SplitMix64(0xF107_111A_DE30_0001);

    // About 1.5% canary (at least one), 10% early, 5% beta, the rest general.
    let canary = envs.div_ceil(64);
    let early = ((envs + 5) / 10).min(envs - canary);
    let beta = ((envs + 10) / 20).min(envs - canary - early);
    let mut rings: Vec<Ring> = std::iter::repeat_n(Ring::Canary, canary)
        .chain(std::iter::repeat_n(Ring::Early, early))
        .chain(std::iter::repeat_n(Ring::Beta, beta))
        .chain(std::iter::repeat_n(
            Ring::General,
            envs - canary - early - beta,
        ))
        .collect();
    // Shuffle all but the first, which stays a canary: the fleet then opens with acme-eu-1,
    // the enterprise canary of the format examples.
    for i in (2..rings.len()).rev() {
        let j = 1 + rng.below(i as u64) as usize;
        rings.swap(i, j);
    }

    // The first early and the first general environment are put in ap-south, so the broken
    // release always has something to break after the canary.
    let mut need_ap_early = true;
    let mut need_ap_general = true;
    // Per customer and region, the next environment number.
    let mut counters = vec![[0u32; REGIONS.len()]; CUSTOMERS.len()];
    let mut canaries = 0;

    rings
        .into_iter()
        .enumerate()
        .map(|(i, ring)| {
            let customer = match i {
                0 => 0,
                1 => SPECIAL_CUSTOMER,
                _ => rng.below(CUSTOMERS.len() as u64) as usize,
            };
            let region = match ring {
                // Canaries alternate between the two big regions and never touch ap-south,
                // so the broken release passes the canary wave.
                Ring::Canary => {
                    canaries += 1;
                    if canaries % 2 == 1 {
                        EU_WEST
                    } else {
                        US_EAST
                    }
                }
                Ring::Early | Ring::Beta if need_ap_early => {
                    need_ap_early = false;
                    AP_SOUTH
                }
                Ring::General if need_ap_general => {
                    need_ap_general = false;
                    AP_SOUTH
                }
                _ => weighted_region(&mut rng),
            };
            let tier = CUSTOMERS[customer].1;
            // Enterprise contracts run more api replicas; some busy pro customers have a
            // bigger worker pool. Most environments have no overrides at all.
            let config = match tier {
                "enterprise" => "api.replicas = 4\n",
                "pro" if rng.below(4) == 0 => "worker.concurrency = 8\n",
                _ => "",
            };
            let counter = &mut counters[customer][region];
            *counter += 1;
            Env {
                name: format!(
                    "{}-{}-{}",
                    CUSTOMERS[customer].0, REGIONS[region].1, counter
                ),
                region,
                customer,
                ring,
                config,
            }
        })
        .collect()
}

fn weighted_region(rng: &mut SplitMix64) -> usize {
    let mut roll = rng.below(100);
    for (i, (_, _, weight)) in REGIONS.iter().enumerate() {
        if roll < *weight {
            return i;
        }
        roll -= weight;
    }
    unreachable!("region weights add up to 100")
}

/// `environments/NAME.toml`.
fn env_file(env: &Env) -> String {
    let (customer, tier) = CUSTOMERS[env.customer];
    let mut out = format!(
        "labels = {{ region = \"{}\", tier = \"{tier}\", ring = \"{}\", customer = \"{customer}\" }}\n\
         target = \"sim://{}\"\n",
        REGIONS[env.region].0,
        env.ring.label(),
        env.name,
    );
    if !env.config.is_empty() {
        out.push_str("\n[config]\n");
        out.push_str(env.config);
    }
    out
}

/// The three overlays, in increasing priority: region, compliance tier, one customer.
fn overlay_files(special: &str) -> Vec<(String, String)> {
    vec![
        (
            "overlays/eu-residency.toml".into(),
            "# EU customers' data stays in the EU.\n\
             select = \"region=eu-west\"\n\
             priority = 10\n\
             \n\
             [config]\n\
             api.data_residency = \"eu\"\n"
                .into(),
        ),
        (
            "overlays/compliance-enterprise.toml".into(),
            "# Enterprise contracts require audit logs and short sessions.\n\
             select = \"tier=enterprise\"\n\
             priority = 20\n\
             \n\
             [config]\n\
             api.audit_log = true\n\
             web.session_timeout = \"15m\"\n"
                .into(),
        ),
        (
            format!("overlays/{special}-special.toml"),
            format!(
                "# {special}'s downstream systems cannot take more than two concurrent jobs.\n\
                 select = \"customer={special}\"\n\
                 priority = 30\n\
                 \n\
                 [config]\n\
                 worker.concurrency = 2\n"
            ),
        ),
    ]
}

/// `releases/NAME.toml` for one of the three demo releases.
fn release_file(name: &str) -> (String, String) {
    let body = match name {
        "2026.11.1" => {
            "[services]\n\
             schema = \"116\"\n\
             api = \"4.1.0\"\n\
             worker = \"4.1.0\"\n\
             web = \"4.1.0\"\n\
             \n\
             [config]\n\
             api.replicas = 2\n\
             api.log_level = \"info\"\n\
             worker.concurrency = 4\n\
             web.replicas = 2\n"
        }
        "2026.11.2" => {
            "[services]\n\
             schema = \"117\"\n\
             api = \"4.1.1\"\n\
             worker = \"4.1.1\"\n\
             web = \"4.1.2\"\n\
             \n\
             [config]\n\
             api.replicas = 2\n\
             api.log_level = \"info\"\n\
             worker.concurrency = 4\n\
             web.replicas = 2\n"
        }
        BROKEN_RELEASE => {
            "[services]\n\
             schema = \"118\"\n\
             api = \"4.2.0\"\n\
             worker = \"4.2.0\"\n\
             web = \"4.2.1\"\n\
             \n\
             [config]\n\
             api.replicas = 2\n\
             api.log_level = \"info\"\n\
             api.cache = \"redis\"\n\
             worker.concurrency = 4\n\
             web.replicas = 2\n\
             \n\
             # Demo only: api 4.2.0 crashes on start in ap-south (after the schema migration\n\
             # ran). The canaries are all in eu-west and us-east, so it passes the canary wave\n\
             # and the failure budget of a later wave has to stop it; rolling those\n\
             # environments back puts api (and what else changed) back at 2026.11.2.\n\
             [sim]\n\
             broken = \"region=ap-south\"\n\
             broken_services = [\"api\"]\n"
        }
        _ => unreachable!("unknown demo release {name}"),
    };
    (format!("releases/{name}.toml"), body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    /// The final tree: later commits overwrite earlier files with the same path.
    fn tree(commits: &[DemoCommit]) -> BTreeMap<String, toml::Table> {
        let mut tree = BTreeMap::new();
        for commit in commits {
            for (path, body) in &commit.files {
                let table: toml::Table = toml::from_str(body)
                    .unwrap_or_else(|e| panic!("{path} is not valid TOML: {e}\n{body}"));
                tree.insert(path.clone(), table);
            }
        }
        tree
    }

    fn label<'a>(env: &'a toml::Table, key: &str) -> &'a str {
        env["labels"][key].as_str().unwrap()
    }

    fn environments(tree: &BTreeMap<String, toml::Table>) -> Vec<(&str, &toml::Table)> {
        tree.iter()
            .filter_map(|(path, t)| {
                let name = path.strip_prefix("environments/")?.strip_suffix(".toml")?;
                Some((name, t))
            })
            .collect()
    }

    #[test]
    fn the_demo_over_agents_is_valid_and_reaches_each_environment_at_its_agent() {
        let mut commits = demo_commits(5);
        let urls: Vec<String> = (0..5)
            .map(|i| format!("http://127.0.0.1:{}", 9000 + i))
            .collect();
        over_agents(&mut commits, &urls, "/var/lib/flotilla/demo-token");
        let dir = tempfile::tempdir().unwrap();
        crate::intent::write::write_repo(dir.path(), &commits).unwrap();
        let intent = crate::intent::load(dir.path(), "HEAD").unwrap().intent;
        assert_eq!(intent.driver.kind, crate::intent::DriverKind::Http);
        let mut targets: Vec<String> = intent
            .environments
            .iter()
            .map(|e| e.target.clone().unwrap())
            .collect();
        targets.sort();
        assert_eq!(targets, urls);
    }

    fn check(envs: usize) {
        let commits = demo_commits(envs);
        assert!((3..=5).contains(&commits.len()));

        // Later commits only add or change files; none of ours is written twice.
        let mut paths = HashSet::new();
        for commit in &commits {
            assert!(!commit.message.is_empty());
            for (path, _) in &commit.files {
                assert!(paths.insert(path.clone()), "{path} written twice");
            }
        }

        let tree = tree(&commits);
        let fleet = environments(&tree);
        assert_eq!(fleet.len(), envs, "one file per environment");
        // Names come from the map keys, so uniqueness is checked by counting distinct targets.
        let targets: HashSet<&str> = fleet
            .iter()
            .map(|(_, t)| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(targets.len(), envs);
        for (name, env) in &fleet {
            assert_eq!(env["target"].as_str().unwrap(), format!("sim://{name}"));
            assert!(name.starts_with(&format!("{}-", label(env, "customer"))));
            assert!(["eu-west", "us-east", "us-west", "ap-south"].contains(&label(env, "region")));
            assert!(["free", "pro", "enterprise"].contains(&label(env, "tier")));
            assert!(["canary", "early", "beta", "general"].contains(&label(env, "ring")));
        }

        let canaries: Vec<_> = fleet
            .iter()
            .filter(|(_, t)| label(t, "ring") == "canary")
            .collect();
        assert!(!canaries.is_empty(), "at least one canary");
        assert!(
            canaries.len() * 100 <= envs * 2 + 100,
            "canary ring is small"
        );
        assert!(canaries
            .iter()
            .all(|(_, t)| label(t, "region") != "ap-south"));
        if envs >= 8 {
            assert!(fleet.iter().any(|(_, t)| label(t, "region") == "ap-south"));
        }

        // The special overlay targets a customer that exists.
        let special = tree
            .iter()
            .find(|(p, _)| p.ends_with("-special.toml"))
            .map(|(_, t)| t["select"].as_str().unwrap())
            .unwrap();
        let customer = special.strip_prefix("customer=").unwrap();
        assert!(fleet.iter().any(|(_, t)| label(t, "customer") == customer));

        let fleet_file = &tree["flotilla.toml"];
        let max_failures = fleet_file["strategy"]["max_failures"].as_integer().unwrap();
        assert!(max_failures >= 1);
        assert_eq!(fleet_file["service"].as_array().unwrap().len(), 4);
        assert_eq!(
            tree.keys().filter(|p| p.starts_with("releases/")).count(),
            3
        );
    }

    #[test]
    fn default_fleet_is_valid() {
        check(DEFAULT_ENVS);
    }

    #[test]
    fn small_fleets_are_valid() {
        for envs in 1..=70 {
            check(envs);
        }
    }

    #[test]
    fn large_fleet_is_valid() {
        check(10_000);
    }

    #[test]
    fn zero_is_raised_to_one() {
        assert_eq!(demo_commits(0), demo_commits(1));
    }

    #[test]
    fn deterministic() {
        assert_eq!(demo_commits(DEFAULT_ENVS), demo_commits(DEFAULT_ENVS));
        assert_eq!(demo_commits(10_000), demo_commits(10_000));
    }

    #[test]
    fn broken_release_passes_canary_and_breaks_later() {
        let tree = tree(&demo_commits(DEFAULT_ENVS));
        let broken = &tree[&format!("releases/{BROKEN_RELEASE}.toml")];
        assert_eq!(broken["sim"]["broken"].as_str(), Some("region=ap-south"));
        assert_eq!(broken["sim"]["broken_services"][0].as_str(), Some("api"));
        let fleet = environments(&tree);
        assert!(fleet.iter().any(|(_, t)| {
            label(t, "region") == "ap-south" && ["early", "beta"].contains(&label(t, "ring"))
        }));
    }

    #[test]
    fn first_environment_matches_the_format_example() {
        let commits = demo_commits(DEFAULT_ENVS);
        let (path, body) = &commits[1].files[0];
        assert_eq!(path, "environments/acme-eu-1.toml");
        let env: toml::Table = toml::from_str(body).unwrap();
        assert_eq!(label(&env, "ring"), "canary");
        assert_eq!(label(&env, "tier"), "enterprise");
        assert_eq!(env["config"]["api"]["replicas"].as_integer(), Some(4));
    }
}
