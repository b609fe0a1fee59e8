//! The state databases behind the in-memory store: one interface ([`Backend`]), two
//! implementations (embedded SQLite, [`super::sqlite`]; PostgreSQL for a fleet,
//! [`super::postgres`]).
//!
//! A backend is synchronous: it is driven by the writer's own thread
//! ([`super::writer`]) and, for reads, by the API's blocking pool. It never runs on the
//! ingest path or the analysis thread. Both backends hold the same tables (their
//! migrations differ only in SQL types):
//!
//! - `verdicts`: one row per verdict, keyed by (trace id, entry span id), with the
//!   columns the API filters on and the verdict's JSON (docs/contract.md §4) in `body`;
//! - `fingerprints`: one row per fingerprint group (count, first/last seen, first
//!   release, latest classification), upserted by adding counts;
//! - `fingerprint_values`: per group, per dimension ([`Dimension`]), per value, a count.
//!
//! A verdict already present (an exporter's re-send analysed again) is not counted twice:
//! only the rows a batch inserted add to the groups.

use std::sync::Arc;

use crate::analysis::Verdict;

use super::fingerprints::{FingerprintSummary, GroupRecord};
use super::VerdictQuery;

/// A state database that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The database cannot be reached or answered with a transient error (connection
    /// refused or lost, locked, serialization failure): worth retrying.
    #[error("state database unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement (constraint, schema, disk full): retrying the
    /// same batch is unlikely to help.
    #[error("state database refused the write: {0}")]
    Rejected(String),
    /// A stored row does not decode (edited by hand, or written by a newer faultline).
    #[error("state database row does not decode: {0}")]
    Corrupt(String),
}

impl BackendError {
    /// The `reason` label of `faultline_state_write_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::Unavailable(_) => "unavailable",
            BackendError::Rejected(_) => "rejected",
            BackendError::Corrupt(_) => "corrupt",
        }
    }
}

/// One verdict as the writer hands it to a backend.
#[derive(Debug, Clone)]
pub struct Row {
    /// The verdict.
    pub verdict: Arc<Verdict>,
    /// Its place among its trace's verdicts: 0 is the outermost entry, the one
    /// `GET /api/v1/verdicts/{trace_id}` answers with.
    pub ordinal: u32,
}

impl Row {
    /// The verdict's JSON, as the API serves it.
    pub fn body(&self) -> String {
        // A Verdict is plain data (strings, numbers, options): serialising cannot fail.
        serde_json::to_string(&*self.verdict).unwrap_or_default()
    }

    /// The service of the origin, when there is one.
    pub fn origin_service(&self) -> Option<&str> {
        self.verdict.origin.as_ref().map(|o| o.service.as_str())
    }
}

/// A stored verdict read back: its JSON body and the columns the JSON does not carry.
pub fn decode_verdict(
    body: &str,
    analyzed_at_unix_nano: u64,
    entry_start_unix_nano: u64,
) -> Result<Verdict, BackendError> {
    let mut v: Verdict = serde_json::from_str(body)
        .map_err(|e| BackendError::Corrupt(format!("verdict body: {e}")))?;
    v.analyzed_at_unix_nano = analyzed_at_unix_nano;
    v.entry.start_unix_nano = entry_start_unix_nano;
    Ok(v)
}

/// What the database keeps: verdicts newer than `max_age` and at most `max_verdicts` of
/// them (the newest), at most `max_groups` fingerprint groups (the most recently seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Verdicts analysed before this time (Unix nanoseconds) are deleted.
    pub cutoff_unix_nano: u64,
    /// Most verdicts kept.
    pub max_verdicts: u64,
    /// Most fingerprint groups kept.
    pub max_groups: u64,
    /// Most rows one delete statement removes (deletes run in batches so that no
    /// statement holds the tables for long).
    pub batch: u64,
}

/// A state database.
pub trait Backend: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Where it is, for logs and errors: a file path, or `host:port/db` (never a password).
    fn location(&self) -> String;

    /// True when other processes write to the same database (PostgreSQL): reads of groups
    /// and lists then come from the database, not from this process's memory.
    fn shared(&self) -> bool;

    /// Writes a batch in one transaction: inserts the verdicts not yet stored and adds
    /// those new ones to their fingerprint groups. Returns how many were new.
    fn write(&self, rows: &[Row]) -> Result<usize, BackendError>;

    /// The outermost verdict of a trace.
    fn verdict(&self, trace_id: &str) -> Result<Option<Verdict>, BackendError>;

    /// Verdicts matching `q`, newest first, at most `q.limit`.
    fn verdicts(&self, q: &VerdictQuery) -> Result<Vec<Verdict>, BackendError>;

    /// One fingerprint group.
    fn group(&self, fingerprint_id: &str) -> Result<Option<FingerprintSummary>, BackendError>;

    /// Fingerprint groups, most frequent first, optionally only those whose entries
    /// include `service`.
    fn groups(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FingerprintSummary>, BackendError>;

    /// The groups to put back in memory at start-up (the most recently seen first, at most
    /// `limit`), each with the budgets (ms) and trace ids (newest first) of its retained
    /// verdicts.
    fn load_groups(&self, limit: usize) -> Result<Vec<LoadedGroup>, BackendError>;

    /// Applies `retention`; returns the verdict rows deleted.
    fn prune(&self, retention: &Retention) -> Result<u64, BackendError>;
}

/// A group read back at start-up.
#[derive(Debug, Clone)]
pub struct LoadedGroup {
    /// Fingerprint id.
    pub fingerprint_id: String,
    /// Its counts.
    pub record: GroupRecord,
    /// Budgets of its newest retained verdicts, ms.
    pub durations_ms: Vec<f64>,
    /// Trace ids of its newest retained verdicts, newest first.
    pub examples: Vec<String>,
}
