//! Random edits of a valid intent repo never panic the loader or the planner, and every
//! error names the file it is about. `cargo test` runs a few hundred cases; an optimised
//! build (`cargo test --release --test intent_fuzz`) runs 10,000, and PROPTEST_CASES sets
//! any number.

use std::time::SystemTime;

use flotilla::intent::load::parse;
use flotilla::intent::source::SourceFile;
use flotilla::intent::Revision;
use proptest::prelude::*;

/// The demo's intent files at its last commit: a realistic repo with every kind of file.
fn demo_files() -> Vec<SourceFile> {
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for commit in flotilla::demo::demo_commits(12) {
        for (path, text) in commit.files {
            files.insert(path, text);
        }
    }
    files
        .into_iter()
        .filter(|(p, _)| p == "flotilla.toml" || p.ends_with(".toml"))
        .map(|(path, text)| SourceFile { path, text })
        .collect()
}

/// Bits of TOML (and not quite TOML) that edits splice in.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "\n",
    "#",
    ",",
    "{",
    "}",
    "-1",
    "0",
    "1e309",
    "99999999999999999999",
    "true",
    "\"*\"",
    "\"\"",
    "\"ring in (\"",
    "\"a=b,,\"",
    "\"!\"",
    "[[service]]\nname = \"api\"\n",
    "[[strategy.wave]]\nname = \"x\"\nselect = \"nope=\"\n",
    "depends_on = [\"web\"]\n",
    "failure_budget = \"150%\"\n",
    "take = \"0%\"\n",
    "max_parallel = 0\n",
    "latency = \"5s..1s\"\n",
    "priority = -3\n",
    "select = \"\"\n",
    "é",
    "\u{0}",
    "\t",
];

#[derive(Debug, Clone)]
enum Edit {
    /// Insert a token at a byte position (clamped to a char boundary).
    Insert(usize, usize, usize),
    /// Delete a line.
    DeleteLine(usize, usize),
    /// Repeat a line.
    DuplicateLine(usize, usize),
    /// Cut the file at a position.
    Truncate(usize, usize),
    /// Drop a whole file.
    Remove(usize),
    /// Copy a file under another name in the same directory.
    Copy(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<usize>(), 0..TOKENS.len()).prop_map(|(f, p, t)| Edit::Insert(f, p, t)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(f, l)| Edit::DeleteLine(f, l)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(f, l)| Edit::DuplicateLine(f, l)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(f, p)| Edit::Truncate(f, p)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(f, n)| Edit::Copy(f, n)),
    ]
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(files: &mut Vec<SourceFile>, e: &Edit) {
    if files.is_empty() {
        return;
    }
    let n = files.len();
    match *e {
        Edit::Insert(f, p, t) => {
            let text = &mut files[f % n].text;
            let at = floor_boundary(text, p % (text.len() + 1));
            text.insert_str(at, TOKENS[t]);
        }
        Edit::DeleteLine(f, l) | Edit::DuplicateLine(f, l) => {
            let text = &mut files[f % n].text;
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.is_empty() {
                return;
            }
            let l = l % lines.len();
            if matches!(e, Edit::DeleteLine(..)) {
                lines.remove(l);
            } else {
                let copy = lines[l].clone();
                lines.insert(l, copy);
            }
            *text = lines.join("\n") + "\n";
        }
        Edit::Truncate(f, p) => {
            let text = &mut files[f % n].text;
            let at = floor_boundary(text, p % (text.len() + 1));
            text.truncate(at);
        }
        Edit::Remove(f) => {
            files.remove(f % n);
        }
        Edit::Copy(f, k) => {
            let from = files[f % n].clone();
            let dir = from.path.rsplit_once('/').map_or("", |(d, _)| d);
            if !dir.is_empty() {
                files.push(SourceFile {
                    path: format!("{dir}/copy-{}.toml", k % 5),
                    text: from.text,
                });
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 300 } else { 10_000 })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_edits_of_a_valid_repo_never_panic_and_every_error_names_a_file(
        edits in proptest::collection::vec(edit(), 1..6)
    ) {
        let mut files = demo_files();
        for e in &edits {
            apply(&mut files, e);
        }
        let names: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let revision = Revision { commit: "c".repeat(40), short: "ccccccc".into(), subject: "fuzz".into() };
        match parse(revision, &files) {
            Err(diags) => {
                prop_assert!(diags.iter().any(|d| d.is_error()));
                for d in diags.iter().filter(|d| d.is_error()) {
                    // Named file: one of the repo's, or flotilla.toml when it is missing.
                    prop_assert!(
                        names.contains(&d.file) || d.file == "flotilla.toml",
                        "error without a file of the repo: {d}"
                    );
                    prop_assert!(!d.message.is_empty());
                    // A position, when given, is inside the file.
                    if d.line > 0 {
                        let text = &files.iter().find(|f| f.path == d.file).unwrap().text;
                        prop_assert!(d.line <= text.lines().count().max(1) + 1, "{d}");
                    }
                }
            }
            Ok((intent, _)) => {
                // A valid intent plans without panicking, whatever it says.
                for r in &intent.releases {
                    let _ = flotilla::plan::build(&intent, &r.name, SystemTime::UNIX_EPOCH);
                }
            }
        }
    }
}
