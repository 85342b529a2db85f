//! A small minimum-cost maximum-flow solver, for the aggregated graphs of the sticky engine and
//! the metrics (signatures, classes, members): successive shortest paths with SPFA.

use std::collections::VecDeque;

/// Minimum-cost maximum flow by successive shortest paths (SPFA). Small graphs only: the
/// aggregated graph has members + signatures + (signature, owner) groups as nodes.
pub(crate) struct Mcmf {
    to: Vec<usize>,
    cap: Vec<i64>,
    cost: Vec<i64>,
    head: Vec<Vec<usize>>,
}

impl Mcmf {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
            head: vec![Vec::new(); nodes],
        }
    }

    /// Adds an edge; returns its index (its flow is the reverse edge's capacity).
    pub(crate) fn edge(&mut self, a: usize, b: usize, cap: i64, cost: i64) -> usize {
        self.head[a].push(self.to.len());
        self.to.push(b);
        self.cap.push(cap);
        self.cost.push(cost);
        self.head[b].push(self.to.len());
        self.to.push(a);
        self.cap.push(0);
        self.cost.push(-cost);
        self.to.len() - 2
    }

    /// Flow on edge `e` (as returned by [`Mcmf::edge`]).
    pub(crate) fn flow(&self, e: usize) -> i64 {
        self.cap[e ^ 1]
    }

    /// Pushes as much flow as possible from `s` to `t` at minimum cost; returns (flow, cost).
    pub(crate) fn run(&mut self, s: usize, t: usize) -> (i64, i64) {
        let nodes = self.head.len();
        let (mut flow, mut total) = (0i64, 0i64);
        loop {
            let mut dist = vec![i64::MAX; nodes];
            let mut via = vec![usize::MAX; nodes];
            let mut queued = vec![false; nodes];
            let mut q = VecDeque::new();
            dist[s] = 0;
            q.push_back(s);
            while let Some(u) = q.pop_front() {
                queued[u] = false;
                for &e in &self.head[u] {
                    if self.cap[e] > 0 && dist[u] + self.cost[e] < dist[self.to[e]] {
                        let v = self.to[e];
                        dist[v] = dist[u] + self.cost[e];
                        via[v] = e;
                        if !queued[v] {
                            queued[v] = true;
                            q.push_back(v);
                        }
                    }
                }
            }
            if dist[t] == i64::MAX {
                return (flow, total);
            }
            let mut push = i64::MAX;
            let mut v = t;
            while v != s {
                let e = via[v];
                push = push.min(self.cap[e]);
                v = self.to[e ^ 1];
            }
            let mut v = t;
            while v != s {
                let e = via[v];
                self.cap[e] -= push;
                self.cap[e ^ 1] += push;
                v = self.to[e ^ 1];
            }
            flow += push;
            // Saturating: the settles' forced levels cost about `partitions^3` a unit, and a
            // forced arc carries thousands of units at once (2 members of 100,000 partitions
            // overflowed here); those callers only read the flow.
            total = total.saturating_add(push.saturating_mul(dist[t]));
        }
    }
}
