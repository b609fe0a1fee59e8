//! [`Verdict`] ↔ `faultline.v1.Verdict`. The proto mirrors the JSON of docs/contract.md §4 field for
//! field, so a verdict converted to the proto and back serialises to the same JSON; the
//! fields the JSON skips (entry start, retry attempts, the exception, the entry chain) are
//! not on the wire either and come back as their neutral values.

use crate::analysis::cohort::Cohort;
use crate::analysis::verdict::{BlameInfo, EntryInfo, OriginInfo, Verdict};
use crate::analysis::Classification;

use super::proto;

/// A wire verdict that cannot be a [`Verdict`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoVerdictError {
    /// `classification` is unspecified or not a known value.
    #[error("classification {0} is not a verdict classification")]
    Classification(i32),
    /// `entry` is missing; every verdict has one.
    #[error("the verdict has no entry")]
    MissingEntry,
}

impl From<Classification> for proto::Classification {
    fn from(c: Classification) -> Self {
        match c {
            Classification::DeterministicHandlerDefect => {
                proto::Classification::DeterministicHandlerDefect
            }
            Classification::LateDependencyFailure => proto::Classification::LateDependencyFailure,
            Classification::Inconclusive => proto::Classification::Inconclusive,
        }
    }
}

/// A wire classification as a filter: `Ok(None)` for unspecified (no filter), `Err` for a
/// number the proto does not define.
pub fn classification_filter(raw: i32) -> Result<Option<Classification>, ProtoVerdictError> {
    match proto::Classification::try_from(raw) {
        Ok(proto::Classification::Unspecified) => Ok(None),
        Ok(proto::Classification::DeterministicHandlerDefect) => {
            Ok(Some(Classification::DeterministicHandlerDefect))
        }
        Ok(proto::Classification::LateDependencyFailure) => {
            Ok(Some(Classification::LateDependencyFailure))
        }
        Ok(proto::Classification::Inconclusive) => Ok(Some(Classification::Inconclusive)),
        Err(_) => Err(ProtoVerdictError::Classification(raw)),
    }
}

impl From<&Verdict> for proto::Verdict {
    fn from(v: &Verdict) -> Self {
        proto::Verdict {
            trace_id: v.trace_id.clone(),
            classification: proto::Classification::from(v.classification).into(),
            confidence: v.confidence,
            budget_ms: v.budget_ms,
            entry: Some(proto::Entry {
                span_id: v.entry.span_id.clone(),
                service: v.entry.service.clone(),
                name: v.entry.name.clone(),
                route: v.entry.route.clone(),
                status_code: v.entry.status_code,
            }),
            blame: v.blame.as_ref().map(|b| proto::Blame {
                span_id: b.span_id.clone(),
                service: b.service.clone(),
                name: b.name.clone(),
                kind: b.kind.clone(),
                share: b.share,
                self_ms: b.self_ms,
                is_dependency: b.is_dependency,
            }),
            origin: v.origin.as_ref().map(|o| proto::Origin {
                span_id: o.span_id.clone(),
                service: o.service.clone(),
                name: o.name.clone(),
                error: o.error.clone(),
                kind: o.kind.clone(),
            }),
            fingerprint: v.fingerprint.clone(),
            fingerprint_id: v.fingerprint_id.clone(),
            cohort: Some(proto::Cohort {
                release: v.cohort.release.clone(),
                environment: v.cohort.environment.clone(),
                region: v.cohort.region.clone(),
                tenant: v.cohort.tenant.clone(),
                feature_flags: v.cohort.feature_flags.clone(),
            }),
            evidence: v.evidence.clone(),
            analyzed_at: v.analyzed_at.clone(),
            analyzed_at_unix_nano: v.analyzed_at_unix_nano,
        }
    }
}

impl TryFrom<proto::Verdict> for Verdict {
    type Error = ProtoVerdictError;

