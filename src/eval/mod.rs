//! Scoring the verdicts against labelled captures: the scenario zoo's scorer.
//!
//! A capture (`tests/zoo/captures/<suite>.json`, written by `tests/zoo/zoo.py capture`)
//! holds the spans real instrumented apps exported, a label for every request the
//! driver expected to end in a 500 (what the verdict must say, from the apps' code and
//! the driver, never from running faultline) and the trace ids of the healthy requests.
//! [`score`] replays the spans through the pure analysis core and compares, per label:
//! classification, origin (service, kind, span name), blame (where the scenario makes
//! one operation dominate), cohort, and the fingerprint grouping (pairwise precision and
//! recall: two verdicts share a fingerprint exactly when their labels share a bug). It
//! also scores the *baseline* a tracing UI's error view applies (the deepest error span
//! below the entry, its service's cohort, exception type and message as the group), and
//! tabulates calibration: for each confidence band, the share of verdicts that are right.
//!
//! Depends on [`crate::analysis`] and [`crate::model`]; reads no clock and no files
//! ([`capture`] parses documents handed to it).

pub use crate::fixture as capture;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value as Json;

use crate::analysis::classify::{
    call_reason, dependency_failure, exception_event, exception_parts, is_failing,
};
use crate::analysis::fingerprint::template::message_template;
use crate::analysis::{analyze_trace, AnalysisConfig, Verdict};
use crate::model::{Span, SpanKind, Trace, TraceId};

/// What one label says the verdict must be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Label {
    /// The trace the label belongs to.
    pub trace_id: String,
    /// Framework suite (`express`, `flask`, ...).
    pub framework: String,
    /// Scenario name within the suite.
    pub scenario: String,
    /// Expected classification (wire name).
    pub classification: String,
    /// Expected origin, `None` for no origin.
    pub origin: Option<SpanMatch>,
    /// Fingerprint group key: equal for the same bug, `None` when no fingerprint is due.
    pub bug: Option<String>,
    /// Expected cohort values; only the keys present are checked.
    pub cohort: BTreeMap<String, Json>,
    /// Expected blame, where the scenario makes one operation dominate.
    pub blame: Option<SpanMatch>,
}

/// Which spans a label accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanMatch {
    /// `service.name`.
    pub service: String,
    /// Span kind (`server`, `client`, `internal`, ...), if the label says.
    pub kind: Option<String>,
    /// Acceptable span names; empty accepts any name.
    pub names: Vec<String>,
}

