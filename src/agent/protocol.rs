//! The agent protocol's documents (`/v1`, JSON), shared by the agent and the http driver.
//! `docs/agent-protocol.md` describes them for other implementations.

use serde::{Deserialize, Serialize};

use crate::drivers::Printed;

/// `GET /v1/ping`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    /// Always `"flotilla"`: something else listening there is not an agent.
    pub agent: String,
    pub version: String,
    /// The environment this agent serves, when it was told (`--env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// `PUT /v1/services/{name}`: what the service should run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Desired {
    /// The environment the sender means; an agent told its own refuses another's.
    #[serde(default)]
    pub env: Option<String>,
    pub version: String,
    #[serde(default)]
    pub config: toml::Table,
    pub revision: String,
    /// Dotted keys of `config` that hold secrets: the agent keeps them sealed.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Where an apply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Applying,
    Applied,
    Failed,
}

/// `GET /v1/services/{name}` (and the answer to a PUT): the service's latest apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyStatus {
    pub revision: String,
    pub phase: Phase,
    #[serde(default)]
    pub message: String,
    /// A failed apply that trying again may fix (it was interrupted, or its hook exited
    /// with a transient code).
    #[serde(default)]
    pub retryable: bool,
    /// What the apply hook printed, secrets masked.
    #[serde(default, skip_serializing_if = "Printed::is_empty")]
    pub output: Printed,
}

impl ApplyStatus {
    /// An apply of `revision` under way.
    pub fn applying(revision: &str) -> Self {
        Self::ended(revision, Phase::Applying, String::new(), false)
    }

    /// An apply of `revision` that succeeded.
    pub fn applied(revision: &str) -> Self {
        Self::ended(revision, Phase::Applied, String::new(), false)
    }

    /// An apply of `revision` that failed, and why.
    pub fn failed(revision: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self::ended(revision, Phase::Failed, message.into(), retryable)
    }

    fn ended(revision: &str, phase: Phase, message: String, retryable: bool) -> Self {
        ApplyStatus {
            revision: revision.to_string(),
            phase,
            message,
            retryable,
            output: Printed::default(),
        }
    }

    /// The same status with what the apply printed.
    pub fn with_output(mut self, output: Printed) -> Self {
        self.output = output;
        self
    }
}

/// `GET /v1/services/{name}/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthDoc {
    pub healthy: bool,
    #[serde(default)]
    pub message: String,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDoc {
    pub error: String,
}
