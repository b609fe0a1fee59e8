//! faultline as a direct Grafana data source (docs/contract.md §5b): plain REST JSON for the
//! Infinity data source (`yesoreyeram-infinity-datasource`), no Prometheus in between.
//!
//! The contract followed is Infinity's **v3.x** JSON query with the **backend** parser
//! (checked against v3.6.0, `pkg/models/query.go`): a `GET` URL whose query parameters
//! carry `${__from}`/`${__to}` (epoch milliseconds, interpolated by the plugin's backend
//! too, so alerting and public dashboards work), a response that is an array of flat rows
//! (`root_selector` empty), and columns typed `string`, `number` or `timestamp_epoch`
//! (epoch ms). Time series are long-format rows (`time`, one label column, `count`), which
//! the backend parser turns wide with `format: "timeseries"`; rows are sorted by time for
//! that conversion.
//!
//! - `GET /api/v1/grafana/verdicts` — one row per verdict in the window, newest first.
//! - `GET /api/v1/grafana/fingerprints` — one row per error group seen in the window.
//! - `GET /api/v1/grafana/series` — counts per step bucket and per classification,
//!   service or route, zero-filled, at most [`MAX_BUCKETS`] buckets.
//!
//! Windows are half-open, `[from, to)`, on the time a verdict was made. Every parameter is
//! validated; bad input is a 400 with `{"error": ...}` ([`ApiError`]). Described in
//! `openapi/faultline.yaml`. Depends on the store and analysis types only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::verdicts::{parse_limit, query, ApiError};
use crate::analysis::verdict::rfc3339;
use crate::analysis::{Classification, Verdict};
use crate::store::{VerdictQuery, VerdictStore};

/// Most buckets a series answer holds; a finer `step` is widened to fit.
pub const MAX_BUCKETS: u64 = 1_000;
/// Most distinct label values in a series answer; the least frequent fold into `other`.
pub const MAX_SERIES_KEYS: usize = 20;
/// The label value the folded keys are counted under.
pub const OTHER: &str = "other";
/// Largest accepted time, epoch ms (2286-11-20): keeps nanoseconds inside `u64`.
pub const MAX_TIME_MS: u64 = 9_999_999_999_999;
/// The window when neither `from` nor `to` is given: the last hour.
const DEFAULT_WINDOW_MS: u64 = 3_600_000;
/// The bucket width when no `step` is given: one minute.
const DEFAULT_STEP_MS: u64 = 60_000;

const MS: u64 = 1_000_000;

/// The Grafana routes.
pub fn router(store: Arc<VerdictStore>) -> Router {
    Router::new()
        .route("/api/v1/grafana/verdicts", get(verdicts))
        .route("/api/v1/grafana/fingerprints", get(fingerprints))
        .route("/api/v1/grafana/series", get(series))
        .with_state(store)
}

/// Raw query parameters of the Grafana endpoints (each endpoint reads its own subset).
#[derive(Debug, Default, Deserialize)]
pub struct GrafanaParams {
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
    route: Option<String>,
    origin_service: Option<String>,
    classification: Option<String>,
    limit: Option<String>,
    step: Option<String>,
    by: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A validated `[from, to)` window, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub from_ms: u64,
    /// Exclusive end.
    pub to_ms: u64,
}

fn parse_ms(name: &str, raw: &str) -> Result<u64, ApiError> {
    match raw.parse::<u64>() {
        Ok(ms) if ms <= MAX_TIME_MS => Ok(ms),
        _ => Err(ApiError::BadRequest(format!(
            "{name} {raw:?} must be epoch milliseconds, an integer from 0 to {MAX_TIME_MS}"
        ))),
    }
}

/// `from`/`to` in epoch ms; `to` defaults to `now_ms`, `from` to an hour before `to`.
///
/// # Errors
/// A value that is not an integer in range, or `from` not before `to`.
pub fn parse_window(from: Option<&str>, to: Option<&str>, now_ms: u64) -> Result<Window, ApiError> {
    let to_ms = match to.filter(|s| !s.is_empty()) {
        Some(s) => parse_ms("to", s)?,
        None => now_ms.min(MAX_TIME_MS),
    };
    let from_ms = match from.filter(|s| !s.is_empty()) {
        Some(s) => parse_ms("from", s)?,
        None => to_ms.saturating_sub(DEFAULT_WINDOW_MS),
    };
    if from_ms >= to_ms {
        return Err(ApiError::BadRequest(format!(
            "from ({from_ms}) must be before to ({to_ms})"
        )));
    }
    Ok(Window { from_ms, to_ms })
}

