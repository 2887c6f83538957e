//! Drift: how environments differ from what flotilla applied and from what Git says.
//!
//! [`three_way`] compares desired, last-applied and live per service (a pure function);
//! [`diff`] shows two configs as a unified diff; [`scan`] observes a fleet and puts the
//! three together; [`adopt`] commits live values into Git.

pub mod adopt;
pub mod diff;
pub mod scan;
pub mod three_way;

pub use diff::DiffLine;
