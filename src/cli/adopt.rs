//! `flotilla adopt ENV`: an out-of-band change made part of the intent. The live values
//! of the drifted keys are written as the environment's emergency layer
//! (`emergency/ENV.toml`, above every other layer) and committed with git2 on the current
//! branch, so the desired state equals live for them and no rollout undoes the fix.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use git2::{Repository, Signature};

use super::{exit, load};
use crate::drift::scan;
use crate::drift::three_way::Change;
use crate::identity::Identity;

#[derive(Debug, Clone, clap::Args)]
pub struct AdoptArgs {
    pub env: String,
    /// Only this service's drift (default: every drifted service).
    #[arg(long)]
    pub service: Option<String>,
    /// Only these keys (dotted, `version` for the version; repeat for several).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
}

/// What adopting changes: per service, the live version (if it drifted) and live values.
struct Adoption {
    versions: BTreeMap<String, String>,
    values: Vec<(String, String, toml::Value)>,
    lines: Vec<String>,
}

pub fn run(repo: &Path, state: Option<&Path>, args: &AdoptArgs) -> u8 {
    // The layer goes on top of the branch being worked on: HEAD.
    let loaded = match load(repo, "HEAD") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    let env = &args.env;
    if let Err(code) = super::environment(&intent, env) {
        return code;
    }
    let file = format!("emergency/{env}.toml");
    let git = match Repository::open(repo) {
        Ok(r) => r,
        Err(e) => return super::refuse(exit::INVALID, format!("error: {}", e.message())),
    };
    if let Err(why) = can_commit(&git, &file) {
        return super::refuse(
            exit::BLOCKED,
            format!("refused: {why}; nothing was written"),
        );
    }
    let (path, store) = match super::open_fleet_state(state, &intent.fleet) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let observed_at = SystemTime::now();
    let (report, _) = match super::drift::one_env(repo, &intent, &store, &path, env) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let adoption = match choose(&intent, &report, args) {
        Ok(a) => a,
        Err(why) => {
            return super::refuse(
                exit::INVALID,
                format!("refused: {why}; nothing was written"),
            )
        }
    };
    let me = Identity::current();
    let when = humantime::format_rfc3339_seconds(observed_at).to_string();
    let text = layer_text(intent.emergency(env), &adoption, &when, &me.actor());
    let message = format!(
        "Adopt the out-of-band change to {env} (observed {when})\n\n{}\n\nWritten by `flotilla adopt` as {file}, the highest layer: fold it into an overlay or\nthe environment file, then remove it.\n",
        adoption.lines.join("\n")
    );
    let commit = match commit_file(&git, &file, &text, &message, &me) {
        Ok(c) => c,
        Err(e) => return super::refuse(exit::FAILED, format!("error: cannot commit {file}: {e}")),
    };
    println!(
        "adopted into Git as {file}, commit {}:\n  {}\n`flotilla drift {env}` no longer reports these keys; `flotilla explain {env}` shows the layer",
        &commit[..7],
        adoption.lines.join("\n  ")
    );
    super::drift::tell_rollout(
        repo,
        &path,
        &store,
        env,
        crate::engine::Decision::Adopt { commit },
    )
    .unwrap_or(exit::OK)
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
    intent: &crate::intent::Intent,
    report: &scan::EnvReport,
    args: &AdoptArgs,
) -> Result<Adoption, String> {
    let mut adoption = Adoption {
        versions: BTreeMap::new(),
        values: Vec::new(),
        lines: Vec::new(),
    };
    for s in &report.services {
        if args.service.as_ref().is_some_and(|x| *x != s.service) || !s.comparison.state.is_drift()
        {
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
            .filter(|c| args.keys.is_empty() || args.keys.contains(&c.key))
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
                super::drift::value(&c.from),
                super::drift::value(&c.to)
            ));
        }
    }
    if adoption.lines.is_empty() {
        let what = if args.keys.is_empty() {
            String::new()
        } else {
            format!(" in {}", args.keys.join(", "))
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
) -> Result<String, String> {
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
    if let Err(e) = synced {
        eprintln!("warning: committed, but the work tree or index could not be updated ({e}); run `git checkout -- {file}`");
    }
    Ok(id.to_string())
}
