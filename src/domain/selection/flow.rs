//! Maximum flow (Dinic's algorithm) on small integer networks, for the panel assignment.
//!
//! Edges are added in a fixed order and explored in that order, so the same network always yields
//! the same flow. The search is iterative: residual paths may be as long as the network is large,
//! and a recursive search could exhaust a worker thread's stack.

use std::collections::VecDeque;

/// A directed network with integer capacities and the flow pushed through it so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowNetwork {
    /// Edge ids leaving each node, in insertion order.
    adjacency: Vec<Vec<usize>>,
    /// Head of each edge. Edge `e ^ 1` is the reverse of edge `e`.
    head: Vec<usize>,
    /// Residual capacity of each edge.
    residual: Vec<u64>,
}

impl FlowNetwork {
    /// Returns an empty network of `nodes` nodes.
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            adjacency: vec![Vec::new(); nodes],
            head: Vec::new(),
            residual: Vec::new(),
        }
    }

    /// Adds an edge `from -> to` of `capacity`; returns its id (for [`FlowNetwork::flow_on`]).
    pub(crate) fn add_edge(&mut self, from: usize, to: usize, capacity: u64) -> usize {
        let id = self.head.len();
        self.head.push(to);
        self.residual.push(capacity);
        self.adjacency[from].push(id);
        self.head.push(from);
        self.residual.push(0);
        self.adjacency[to].push(id + 1);
        id
    }

    /// Returns the flow on edge `edge` (an id returned by [`FlowNetwork::add_edge`]).
    pub(crate) fn flow_on(&self, edge: usize) -> u64 {
        self.residual[edge ^ 1]
    }

    /// Pushes as much flow as possible from `source` to `sink`; returns the amount pushed.
    pub(crate) fn max_flow(&mut self, source: usize, sink: usize) -> u64 {
        debug_assert_ne!(source, sink, "a flow needs two distinct ends");
        let mut total = 0u64;
        let mut level = vec![usize::MAX; self.adjacency.len()];
        let mut next_edge = vec![0usize; self.adjacency.len()];
        while self.levels_from(source, sink, &mut level) {
            next_edge.iter_mut().for_each(|position| *position = 0);
            total += self.blocking_flow(source, sink, &level, &mut next_edge);
        }
        total
    }

    /// Labels nodes with their distance from `source` in the residual network; returns true when
    /// `sink` is reachable.
    fn levels_from(&self, source: usize, sink: usize, level: &mut [usize]) -> bool {
        level.iter_mut().for_each(|distance| *distance = usize::MAX);
        level[source] = 0;
        let mut queue = VecDeque::from([source]);
        while let Some(node) = queue.pop_front() {
            for &edge in &self.adjacency[node] {
                let next = self.head[edge];
                if self.residual[edge] > 0 && level[next] == usize::MAX {
                    level[next] = level[node] + 1;
                    queue.push_back(next);
                }
            }
        }
        level[sink] != usize::MAX
    }

    /// Saturates every shortest augmenting path of the level graph; returns the flow pushed.
    fn blocking_flow(
        &mut self,
        source: usize,
        sink: usize,
        level: &[usize],
        next_edge: &mut [usize],
    ) -> u64 {
        let mut pushed = 0u64;
        let mut path: Vec<usize> = Vec::new();
        let mut node = source;
        loop {
            if node == sink {
                let amount = path
                    .iter()
                    .map(|&edge| self.residual[edge])
                    .min()
                    .unwrap_or(0);
                for &edge in &path {
                    self.residual[edge] -= amount;
                    self.residual[edge ^ 1] += amount;
                }
                pushed += amount;
                // Resume from the tail of the first edge the augmentation saturated.
                let saturated = path
                    .iter()
                    .position(|&edge| self.residual[edge] == 0)
                    .unwrap_or(0);
                path.truncate(saturated);
                node = path.last().map_or(source, |&edge| self.head[edge]);
                continue;
            }
            let mut advanced = false;
            while let Some(&edge) = self.adjacency[node].get(next_edge[node]) {
                let next = self.head[edge];
                if self.residual[edge] > 0 && level[next] == level[node] + 1 {
                    path.push(edge);
                    node = next;
                    advanced = true;
                    break;
                }
                next_edge[node] += 1;
            }
            if advanced {
                continue;
            }
            // A dead end: retreat one edge and never try it again in this phase.
            let Some(edge) = path.pop() else {
                return pushed;
            };
            node = self.head[edge ^ 1];
            next_edge[node] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_network_carries_its_minimum_cut() {
        // CLRS figure 26.1: maximum flow 23.
        let mut network = FlowNetwork::new(6);
        for (from, to, capacity) in [
            (0, 1, 16),
            (0, 2, 13),
            (2, 1, 4),
            (1, 3, 12),
            (3, 2, 9),
            (2, 4, 14),
            (4, 3, 7),
            (3, 5, 20),
            (4, 5, 4),
        ] {
            network.add_edge(from, to, capacity);
        }
        assert_eq!(network.max_flow(0, 5), 23);
        assert_eq!(
            network.max_flow(0, 5),
            0,
            "a maximum flow has no augmenting path left"
        );
    }

    #[test]
    fn flow_is_read_back_per_edge_and_conserved() {
        let mut network = FlowNetwork::new(4);
        let top = network.add_edge(0, 1, 3);
        let bottom = network.add_edge(0, 2, 2);
        let cross = network.add_edge(1, 2, 1);
        let left = network.add_edge(1, 3, 2);
        let right = network.add_edge(2, 3, 3);
        assert_eq!(network.max_flow(0, 3), 5);
        assert_eq!(network.flow_on(top) + network.flow_on(bottom), 5);
        assert_eq!(
            network.flow_on(top),
            network.flow_on(cross) + network.flow_on(left)
        );
        assert_eq!(
            network.flow_on(bottom) + network.flow_on(cross),
            network.flow_on(right)
        );
    }

    #[test]
    fn a_long_chain_needs_no_deep_recursion() {
        let nodes = 200_000;
        let mut network = FlowNetwork::new(nodes);
        for node in 0..nodes - 1 {
            network.add_edge(node, node + 1, 1);
        }
        assert_eq!(network.max_flow(0, nodes - 1), 1);
    }

    #[test]
    fn a_disconnected_sink_gets_nothing() {
        let mut network = FlowNetwork::new(3);
        network.add_edge(0, 1, 5);
        assert_eq!(network.max_flow(0, 2), 0);
    }
}