fn parse_classification(raw: Option<String>) -> Result<Option<Classification>, ApiError> {
    match nonempty(raw) {
        None => Ok(None),
        Some(c) => Classification::parse(&c).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "classification {c:?}: use deterministic_handler_defect, late_dependency_failure or inconclusive"
            ))
        }),
    }
}

fn window_query(p: &mut GrafanaParams, w: Window) -> Result<VerdictQuery, ApiError> {
    Ok(VerdictQuery {
        service: nonempty(p.service.take()),
        route: nonempty(p.route.take()),
        origin_service: nonempty(p.origin_service.take()),
        classification: parse_classification(p.classification.take())?,
        fingerprint: None,
        since_unix_nano: Some(w.from_ms * MS),
        until_unix_nano: Some(w.to_ms * MS),
        limit: usize::MAX,
    })
}

/// One verdict as a flat table row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    /// When the verdict was made, epoch ms.
    pub time: u64,
    /// The same instant, RFC 3339.
    pub analyzed_at: String,
    /// 32 lowercase hex.
    pub trace_id: String,
    /// Entry service.
    pub service: String,
    /// Entry route.
    pub route: String,
    /// Entry status (HTTP status, or gRPC code for gRPC entries).
    pub status_code: i64,
    /// Classification.
    pub classification: Classification,
    /// 0..1.
    pub confidence: f64,
    /// The entry's duration, ms.
    pub budget_ms: f64,
    /// Service of the blame span.
    pub blame_service: Option<String>,
    /// Name of the blame span.
    pub blame_span: Option<String>,
    /// Share of the budget the blamed operation held, 0..1.
    pub blame_share: Option<f64>,
    /// Service where the failure started.
    pub origin_service: Option<String>,
    /// Span where the failure started.
    pub origin_span: Option<String>,
    /// The origin's readable error.
    pub origin_error: Option<String>,
    /// Fingerprint id.
    pub fingerprint_id: Option<String>,
    /// Fingerprint text.
    pub fingerprint: Option<String>,
    /// `service.version` of the origin's service.
    pub release: Option<String>,
    /// Deployment environment.
    pub environment: Option<String>,
    /// Cloud region.
    pub region: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Feature flags `key=variant`, joined with `", "`; empty when none.
    pub feature_flags: String,
}

impl VerdictRow {
    /// Flattens a verdict.
    pub fn new(v: &Verdict) -> Self {
        VerdictRow {
            time: v.analyzed_at_unix_nano / MS,
            analyzed_at: v.analyzed_at.clone(),
            trace_id: v.trace_id.clone(),
            service: v.entry.service.clone(),
            route: v.entry.route.clone(),
            status_code: v.entry.status_code,
            classification: v.classification,
            confidence: v.confidence,
            budget_ms: v.budget_ms,
            blame_service: v.blame.as_ref().map(|b| b.service.clone()),
            blame_span: v.blame.as_ref().map(|b| b.name.clone()),
            blame_share: v.blame.as_ref().map(|b| b.share),
            origin_service: v.origin.as_ref().map(|o| o.service.clone()),
            origin_span: v.origin.as_ref().map(|o| o.name.clone()),
            origin_error: v.origin.as_ref().map(|o| o.error.clone()),
            fingerprint_id: v.fingerprint_id.clone(),
            fingerprint: v.fingerprint.clone(),
            release: v.cohort.release.clone(),
            environment: v.cohort.environment.clone(),
            region: v.cohort.region.clone(),
            tenant: v.cohort.tenant.clone(),
            feature_flags: v.cohort.feature_flags.join(", "),
        }
    }
}