    /// For Rust clients of the gRPC API: the wire verdict as the crate's type (whose serde
    /// form is the JSON API's). Fields that are not on the wire take neutral values.
    fn try_from(p: proto::Verdict) -> Result<Self, Self::Error> {
        let classification = classification_filter(p.classification)?
            .ok_or(ProtoVerdictError::Classification(p.classification))?;
        let entry = p.entry.ok_or(ProtoVerdictError::MissingEntry)?;
        let cohort = p.cohort.unwrap_or_default();
        Ok(Verdict {
            trace_id: p.trace_id,
            classification,
            confidence: p.confidence,
            budget_ms: p.budget_ms,
            entry: EntryInfo {
                span_id: entry.span_id,
                service: entry.service,
                name: entry.name,
                route: entry.route,
                status_code: entry.status_code,
                start_unix_nano: 0,
            },
            blame: p.blame.map(|b| BlameInfo {
                span_id: b.span_id,
                service: b.service,
                name: b.name,
                kind: b.kind,
                share: b.share,
                self_ms: b.self_ms,
                is_dependency: b.is_dependency,
                attempts: 1,
            }),
            origin: p.origin.map(|o| OriginInfo {
                span_id: o.span_id,
                service: o.service,
                name: o.name,
                error: o.error,
                kind: o.kind,
            }),
            fingerprint: p.fingerprint,
            fingerprint_id: p.fingerprint_id,
            cohort: Cohort {
                release: cohort.release,
                environment: cohort.environment,
                region: cohort.region,
                tenant: cohort.tenant,
                feature_flags: cohort.feature_flags,
            },
            evidence: p.evidence,
            analyzed_at: p.analyzed_at,
            analyzed_at_unix_nano: p.analyzed_at_unix_nano,
            exception: None,
            chain: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::verdict::ExceptionRecord;

    /// A verdict with every optional part present and every skipped field set.
    fn full() -> Verdict {
        Verdict {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            classification: Classification::LateDependencyFailure,
            confidence: 0.87,
            budget_ms: 2013.5,
            entry: EntryInfo {
                span_id: "00f067aa0ba902b7".into(),
                service: "orders".into(),
                name: "POST /checkout".into(),
                route: "/checkout".into(),
                status_code: 500,
                start_unix_nano: 1_700_000_000_000_000_000,
            },
            blame: Some(BlameInfo {
                span_id: "00f067aa0ba902b8".into(),
                service: "orders".into(),
                name: "SELECT stock".into(),
                kind: "client".into(),
                share: 0.9934,
                self_ms: 2000.25,
                is_dependency: true,
                attempts: 3,
            }),
            origin: Some(OriginInfo {
                span_id: "00f067aa0ba902b8".into(),
                service: "orders".into(),
                name: "SELECT stock".into(),
                kind: "client".into(),
                error: "TimeoutError: query timed out".into(),
            }),
            fingerprint: Some("TimeoutError|reserve|query timed out".into()),
            fingerprint_id: Some("a1b2c3d4e5f6".into()),
            cohort: Cohort {
                release: Some("2026.04.15-2".into()),
                environment: Some("prod".into()),
                region: Some("eu-west-1".into()),
                tenant: Some("acme".into()),
                feature_flags: vec!["new-checkout=on".into()],
            },
            evidence: vec!["orders `POST /checkout` answered HTTP 500.".into()],
            analyzed_at: "2023-11-14T22:13:20.000Z".into(),
            analyzed_at_unix_nano: 1_700_000_000_000_000_000,
            exception: Some(ExceptionRecord::default()),
            chain: vec![],
        }
    }

    /// The same verdict with every `null`-able part absent.
    fn sparse() -> Verdict {
        Verdict {
            classification: Classification::Inconclusive,
            blame: None,
            origin: None,
            fingerprint: None,
            fingerprint_id: None,
            cohort: Cohort::default(),
            evidence: vec![],
            ..full()
        }
    }

    #[test]
    fn a_verdict_through_the_proto_serialises_to_the_same_json() {
        for v in [full(), sparse()] {
            let wire = proto::Verdict::from(&v);
            // Through the bytes as well, so optional fields keep their presence on the wire.
            let bytes = prost::Message::encode_to_vec(&wire);
            let decoded: proto::Verdict = prost::Message::decode(bytes.as_slice()).unwrap();
            assert_eq!(decoded, wire);
            let back = Verdict::try_from(decoded).unwrap();
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(&v).unwrap()
            );
        }
    }

    #[test]
    fn absent_json_values_are_absent_on_the_wire() {
        let wire = proto::Verdict::from(&sparse());
        assert!(wire.blame.is_none() && wire.origin.is_none());
        assert_eq!(wire.fingerprint, None);
        assert_eq!(wire.cohort.as_ref().unwrap().release, None);
        let wire = proto::Verdict::from(&full());
        assert_eq!(wire.fingerprint_id.as_deref(), Some("a1b2c3d4e5f6"));
        assert_eq!(wire.analyzed_at_unix_nano, 1_700_000_000_000_000_000);
    }

    #[test]
    fn fields_the_json_skips_come_back_neutral() {
        let back = Verdict::try_from(proto::Verdict::from(&full())).unwrap();
        assert_eq!(back.entry.start_unix_nano, 0);
        assert_eq!(back.blame.unwrap().attempts, 1);
        assert!(back.exception.is_none() && back.chain.is_empty());
    }

    #[test]
    fn classifications_map_both_ways_and_unknown_numbers_are_refused() {
        for c in [
            Classification::DeterministicHandlerDefect,
            Classification::LateDependencyFailure,
            Classification::Inconclusive,
        ] {
            let wire = proto::Classification::from(c);
            // The proto value names are the JSON names upper-cased.
            assert_eq!(wire.as_str_name(), c.as_str().to_ascii_uppercase());
            assert_eq!(classification_filter(wire.into()), Ok(Some(c)));
        }
        assert_eq!(classification_filter(0), Ok(None));
        assert_eq!(
            classification_filter(42),
            Err(ProtoVerdictError::Classification(42))
        );
        let mut unspecified = proto::Verdict::from(&full());
        unspecified.classification = 0;
        assert_eq!(
            Verdict::try_from(unspecified),
            Err(ProtoVerdictError::Classification(0))
        );
        let mut no_entry = proto::Verdict::from(&full());
        no_entry.entry = None;
        assert_eq!(
            Verdict::try_from(no_entry),
            Err(ProtoVerdictError::MissingEntry)
        );
    }
}
