//! Who the failure hit and where the faulty code runs: release, environment, region,
//! tenant and feature flags (docs/contract.md §3, "Cohort").
//!
//! Release, environment and region come from the origin's service resource (the entry's
//! when there is no origin); the tenant from the configured attribute keys, entry span
//! first, then the other spans of the failing request, then resources; feature flags from
//! OpenTelemetry `feature_flag.*` events and attributes anywhere on the failing request.
//! Depends only on [`crate::model`] and [`super::graph`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{Attributes, Span};

use super::graph::SpanGraph;

/// The cohort of a verdict, as serialised in the API (`null` where unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    /// `service.version` of the origin's service.
    pub release: Option<String>,
    /// `deployment.environment.name` (or legacy `deployment.environment`).
    pub environment: Option<String>,
    /// `cloud.region`.
    pub region: Option<String>,
    /// The tenant the request was made for.
    pub tenant: Option<String>,
    /// Flags evaluated on the request, `key=variant`, deduplicated and sorted.
    pub feature_flags: Vec<String>,
}

/// Attribute keys of a flag evaluation's result, in order of preference.
const FLAG_RESULT_KEYS: [&str; 4] = [
    "feature_flag.result.variant",
    "feature_flag.variant",
    "feature_flag.result.value",
    "feature_flag.value",
];

/// `feature_flag.*` keys that describe an evaluation rather than name a flag.
const FLAG_META_KEYS: [&str; 11] = [
    "feature_flag.key",
    "feature_flag.provider_name",
    "feature_flag.provider.name",
    "feature_flag.context.id",
    "feature_flag.set.id",
    "feature_flag.version",
    "feature_flag.result.reason",
    "feature_flag.evaluation.reason",
    "feature_flag.evaluation.error.message",
    "feature_flag.error.message",
    "feature_flag.error_code",
];

fn text(attrs: &Attributes, key: &str) -> Option<String> {
    attrs
        .get(key)
        .map(|v| v.to_display())
        .filter(|s| !s.is_empty())
}

/// Flags named in one attribute set: a `feature_flag.key` with its result, and (for SDKs
/// that put flags on spans directly) `feature_flag.<name> = <variant>` attributes.
fn flags_in(attrs: &Attributes, out: &mut BTreeSet<String>) {
    if let Some(key) = text(attrs, "feature_flag.key") {
        let variant = FLAG_RESULT_KEYS.iter().find_map(|k| text(attrs, k));
        out.insert(match variant {
            Some(v) => format!("{key}={v}"),
            None => key,
        });
        return;
    }
    for (k, v) in attrs.iter() {
        if let Some(name) = k.strip_prefix("feature_flag.") {
            if !FLAG_META_KEYS.contains(&k) && !FLAG_RESULT_KEYS.contains(&k) && !name.is_empty() {
                out.insert(format!("{name}={}", v.to_display()));
            }
        }
    }
}

fn span_flags(span: &Span, out: &mut BTreeSet<String>) {
    flags_in(&span.attributes, out);
    for e in &span.events {
        if e.name.starts_with("feature_flag") {
            flags_in(&e.attributes, out);
        }
    }
}

/// Builds the cohort of one failing request. `request` is the entry's subtree.
pub fn cohort(
    graph: &SpanGraph<'_>,
    entry: usize,
    origin: Option<usize>,
    request: &[usize],
    tenant_keys: &[String],
) -> Cohort {
    let home = graph.span(origin.unwrap_or(entry));
    let res = &home.resource.attributes;
    let entry_span = graph.span(entry);
    let tenant_in = |attrs: &Attributes| tenant_keys.iter().find_map(|k| text(attrs, k));
    let tenant = tenant_in(&entry_span.attributes)
        .or_else(|| {
            request
                .iter()
                .find_map(|&n| tenant_in(&graph.span(n).attributes))
        })
        .or_else(|| tenant_in(&entry_span.resource.attributes))
        .or_else(|| {
            request
                .iter()
                .find_map(|&n| tenant_in(&graph.span(n).resource.attributes))
        });
    let mut flags = BTreeSet::new();
    for &n in request {
        span_flags(graph.span(n), &mut flags);
    }
    Cohort {
        release: text(res, "service.version"),
        environment: text(res, "deployment.environment.name")
            .or_else(|| text(res, "deployment.environment")),
        region: text(res, "cloud.region"),
        tenant,
        feature_flags: flags.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::*;
    use crate::analysis::AnalysisConfig;

    #[test]
    fn cohort_reads_the_origin_service_tenant_and_flags() {
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "GET /x", 0, 100)
                .http(500)
                .res("service.version", "edge-1"),
            sp(2, Some(1), "inventory", SERVER, "GET /s", 10, 90)
                .http(500)
                .attr("tenant.id", "acme")
                .res("service.version", "2.4.1")
                .res("deployment.environment", "prod")
                .res("cloud.region", "eu-west-1")
                .event(
                    "feature_flag.evaluation",
                    &[
                        ("feature_flag.key", "new-pricing"),
                        ("feature_flag.result.variant", "on"),
                    ],
                )
                .event(
                    "feature_flag",
                    &[
                        ("feature_flag.key", "new-pricing"),
                        ("feature_flag.variant", "on"),
                    ],
                )
                .attr("feature_flag.dark-mode", "off")
                .exception("KeyError", "'sku'", ""),
        ]);
        let g = SpanGraph::build(&t);
        let c = cohort(
            &g,
            0,
            Some(1),
            &g.subtree(0),
            &AnalysisConfig::default().tenant_attributes,
        );
        assert_eq!(c.release.as_deref(), Some("2.4.1"));
        assert_eq!(c.environment.as_deref(), Some("prod"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert_eq!(
            c.feature_flags,
            vec!["dark-mode=off".to_string(), "new-pricing=on".to_string()]
        );
    }

    #[test]
    fn entry_tenant_wins_and_entry_resource_is_used_without_origin() {
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "GET /x", 0, 100)
                .http(500)
                .attr("app.tenant", "t1")
                .res("service.version", "9")
                .res("deployment.environment.name", "staging"),
            sp(2, Some(1), "edge", INTERNAL, "h", 10, 90).attr("app.tenant", "t2"),
        ]);
        let g = SpanGraph::build(&t);
        let c = cohort(
            &g,
            0,
            None,
            &g.subtree(0),
            &AnalysisConfig::default().tenant_attributes,
        );
        assert_eq!(c.tenant.as_deref(), Some("t1"));
        assert_eq!(c.release.as_deref(), Some("9"));
        assert_eq!(c.environment.as_deref(), Some("staging"));
    }
}
