//! Reading the intent files out of a Git commit (never the work tree).

use std::path::Path;

use git2::{Repository, Status, StatusOptions};

use super::diagnostics::{Diagnostic, Severity};
use super::model::Revision;
use super::IntentError;

/// The directories whose `*.toml` files make up the intent, besides `flotilla.toml`.
pub const INTENT_DIRS: [&str; 4] = ["environments", "overlays", "releases", "emergency"];

/// One intent file's path (repo-relative, `/`-separated) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// The intent files of one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub revision: Revision,
    pub files: Vec<SourceFile>,
    /// Files that are not read ([`uncommitted`] tells of changes not committed).
    pub warnings: Vec<Diagnostic>,
    /// Files that cannot be intent at all: not UTF-8, in the tree twice, or named like
    /// another up to case. The rest is still read, so every problem is reported at once.
    pub errors: Vec<Diagnostic>,
}

/// Reads the intent at `rev` (a commit, branch, tag or anything `git rev-parse` takes).
pub fn read(repo_dir: &Path, rev: &str) -> Result<Snapshot, IntentError> {
    let repo = Repository::open(repo_dir).map_err(|e| {
        IntentError::Git(format!(
            "{} is not a Git repository ({}); flotilla reads intent from Git history: \
             run `flotilla init DIR` to scaffold one, or pass --repo",
            repo_dir.display(),
            e.message()
        ))
    })?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| {
            IntentError::Git(format!(
                "cannot resolve revision `{rev}` in {}: {}",
                repo_dir.display(),
                e.message()
            ))
        })?;
    let tree = commit
        .tree()
        .map_err(|e| IntentError::Git(format!("cannot read the tree of {rev}: {e}")))?;
    let id = commit.id().to_string();
    let revision = Revision {
        short: id[..7.min(id.len())].to_string(),
        commit: id,
        subject: commit.summary().unwrap_or("").to_string(),
    };

    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    // The text of a blob; one that is not UTF-8 is an error at its first bad byte.
    let blob_text = |path: &str,
                     entry_id: git2::Oid,
                     errors: &mut Vec<Diagnostic>|
     -> Result<Option<String>, IntentError> {
        let blob = repo
            .find_blob(entry_id)
            .map_err(|e| IntentError::Git(format!("cannot read {path}: {e}")))?;
        match String::from_utf8(blob.content().to_vec()) {
            Ok(text) => Ok(Some(text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let lossy = String::from_utf8_lossy(e.as_bytes());
                errors.push(
                    Diagnostic::error(
                        path,
                        &lossy,
                        at..at + 1,
                        format!("byte {at} is not valid UTF-8; intent files are UTF-8 text"),
                    )
                    .with_help("re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"),
                );
                Ok(None)
            }
        }
    };

    // The root, too, may be hand-made with a name twice: which one counts would be a guess.
    let mut at_root = std::collections::HashSet::new();
    for item in tree.iter() {
        let name = item.name().unwrap_or("");
        let ours = name == "flotilla.toml" || INTENT_DIRS.contains(&name);
        if ours && !at_root.insert(name.to_string()) {
            errors.push(
                Diagnostic::file(
                    Severity::Error,
                    name,
                    format!(
                        "{name} is in the tree of commit {} twice (a malformed tree)",
                        revision.short
                    ),
                )
                .with_help(
                    "rewrite the commit with one entry per name (`git fsck` reports such trees)",
                ),
            );
        }
    }

    match tree.get_path(Path::new("flotilla.toml")) {
        Ok(entry) => {
            if let Some(text) = blob_text("flotilla.toml", entry.id(), &mut errors)? {
                files.push(SourceFile {
                    path: "flotilla.toml".into(),
                    text,
                })
            }
        }
        Err(_) => {
            return Err(IntentError::Invalid(vec![Diagnostic::file(
            Severity::Error,
            "flotilla.toml",
            format!(
                "commit {} has no flotilla.toml at the root of the repository",
                revision.short
            ),
        )
        .with_help(
            "commit a flotilla.toml with a [fleet] table, or scaffold one with `flotilla init DIR`",
        )]))
        }
    }

    for dir in INTENT_DIRS {
        let Ok(entry) = tree.get_path(Path::new(dir)) else {
            continue;
        };
        let Ok(subtree) = repo.find_tree(entry.id()) else {
            continue;
        };
        // By name in lower case: the first file seen. Git itself never writes a tree with
        // a name twice, but a hand-made one can, and case-insensitive file systems cannot
        // check out two names that differ only in case.
        let mut seen: std::collections::HashMap<String, String> = Default::default();
        for item in subtree.iter() {
            let name = item.name().unwrap_or("");
            let path = format!("{dir}/{name}");
            if let Some(first) = seen.get(&name.to_lowercase()) {
                let (message, help) = if *first == path {
                    (
                        format!("{path} is in the tree of commit {} twice (a malformed tree)", revision.short),
                        "rewrite the commit with one entry per file (`git fsck` reports such trees)".to_string(),
                    )
                } else {
                    (
                        format!("{path} and {first} differ only in case; names must differ in more than case"),
                        format!("rename or remove one of them (`git mv {path} ...`)"),
                    )
                };
                errors.push(Diagnostic::file(Severity::Error, &path, message).with_help(help));
                continue;
            }
            seen.insert(name.to_lowercase(), path.clone());
            if item.kind() != Some(git2::ObjectType::Blob) || !name.ends_with(".toml") {
                warnings.push(Diagnostic::file(
                    Severity::Warning,
                    &path,
                    format!("ignored: only *.toml files directly in {dir}/ are read"),
                ));
                continue;
            }
            if let Some(text) = blob_text(&path, item.id(), &mut errors)? {
                files.push(SourceFile { text, path });
            }
        }
    }

    Ok(Snapshot {
        revision,
        files,
        warnings,
        errors,
    })
}

