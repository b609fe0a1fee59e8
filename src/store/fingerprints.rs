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
const EXAMPLES: usize = 5;
/// Durations kept per group for the spread.
const DURATION_SAMPLES: usize = 256;
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

/// One fingerprint's accumulated evidence.
#[derive(Debug, Clone)]
struct Group {
    text: String,
    classification: Classification,
    count: u64,
    first_seen_unix_nano: u64,
    last_seen_unix_nano: u64,
    first_release: Option<String>,
    services: Counts,
    releases: Counts,
    routes: Counts,
    tenants: Counts,
    regions: Counts,
    environments: Counts,
    flags: Counts,
    durations_ms: VecDeque<f64>,
    examples: VecDeque<String>,
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
            services: Counts::default(),
            releases: Counts::default(),
            routes: Counts::default(),
            tenants: Counts::default(),
            regions: Counts::default(),
            environments: Counts::default(),
            flags: Counts::default(),
            durations_ms: VecDeque::new(),
            examples: VecDeque::new(),
        });
        let route = route_key(&verdict);
        let seen_on_route = g.routes.get(&route);
        g.count += 1;
        g.classification = verdict.classification;
        g.last_seen_unix_nano = g.last_seen_unix_nano.max(now);
        g.services.add(&verdict.entry.service);
        g.routes.add(&route);
        if let Some(r) = &verdict.cohort.release {
            g.releases.add(r);
        }
        if let Some(t) = &verdict.cohort.tenant {
            g.tenants.add(t);
        }
        if let Some(r) = &verdict.cohort.region {
            g.regions.add(r);
        }
        if let Some(e) = &verdict.cohort.environment {
            g.environments.add(e);
        }
        for f in &verdict.cohort.feature_flags {
            g.flags.add(f);
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
            .filter(|(_, g)| service.is_none_or(|s| g.services.get(s) > 0))
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
        if g.releases.only() == Some(r.as_str()) {
            s.push_str(" (no other release)");
        }
    }
    if let Some(t) = g.tenants.only() {
        s.push_str(&format!(", only on tenant {t}"));
    }
    if let Some(r) = g.regions.only() {
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
        releases: g.releases.0.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        services: g.services.top(TOP),
        routes: g.routes.top(MAX_VALUES),
        top_cohort: TopCohort {
            tenant: g.tenants.top(TOP),
            region: g.regions.top(TOP),
            environment: g.environments.top(TOP),
            feature_flags: g.flags.top(TOP),
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