async fn verdicts(
    State(store): State<Arc<VerdictStore>>,
    raw: Result<Query<GrafanaParams>, QueryRejection>,
) -> Result<Json<Vec<VerdictRow>>, ApiError> {
    let mut p = query(raw)?;
    let w = parse_window(p.from.as_deref(), p.to.as_deref(), now_ms())?;
    let mut q = window_query(&mut p, w)?;
    q.limit = parse_limit(p.limit.as_deref())?;
    let listed = super::read_store(&store, move |s| s.list(&q)).await;
    Ok(Json(listed.iter().map(|v| VerdictRow::new(v)).collect()))
}

/// One error group as a flat table row: counts in the window, plus what the store knows
/// of the group's whole life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FingerprintRow {
    /// Fingerprint id.
    pub fingerprint_id: String,
    /// Fingerprint text.
    pub fingerprint: String,
    /// Classification of the newest occurrence in the window.
    pub classification: Classification,
    /// Occurrences in the window.
    pub count: u64,
    /// Occurrences since faultline started; `null` once the group was forgotten.
    pub total_count: Option<u64>,
    /// First occurrence ever known, epoch ms.
    pub first_seen_ms: u64,
    /// The same, RFC 3339.
    pub first_seen: String,
    /// Newest occurrence in the window, epoch ms.
    pub last_seen_ms: u64,
    /// The same, RFC 3339.
    pub last_seen: String,
    /// Release of the first occurrence ever known.
    pub first_release: Option<String>,
    /// Most frequent entry service in the window.
    pub top_service: String,
    /// Most frequent entry route in the window.
    pub top_route: String,
    /// Most frequent tenant in the window.
    pub top_tenant: Option<String>,
    /// Most frequent region in the window.
    pub top_region: Option<String>,
    /// Newest trace of the group in the window.
    pub example_trace_id: String,
}

/// Window counts of one group while scanning.
#[derive(Default)]
struct GroupAcc<'a> {
    text: &'a str,
    classification: Option<Classification>,
    count: u64,
    first_nano: u64,
    last_nano: u64,
    example: &'a str,
    services: HashMap<&'a str, u64>,
    routes: HashMap<&'a str, u64>,
    tenants: HashMap<&'a str, u64>,
    regions: HashMap<&'a str, u64>,
}

/// The most frequent value, ties to the smallest.
fn top<'a>(counts: &HashMap<&'a str, u64>) -> Option<&'a str> {
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(k, _)| *k)
}

fn bump<'a>(counts: &mut HashMap<&'a str, u64>, key: &'a str) {
    // Bounded like the fingerprint index: a flood of distinct values stops adding keys.
    if counts.len() < 64 || counts.contains_key(key) {
        *counts.entry(key).or_default() += 1;
    }
}