impl SpanMatch {
    fn from_json(v: &Json) -> Option<SpanMatch> {
        let service = v.get("service")?.as_str()?.to_string();
        Some(SpanMatch {
            service,
            kind: v
                .get("kind")
                .and_then(Json::as_str)
                .map(str::to_ascii_lowercase),
            names: v
                .get("names")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn accepts(&self, service: &str, kind: &str, name: &str) -> bool {
        self.service == service
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
    }
}

/// One capture: its traces, labels and healthy trace ids.
#[derive(Debug, Default)]
pub struct Capture {
    /// The capture's name (its suite).
    pub name: String,
    /// Every trace, spans in arrival order.
    pub traces: Vec<Trace>,
    /// Labels of the requests that must get a verdict.
    pub labels: Vec<Label>,
    /// Requests that must not get one.
    pub healthy: Vec<String>,
}

/// Reads a capture document.
///
/// # Errors
/// A message naming what is malformed.
pub fn read_capture(name: &str, json: &str) -> Result<Capture, String> {
    let doc: Json = serde_json::from_str(json).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let spans = capture::load_spans(&doc).map_err(|e| format!("{name}: {e}"))?;
    let mut by_trace: Vec<(TraceId, Vec<Span>)> = Vec::new();
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    for s in spans {
        let i = *index.entry(s.trace_id).or_insert_with(|| {
            by_trace.push((s.trace_id, Vec::new()));
            by_trace.len() - 1
        });
        by_trace[i].1.push(s);
    }
    let traces = by_trace
        .into_iter()
        .map(|(trace_id, spans)| Trace { trace_id, spans })
        .collect();
    let labels = doc
        .get("labels")
        .and_then(Json::as_array)
        .map(|a| a.iter().map(label_from_json).collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(|e| format!("{name}: {e}"))?
        .unwrap_or_default();
    let healthy = doc
        .get("healthy_trace_ids")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Capture {
        name: name.to_string(),
        traces,
        labels,
        healthy,
    })
}

/// Reads the labels of a `zoo.py run` summary (or a capture's `labels` array).
///
/// # Errors
/// A message naming the malformed label.
pub fn read_labels(v: &Json) -> Result<Vec<Label>, String> {
    v.as_array()
        .ok_or_else(|| "labels: not an array".to_string())?
        .iter()
        .map(label_from_json)
        .collect()
}

/// A verdict as the HTTP API serves it (`GET /api/v1/verdicts/{trace_id}`), reduced to
/// what the labels check: how the live scenario tests score the running binary.
pub fn answer_from_api(v: &Json) -> Answer {
    let text = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let triple = |k: &str| {
        v.get(k)
            .filter(|o| o.is_object())
            .map(|o| (text(o, "service"), text(o, "kind"), text(o, "name")))
    };
    Answer {
        classification: text(v, "classification"),
        origin: triple("origin"),
        blame: triple("blame"),
        group: v
            .get("fingerprint_id")
            .and_then(Json::as_str)
            .map(String::from),
        cohort: v
            .get("cohort")
            .and_then(Json::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        confidence: v.get("confidence").and_then(Json::as_f64),
    }
}

/// Scores answers obtained elsewhere (the live binary's API) against their labels:
/// `answers` by trace id (a label without one is a missing verdict), `false_verdicts`
/// the healthy requests that got one. The baseline needs the spans and is left empty.
pub fn score_answers(
    labels: &[Label],
    answers: &HashMap<String, Answer>,
    false_verdicts: Vec<String>,
) -> Report {
    let outcomes: Vec<Outcome> = labels
        .iter()
        .map(|l| judge(l, answers.get(&l.trace_id).cloned()))
        .collect();
    let all: Vec<&Label> = labels.iter().collect();
    let mut overall = figures(&all, &outcomes.iter().collect::<Vec<_>>());
    overall.false_verdicts = false_verdicts.len();
    Report {
        by_framework: grouped(labels, &outcomes, |l| l.framework.clone()),
        baseline_by_framework: BTreeMap::new(),
        by_scenario: grouped(labels, &outcomes, |l| {
            format!("{}/{}", l.framework, l.scenario)
        }),
        calibration: calibration(&outcomes),
        overall,
        baseline_overall: Figures::default(),
        outcomes,
        baseline: Vec::new(),
        false_verdicts,
    }
}

fn label_from_json(v: &Json) -> Result<Label, String> {
    let text = |k: &str| v.get(k).and_then(Json::as_str).map(String::from);
    let trace_id = text("trace_id").ok_or("a label without trace_id")?;
    Ok(Label {
        framework: text("framework").unwrap_or_default(),
        scenario: text("scenario").unwrap_or_default(),
        classification: text("classification")
            .ok_or_else(|| format!("label {trace_id}: no classification"))?,
        origin: v.get("origin").and_then(SpanMatch::from_json),
        bug: text("bug"),
        cohort: v
            .get("cohort")
            .and_then(Json::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        blame: v.get("blame").and_then(SpanMatch::from_json),
        trace_id,
    })
}

/// What a scorer (faultline or the baseline) said about one trace, reduced to what the
/// labels check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Answer {
    /// Wire name of the classification.
    pub classification: String,
    /// Origin `(service, kind, name)`.
    pub origin: Option<(String, String, String)>,
    /// Blame `(service, kind, name)`.
    pub blame: Option<(String, String, String)>,
    /// Fingerprint group id.
    pub group: Option<String>,
    /// Cohort as JSON (`release`, `environment`, `region`, `tenant`, `feature_flags`).
    pub cohort: BTreeMap<String, Json>,
    /// Confidence, where the scorer gives one.
    pub confidence: Option<f64>,
}

/// The per-label outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Trace id.
    pub trace_id: String,
    /// Framework.
    pub framework: String,
    /// Scenario.
    pub scenario: String,
    /// The answer, `None` when no verdict was given.
    pub answer: Option<Answer>,
    /// Classification right.
    pub classification: bool,
    /// Origin right.
    pub origin: bool,
    /// Cohort right (every labelled key).
    pub cohort: bool,
    /// Blame right, `None` where the label says nothing about blame.
    pub blame: Option<bool>,
    /// What was wrong, in words.
    pub wrong: Vec<String>,
}

impl Outcome {
    /// Classification and origin both right: what a confidence figure promises.
    pub fn is_right(&self) -> bool {
        self.classification && self.origin
    }
}

/// Ratios of one group of outcomes.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Figures {
    /// Labelled requests.
    pub labelled: usize,
    /// Share with the right classification.
    pub classification: f64,
    /// Share with the right origin.
    pub origin: f64,
    /// Share with the right cohort.
    pub cohort: f64,
    /// Share with the right blame, over labels that name one (`None` without any).
    pub blame: Option<f64>,
    /// Pairwise fingerprint precision.
    pub fingerprint_precision: f64,
    /// Pairwise fingerprint recall.
    pub fingerprint_recall: f64,
    /// Labelled requests without a verdict.
    pub missing: usize,
    /// Healthy requests that got a verdict (only counted for the whole capture).
    pub false_verdicts: usize,
}

/// One confidence band of the calibration table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Band {
    /// Lower bound (inclusive).
    pub from: f64,
    /// Upper bound (exclusive, except for the last band).
    pub to: f64,
    /// Verdicts in the band.
    pub verdicts: usize,
    /// Share of them that are right (classification and origin).
    pub right: f64,
    /// Mean confidence in the band.
    pub mean_confidence: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every label's outcome, faultline.
    pub outcomes: Vec<Outcome>,
    /// Every label's outcome, the baseline.
    pub baseline: Vec<Outcome>,
    /// Healthy requests that got a verdict.
    pub false_verdicts: Vec<String>,
    /// Figures per framework, faultline.
    pub by_framework: BTreeMap<String, Figures>,
    /// Figures per framework, the baseline.
    pub baseline_by_framework: BTreeMap<String, Figures>,
    /// Figures per `framework/scenario`, faultline.
    pub by_scenario: BTreeMap<String, Figures>,
    /// All labels, faultline.
    pub overall: Figures,
    /// All labels, the baseline.
    pub baseline_overall: Figures,
    /// Calibration of faultline's confidence.
    pub calibration: Vec<Band>,
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn span_triple(s: &Span) -> (String, String, String) {
    (
        s.service_name().to_string(),
        s.kind.as_str().to_string(),
        s.name.clone(),
    )
}

fn find_span<'a>(trace: &'a Trace, span_id: &str) -> Option<&'a Span> {
    trace
        .spans
        .iter()
        .find(|s| s.span_id.to_string() == span_id)
}

