//! Adopting drift: the live values of an environment's drifted keys written as its
//! emergency layer (`emergency/ENV.toml`, above every other layer) and committed with git2
//! on the current branch, so the desired state equals live for them and no rollout undoes
//! the fix. `flotilla adopt` and the console's adopt both come here.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Repository, Signature};

use super::scan;
use super::three_way::Change;
use crate::identity::Identity;
use crate::intent::Intent;

/// Why nothing was adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptError {
    /// The repository may not take the commit now (detached HEAD, uncommitted changes to
    /// the layer): nothing was written.
    Refused(String),
    /// Nothing to adopt as asked (no drift, a secret, a removed key): nothing was written.
    Invalid(String),
    /// The commit failed.
    Failed(String),
}

impl std::fmt::Display for AdoptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdoptError::Refused(why) | AdoptError::Invalid(why) => {
                write!(f, "refused: {why}; nothing was written")
            }
            AdoptError::Failed(why) => write!(f, "error: {why}"),
        }
    }
}

/// What was adopted: the commit, the layer's file, a line per key (old -> new).
#[derive(Debug, Clone)]
pub struct Adopted {
    pub commit: String,
    pub file: String,
    pub lines: Vec<String>,
    /// Committed, but the work tree or index could not be updated: what to do.
    pub warning: Option<String>,
    /// Every key that drifted there was adopted, not only some.
    pub covers_all: bool,
}

/// Observes `env` now and adopts its drift (only `service`'s when given, only `keys` when
/// any) onto HEAD of `repo`: the whole of `flotilla adopt` but the printing, for the
/// command and the console alike.
pub async fn adopt_now(
    repo: &Path,
    state: &Path,
    store: &crate::store::Store,
    env: &str,
    service: Option<&str>,
    keys: &[String],
    me: &Identity,
) -> Result<Adopted, AdoptError> {
    let head = crate::intent::load(repo, "HEAD")
        .map_err(|e| AdoptError::Invalid(format!("the intent at HEAD does not load: {e}")))?;
    let intent = std::sync::Arc::new(head.intent);
    check_repo(repo, env)?;
    let observed_at = std::time::SystemTime::now();
    let (report, _) = scan::observe_one(repo, &intent, store, state, env)
        .await
        .map_err(AdoptError::Invalid)?;
    if let Some(e) = &report.error {
        return Err(AdoptError::Failed(format!(
            "cannot observe {env}: {e}; nothing was changed"
        )));
    }
    adopt(repo, &intent, &report, service, keys, observed_at, me)
}

/// The emergency layer's file for `env`.
pub fn layer_file(env: &str) -> String {
    format!("emergency/{env}.toml")
}

/// Checks, before anything is observed, that the layer of `env` may be committed in `repo`.
pub fn check_repo(repo: &Path, env: &str) -> Result<(), AdoptError> {
    let git = Repository::open(repo).map_err(|e| AdoptError::Failed(e.message().to_string()))?;
    can_commit(&git, &layer_file(env)).map_err(AdoptError::Refused)
}

/// Adopts the drift `report` found in `report.env` (observed at `observed_at`, against
/// `intent`, the intent at HEAD): only `service`'s when given, only `keys` when any.
pub fn adopt(
    repo: &Path,
    intent: &Intent,
    report: &scan::EnvReport,
    service: Option<&str>,
    keys: &[String],
    observed_at: std::time::SystemTime,
    me: &Identity,
) -> Result<Adopted, AdoptError> {
    let env = report.env.as_str();
    let file = layer_file(env);
    let git = Repository::open(repo).map_err(|e| AdoptError::Failed(e.message().to_string()))?;
    can_commit(&git, &file).map_err(AdoptError::Refused)?;
    let adoption = choose(intent, report, service, keys).map_err(AdoptError::Invalid)?;
    let drifted: usize = report
        .services
        .iter()
        .filter(|s| s.comparison.state.is_drift())
        .map(|s| s.comparison.drift.len())
        .sum();
    let covers_all = adoption.lines.len() == drifted;
    let when = humantime::format_rfc3339_seconds(observed_at).to_string();
    let text = layer_text(intent.emergency(env), &adoption, &when, &me.actor());
    let message = format!(
        "Adopt the out-of-band change to {env} (observed {when})\n\n{}\n\nWritten by `flotilla adopt` as {file}, the highest layer: fold it into an overlay or\nthe environment file, then remove it.\n",
        adoption.lines.join("\n")
    );
    let (commit, warning) = commit_file(&git, &file, &text, &message, me)
        .map_err(|e| AdoptError::Failed(format!("cannot commit {file}: {e}")))?;
    Ok(Adopted {
        commit,
        file,
        lines: adoption.lines,
        warning,
        covers_all,
    })
}

