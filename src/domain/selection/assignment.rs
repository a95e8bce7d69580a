//! Balanced, conflict-free assignment of applications to judges, by maximum flow.
//!
//! The network: a source feeds each application its required number of judges; an application
//! sends one unit to each judge free of conflict with it; a judge sends its new load to the sink,
//! between a lower and an upper bound. A flow that saturates every application is an assignment.
//!
//! Three steps give the most even assignment there is:
//! 1. the smallest `most` such that every judge's total load (existing plus new) can stay at or
//!    below `most` (a maximum flow per candidate);
//! 2. with that cap, the largest `fewest` such that every judge's total load can also stay at or
//!    above `fewest` (lower bounds by the standard reduction to a circulation);
//! 3. while some judge carries at least two more than another judge it can hand work to (one
//!    application moved along a chain of judges), the move is made.
//!
//! The load vectors of all conflict-free assignments are the integer points of an integral base
//! polyhedron (a flow's image of one). There, an assignment without such a move is decreasingly
//! minimal: its loads sorted from the highest are the smallest possible, so it also has the
//! smallest maximum, the largest minimum and the smallest spread of any assignment (Frank and
//! Murota, *Discrete decreasing minimization*, 2021; Harvey et al., *Semi-matchings for bipartite
//! graphs and load balancing*, 2006). The spread is therefore at most one whenever some
//! conflict-free assignment reaches it, and the best achievable otherwise. Steps 1 and 2 do most
//! of the work: when a spread of one is reachable, step 3 finds nothing to move. The tests
//! compare the result with an exhaustive search.

use std::collections::VecDeque;

use super::flow::FlowNetwork;

/// Assigns application `i` exactly `required[i]` distinct judges among `eligible[i]` (judge
/// indices), so that the judges' total loads (`existing[j]` plus their new applications) are as
/// even as possible: sorted from the highest, the smallest of any assignment.
///
/// Returns the judges of each application in ascending judge index, or `None` when some
/// application has fewer eligible judges than it requires. The answer is a function of the
/// arguments alone: the same input always yields the same assignment.
pub(crate) fn balance(
    existing: &[usize],
    eligible: &[Vec<usize>],
    required: &[usize],
) -> Option<Vec<Vec<usize>>> {
    debug_assert_eq!(eligible.len(), required.len());
    let judge_count = existing.len();
    let eligible: Vec<Vec<usize>> = eligible
        .iter()
        .map(|judges| {
            let mut sorted = judges.clone();
            sorted.sort_unstable();
            sorted.dedup();
            sorted
        })
        .collect();
    if eligible.iter().zip(required).any(|(judges, wanted)| {
        judges.len() < *wanted || judges.last().is_some_and(|judge| *judge >= judge_count)
    }) {
        return None;
    }
    let new_total: usize = required.iter().sum();
    if new_total == 0 {
        return Some(vec![Vec::new(); eligible.len()]);
    }
    let problem = Problem {
        existing,
        eligible: &eligible,
        required,
    };
    let grand_total = existing.iter().sum::<usize>() + new_total;
    let highest_existing = existing.iter().copied().max().unwrap_or(0);
    // No maximum can be below the average, nor below a load that exists already; and giving
    // every application to every judge it may have is always within `highest + applications`.
    let most = smallest_feasible(
        highest_existing.max(grand_total.div_ceil(judge_count)),
        highest_existing + eligible.len(),
        |most| problem.solve(0, most).is_some(),
    );
    let lowest_existing = existing.iter().copied().min().unwrap_or(0);
    let fewest = largest_feasible(
        lowest_existing,
        most.min(grand_total / judge_count),
        |fewest| problem.solve(fewest, most).is_some(),
    );
    let mut assignment = problem.solve(fewest, most)?;
    level(existing, &eligible, &mut assignment);
    Some(assignment)
}

