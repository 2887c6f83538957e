//! The intent: what the Git repository says the fleet should run.

pub mod diagnostics;
pub mod freeze;
pub mod layers;
pub mod load;
pub mod model;
pub mod schema;
pub mod source;
pub mod write;

use std::path::Path;

pub use diagnostics::{Diagnostic, Severity};
pub use freeze::{Freeze, Weekly, Window};
pub use model::*;

/// Why the intent could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The repository or revision could not be read.
    #[error("{0}")]
    Git(String),
    /// The files were read but are not a valid intent; every problem found is listed.
    #[error("the intent is invalid ({} error(s))", .0.iter().filter(|d| d.is_error()).count())]
    Invalid(Vec<Diagnostic>),
}

/// A validated intent plus the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub intent: Intent,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates the intent in `repo` at `rev`.
pub fn load(repo: &Path, rev: &str) -> Result<Loaded, IntentError> {
    // The work tree's status stats every intent file: at 100,000 environments it takes as
    // long as reading the commit, so it runs beside the reading and the parsing.
    std::thread::scope(|scope| {
        let status = scope.spawn(|| source::uncommitted(repo));
        let snapshot = source::read(repo, rev)?;
        let parsed = load::parse(snapshot.revision, &snapshot.files);
        let mut all = snapshot.warnings;
        // A status that panicked tells of nothing; the intent itself was still read.
        all.extend(status.join().unwrap_or_default());
        if !snapshot.errors.is_empty() {
            all.extend(snapshot.errors);
            if let Err(diags) = parsed {
                all.extend(diags);
            }
            return Err(IntentError::Invalid(all));
        }
        match parsed {
            Ok((intent, mut warnings)) => {
                all.append(&mut warnings);
                Ok(Loaded {
                    intent,
                    warnings: all,
                })
            }
            Err(mut diags) => {
                all.append(&mut diags);
                Err(IntentError::Invalid(all))
            }
        }
    })
}