fn faultline_answer(trace: &Trace, v: &Verdict) -> Answer {
    let triple = |id: &str| find_span(trace, id).map(span_triple);
    Answer {
        classification: v.classification.as_str().to_string(),
        origin: v.origin.as_ref().and_then(|o| triple(&o.span_id)),
        blame: v.blame.as_ref().and_then(|b| triple(&b.span_id)),
        group: v.fingerprint_id.clone(),
        cohort: cohort_json(&v.cohort),
        confidence: Some(v.confidence),
    }
}

fn cohort_json(c: &crate::analysis::cohort::Cohort) -> BTreeMap<String, Json> {
    let opt = |v: &Option<String>| v.clone().map(Json::String).unwrap_or(Json::Null);
    BTreeMap::from([
        ("release".to_string(), opt(&c.release)),
        ("environment".to_string(), opt(&c.environment)),
        ("region".to_string(), opt(&c.region)),
        ("tenant".to_string(), opt(&c.tenant)),
        (
            "feature_flags".to_string(),
            Json::Array(c.feature_flags.iter().cloned().map(Json::String).collect()),
        ),
    ])
}

/// The baseline: the deepest span with error evidence (status ERROR or an exception
/// event) below the entry; a dependency failure when that span is a call or its
/// exception is a timeout, refusal or pool failure; the origin service's cohort; the
/// exception type and message template as the group.
pub fn baseline_answer(trace: &Trace, v: &Verdict, cfg: &AnalysisConfig) -> Answer {
    let graph = crate::analysis::graph::SpanGraph::build(trace);
    let entry =
        graph.index_of(crate::model::SpanId::from_hex(&v.entry.span_id).unwrap_or_default());
    let Some(entry) = entry else {
        return Answer::default();
    };
    let marked =
        |s: &Span| s.status_code == crate::model::StatusCode::Error || exception_event(s).is_some();
    let mut best: Option<(usize, usize)> = None; // (depth, node)
    let mut stack = vec![(entry, 0usize)];
    while let Some((n, d)) = stack.pop() {
        if n != entry && marked(graph.span(n)) && best.is_none_or(|(bd, _)| d >= bd) {
            best = Some((d, n));
        }
        stack.extend(graph.children(n).iter().map(|&c| (c, d + 1)));
    }
    let origin = best
        .map(|(_, n)| n)
        .or_else(|| exception_event(graph.span(entry)).map(|_| entry));
    let request = graph.subtree(entry);
    let cohort =
        crate::analysis::cohort::cohort(&graph, entry, origin, &request, &cfg.tenant_attributes);
    let Some(o) = origin else {
        return Answer {
            classification: "inconclusive".into(),
            cohort: cohort_json(&cohort),
            ..Answer::default()
        };
    };
    let os = graph.span(o);
    let exc = exception_event(os).map(exception_parts);
    let dependency = (call_reason(os).is_some() && os.kind != SpanKind::Server)
        || exc.is_some_and(|(t, m, _)| dependency_failure(t, m).is_some());
    let _ = is_failing;
    Answer {
        classification: if dependency {
            "late_dependency_failure"
        } else {
            "deterministic_handler_defect"
        }
        .into(),
        origin: Some(span_triple(os)),
        blame: None,
        group: exc.map(|(t, m, _)| format!("{t}|{}", message_template(m))),
        cohort: cohort_json(&cohort),
        confidence: None,
    }
}

