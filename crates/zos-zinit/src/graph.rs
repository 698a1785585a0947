//! The dependency graph of `after` edges: cycle detection and the shutdown order.
//!
//! The graph maps each service to the services it starts after. Edges to services that are not in the graph
//! are ignored (such a dependency only keeps its dependant Blocked).

use std::collections::{BTreeMap, BTreeSet};

/// Service name → the names in its `after` list.
pub type Graph = BTreeMap<String, Vec<String>>;

/// A dependency cycle, as the path that closes it: `["a", "b", "a"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

/// Find one cycle in the graph (the first in name order), if any.
pub fn find_cycle(graph: &Graph) -> Option<Cycle> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (k.as_str(), Mark::New)).collect();

    for start in graph.keys() {
        if marks[start.as_str()] != Mark::New {
            continue;
        }
        // Iterative depth-first search; `path` holds the current chain with the index of the next edge.
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start, Mark::OnPath);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = &graph[node];
            if *next < deps.len() {
                let dep = deps[*next].as_str();
                *next += 1;
                match marks.get(dep) {
                    None | Some(Mark::Done) => {}
                    Some(Mark::OnPath) => {
                        let from = path.iter().position(|(n, _)| *n == dep).expect("on path");
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(dep.to_string());
                        return Some(Cycle(cycle));
                    }
                    Some(Mark::New) => {
                        marks.insert(dep, Mark::OnPath);
                        path.push((dep, 0));
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                path.pop();
            }
        }
    }
    None
}

/// Split a graph into the services that may be monitored and those that are part of a cycle. Each cycle is
/// reported once; services depending on a rejected one are kept (they stay Blocked).
pub fn reject_cycles(graph: &Graph) -> (BTreeSet<String>, Vec<Cycle>) {
    let mut remaining = graph.clone();
    let mut cycles = Vec::new();
    while let Some(cycle) = find_cycle(&remaining) {
        for name in &cycle.0 {
            remaining.remove(name);
        }
        cycles.push(cycle);
    }
    (remaining.into_keys().collect(), cycles)
}

/// The shutdown order: waves of services to stop together. A service is in a later wave than every service
/// that depends on it, so dependants stop before their dependencies. A cycle (which `monitor` refuses) would
/// end up in one last wave rather than hang the shutdown.
pub fn shutdown_plan(graph: &Graph) -> Vec<Vec<String>> {
    let mut remaining: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    let mut waves = Vec::new();
    while !remaining.is_empty() {
        // Services that no remaining service depends on.
        let depended_on: BTreeSet<&str> = remaining
            .iter()
            .flat_map(|n| graph[*n].iter().map(String::as_str))
            .filter(|d| remaining.contains(d))
            .collect();
        let wave: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|n| !depended_on.contains(n))
            .collect();
        if wave.is_empty() {
            waves.push(remaining.iter().map(|s| s.to_string()).collect());
            break;
        }
        for n in &wave {
            remaining.remove(n);
        }
        waves.push(wave.into_iter().map(str::to_string).collect());
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(n, deps)| (n.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn acyclic_graphs_have_no_cycle() {
        let g = graph(&[
            ("redis", &[]),
            ("node-ready", &["redis"]),
            ("storaged", &["node-ready"]),
            ("boot", &["node-ready", "storaged"]),
            ("identityd", &["boot", "missing"]),
        ]);
        assert_eq!(find_cycle(&g), None);
        let (ok, cycles) = reject_cycles(&g);
        assert_eq!(ok.len(), 5);
        assert!(cycles.is_empty());
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        let cycle = find_cycle(&g).unwrap();
        assert_eq!(cycle.0, vec!["a", "b", "c", "a"]);
        assert_eq!(cycle.to_string(), "a -> b -> c -> a");

        let self_loop = graph(&[("x", &["x"])]);
        assert_eq!(find_cycle(&self_loop).unwrap().0, vec!["x", "x"]);
    }

    #[test]
    fn reject_cycles_keeps_everything_else() {
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["a"]),
            ("c", &["c"]),
            ("d", &["a"]),
            ("e", &[]),
        ]);
        let (ok, cycles) = reject_cycles(&g);
        assert_eq!(ok, ["d", "e"].iter().map(|s| s.to_string()).collect());
        assert_eq!(cycles.len(), 2);
        assert_eq!(cycles[0].0, vec!["a", "b", "a"]);
        assert_eq!(cycles[1].0, vec!["c", "c"]);
    }

    #[test]
    fn shutdown_stops_dependants_first() {
        let g = graph(&[
            ("redis", &[]),
            ("node-ready", &["redis"]),
            ("storaged", &["node-ready"]),
            ("boot", &["node-ready", "storaged"]),
            ("identityd", &["boot"]),
            ("lonely", &[]),
            ("ext", &["not-monitored"]),
        ]);
        let plan = shutdown_plan(&g);
        assert_eq!(
            plan,
            vec![
                vec!["ext", "identityd", "lonely"],
                vec!["boot"],
                vec!["storaged"],
                vec!["node-ready"],
                vec!["redis"],
            ]
        );
        // Every service appears exactly once, after all of its dependants.
        let position = |n: &str| plan.iter().position(|w| w.iter().any(|x| x == n)).unwrap();
        for (name, deps) in &g {
            for d in deps.iter().filter(|d| g.contains_key(*d)) {
                assert!(position(name) < position(d), "{name} must stop before {d}");
            }
        }
    }

    #[test]
    fn shutdown_plan_terminates_on_cycles() {
        let g = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["a"])]);
        assert_eq!(shutdown_plan(&g), vec![vec!["c"], vec!["a", "b"]]);
        assert!(shutdown_plan(&Graph::new()).is_empty());
    }
}
