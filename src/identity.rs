//! Who is acting: recorded with every approval, pause, skip and abort.

use crate::store::lease::Holder;

/// The person (OS user on a host) behind a command, and where they connected from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub host: String,
    /// The SSH client address, when the command came over SSH.
    pub ssh_from: Option<String>,
}

impl Identity {
    pub fn current() -> Identity {
        Identity {
            user: user(),
            host: host(),
            ssh_from: std::env::var("SSH_CONNECTION")
                .ok()
                .and_then(|c| c.split_whitespace().next().map(str::to_string)),
        }
    }

    /// `user@host`: what approvals count as one distinct person.
    pub fn actor(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// Where the command came from, for the record.
    pub fn origin(&self) -> Option<String> {
        self.ssh_from.as_ref().map(|a| format!("ssh from {a}"))
    }

    /// This process as a lease holder.
    pub fn holder(&self) -> Holder {
        Holder {
            user: self.user.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
        }
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into())
}

/// The login name of this process's user, for environments without `$USER` (cron, CI).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
