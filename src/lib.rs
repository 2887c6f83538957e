//! flotilla: roll one release out across a fleet of single-tenant environments.
//!
//! Data flows one way: intent (Git) -> plan -> engine <-> drivers, and the engine reports
//! events that every view folds.

pub mod agent;
pub mod cli;
pub mod console;
pub mod demo;
pub mod dirs;
pub mod drift;
pub mod drivers;
pub mod engine;
pub mod hash;
pub mod identity;
pub mod intent;
pub mod keypath;
pub mod log;
pub mod notice;
pub mod notify;
pub mod parallel;
pub mod plan;
pub mod secrets;
pub mod selector;
pub mod session;
pub mod store;
