//! The span tree of one trace, rebuilt defensively from untrusted parent links.
//!
//! Nothing in a trace is trusted (docs/contract.md §2): span ids repeat, parent links form cycles,
//! parents never arrive, ends come before starts. [`SpanGraph::build`] turns whatever
//! arrived into a forest that later stages can walk without checks, and records every
//! repair as a sentence for the verdict's evidence. Depends only on [`crate::model`].

use std::collections::HashMap;

use crate::model::{Span, SpanId, Trace};

/// How many repair notes of one kind are spelled out before the rest are summarised.
const MAX_NOTES_PER_KIND: usize = 5;

/// Upper bound on `orphans × spans` comparisons spent inferring missing parents, so an
/// absurd trace cannot make the analysis quadratic without limit (a few milliseconds in a
/// release build). Orphans beyond it stay roots, and the evidence says so.
const MAX_INFERENCE_WORK: usize = 4_000_000;

/// A forest over the spans of one trace, with repaired parent links.
///
/// Nodes are numbered `0..len()` in arrival order of the first span with each id.
#[derive(Debug)]
pub struct SpanGraph<'a> {
    nodes: Vec<&'a Span>,
    index: HashMap<SpanId, usize>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    inferred: Vec<bool>,
    notes: Vec<String>,
}

/// A short human label for a span: service and name.
pub fn label(span: &Span) -> String {
    format!("{} `{}`", span.service_name(), span.name)
}

impl<'a> SpanGraph<'a> {
    /// Builds the forest: keeps the first span of each duplicated id, breaks parent
    /// cycles, and attaches spans whose parent never arrived under the tightest span of
    /// the same trace whose window contains them (an inferred link).
    pub fn build(trace: &'a Trace) -> Self {
        let mut nodes: Vec<&'a Span> = Vec::with_capacity(trace.spans.len());
        let mut index: HashMap<SpanId, usize> = HashMap::with_capacity(trace.spans.len());
        let mut notes = Vec::new();
        let mut duplicates = 0usize;
        let mut backwards = 0usize;
        for span in &trace.spans {
            if index.contains_key(&span.span_id) {
                duplicates = duplicates.saturating_add(1);
                continue;
            }
            if span.end_unix_nano < span.start_unix_nano {
                backwards = backwards.saturating_add(1);
            }
            index.insert(span.span_id, nodes.len());
            nodes.push(span);
        }
        if duplicates > 0 {
            notes.push(format!(
                "{duplicates} span(s) repeated an id already seen; the first span with each id was kept."
            ));
        }
        if backwards > 0 {
            notes.push(format!(
                "{backwards} span(s) ended before they started; they were treated as zero-length."
            ));
        }

        let n = nodes.len();
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut orphans: Vec<(usize, Option<SpanId>)> = Vec::new();
        for (i, span) in nodes.iter().enumerate() {
            match span.parent_span_id {
                None => {}
                Some(p) if p.is_zero() => {}
                Some(p) if p == span.span_id => {
                    notes.push(format!(
                        "Span {} ({}) named itself as its parent; the self-link was ignored.",
                        span.span_id,
                        label(span)
                    ));
                    orphans.push((i, None));
                }
                Some(p) => match index.get(&p) {
                    Some(&j) => parent[i] = Some(j),
                    None => orphans.push((i, Some(p))),
                },
            }
        }

        // Break parent cycles: walk each chain once; on meeting a node still on the
        // current walk, cut the link of the cycle member that started first (the
        // likeliest real root) and let inference re-attach it.
        let mut state = vec![0u8; n];
        let mut cycles = Vec::new();
        for i in 0..n {
            if state[i] != 0 {
                continue;
            }
            let mut walk = Vec::new();
            let mut cur = Some(i);
            while let Some(c) = cur {
                if state[c] == 2 {
                    break;
                }
                if state[c] == 1 {
                    let pos = walk.iter().position(|&x| x == c).unwrap_or(0);
                    let member = walk[pos..]
                        .iter()
                        .copied()
                        .min_by_key(|&x: &usize| (nodes[x].start_unix_nano, x))
                        .unwrap_or(c);
                    parent[member] = None;
                    cycles.push(member);
                    break;
                }
                state[c] = 1;
                walk.push(c);
                cur = parent[c];
            }
            for w in walk {
                state[w] = 2;
            }
        }
        for (k, &m) in cycles.iter().enumerate() {
            if k < MAX_NOTES_PER_KIND {
                notes.push(format!(
                    "Parent links formed a cycle through span {} ({}); the cycle was cut there.",
                    nodes[m].span_id,
                    label(nodes[m])
                ));
            }
            orphans.push((m, None));
        }
        if cycles.len() > MAX_NOTES_PER_KIND {
            notes.push(format!(
                "{} more parent cycles were cut.",
                cycles.len() - MAX_NOTES_PER_KIND
            ));
        }

        let mut graph = SpanGraph {
            nodes,
            index,
            parent,
            children: vec![Vec::new(); n],
            inferred: vec![false; n],
            notes,
        };
        graph.infer_parents(&orphans);
        for i in 0..n {
            if let Some(p) = graph.parent[i] {
                graph.children[p].push(i);
            }
        }
        let nodes = &graph.nodes;
        for kids in &mut graph.children {
            kids.sort_by_key(|&c| (nodes[c].start_unix_nano, end_of(nodes[c]), c));
        }
        graph
    }

