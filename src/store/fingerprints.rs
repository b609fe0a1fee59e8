//! Cross-trace evidence per exception fingerprint: how often, since when, in which
//! releases, on which routes, for which cohort values, how long the requests took.
//!
//! Plain data, bounded: at most [`MAX_GROUPS`] fingerprints (the least recently seen is
//! forgotten first) and at most [`MAX_VALUES`] distinct values per dimension (the rest are
//! counted under `other`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::analysis::verdict::rfc3339;
use crate::analysis::{Classification, Verdict};

/// Most fingerprint groups kept.
pub const MAX_GROUPS: usize = 10_000;
/// Most distinct values kept per dimension (releases, routes, tenants, ...).
pub const MAX_VALUES: usize = 64;
/// Example trace ids kept per group.
pub const EXAMPLES: usize = 5;
/// Durations kept per group for the spread.
pub const DURATION_SAMPLES: usize = 256;
/// Top values shown per cohort dimension.
const TOP: usize = 5;

/// Bounded value counts.
#[derive(Debug, Default, Clone)]
struct Counts(HashMap<String, u64>);

impl Counts {
    fn add(&mut self, v: &str) {
        if let Some(n) = self.0.get_mut(v) {
            *n += 1;
        } else if self.0.len() < MAX_VALUES {
            self.0.insert(v.to_string(), 1);
        } else {
            *self.0.entry("other".to_string()).or_default() += 1;
        }
    }
    fn get(&self, v: &str) -> u64 {
        self.0.get(v).copied().unwrap_or(0)
    }
    fn top(&self, n: usize) -> Vec<ValueCount> {
        let mut v: Vec<ValueCount> = self
            .0
            .iter()
            .map(|(k, c)| ValueCount {
                value: k.clone(),
                count: *c,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        v.truncate(n);
        v
    }
    fn only(&self) -> Option<&str> {
        (self.0.len() == 1)
            .then(|| self.0.keys().next().map(String::as_str))
            .flatten()
    }
}

/// A value and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueCount {
    /// The value.
    pub value: String,
    /// Occurrences.
    pub count: u64,
}

/// A dimension a fingerprint group counts values in. `as_str` is the name the state
/// databases store it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Entry service.
    Service,
    /// `service.version` of the origin.
    Release,
    /// `service route` of the entry.
    Route,
    /// Tenant.
    Tenant,
    /// `cloud.region`.
    Region,
    /// Deployment environment.
    Environment,
    /// Feature flag, `key=variant`.
    Flag,
}

impl Dimension {
    /// Every dimension, in storage order.
    pub const ALL: [Dimension; 7] = [
        Dimension::Service,
        Dimension::Release,
        Dimension::Route,
        Dimension::Tenant,
        Dimension::Region,
        Dimension::Environment,
        Dimension::Flag,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Service => "service",
            Dimension::Release => "release",
            Dimension::Route => "route",
            Dimension::Tenant => "tenant",
            Dimension::Region => "region",
            Dimension::Environment => "environment",
            Dimension::Flag => "flag",
        }
    }

    /// The dimension stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The value of `verdict` in each dimension it has one in (flags: one each).
pub fn dimension_values(verdict: &Verdict) -> Vec<(Dimension, String)> {
    let c = &verdict.cohort;
    let mut out = vec![
        (Dimension::Service, verdict.entry.service.clone()),
        (Dimension::Route, route_key(verdict)),
    ];
    let optional = [
        (Dimension::Release, &c.release),
        (Dimension::Tenant, &c.tenant),
        (Dimension::Region, &c.region),
        (Dimension::Environment, &c.environment),
    ];
    out.extend(
        optional
            .into_iter()
            .filter_map(|(d, v)| v.as_ref().map(|v| (d, v.clone()))),
    );
    out.extend(c.feature_flags.iter().map(|f| (Dimension::Flag, f.clone())));
    out
}