/// Moves applications between judges while some judge carries at least two more than a judge
/// it can hand one application to, directly or along a chain of judges each passing one on.
///
/// Every move lowers the sum of squared loads, so the loop ends; when it ends, no such chain is
/// left, which makes the loads decreasingly minimal. The highest loaded judges are tried first,
/// then by index, and chains are searched breadth first in index order, so the result is
/// deterministic. `assignment[a]` stays sorted.
fn level(existing: &[usize], eligible: &[Vec<usize>], assignment: &mut [Vec<usize>]) {
    let judge_count = existing.len();
    let mut load = existing.to_vec();
    let mut applications_of: Vec<Vec<usize>> = vec![Vec::new(); judge_count];
    for (application, judges) in assignment.iter().enumerate() {
        for judge in judges {
            load[*judge] += 1;
            applications_of[*judge].push(application);
        }
    }
    // How each judge reached in the search was reached: (application, the judge handing it on).
    let mut reached_by: Vec<Option<(usize, usize)>> = vec![None; judge_count];
    'search: loop {
        let lowest = load.iter().copied().min().unwrap_or(0);
        let mut order: Vec<usize> = (0..judge_count)
            .filter(|judge| load[*judge] >= lowest + 2)
            .collect();
        order.sort_by_key(|judge| (std::cmp::Reverse(load[*judge]), *judge));
        for start in order {
            reached_by.iter_mut().for_each(|entry| *entry = None);
            let mut queue = VecDeque::from([start]);
            let mut visited = vec![false; judge_count];
            visited[start] = true;
            while let Some(judge) = queue.pop_front() {
                for &application in &applications_of[judge] {
                    for &next in &eligible[application] {
                        if visited[next] || assignment[application].binary_search(&next).is_ok() {
                            continue;
                        }
                        visited[next] = true;
                        reached_by[next] = Some((application, judge));
                        if load[next] + 2 <= load[start] {
                            hand_on(next, start, &reached_by, assignment, &mut applications_of);
                            load[start] -= 1;
                            load[next] += 1;
                            continue 'search;
                        }
                        queue.push_back(next);
                    }
                }
            }
        }
        return;
    }
}

/// Moves one application along each link of the chain that ends at `end` and starts at `start`.
fn hand_on(
    end: usize,
    start: usize,
    reached_by: &[Option<(usize, usize)>],
    assignment: &mut [Vec<usize>],
    applications_of: &mut [Vec<usize>],
) {
    let mut to = end;
    while to != start {
        let Some((application, from)) = reached_by[to] else {
            debug_assert!(false, "a chain is broken");
            return;
        };
        let judges = &mut assignment[application];
        judges.retain(|judge| *judge != from);
        if let Err(position) = judges.binary_search(&to) {
            judges.insert(position, to);
        }
        applications_of[from].retain(|other| *other != application);
        applications_of[to].push(application);
        to = from;
    }
}

/// Returns the smallest value in `low..=high` for which `feasible` holds, given that it holds for
/// `high` and, once it holds, for every larger value. Tries `low` first: it usually holds.
fn smallest_feasible(low: usize, high: usize, feasible: impl Fn(usize) -> bool) -> usize {
    let (mut failing, mut holding) = (low, high.max(low));
    if feasible(low) {
        return low;
    }
    while holding - failing > 1 {
        let middle = failing + (holding - failing) / 2;
        if feasible(middle) {
            holding = middle;
        } else {
            failing = middle;
        }
    }
    holding
}

/// Returns the largest value in `low..=high` for which `feasible` holds, given that it holds for
/// `low` and, once it fails, for no larger value. Tries `high` first: it usually holds.
fn largest_feasible(low: usize, high: usize, feasible: impl Fn(usize) -> bool) -> usize {
    if high <= low || feasible(high) {
        return high.max(low);
    }
    let (mut holding, mut failing) = (low, high);
    while failing - holding > 1 {
        let middle = holding + (failing - holding) / 2;
        if feasible(middle) {
            holding = middle;
        } else {
            failing = middle;
        }
    }
    holding
}

/// One assignment problem, solved for given bounds on the judges' total loads.
struct Problem<'a> {
    existing: &'a [usize],
    eligible: &'a [Vec<usize>],
    required: &'a [usize],
}

impl Problem<'_> {
    /// Returns an assignment in which every judge's total load lies in `fewest..=most`, if any.
    ///
    /// Bounds `[lower, upper]` on a judge's edge to the sink become, by the usual reduction, an
    /// edge of capacity `upper - lower` plus a demand of `lower`, met from a super source; the
    /// applications' exact demands are met the same way. A flow saturating every edge out of the
    /// super source is a feasible assignment.
    fn solve(&self, fewest: usize, most: usize) -> Option<Vec<Vec<usize>>> {
        let application_count = self.eligible.len();
        let judge_count = self.existing.len();
        let (super_source, super_sink, sink) = (0, 1, 2);
        let first_application = 3;
        let first_judge = first_application + application_count;
        let mut network = FlowNetwork::new(first_judge + judge_count);
        let mut demand = 0u64;
        for (index, wanted) in self.required.iter().enumerate() {
            network.add_edge(super_source, first_application + index, *wanted as u64);
            demand += *wanted as u64;
        }
        let mut choices: Vec<Vec<(usize, usize)>> = Vec::with_capacity(application_count);
        for (index, judges) in self.eligible.iter().enumerate() {
            choices.push(
                judges
                    .iter()
                    .map(|&judge| {
                        let edge =
                            network.add_edge(first_application + index, first_judge + judge, 1);
                        (judge, edge)
                    })
                    .collect(),
            );
        }
        let mut lower_total = 0u64;
        for (judge, load) in self.existing.iter().enumerate() {
            let upper = most.checked_sub(*load)? as u64;
            let lower = fewest.saturating_sub(*load) as u64;
            if lower > upper {
                return None;
            }
            network.add_edge(first_judge + judge, sink, upper - lower);
            if lower > 0 {
                network.add_edge(first_judge + judge, super_sink, lower);
            }
            lower_total += lower;
        }
        if lower_total > 0 {
            network.add_edge(super_source, sink, lower_total);
        }
        let new_total: u64 = self.required.iter().map(|wanted| *wanted as u64).sum();
        network.add_edge(sink, super_sink, new_total);
        demand += lower_total;
        if network.max_flow(super_source, super_sink) != demand {
            return None;
        }
        Some(
            choices
                .into_iter()
                .map(|edges| {
                    edges
                        .into_iter()
                        .filter(|(_, edge)| network.flow_on(*edge) == 1)
                        .map(|(judge, _)| judge)
                        .collect()
                })
                .collect(),
        )
    }
}