async fn fingerprints(
    State(store): State<Arc<VerdictStore>>,
    raw: Result<Query<GrafanaParams>, QueryRejection>,
) -> Result<Json<Vec<FingerprintRow>>, ApiError> {
    let mut p = query(raw)?;
    let w = parse_window(p.from.as_deref(), p.to.as_deref(), now_ms())?;
    let q = window_query(&mut p, w)?;
    let limit = parse_limit(p.limit.as_deref())?;
    // Take the window's verdicts (shared, not copied) and aggregate outside the store's
    // lock; then look up the lifetime summary only of the groups that are returned.
    let owned = super::read_store(&store, move |s| s.list(&q)).await;
    let mut rows: Vec<FingerprintRow> = Vec::new();
    let mut groups: HashMap<&str, GroupAcc<'_>> = HashMap::new();
    // `list` is newest first; walk oldest first so the newest occurrence wins.
    for v in owned.iter().rev() {
        let Some(id) = v.fingerprint_id.as_deref() else {
            continue;
        };
        let g = groups.entry(id).or_default();
        if g.count == 0 {
            g.first_nano = v.analyzed_at_unix_nano;
        }
        g.count += 1;
        g.text = v.fingerprint.as_deref().unwrap_or("");
        g.classification = Some(v.classification);
        g.last_nano = g.last_nano.max(v.analyzed_at_unix_nano);
        g.example = &v.trace_id;
        bump(&mut g.services, &v.entry.service);
        bump(&mut g.routes, &v.entry.route);
        if let Some(t) = v.cohort.tenant.as_deref() {
            bump(&mut g.tenants, t);
        }
        if let Some(r) = v.cohort.region.as_deref() {
            bump(&mut g.regions, r);
        }
    }
    let mut ordered: Vec<(&str, GroupAcc<'_>)> = groups.into_iter().collect();
    ordered.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
    ordered.truncate(limit);
    let ids: Vec<String> = ordered.iter().map(|(id, _)| id.to_string()).collect();
    let mut lives = super::read_store(&store, move |s| {
        ids.iter().map(|id| s.fingerprint(id)).collect::<Vec<_>>()
    })
    .await
    .into_iter();
    for (id, g) in ordered {
        let life = lives.next().flatten();
        let first_nano = life
            .as_ref()
            .and_then(|l| parse_rfc3339_ms(&l.first_seen))
            .map(|ms| ms * MS)
            .unwrap_or(g.first_nano)
            .min(g.first_nano);
        rows.push(FingerprintRow {
            fingerprint_id: id.to_string(),
            fingerprint: g.text.to_string(),
            classification: g.classification.unwrap_or(Classification::Inconclusive),
            count: g.count,
            total_count: life.as_ref().map(|l| l.count),
            first_seen_ms: first_nano / MS,
            first_seen: rfc3339(first_nano),
            last_seen_ms: g.last_nano / MS,
            last_seen: rfc3339(g.last_nano),
            first_release: life.and_then(|l| l.first_release),
            top_service: top(&g.services).unwrap_or_default().to_string(),
            top_route: top(&g.routes).unwrap_or_default().to_string(),
            top_tenant: top(&g.tenants).map(str::to_string),
            top_region: top(&g.regions).map(str::to_string),
            example_trace_id: g.example.to_string(),
        });
    }
    Ok(Json(rows))
}

fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    humantime::parse_rfc3339(s)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// What a series is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesBy {
    /// The verdict's classification (all three are always present).
    Classification,
    /// The entry service.
    Service,
    /// The entry route.
    Route,
}

impl SeriesBy {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.filter(|s| !s.is_empty()) {
            None | Some("classification") => Ok(SeriesBy::Classification),
            Some("service") => Ok(SeriesBy::Service),
            Some("route") => Ok(SeriesBy::Route),
            Some(other) => Err(ApiError::BadRequest(format!(
                "by {other:?}: use classification, service or route"
            ))),
        }
    }

    /// The label column's name.
    pub fn column(self) -> &'static str {
        match self {
            SeriesBy::Classification => "classification",
            SeriesBy::Service => "service",
            SeriesBy::Route => "route",
        }
    }

    fn key(self, v: &Verdict) -> &str {
        match self {
            SeriesBy::Classification => v.classification.as_str(),
            SeriesBy::Service => &v.entry.service,
            SeriesBy::Route => &v.entry.route,
        }
    }
}

/// The bucket layout of a window: epoch-aligned starts `first, first + step, ...` below
/// `to`, at most [`MAX_BUCKETS`] of them (the step is widened when it would need more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// Start of the first bucket (aligned to a multiple of `step_ms`), epoch ms.
    pub first_ms: u64,
    /// Bucket width, ms.
    pub step_ms: u64,
    /// Number of buckets.
    pub count: u64,
}

impl Buckets {
    /// Lays out buckets over `w` with the requested `step_ms` (≥ 1).
    pub fn new(w: Window, step_ms: u64) -> Self {
        let span = w.to_ms - w.from_ms;
        // With aligned starts, ceil(span / (MAX - 1)) keeps the count at or below MAX.
        let step_ms = step_ms.max(span.div_ceil(MAX_BUCKETS - 1)).max(1);
        let first_ms = w.from_ms - w.from_ms % step_ms;
        let last_ms = (w.to_ms - 1) - (w.to_ms - 1) % step_ms;
        Buckets {
            first_ms,
            step_ms,
            count: (last_ms - first_ms) / step_ms + 1,
        }
    }

    fn index(&self, at_ms: u64) -> usize {
        ((at_ms - self.first_ms) / self.step_ms) as usize
    }
}