    /// Attaches each orphan (missing parent, broken cycle) under the tightest span of
    /// the same trace whose window contains it, never under its own descendant.
    fn infer_parents(&mut self, orphans: &[(usize, Option<SpanId>)]) {
        let n = self.nodes.len();
        let mut inferred_notes = 0usize;
        let mut unattached = 0usize;
        let mut work = 0usize;
        let services: Vec<&str> = self.nodes.iter().map(|s| s.service_name()).collect();
        for &(i, missing) in orphans {
            work = work.saturating_add(n);
            if work > MAX_INFERENCE_WORK {
                unattached = unattached.saturating_add(1);
                continue;
            }
            let span = self.nodes[i];
            let (s, e) = (span.start_unix_nano, end_of(span));
            let mut best: Option<usize> = None;
            for j in 0..n {
                let cand = self.nodes[j];
                if j == i || cand.trace_id != span.trace_id {
                    continue;
                }
                let (cs, ce) = (cand.start_unix_nano, end_of(cand));
                if cs > s || ce < e {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        let bd = self.duration(b);
                        let cd = ce - cs;
                        cd < bd || (cd == bd && cs > self.nodes[b].start_unix_nano)
                    }
                };
                if better && !self.is_ancestor(i, j) {
                    best = Some(j);
                }
            }
            let mut skewed = false;
            if best.is_none() && missing.is_some() {
                work = work.saturating_add(n);
                best = self.skewed_container(i, &services);
                skewed = best.is_some();
            }
            match best {
                Some(j) => {
                    self.parent[i] = Some(j);
                    self.inferred[i] = true;
                    if inferred_notes < MAX_NOTES_PER_KIND {
                        let why = match missing {
                            Some(p) => format!("its parent {p} never arrived"),
                            None => "its parent link was broken".to_string(),
                        };
                        let how = if skewed {
                            "the tightest span of another service that overlaps it, allowing for clock skew"
                        } else {
                            "the tightest span whose window contains it"
                        };
                        self.notes.push(format!(
                            "Span {} ({}): {why}; it was attached under {} ({}), {how} (inferred link).",
                            span.span_id,
                            label(span),
                            self.nodes[j].span_id,
                            label(self.nodes[j])
                        ));
                    }
                    inferred_notes = inferred_notes.saturating_add(1);
                }
                None => {
                    if missing.is_some() {
                        unattached = unattached.saturating_add(1);
                    }
                }
            }
        }
        if inferred_notes > MAX_NOTES_PER_KIND {
            self.notes.push(format!(
                "{} more spans were attached by inferred links.",
                inferred_notes - MAX_NOTES_PER_KIND
            ));
        }
        if unattached > 0 {
            self.notes.push(format!(
                "{unattached} span(s) whose parent never arrived fit inside no other span and were analysed as roots."
            ));
        }
    }

    /// Fallback for an orphan that no span contains: another service's clock may be
    /// skewed, so take the tightest span of a *different* service that is at least as long
    /// as the orphan and overlaps at least half of it (more overlap on ties), never one
    /// of its descendants.
    fn skewed_container(&self, i: usize, services: &[&str]) -> Option<usize> {
        let span = self.nodes[i];
        let (s, e) = (span.start_unix_nano, end_of(span));
        let mut best: Option<(u64, u64, usize)> = None; // (overlap, duration, node)
        for j in 0..self.nodes.len() {
            let cand = self.nodes[j];
            if j == i || cand.trace_id != span.trace_id || services[j] == services[i] {
                continue;
            }
            let (cs, ce) = (cand.start_unix_nano, end_of(cand));
            let overlap = ce.min(e).saturating_sub(cs.max(s));
            let duration = ce - cs;
            if overlap == 0 || overlap < (e - s) / 2 || duration < e - s {
                continue;
            }
            let better = match best {
                None => true,
                Some((bo, bd, _)) => duration < bd || (duration == bd && overlap > bo),
            };
            if better && !self.is_ancestor(i, j) {
                best = Some((overlap, duration, j));
            }
        }
        best.map(|b| b.2)
    }

    /// Number of distinct spans.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the trace held no spans.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The span of node `i`.
    ///
    /// # Panics
    /// When `i >= len()` (node numbers come from this graph).
    pub fn span(&self, i: usize) -> &'a Span {
        self.nodes[i]
    }

    /// Node number of a span id, if it arrived.
    pub fn index_of(&self, id: SpanId) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// The (possibly repaired) parent of node `i`.
    pub fn parent(&self, i: usize) -> Option<usize> {
        self.parent.get(i).copied().flatten()
    }

    /// Children of node `i`, ordered by start time.
    pub fn children(&self, i: usize) -> &[usize] {
        self.children.get(i).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when node `i` hangs under its parent by an inferred link.
    pub fn is_inferred(&self, i: usize) -> bool {
        self.inferred.get(i).copied().unwrap_or(false)
    }

    /// Sentences describing every repair made while building.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Start of node `i`, Unix nanoseconds.
    ///
    /// # Panics
    /// When `i >= len()` (node numbers come from this graph).
    pub fn start(&self, i: usize) -> u64 {
        self.nodes[i].start_unix_nano
    }

    /// End of node `i`, never before its start.
    ///
    /// # Panics
    /// When `i >= len()` (node numbers come from this graph).
    pub fn end(&self, i: usize) -> u64 {
        end_of(self.nodes[i])
    }

    /// Duration of node `i` in nanoseconds (zero for spans that end before they start).
    ///
    /// # Panics
    /// When `i >= len()` (node numbers come from this graph).
    pub fn duration(&self, i: usize) -> u64 {
        self.nodes[i].duration_nanos()
    }

    /// True when `ancestor` is `node` or lies above it.
    pub fn is_ancestor(&self, ancestor: usize, node: usize) -> bool {
        let mut cur = Some(node);
        let mut steps = 0usize;
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            steps += 1;
            if steps > self.nodes.len() {
                return false;
            }
            cur = self.parent(c);
        }
        false
    }

    /// The chain from `top` down to `node` (both included), or just `[node]` when `top`
    /// is not above it.
    pub fn path_between(&self, top: usize, node: usize) -> Vec<usize> {
        let mut path = vec![node];
        let mut cur = node;
        while cur != top {
            match self.parent(cur) {
                Some(p) if path.len() <= self.nodes.len() => {
                    path.push(p);
                    cur = p;
                }
                _ => return vec![node],
            }
        }
        path.reverse();
        path
    }

    /// Node `i` and all its descendants, in depth-first pre-order.
    pub fn subtree(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![i];
        while let Some(c) = stack.pop() {
            out.push(c);
            stack.extend(self.children(c).iter().rev().copied());
        }
        out
    }
}