/// What adopting changes: per service, the live version (if it drifted) and live values.
struct Adoption {
    versions: BTreeMap<String, String>,
    values: Vec<(String, String, toml::Value)>,
    lines: Vec<String>,
}

/// The file may be written and committed: HEAD is a branch, and the file has no changes
/// of its own that a commit would sweep up or overwrite.
fn can_commit(git: &Repository, file: &str) -> Result<(), String> {
    let head = git
        .head()
        .map_err(|e| format!("HEAD cannot be read: {}", e.message()))?;
    if !head.is_branch() {
        return Err(
            "HEAD is not a branch (a detached checkout); check out the branch to adopt onto".into(),
        );
    }
    match git.status_file(Path::new(file)) {
        Ok(s) if s.is_empty() => Ok(()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(()),
        Ok(_) => Err(format!(
            "{file} has uncommitted changes; commit or discard them first"
        )),
        Err(e) => Err(format!(
            "the status of {file} cannot be read: {}",
            e.message()
        )),
    }
}

/// The drifted keys to adopt, as `args` narrows them.
fn choose(
    intent: &Intent,
    report: &scan::EnvReport,
    service: Option<&str>,
    keys: &[String],
) -> Result<Adoption, String> {
    let mut adoption = Adoption {
        versions: BTreeMap::new(),
        values: Vec::new(),
        lines: Vec::new(),
    };
    for s in &report.services {
        if service.is_some_and(|x| x != s.service) || !s.comparison.state.is_drift() {
            continue;
        }
        let secret_keys = intent
            .services
            .iter()
            .find(|x| x.name == s.service)
            .map_or(&[][..], |x| &x.secret_keys[..]);
        let chosen: Vec<&Change> = s
            .comparison
            .drift
            .iter()
            .filter(|c| keys.is_empty() || keys.contains(&c.key))
            .collect();
        for c in chosen {
            if c.key == "version" {
                let Some(toml::Value::String(v)) = &c.to else {
                    return Err(format!(
                        "{} does not run in {} any more: there is no version to adopt",
                        s.service, report.env
                    ));
                };
                adoption.versions.insert(s.service.clone(), v.clone());
            } else {
                if crate::secrets::is_secret(secret_keys, &c.key) {
                    return Err(format!(
                        "{}.{} is a secret: its live value is sealed and cannot be adopted; put the new value in the intent yourself",
                        s.service, c.key
                    ));
                }
                let Some(value) = &c.to else {
                    return Err(format!(
                        "{}.{} was removed by hand, which a layer cannot express; remove it from the intent yourself",
                        s.service, c.key
                    ));
                };
                adoption
                    .values
                    .push((s.service.clone(), c.key.clone(), value.clone()));
            }
            adoption.lines.push(format!(
                "{}: {} {} -> {}",
                s.service,
                c.key,
                super::three_way::value(&c.from),
                super::three_way::value(&c.to)
            ));
        }
    }
    if adoption.lines.is_empty() {
        let what = if keys.is_empty() {
            String::new()
        } else {
            format!(" in {}", keys.join(", "))
        };
        return Err(format!(
            "{} has no drift{what} to adopt (`flotilla drift {}` shows where it stands)",
            report.env, report.env
        ));
    }
    Ok(adoption)
}

/// The emergency layer's text: what it held before, with the adopted values on top.
fn layer_text(
    before: Option<&crate::intent::Emergency>,
    adoption: &Adoption,
    when: &str,
    by: &str,
) -> String {
    let mut versions = before.map(|e| e.versions.clone()).unwrap_or_default();
    versions.extend(adoption.versions.clone());
    let mut config = before.map(|e| e.config.clone()).unwrap_or_default();
    for (service, key, value) in &adoption.values {
        let table = config
            .entry(service.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        if let toml::Value::Table(t) = table {
            crate::keypath::insert(t, key, value.clone());
        }
    }
    let mut doc = toml::Table::new();
    doc.insert("adopted".into(), toml::Value::String(when.into()));
    doc.insert("by".into(), toml::Value::String(by.into()));
    if !versions.is_empty() {
        let v: toml::Table = versions
            .into_iter()
            .map(|(k, v)| (k, toml::Value::String(v)))
            .collect();
        doc.insert("services".into(), toml::Value::Table(v));
    }
    if !config.is_empty() {
        doc.insert("config".into(), toml::Value::Table(config));
    }
    format!(
        "# Emergency layer: live values adopted into Git by `flotilla adopt`. It wins over\n# every other layer; fold it into an overlay or the environment file, then remove it.\n{}",
        toml::to_string(&doc).unwrap_or_default()
    )
}

/// Commits `file` alone on the current branch, then writes it in the work tree: the tree
/// is HEAD's with this one file replaced, so nothing else staged is swept into the commit,
/// and a failed commit writes nothing. Returns the new commit's id.
fn commit_file(
    git: &Repository,
    file: &str,
    text: &str,
    message: &str,
    me: &Identity,
) -> Result<(String, Option<String>), String> {
    let workdir = git.workdir().ok_or("the repository has no work tree")?;
    let target = workdir.join(file);
    let blob = git
        .blob(text.as_bytes())
        .map_err(|e| e.message().to_string())?;
    let head = git
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| e.message().to_string())?;
    let root = head.tree().map_err(|e| e.message().to_string())?;
    let (dir, name) = file.split_once('/').ok_or("a file inside a directory")?;
    let sub = match root.get_name(dir) {
        Some(entry) => Some(
            entry
                .to_object(git)
                .and_then(|o| o.peel_to_tree())
                .map_err(|e| e.message().to_string())?,
        ),
        None => None,
    };
    let mut inner = git
        .treebuilder(sub.as_ref())
        .map_err(|e| e.message().to_string())?;
    inner
        .insert(name, blob, 0o100644)
        .map_err(|e| e.message().to_string())?;
    let inner_id = inner.write().map_err(|e| e.message().to_string())?;
    let mut outer = git
        .treebuilder(Some(&root))
        .map_err(|e| e.message().to_string())?;
    outer
        .insert(dir, inner_id, 0o040000)
        .map_err(|e| e.message().to_string())?;
    let tree_id = outer.write().map_err(|e| e.message().to_string())?;
    let tree = git
        .find_tree(tree_id)
        .map_err(|e| e.message().to_string())?;
    // The operator's Git identity, else who they are on this host.
    let signature = git
        .signature()
        .or_else(|_| Signature::now(&me.user, &format!("{}@{}", me.user, me.host)))
        .map_err(|e| e.message().to_string())?;
    let id = git
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            message,
            &tree,
            &[&head],
        )
        .map_err(|e| e.message().to_string())?;
    // Committed: the work tree and the index now get the file, so `git status` shows it
    // clean. Either failing leaves the commit right and says what to do.
    let synced = target
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&target, text))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let mut index = git.index().map_err(|e| e.message().to_string())?;
            index
                .add_path(Path::new(file))
                .map_err(|e| e.message().to_string())?;
            index.write().map_err(|e| e.message().to_string())
        });
    let warning = synced.err().map(|e| {
        format!("committed, but the work tree or index could not be updated ({e}); run `git checkout -- {file}`")
    });
    Ok((id.to_string(), warning))
}