/// One fingerprint group's counts as the state databases hold them: read back from a
/// database, or the delta a batch of new verdicts adds to it (see [`group_deltas`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    /// Readable fingerprint (the first occurrence's).
    pub fingerprint: String,
    /// Classification of the latest occurrence.
    pub classification: Classification,
    /// Occurrences.
    pub count: u64,
    /// First occurrence, Unix nanoseconds.
    pub first_seen_unix_nano: u64,
    /// Latest occurrence, Unix nanoseconds.
    pub last_seen_unix_nano: u64,
    /// Release of the first occurrence.
    pub first_release: Option<String>,
    /// Occurrences per value, per dimension.
    pub values: Vec<(Dimension, String, u64)>,
}

/// The groups' deltas of a batch of new verdicts, by fingerprint id in ascending order
/// (writers upsert in that order, so two writers never wait on each other's rows in
/// opposite orders). Verdicts without a fingerprint add nothing.
pub fn group_deltas<'a>(
    verdicts: impl IntoIterator<Item = &'a Verdict>,
) -> BTreeMap<String, GroupRecord> {
    let mut out: BTreeMap<String, GroupRecord> = BTreeMap::new();
    let mut values: BTreeMap<String, BTreeMap<(Dimension, String), u64>> = BTreeMap::new();
    for v in verdicts {
        let Some(id) = &v.fingerprint_id else {
            continue;
        };
        let now = v.analyzed_at_unix_nano;
        let g = out.entry(id.clone()).or_insert_with(|| GroupRecord {
            fingerprint: v.fingerprint.clone().unwrap_or_default(),
            classification: v.classification,
            count: 0,
            first_seen_unix_nano: now,
            last_seen_unix_nano: now,
            first_release: v.cohort.release.clone(),
            values: Vec::new(),
        });
        g.count += 1;
        if now < g.first_seen_unix_nano {
            g.first_seen_unix_nano = now;
            g.first_release = v.cohort.release.clone();
            g.fingerprint = v.fingerprint.clone().unwrap_or_default();
        }
        if now >= g.last_seen_unix_nano {
            g.last_seen_unix_nano = now;
            g.classification = v.classification;
        }
        let counts = values.entry(id.clone()).or_default();
        for key in dimension_values(v) {
            *counts.entry(key).or_default() += 1;
        }
    }
    for (id, counts) in values {
        if let Some(g) = out.get_mut(&id) {
            g.values = counts.into_iter().map(|((d, v), n)| (d, v, n)).collect();
        }
    }
    out
}

/// One fingerprint's accumulated evidence.
#[derive(Debug, Clone)]
struct Group {
    text: String,
    classification: Classification,
    count: u64,
    first_seen_unix_nano: u64,
    last_seen_unix_nano: u64,
    first_release: Option<String>,
    /// Value counts, indexed by [`Dimension::index`].
    dims: [Counts; 7],
    durations_ms: VecDeque<f64>,
    examples: VecDeque<String>,
}

impl Group {
    fn dim(&self, d: Dimension) -> &Counts {
        &self.dims[d.index()]
    }
}

/// Top cohort values of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopCohort {
    /// Tenants.
    pub tenant: Vec<ValueCount>,
    /// Regions.
    pub region: Vec<ValueCount>,
    /// Environments.
    pub environment: Vec<ValueCount>,
    /// Feature flags (`key=variant`).
    pub feature_flags: Vec<ValueCount>,
}

/// Spread of the failing requests' durations (their budgets), ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DurationSpread {
    /// Shortest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