/// Warnings for intent files whose work-tree state differs from HEAD: they are easy to forget
/// and flotilla would silently ignore them. Nothing when `repo_dir` cannot be opened
/// ([`read`] says why).
pub fn uncommitted(repo_dir: &Path) -> Vec<Diagnostic> {
    let Ok(repo) = Repository::open(repo_dir) else {
        return Vec::new();
    };
    if repo.is_bare() {
        return Vec::new();
    }
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    opts.pathspec("flotilla.toml");
    for dir in INTENT_DIRS {
        opts.pathspec(format!("{dir}/*.toml"));
    }
    let Ok(statuses) = repo.statuses(Some(&mut opts)) else {
        return Vec::new();
    };
    statuses
        .iter()
        .filter(|s| s.status() != Status::CURRENT && !s.status().contains(Status::IGNORED))
        .filter_map(|s| {
            let path = s.path()?.to_string();
            Some(
                Diagnostic::file(
                    Severity::Warning,
                    &path,
                    "has uncommitted changes; flotilla reads the committed version",
                )
                .with_help("commit it to make it part of the intent"),
            )
        })
        .collect()
}

/// Whether the work tree's `path` (repo-relative) is what commit `commit` holds there: the
/// exec driver runs scripts from the work tree, and a rollout pinned to a commit must run
/// that commit's. Err says how they differ.
pub fn work_tree_matches(repo_dir: &Path, commit: &str, path: &str) -> Result<(), String> {
    let repo = Repository::open(repo_dir).map_err(|e| e.message().to_string())?;
    let tree = repo
        .revparse_single(commit)
        .and_then(|o| o.peel_to_commit())
        .and_then(|c| c.tree())
        .map_err(|e| e.message().to_string())?;
    let short = &commit[..7.min(commit.len())];
    let Ok(entry) = tree.get_path(Path::new(path)) else {
        return Err(format!(
            "{path} is not in commit {short}, which the rollout runs at: commit it"
        ));
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| e.message().to_string())?;
    let here =
        std::fs::read(repo_dir.join(path)).map_err(|e| format!("cannot read {path}: {e}"))?;
    if here != blob.content() {
        return Err(format!(
            "{path} in the work tree differs from commit {short}, which the rollout runs at: commit it, or check that commit out"
        ));
    }
    Ok(())
}

/// Just the fleet's name from `flotilla.toml` at `rev`, without validating anything else.
pub fn fleet_name(repo_dir: &Path, rev: &str) -> Result<String, IntentError> {
    let snapshot = read(repo_dir, rev)?;
    let text = snapshot
        .files
        .iter()
        .find(|f| f.path == "flotilla.toml")
        .map(|f| f.text.as_str())
        .unwrap_or("");
    let value: toml::Table = toml::from_str(text)
        .map_err(|e| IntentError::Git(format!("cannot read flotilla.toml: {}", e.message())))?;
    value
        .get("fleet")
        .and_then(|f| f.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| IntentError::Git("flotilla.toml has no [fleet] name".into()))
}