fn end_of(span: &Span) -> u64 {
    span.end_unix_nano.max(span.start_unix_nano)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::*;

    #[test]
    fn duplicate_span_ids_keep_the_first_and_say_so() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /", 0, 10),
            sp(2, Some(1), "a", INTERNAL, "first", 1, 5),
            sp(2, Some(1), "a", INTERNAL, "second", 6, 9),
        ]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.len(), 2);
        assert_eq!(g.span(1).name, "first");
        assert!(g.notes().iter().any(|n| n.contains("repeated an id")));
    }

    #[test]
    fn parent_cycles_are_cut_and_reported() {
        let t = trace(vec![
            sp(1, Some(3), "a", SERVER, "GET /", 0, 10),
            sp(2, Some(1), "a", INTERNAL, "b", 1, 9),
            sp(3, Some(2), "a", INTERNAL, "c", 2, 8),
        ]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.parent(0), None, "the earliest member becomes the root");
        assert_eq!(g.parent(1), Some(0));
        assert_eq!(g.parent(2), Some(1));
        assert!(g.notes().iter().any(|n| n.contains("cycle")));
    }

    #[test]
    fn self_parent_is_ignored() {
        let t = trace(vec![sp(1, Some(1), "a", SERVER, "GET /", 0, 10)]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.parent(0), None);
        assert!(g.notes().iter().any(|n| n.contains("itself")));
    }

    #[test]
    fn missing_parent_is_inferred_under_the_tightest_containing_span() {
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "GET /", 0, 100),
            sp(2, Some(1), "edge", CLIENT, "GET", 10, 90),
            // parent 99 (an uninstrumented hop) never arrived
            sp(3, Some(99), "backend", SERVER, "GET /x", 20, 80),
        ]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.parent(2), Some(1));
        assert!(g.is_inferred(2));
        assert!(g.notes().iter().any(|n| n.contains("inferred link")));
    }

    #[test]
    fn skewed_orphan_of_another_service_is_attached_under_the_tightest_overlapping_span() {
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "GET /", 0, 100),
            sp(2, Some(1), "edge", CLIENT, "GET", 10, 90),
            // backend's clock is 15 ms ahead and its parent (a proxy span) never arrived
            sp(3, Some(99), "backend", SERVER, "GET /x", 25, 105),
        ]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.parent(2), Some(1));
        assert!(g
            .notes()
            .iter()
            .any(|n| n.contains("allowing for clock skew")));
    }

    #[test]
    fn orphan_fitting_nowhere_stays_a_root() {
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "GET /", 0, 10),
            sp(3, Some(99), "backend", SERVER, "GET /x", 20, 80),
        ]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.parent(1), None);
        assert!(g.notes().iter().any(|n| n.contains("as roots")));
    }

    #[test]
    fn end_before_start_reads_as_zero_length() {
        let t = trace(vec![sp(1, None, "a", SERVER, "GET /", 10, 5)]);
        let g = SpanGraph::build(&t);
        assert_eq!(g.end(0), g.start(0));
        assert_eq!(g.duration(0), 0);
        assert!(g.notes().iter().any(|n| n.contains("zero-length")));
    }
}