fn parse_step(raw: Option<&str>) -> Result<u64, ApiError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_STEP_MS),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=MAX_TIME_MS).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "step {s:?} must be a bucket width in milliseconds, an integer from 1 to {MAX_TIME_MS}"
            ))),
        },
    }
}

/// Long-format rows `{time, <by>, count}`, time ascending then label, every label in
/// every bucket (zero-filled). Labels beyond [`MAX_SERIES_KEYS`] fold into [`OTHER`].
pub fn series_rows<'a>(
    verdicts: impl IntoIterator<Item = &'a Verdict>,
    by: SeriesBy,
    buckets: Buckets,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut counts: HashMap<&str, Vec<u64>> = HashMap::new();
    if by == SeriesBy::Classification {
        for c in [
            Classification::DeterministicHandlerDefect,
            Classification::LateDependencyFailure,
            Classification::Inconclusive,
        ] {
            counts.insert(c.as_str(), vec![0; buckets.count as usize]);
        }
    }
    for v in verdicts {
        let i = buckets.index(v.analyzed_at_unix_nano / MS);
        let row = counts
            .entry(by.key(v))
            .or_insert_with(|| vec![0; buckets.count as usize]);
        if let Some(n) = row.get_mut(i) {
            *n += 1;
        }
    }
    // Fold the least frequent labels so a flood of routes cannot blow the answer up.
    let mut keys: Vec<(&str, u64)> = counts
        .iter()
        .map(|(k, c)| (*k, c.iter().sum::<u64>()))
        .collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut series: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (rank, (k, _)) in keys.into_iter().enumerate() {
        let c = counts.remove(k).unwrap_or_default();
        let label = if rank < MAX_SERIES_KEYS { k } else { OTHER };
        let into = series
            .entry(label)
            .or_insert_with(|| vec![0; buckets.count as usize]);
        for (a, b) in into.iter_mut().zip(c) {
            *a += b;
        }
    }
    let mut rows = Vec::with_capacity(series.len() * buckets.count as usize);
    for i in 0..buckets.count {
        let time = buckets.first_ms + i * buckets.step_ms;
        for (label, c) in &series {
            let mut row = serde_json::Map::new();
            row.insert("time".into(), time.into());
            row.insert(by.column().into(), (*label).into());
            row.insert("count".into(), c[i as usize].into());
            rows.push(row);
        }
    }
    rows
}

