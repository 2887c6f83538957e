//! Writing intent files as the history of a new Git repository (`init`, `demo`, test fixtures).

use std::path::Path;

use git2::{IndexAddOption, Repository, Signature, Time};

use crate::demo::DemoCommit;

/// Writes `commits` as the history of a new repository at `dir`, which must not exist or be
/// empty (we never overwrite someone's files). Its objects go into one pack, as a clone's do:
/// ten thousand environment files as loose objects would be ten thousand files to open at
/// every read of the intent (and as many to write).
pub fn write_repo(dir: &Path, commits: &[DemoCommit]) -> Result<(), String> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            return Err(format!(
                "{} already exists and is not empty; choose a new directory",
                dir.display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let git = |e: git2::Error| format!("git: {}", e.message());
    let repo = Repository::init(dir).map_err(git)?;
    let odb = repo.odb().map_err(git)?;
    // Objects collect in memory and are written as one pack at the end.
    let mempack = odb.add_new_mempack_backend(999).map_err(git)?;
    let mut parent: Option<git2::Oid> = None;
    // Fixed authorship times keep generated repos byte-for-byte reproducible.
    let base = 1_793_000_000i64;
    for (i, c) in commits.iter().enumerate() {
        for (path, text) in &c.files {
            let full = dir.join(path);
            if let Some(p) = full.parent() {
                std::fs::create_dir_all(p)
                    .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
            }
            std::fs::write(&full, text)
                .map_err(|e| format!("cannot write {}: {e}", full.display()))?;
        }
        let mut index = repo.index().map_err(git)?;
        index
            .add_all(["*"].iter(), IndexAddOption::DEFAULT, None)
            .map_err(git)?;
        index.write().map_err(git)?;
        let tree_id = index.write_tree().map_err(git)?;
        let tree = repo.find_tree(tree_id).map_err(git)?;
        let sig = Signature::new(
            "flotilla",
            "flotilla@example.invalid",
            &Time::new(base + i as i64 * 3600, 0),
        )
        .map_err(git)?;
        let parents: Vec<git2::Commit> = parent
            .map(|p| repo.find_commit(p))
            .transpose()
            .map_err(git)?
            .into_iter()
            .collect();
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, &c.message, &tree, &parent_refs)
            .map_err(git)?;
        parent = Some(id);
    }
    let mut pack = git2::Buf::new();
    mempack.dump(&repo, &mut pack).map_err(git)?;
    let mut writer = odb.packwriter().map_err(git)?;
    std::io::Write::write_all(&mut writer, &pack)
        .map_err(|e| format!("cannot write the pack: {e}"))?;
    writer.commit().map_err(git)?;
    mempack.reset().map_err(git)?;
    Ok(())
}