/// An error group as `/api/v1/fingerprints` shows it (docs/contract.md §4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FingerprintSummary {
    /// Short stable id.
    pub fingerprint_id: String,
    /// Readable fingerprint with the first occurrence's message template.
    pub fingerprint: String,
    /// Classification of the latest occurrence.
    pub classification: Classification,
    /// Occurrences.
    pub count: u64,
    /// First occurrence, RFC 3339.
    pub first_seen: String,
    /// Latest occurrence, RFC 3339.
    pub last_seen: String,
    /// Release of the first occurrence.
    pub first_release: Option<String>,
    /// Occurrences per release.
    pub releases: BTreeMap<String, u64>,
    /// Services of the entries.
    pub services: Vec<ValueCount>,
    /// Routes (`service route`), most frequent first.
    pub routes: Vec<ValueCount>,
    /// Most frequent cohort values.
    pub top_cohort: TopCohort,
    /// Durations of the failing requests.
    pub duration: DurationSpread,
    /// Recent example trace ids, newest first.
    pub example_trace_ids: Vec<String>,
}

/// All fingerprint groups.
#[derive(Debug, Default)]
pub struct FingerprintIndex {
    groups: HashMap<String, Group>,
}

fn route_key(v: &Verdict) -> String {
    format!("{} {}", v.entry.service, v.entry.route)
}

impl FingerprintIndex {
    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Adds the verdict to its group and returns it with the cross-trace evidence added:
    /// recurrence on the same route raises the confidence, and the release it first
    /// appeared in (with any cohort value it is confined to) is stated.
    pub fn record(&mut self, verdict: Verdict) -> Verdict {
        let Some(id) = verdict.fingerprint_id.clone() else {
            return verdict;
        };
        if !self.groups.contains_key(&id) && self.groups.len() >= MAX_GROUPS {
            self.forget_least_recent();
        }
        let now = verdict.analyzed_at_unix_nano;
        let g = self.groups.entry(id).or_insert_with(|| Group {
            text: verdict.fingerprint.clone().unwrap_or_default(),
            classification: verdict.classification,
            count: 0,
            first_seen_unix_nano: now,
            last_seen_unix_nano: now,
            first_release: verdict.cohort.release.clone(),
            dims: Default::default(),
            durations_ms: VecDeque::new(),
            examples: VecDeque::new(),
        });
        let route = route_key(&verdict);
        let seen_on_route = g.dim(Dimension::Route).get(&route);
        g.count += 1;
        g.classification = verdict.classification;
        g.last_seen_unix_nano = g.last_seen_unix_nano.max(now);
        for (d, value) in dimension_values(&verdict) {
            g.dims[d.index()].add(&value);
        }
        if g.durations_ms.len() == DURATION_SAMPLES {
            g.durations_ms.pop_front();
        }
        g.durations_ms.push_back(verdict.budget_ms);
        if g.examples.len() == EXAMPLES {
            g.examples.pop_back();
        }
        g.examples.push_front(verdict.trace_id.clone());

        let mut verdict = if seen_on_route > 0 {
            verdict.with_recurrence(seen_on_route + 1)
        } else {
            verdict
        };
        if g.count > 1 {
            verdict.evidence.push(first_seen_sentence(g));
        }
        verdict
    }

    fn forget_least_recent(&mut self) {
        if let Some(oldest) = self
            .groups
            .iter()
            .min_by_key(|(_, g)| g.last_seen_unix_nano)
            .map(|(k, _)| k.clone())
        {
            self.groups.remove(&oldest);
        }
    }

    /// The summary of one group, `None` when unknown (or forgotten).
    pub fn summary_of(&self, id: &str) -> Option<FingerprintSummary> {
        self.groups.get(id).map(|g| summary(id, g))
    }

    /// Groups, most frequent first, optionally only those whose entries include `service`.
    pub fn summaries(&self, service: Option<&str>, limit: usize) -> Vec<FingerprintSummary> {
        let mut out: Vec<FingerprintSummary> = self
            .groups
            .iter()
            .filter(|(_, g)| service.is_none_or(|s| g.dim(Dimension::Service).get(s) > 0))
            .map(|(id, g)| summary(id, g))
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.fingerprint_id.cmp(&b.fingerprint_id))
        });
        out.truncate(limit);
        out
    }
}