async fn series(
    State(store): State<Arc<VerdictStore>>,
    raw: Result<Query<GrafanaParams>, QueryRejection>,
) -> Result<Json<Vec<serde_json::Map<String, serde_json::Value>>>, ApiError> {
    let mut p = query(raw)?;
    let w = parse_window(p.from.as_deref(), p.to.as_deref(), now_ms())?;
    let q = window_query(&mut p, w)?;
    let by = SeriesBy::parse(p.by.as_deref())?;
    let buckets = Buckets::new(w, parse_step(p.step.as_deref())?);
    // The window's verdicts are shared, not copied; counting happens outside the lock.
    let all = super::read_store(&store, move |s| s.list(&q)).await;
    Ok(Json(series_rows(all.iter().map(|v| &**v), by, buckets)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::{sp, trace, SpanExt, SERVER};
    use crate::analysis::{analyze_trace, AnalysisConfig};

    /// A failing request's verdict for `service` `route`, made at `at_ms`.
    fn verdict(service: &str, route: &str, at_ms: u64) -> Verdict {
        let span = sp(1, None, service, SERVER, "GET", 0, 40)
            .attr("http.route", route)
            .http(500)
            .error()
            .exception("KeyError", "'sku'", "");
        analyze_trace(&trace(vec![span]), &AnalysisConfig::default(), at_ms * MS).remove(0)
    }

    #[test]
    fn window_defaults_to_the_last_hour_and_rejects_bad_bounds() {
        let now = 10_000_000;
        assert_eq!(
            parse_window(None, None, now).unwrap(),
            Window {
                from_ms: now - DEFAULT_WINDOW_MS,
                to_ms: now
            }
        );
        assert_eq!(
            parse_window(Some("5"), Some("9"), now).unwrap(),
            Window {
                from_ms: 5,
                to_ms: 9
            }
        );
        for (from, to) in [
            ("9", "9"),
            ("10", "9"),
            ("-1", "9"),
            ("1.5", "9"),
            ("now-1h", "9"),
            ("0", "10000000000000"),
        ] {
            assert!(
                parse_window(Some(from), Some(to), now).is_err(),
                "{from} {to}"
            );
        }
    }

    #[test]
    fn buckets_are_aligned_cover_the_window_and_are_bounded() {
        let b = Buckets::new(
            Window {
                from_ms: 1_500,
                to_ms: 5_000,
            },
            1_000,
        );
        assert_eq!((b.first_ms, b.step_ms, b.count), (1_000, 1_000, 4));
        // A step far too fine for a day is widened to at most MAX_BUCKETS buckets.
        let day = Window {
            from_ms: 7,
            to_ms: 7 + 86_400_000,
        };
        let b = Buckets::new(day, 1);
        assert!(b.count <= MAX_BUCKETS, "{b:?}");
        assert!(b.first_ms <= day.from_ms);
        assert!(b.first_ms + b.count * b.step_ms >= day.to_ms);
        for (from, to, step) in [(0, 1, 1), (999, 1_000_001, 3), (123_456, 9_999_999_999, 7)] {
            let b = Buckets::new(
                Window {
                    from_ms: from,
                    to_ms: to,
                },
                step,
            );
            assert!(b.count >= 1 && b.count <= MAX_BUCKETS, "{b:?}");
            assert!(b.first_ms + b.count * b.step_ms >= to, "{b:?}");
        }
    }

    #[test]
    fn series_is_zero_filled_long_format_sorted_by_time() {
        let vs = [
            verdict("orders", "/checkout", 1_000),
            verdict("orders", "/checkout", 1_100),
            verdict("billing", "/pay", 3_000),
        ];
        let b = Buckets::new(
            Window {
                from_ms: 1_000,
                to_ms: 4_000,
            },
            1_000,
        );
        let rows = series_rows(vs.iter(), SeriesBy::Service, b);
        let got: Vec<(u64, &str, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r["time"].as_u64().unwrap(),
                    r["service"].as_str().unwrap(),
                    r["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1_000, "billing", 0),
                (1_000, "orders", 2),
                (2_000, "billing", 0),
                (2_000, "orders", 0),
                (3_000, "billing", 1),
                (3_000, "orders", 0),
            ]
        );
        // By classification, all three classes are present even with no verdicts.
        let rows = series_rows([].iter(), SeriesBy::Classification, b);
        assert_eq!(rows.len(), 3 * 3);
        assert!(rows.iter().all(|r| r["count"] == 0 && r.len() == 3));
    }

    #[test]
    fn labels_beyond_the_cap_fold_into_other() {
        let vs: Vec<Verdict> = (0..MAX_SERIES_KEYS + 5)
            .map(|i| verdict("orders", &format!("/r{i:02}"), 1_000))
            .collect();
        let b = Buckets::new(
            Window {
                from_ms: 1_000,
                to_ms: 2_000,
            },
            1_000,
        );
        let rows = series_rows(vs.iter(), SeriesBy::Route, b);
        assert_eq!(rows.len(), MAX_SERIES_KEYS + 1);
        let other = rows.iter().find(|r| r["route"] == OTHER).unwrap();
        assert_eq!(other["count"], 5);
        let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        assert_eq!(total, vs.len() as u64);
    }

    #[test]
    fn verdict_rows_are_flat() {
        let row =
            serde_json::to_value(VerdictRow::new(&verdict("orders", "/checkout", 1_234))).unwrap();
        let obj = row.as_object().unwrap();
        assert!(
            obj.values().all(|v| !v.is_object() && !v.is_array()),
            "{row}"
        );
        assert_eq!(row["time"], 1_234);
        assert_eq!(row["analyzed_at"], "1970-01-01T00:00:01.234Z");
        assert_eq!(row["route"], "/checkout");
        assert_eq!(row["feature_flags"], "");
    }

    #[test]
    fn rfc3339_round_trips_to_milliseconds() {
        let ms = 1_700_000_000_123;
        assert_eq!(parse_rfc3339_ms(&rfc3339(ms * MS)), Some(ms));
    }
}