fn judge(label: &Label, answer: Option<Answer>) -> Outcome {
    let mut wrong = Vec::new();
    let (classification, origin, cohort, blame) = match &answer {
        None => {
            wrong.push("no verdict".to_string());
            (false, false, false, label.blame.as_ref().map(|_| false))
        }
        Some(a) => {
            let classification = a.classification == label.classification;
            if !classification {
                wrong.push(format!(
                    "classification {} (want {})",
                    a.classification, label.classification
                ));
            }
            let origin = match (&label.origin, &a.origin) {
                (None, None) => true,
                (Some(m), Some((s, k, n))) => m.accepts(s, k, n),
                _ => false,
            };
            if !origin {
                wrong.push(format!(
                    "origin {:?} (want {:?})",
                    a.origin,
                    label
                        .origin
                        .as_ref()
                        .map(|m| (&m.service, &m.kind, &m.names))
                ));
            }
            let mut cohort = true;
            for (k, want) in &label.cohort {
                let got = a.cohort.get(k).cloned().unwrap_or(Json::Null);
                let same = match (k.as_str(), &got, want) {
                    ("feature_flags", Json::Array(g), Json::Array(w)) => {
                        let g: HashSet<_> = g.iter().filter_map(Json::as_str).collect();
                        let w: HashSet<_> = w.iter().filter_map(Json::as_str).collect();
                        g == w
                    }
                    _ => &got == want,
                };
                if !same {
                    cohort = false;
                    wrong.push(format!("cohort.{k} {got} (want {want})"));
                }
            }
            let blame = label.blame.as_ref().map(|m| {
                let ok = a.blame.as_ref().is_some_and(|(s, k, n)| m.accepts(s, k, n));
                if !ok {
                    wrong.push(format!(
                        "blame {:?} (want {:?})",
                        a.blame,
                        (&m.service, &m.names)
                    ));
                }
                ok
            });
            (classification, origin, cohort, blame)
        }
    };
    Outcome {
        trace_id: label.trace_id.clone(),
        framework: label.framework.clone(),
        scenario: label.scenario.clone(),
        answer,
        classification,
        origin,
        cohort,
        blame,
        wrong,
    }
}

