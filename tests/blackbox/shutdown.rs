//! SIGTERM with traces still buffered: every accepted span is analysed before exit 0.

use std::time::Duration;

use crate::support::{python_send, Faultline};

#[test]
fn sigterm_analyses_every_buffered_trace_before_exiting() {
    // Traces would wait an hour for idleness; only the shutdown flush can analyse them.
    let f = Faultline::start(&["--trace-idle", "1h", "--trace-max-age", "2h"]);
    let (ids, spans) = python_send("grpc", &f.grpc_endpoint(), 9, 4, false);
    assert_eq!(
        f.wait_metric(
            "faultline_receiver_accepted_spans_total{transport=\"grpc\"}",
            spans as f64,
            Duration::from_secs(20)
        ),
        spans as f64
    );
    assert_eq!(f.metric("faultline_traces_buffered"), ids.len() as f64);
    assert_eq!(f.metric("faultline_traces_analyzed_total"), 0.0);
    let (status, log) = f.terminate();
    assert!(status.success(), "exit status {status:?}\n{log}");
    let expected = format!(
        "traces_flushed={} traces_analyzed={} spans_analyzed={spans} spans_left=0",
        ids.len(),
        ids.len()
    );
    assert!(log.contains(&expected), "expected {expected:?} in:\n{log}");
}
