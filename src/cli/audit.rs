//! `flotilla audit [--verify]`: the journal of who did what, and a check of its hash chain.

use std::path::Path;
use std::time::SystemTime;

use super::{exit, open_state, Output};
use crate::store::journal::JournalEntry;

/// Filters on the journal; all given ones must hold.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuditArgs {
    /// Recompute the hash chain, check it against its checkpoints, and name the first row
    /// that does not fit (exit 1). With FLOTILLA_AUDIT_KEY set, keyed rows are checked with
    /// it.
    #[arg(long)]
    pub verify: bool,
    /// With --verify: the head (SEQ:HASH, from --export-head) kept elsewhere; the journal
    /// must still hold it, so rows cut off its end or a re-chained journal are found.
    #[arg(long, value_name = "SEQ:HASH", requires = "verify", value_parser = parse_head)]
    pub expect_head: Option<(i64, String)>,
    /// Print the journal's head (SEQ:HASH) to keep elsewhere (in Git, a ticket).
    #[arg(long, conflicts_with = "verify")]
    pub export_head: bool,
    #[arg(long)]
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::envs))]
    pub env: Option<String>,
    #[arg(long)]
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::waves))]
    pub wave: Option<String>,
    /// Event kind, e.g. gate_approved.
    #[arg(long)]
    pub kind: Option<String>,
    /// Who acted, e.g. alice@bastion-1 (a prefix matches).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

fn parse_head(v: &str) -> Result<(i64, String), String> {
    let (seq, hash) = v
        .split_once(':')
        .ok_or("write the head as SEQ:HASH, as `flotilla audit --export-head` prints it")?;
    let seq = seq
        .parse()
        .map_err(|_| format!("`{seq}` is not a row number; write SEQ:HASH"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the hash is 64 hex digits; write SEQ:HASH".into());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

fn parse_time(flag: &str, value: &Option<String>) -> Result<Option<SystemTime>, u8> {
    match value {
        None => Ok(None),
        Some(v) => humantime::parse_rfc3339_weak(v).map(Some).map_err(|e| {
            super::refuse(
                exit::INVALID,
                format!("error: --{flag} {v}: {e}; write a time like 2026-11-26T09:00:00Z"),
            )
        }),
    }
}

pub fn run(repo: &Path, rev: &str, state: Option<&Path>, args: &AuditArgs) -> u8 {
    let (_, store) = match open_state(repo, rev, state) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    if args.export_head {
        return match store.journal_head() {
            Ok(Some((seq, hash))) => {
                match args.output {
                    Output::Json => println!("{}", serde_json::json!({ "seq": seq, "hash": hash })),
                    Output::Plain => println!("{seq}:{hash}"),
                }
                exit::OK
            }
            Ok(None) => super::refuse(
                exit::FAILED,
                "error: the journal is empty; there is no head to keep yet",
            ),
            Err(e) => super::refuse(exit::INVALID, format!("error: {e}")),
        };
    }
    if args.verify {
        let key = crate::store::journal::audit_key();
        let expect = args.expect_head.as_ref().map(|(s, h)| (*s, h.as_str()));
        return match store.verify(key.as_deref(), expect) {
            Ok(Ok(v)) => {
                let head = v
                    .head
                    .as_ref()
                    .map(|(seq, hash)| format!("{seq}:{hash}"))
                    .unwrap_or_default();
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({ "intact": true, "rows": v.rows, "head": head,
                            "keyed": v.keyed, "expected_head": expect.is_some() })
                    ),
                    Output::Plain => {
                        let keyed = if v.keyed { " (keyed: HMAC-SHA256)" } else { "" };
                        println!(
                            "journal intact: {} rows, hash chain{keyed} and checkpoints verified",
                            v.rows
                        );
                        if expect.is_some() {
                            println!("the expected head is in the journal");
                        }
                        if !head.is_empty() {
                            println!("head: {head} (keep it elsewhere and pass it to --expect-head later)");
                        }
                    }
                }
                exit::OK
            }
            Ok(Err(broken)) => {
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({ "intact": false, "row": broken.seq, "problem": broken.problem })
                    ),
                    Output::Plain => {
                        println!("journal broken at row {}: {}", broken.seq, broken.problem)
                    }
                }
                exit::FAILED
            }
            Err(e) => super::refuse(exit::INVALID, format!("error: {e}")),
        };
    }
    let (since, until) = match (
        parse_time("since", &args.since),
        parse_time("until", &args.until),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let rows = match store.journal_rows(None) {
        Ok(r) => r,
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    };
    let wanted = |r: &JournalEntry| {
        let at = humantime::parse_rfc3339_weak(&r.ts).ok();
        args.env.as_ref().is_none_or(|e| r.env.as_ref() == Some(e))
            && args
                .wave
                .as_ref()
                .is_none_or(|w| r.wave.as_ref() == Some(w))
            && args.kind.as_ref().is_none_or(|k| &r.kind == k)
            && args
                .actor
                .as_ref()
                .is_none_or(|a| r.actor.as_ref().is_some_and(|x| x.starts_with(a.as_str())))
            && since.is_none_or(|s| at.is_some_and(|t| t >= s))
            && until.is_none_or(|u| at.is_some_and(|t| t < u))
    };
    for r in rows.iter().filter(|r| wanted(r)) {
        match args.output {
            Output::Json => {
                println!(
                    "{}",
                    serde_json::json!({ "row": r.seq, "index": r.index, "rollout": r.rollout,
                        "ts": r.ts, "kind": r.kind, "actor": r.actor, "event": r.raw, "row_hash": r.hash })
                );
            }
            Output::Plain => {
                let text = r
                    .event()
                    .and_then(|e| crate::engine::text::event_line(&e.kind))
                    .unwrap_or_else(|| r.kind.clone());
                println!(
                    "{:>6}.{:<4} {}  {}",
                    r.seq,
                    r.index,
                    r.ts,
                    text.trim_start()
                );
            }
        }
    }
    exit::OK
}