/// Pairwise precision and recall of the grouping: predicted pairs share a non-null group,
/// true pairs share a non-null bug key.
fn pairwise(labels: &[&Label], outcomes: &[&Outcome]) -> (f64, f64) {
    let mut predicted = 0usize;
    let mut truth = 0usize;
    let mut both = 0usize;
    for i in 0..labels.len() {
        for j in i + 1..labels.len() {
            let group = |k: usize| outcomes[k].answer.as_ref().and_then(|a| a.group.as_ref());
            let p = group(i).is_some() && group(i) == group(j);
            let t = labels[i].bug.is_some() && labels[i].bug == labels[j].bug;
            predicted += usize::from(p);
            truth += usize::from(t);
            both += usize::from(p && t);
        }
    }
    let ratio = |n: usize, d: usize| {
        if d == 0 {
            1.0
        } else {
            round4(n as f64 / d as f64)
        }
    };
    (ratio(both, predicted), ratio(both, truth))
}

fn figures(labels: &[&Label], outcomes: &[&Outcome]) -> Figures {
    let n = outcomes.len();
    let share = |f: &dyn Fn(&Outcome) -> bool| {
        if n == 0 {
            1.0
        } else {
            round4(outcomes.iter().filter(|o| f(o)).count() as f64 / n as f64)
        }
    };
    let with_blame: Vec<bool> = outcomes.iter().filter_map(|o| o.blame).collect();
    let (fingerprint_precision, fingerprint_recall) = pairwise(labels, outcomes);
    Figures {
        labelled: n,
        classification: share(&|o| o.classification),
        origin: share(&|o| o.origin),
        cohort: share(&|o| o.cohort),
        blame: (!with_blame.is_empty()).then(|| {
            round4(with_blame.iter().filter(|b| **b).count() as f64 / with_blame.len() as f64)
        }),
        fingerprint_precision,
        fingerprint_recall,
        missing: outcomes.iter().filter(|o| o.answer.is_none()).count(),
        false_verdicts: 0,
    }
}

fn grouped<F: Fn(&Label) -> String>(
    labels: &[Label],
    outcomes: &[Outcome],
    key: F,
) -> BTreeMap<String, Figures> {
    let mut groups: BTreeMap<String, (Vec<&Label>, Vec<&Outcome>)> = BTreeMap::new();
    for (l, o) in labels.iter().zip(outcomes) {
        let g = groups.entry(key(l)).or_default();
        g.0.push(l);
        g.1.push(o);
    }
    groups
        .into_iter()
        .map(|(k, (l, o))| (k, figures(&l, &o)))
        .collect()
}

/// Confidence bands of the calibration table.
pub const BANDS: [(f64, f64); 5] = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0)];

fn calibration(outcomes: &[Outcome]) -> Vec<Band> {
    BANDS
        .iter()
        .map(|&(from, to)| {
            let inside: Vec<(&Outcome, f64)> = outcomes
                .iter()
                .filter_map(|o| Some((o, o.answer.as_ref()?.confidence?)))
                .filter(|(_, c)| *c >= from && (*c < to || (to >= 1.0 && *c <= 1.0)))
                .collect();
            let n = inside.len();
            Band {
                from,
                to,
                verdicts: n,
                right: if n == 0 {
                    0.0
                } else {
                    round4(inside.iter().filter(|(o, _)| o.is_right()).count() as f64 / n as f64)
                },
                mean_confidence: if n == 0 {
                    0.0
                } else {
                    round4(inside.iter().map(|(_, c)| c).sum::<f64>() / n as f64)
                },
            }
        })
        .collect()
}