impl Group {
    /// The group a database row holds, with the durations and examples of its retained
    /// verdicts (examples newest first).
    fn from_record(rec: &GroupRecord, durations_ms: &[f64], examples: &[String]) -> Group {
        let mut dims: [Counts; 7] = Default::default();
        for (d, value, n) in &rec.values {
            *dims[d.index()].0.entry(value.clone()).or_default() += n;
        }
        let keep = durations_ms.len().saturating_sub(DURATION_SAMPLES);
        Group {
            text: rec.fingerprint.clone(),
            classification: rec.classification,
            count: rec.count,
            first_seen_unix_nano: rec.first_seen_unix_nano,
            last_seen_unix_nano: rec.last_seen_unix_nano,
            first_release: rec.first_release.clone(),
            dims,
            durations_ms: durations_ms[keep..].iter().copied().collect(),
            examples: examples.iter().take(EXAMPLES).cloned().collect(),
        }
    }
}

/// The summary of a group read back from a state database: `durations_ms` are the budgets
/// of its retained verdicts (any order), `examples` their trace ids, newest first.
pub fn summary_from_record(
    id: &str,
    rec: &GroupRecord,
    durations_ms: &[f64],
    examples: &[String],
) -> FingerprintSummary {
    summary(id, &Group::from_record(rec, durations_ms, examples))
}

impl FingerprintIndex {
    /// Puts back a group read from a state database at start-up, so cross-trace evidence
    /// (recurrence, first release) continues where the last run left it.
    pub fn restore(
        &mut self,
        id: &str,
        rec: &GroupRecord,
        durations_ms: &[f64],
        examples: &[String],
    ) {
        if !self.groups.contains_key(id) && self.groups.len() >= MAX_GROUPS {
            return;
        }
        self.groups.insert(
            id.to_string(),
            Group::from_record(rec, durations_ms, examples),
        );
    }
}

/// "Fingerprint seen 4 times since 2026-…, first in release 2026.04.15-2, only on tenant
/// legacy-import, only in region eu-west-1."
fn first_seen_sentence(g: &Group) -> String {
    let mut s = format!(
        "Fingerprint seen {} times since {}",
        g.count,
        rfc3339(g.first_seen_unix_nano)
    );
    if let Some(r) = &g.first_release {
        s.push_str(&format!(", first in release {r}"));
        if g.dim(Dimension::Release).only() == Some(r.as_str()) {
            s.push_str(" (no other release)");
        }
    }
    if let Some(t) = g.dim(Dimension::Tenant).only() {
        s.push_str(&format!(", only on tenant {t}"));
    }
    if let Some(r) = g.dim(Dimension::Region).only() {
        s.push_str(&format!(", only in region {r}"));
    }
    s.push('.');
    s
}

fn summary(id: &str, g: &Group) -> FingerprintSummary {
    let mut d: Vec<f64> = g.durations_ms.iter().copied().collect();
    d.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| {
        d.get(((d.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    FingerprintSummary {
        fingerprint_id: id.to_string(),
        fingerprint: g.text.clone(),
        classification: g.classification,
        count: g.count,
        first_seen: rfc3339(g.first_seen_unix_nano),
        last_seen: rfc3339(g.last_seen_unix_nano),
        first_release: g.first_release.clone(),
        releases: g
            .dim(Dimension::Release)
            .0
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        services: g.dim(Dimension::Service).top(TOP),
        routes: g.dim(Dimension::Route).top(MAX_VALUES),
        top_cohort: TopCohort {
            tenant: g.dim(Dimension::Tenant).top(TOP),
            region: g.dim(Dimension::Region).top(TOP),
            environment: g.dim(Dimension::Environment).top(TOP),
            feature_flags: g.dim(Dimension::Flag).top(TOP),
        },
        duration: DurationSpread {
            min_ms: at(0.0),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            max_ms: at(1.0),
        },
        example_trace_ids: g.examples.iter().cloned().collect(),
    }
}