/// The best loads over every conflict-free assignment of a small panel, found by exhaustive
/// search. For tests.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Best {
    /// Smallest `max - min`.
    pub(crate) spread: usize,
    /// Smallest maximum.
    pub(crate) most: usize,
    /// Largest minimum.
    pub(crate) fewest: usize,
    /// Smallest loads sorted from the highest (compared lexicographically).
    pub(crate) sorted_loads: Vec<usize>,
}

/// Returns the best loads over every conflict-free assignment, by exhaustive search; `None` when
/// there is none. For tests of small panels.
#[cfg(test)]
pub(crate) fn exhaustive_best(
    existing: &[usize],
    eligible: &[Vec<usize>],
    required: &[usize],
) -> Option<Best> {
    fn subsets(items: &[usize], size: usize) -> Vec<Vec<usize>> {
        if size == 0 {
            return vec![Vec::new()];
        }
        let mut all = Vec::new();
        for (position, item) in items.iter().enumerate() {
            for mut rest in subsets(&items[position + 1..], size - 1) {
                rest.insert(0, *item);
                all.push(rest);
            }
        }
        all
    }
    fn walk(
        index: usize,
        options: &[Vec<Vec<usize>>],
        loads: &mut [usize],
        best: &mut Option<Best>,
    ) {
        if index == options.len() {
            let mut sorted_loads = loads.to_vec();
            sorted_loads.sort_unstable_by(|a, b| b.cmp(a));
            let most = sorted_loads.first().copied().unwrap_or(0);
            let fewest = sorted_loads.last().copied().unwrap_or(0);
            *best = Some(match best.take() {
                None => Best {
                    spread: most - fewest,
                    most,
                    fewest,
                    sorted_loads,
                },
                Some(known) => Best {
                    spread: known.spread.min(most - fewest),
                    most: known.most.min(most),
                    fewest: known.fewest.max(fewest),
                    sorted_loads: known.sorted_loads.min(sorted_loads),
                },
            });
            return;
        }
        for choice in &options[index] {
            for judge in choice {
                loads[*judge] += 1;
            }
            walk(index + 1, options, loads, best);
            for judge in choice {
                loads[*judge] -= 1;
            }
        }
    }
    let options: Vec<Vec<Vec<usize>>> = eligible
        .iter()
        .zip(required)
        .map(|(judges, wanted)| subsets(judges, *wanted))
        .collect();
    if options.iter().any(Vec::is_empty) {
        return None;
    }
    let mut best = None;
    walk(0, &options, &mut existing.to_vec(), &mut best);
    best
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn loads(existing: &[usize], assignment: &[Vec<usize>]) -> Vec<usize> {
        let mut loads = existing.to_vec();
        for judges in assignment {
            for judge in judges {
                loads[*judge] += 1;
            }
        }
        loads
    }

    fn spread(loads: &[usize]) -> (usize, usize) {
        (
            loads.iter().copied().min().unwrap_or(0),
            loads.iter().copied().max().unwrap_or(0),
        )
    }

    #[test]
    fn the_greedy_trap_is_balanced_eight_each() {
        // Judges 0-2 share a ministry with applications 0, 14 and 28; judge 3 is the only one
        // free for the last two. Taking applications in order, least loaded first, gave loads
        // 8/8/7/9; 8/8/8/8 exists.
        let mut eligible: Vec<Vec<usize>> = (0..30)
            .map(|index| {
                if index % 14 == 0 {
                    vec![0, 1, 2]
                } else {
                    vec![0, 1, 2, 3]
                }
            })
            .collect();
        eligible.extend([vec![3], vec![3]]);
        let required = vec![1; 32];
        let assignment = balance(&[0; 4], &eligible, &required).expect("feasible");
        assert_eq!(loads(&[0; 4], &assignment), [8, 8, 8, 8]);
        assert_eq!(assignment[30], [3]);
        assert_eq!(assignment[31], [3]);
    }

    #[test]
    fn existing_loads_are_levelled_first() {
        let assignment = balance(&[5, 0, 2], &vec![vec![0, 1, 2]; 6], &[1; 6]).unwrap();
        assert_eq!(loads(&[5, 0, 2], &assignment), [5, 4, 4]);
    }

    #[test]
    fn when_no_assignment_is_within_one_the_spread_is_the_smallest_possible() {
        // Judge 2 may judge nothing: the best is loads 3/3/0.
        let assignment = balance(&[0, 0, 0], &vec![vec![0, 1]; 3], &[2; 3]).unwrap();
        assert_eq!(loads(&[0; 3], &assignment), [3, 3, 0]);
    }

    #[test]
    fn a_forced_high_load_does_not_unbalance_the_others() {
        // Judge 2 alone may take applications 0 and 1 and starts at 1: its load of 3 is forced.
        // The six others go 2/2/1/1 to judges 0, 1, 3 and 4, not 3/1/1/1.
        let mut eligible = vec![vec![2], vec![2]];
        eligible.extend(vec![vec![0, 1, 3, 4]; 6]);
        let existing = [0, 0, 1, 0, 0];
        let assignment = balance(&existing, &eligible, &[1; 8]).unwrap();
        let mut sorted_loads = loads(&existing, &assignment);
        sorted_loads.sort_unstable();
        assert_eq!(sorted_loads, [1, 1, 2, 2, 3]);
    }

    #[test]
    fn a_large_panel_with_conflicts_is_assigned_within_one() {
        // 5,000 applications from 14 ministries, 50 judges from 10 of them plus 5 from an
        // institute, 3 judges each.
        let judge_ministry: Vec<usize> = (0..55)
            .map(|judge| if judge < 50 { judge % 10 } else { 99 })
            .collect();
        let eligible: Vec<Vec<usize>> = (0..5000)
            .map(|application| {
                (0..judge_ministry.len())
                    .filter(|judge| judge_ministry[*judge] != application % 14)
                    .collect()
            })
            .collect();
        let started = std::time::Instant::now();
        let assignment = balance(&[0; 55], &eligible, &[3; 5000]).unwrap();
        let loads = loads(&[0; 55], &assignment);
        let (low, high) = spread(&loads);
        assert_eq!((low, high), (272, 273), "15,000 over 55 judges");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn too_few_eligible_judges_is_infeasible() {
        assert!(balance(&[0, 0], &[vec![0]], &[2]).is_none());
        assert_eq!(balance(&[0, 0], &[], &[]), Some(Vec::new()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_loads_are_as_even_as_the_best_of_an_exhaustive_search(
            judge_count in 1usize..5,
            raw in proptest::collection::vec((proptest::collection::vec(any::<bool>(), 4), 1usize..4), 0..7),
            existing in proptest::collection::vec(0usize..3, 4),
        ) {
            let existing = &existing[..judge_count];
            let eligible: Vec<Vec<usize>> = raw
                .iter()
                .map(|(free, _)| (0..judge_count).filter(|judge| free[*judge]).collect())
                .collect();
            let required: Vec<usize> = raw.iter().map(|(_, wanted)| (*wanted).min(judge_count)).collect();
            let best = exhaustive_best(existing, &eligible, &required);
            match balance(existing, &eligible, &required) {
                None => prop_assert!(best.is_none()),
                Some(assignment) => {
                    let best = best.expect("exhaustive finds one too");
                    for ((judges, free), wanted) in assignment.iter().zip(&eligible).zip(&required) {
                        prop_assert_eq!(judges.len(), *wanted);
                        prop_assert!(judges.windows(2).all(|pair| pair[0] < pair[1]));
                        prop_assert!(judges.iter().all(|judge| free.contains(judge)));
                    }
                    let mut sorted_loads = loads(existing, &assignment);
                    sorted_loads.sort_unstable_by(|a, b| b.cmp(a));
                    let (low, high) = spread(&sorted_loads);
                    prop_assert_eq!(high, best.most);
                    prop_assert_eq!(low, best.fewest);
                    prop_assert_eq!(high - low, best.spread);
                    prop_assert_eq!(sorted_loads, best.sorted_loads);
                }
            }
        }
    }
}