/// Replays every capture through the analysis and scores it against its labels.
pub fn score(captures: &[Capture], cfg: &AnalysisConfig, analyzed_at_unix_nano: u64) -> Report {
    let mut labels: Vec<Label> = Vec::new();
    let mut outcomes = Vec::new();
    let mut baseline = Vec::new();
    let mut false_verdicts = Vec::new();
    for c in captures {
        let mut verdicts: HashMap<String, (usize, Verdict)> = HashMap::new();
        for (i, t) in c.traces.iter().enumerate() {
            if let Some(v) = analyze_trace(t, cfg, analyzed_at_unix_nano)
                .into_iter()
                .next()
            {
                verdicts.insert(t.trace_id.to_string(), (i, v));
            }
        }
        for h in &c.healthy {
            if verdicts.contains_key(h) {
                false_verdicts.push(format!("{}: {h}", c.name));
            }
        }
        for l in &c.labels {
            let found = verdicts.get(&l.trace_id);
            outcomes.push(judge(
                l,
                found.map(|(i, v)| faultline_answer(&c.traces[*i], v)),
            ));
            baseline.push(judge(
                l,
                found.map(|(i, v)| baseline_answer(&c.traces[*i], v, cfg)),
            ));
            labels.push(l.clone());
        }
    }
    let all_labels: Vec<&Label> = labels.iter().collect();
    let mut overall = figures(&all_labels, &outcomes.iter().collect::<Vec<_>>());
    overall.false_verdicts = false_verdicts.len();
    let baseline_overall = figures(&all_labels, &baseline.iter().collect::<Vec<_>>());
    Report {
        by_framework: grouped(&labels, &outcomes, |l| l.framework.clone()),
        baseline_by_framework: grouped(&labels, &baseline, |l| l.framework.clone()),
        by_scenario: grouped(&labels, &outcomes, |l| {
            format!("{}/{}", l.framework, l.scenario)
        }),
        calibration: calibration(&outcomes),
        overall,
        baseline_overall,
        outcomes,
        baseline,
        false_verdicts,
    }
}

fn row(name: &str, f: &Figures) -> String {
    let blame = f
        .blame
        .map(|b| format!("{b:.2}"))
        .unwrap_or_else(|| "-".into());
    format!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {blame} | {:.2} / {:.2} | {} |",
        f.labelled,
        f.classification,
        f.origin,
        f.cohort,
        f.fingerprint_precision,
        f.fingerprint_recall,
        f.missing
    )
}

impl Report {
    /// The report as Markdown tables: per framework (faultline and the baseline), per
    /// scenario, the calibration table, and every wrong verdict.
    pub fn to_markdown(&self) -> String {
        let head = "| | labelled | classification | origin | cohort | blame | fingerprint P / R | missing |\n|---|---|---|---|---|---|---|---|";
        let mut out = String::new();
        out.push_str("## faultline, per framework\n\n");
        out.push_str(head);
        out.push('\n');
        for (k, f) in &self.by_framework {
            out.push_str(&row(k, f));
            out.push('\n');
        }
        out.push_str(&row("**all**", &self.overall));
        out.push_str(&format!(
            "\n\nHealthy requests given a verdict: {}",
            self.false_verdicts.len()
        ));
        if !self.baseline.is_empty() {
            out.push_str("\n\n## baseline (deepest error span), per framework\n\n");
            out.push_str(head);
            out.push('\n');
            for (k, f) in &self.baseline_by_framework {
                out.push_str(&row(k, f));
                out.push('\n');
            }
            out.push_str(&row("**all**", &self.baseline_overall));
        }
        out.push_str("\n\n## faultline, per scenario\n\n");
        out.push_str(head);
        out.push('\n');
        for (k, f) in &self.by_scenario {
            out.push_str(&row(k, f));
            out.push('\n');
        }
        out.push_str("\n## Calibration\n\n| confidence | verdicts | right (classification and origin) | mean confidence |\n|---|---|---|---|\n");
        for b in &self.calibration {
            out.push_str(&format!(
                "| {:.1}–{:.1} | {} | {:.2} | {:.2} |\n",
                b.from, b.to, b.verdicts, b.right, b.mean_confidence
            ));
        }
        let wrong: Vec<&Outcome> = self
            .outcomes
            .iter()
            .filter(|o| !o.wrong.is_empty())
            .collect();
        if !wrong.is_empty() {
            out.push_str("\n## Wrong verdicts\n\n");
            for o in wrong {
                out.push_str(&format!(
                    "- {}/{} {}: {}\n",
                    o.framework,
                    o.scenario,
                    o.trace_id,
                    o.wrong.join("; ")
                ));
            }
        }
        for f in &self.false_verdicts {
            out.push_str(&format!("- healthy request given a verdict: {f}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests;
