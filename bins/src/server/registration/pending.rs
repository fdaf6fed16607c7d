//! The connection monitor's queue of writes: the latest thing to write per cluster, handed out so
//! that several clusters are written at once (the store commits them together) but never two writes
//! of one cluster, and a newer mark for a cluster replaces one still waiting.

use std::collections::{HashMap, HashSet, VecDeque};

/// Marks waiting to be written, by cluster, in the order their clusters first got one.
#[derive(Debug)]
pub(crate) struct Pending<M> {
    order: VecDeque<String>,
    latest: HashMap<String, M>,
    running: HashSet<String>,
    limit: usize,
}

impl<M> Pending<M> {
    /// A queue that hands out at most `limit` (at least 1) marks before they are [`done`](Self::done).
    pub(crate) fn new(limit: usize) -> Self {
        Pending {
            order: VecDeque::new(),
            latest: HashMap::new(),
            running: HashSet::new(),
            limit: limit.max(1),
        }
    }

    /// The mark waiting for `cluster`, to amend it; a new (default) one is queued when none waits
    /// (a mark being written is not it: that one finishes, then this one is handed out).
    pub(crate) fn waiting(&mut self, cluster: &str) -> &mut M
    where
        M: Default,
    {
        if !self.latest.contains_key(cluster) {
            self.order.push_back(cluster.to_owned());
        }
        self.latest.entry(cluster.to_owned()).or_default()
    }

    /// The next mark to write, unless `limit` are being written or every waiting one is of a
    /// cluster being written.
    pub(crate) fn next(&mut self) -> Option<(String, M)> {
        if self.running.len() >= self.limit {
            return None;
        }
        // At most `limit` clusters are running, so this looks at no more than `limit + 1` entries.
        let at = self.order.iter().position(|c| !self.running.contains(c))?;
        let cluster = self.order.remove(at)?;
        let mark = self.latest.remove(&cluster)?;
        self.running.insert(cluster.clone());
        Some((cluster, mark))
    }

    /// The write of `cluster`'s mark has ended; a mark queued for it meanwhile may be handed out.
    pub(crate) fn done(&mut self, cluster: &str) {
        self.running.remove(cluster);
    }

    /// How many marks wait (not counting those being written).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.latest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_clusters_are_written_at_once_up_to_the_limit() {
        let mut p = Pending::new(3);
        for c in ["a", "b", "c", "d"] {
            *p.waiting(c) = 1;
        }
        let out: Vec<_> = std::iter::from_fn(|| p.next()).collect();
        assert_eq!(out, [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
        assert_eq!(p.queued(), 1);
        p.done("b");
        assert_eq!(p.next(), Some(("d".into(), 1)));
        assert_eq!(p.next(), None);
    }

    #[test]
    fn the_latest_mark_of_a_cluster_wins_and_keeps_its_place() {
        let mut p = Pending::new(8);
        *p.waiting("a") = "connected";
        *p.waiting("b") = "connected";
        *p.waiting("a") = "lost";
        assert_eq!(p.queued(), 2);
        assert_eq!(p.next(), Some(("a".into(), "lost")));
        assert_eq!(p.next(), Some(("b".into(), "connected")));
        assert_eq!(p.next(), None);
        assert_eq!(p.queued(), 0, "a is being written, nothing waits for it");
        *p.waiting("a") = "connected";
        *p.waiting("a") = "amended";
        assert_eq!(p.queued(), 1, "amended, not queued twice");
        p.done("a");
        assert_eq!(p.next(), Some(("a".into(), "amended")));
    }

    #[test]
    fn a_cluster_is_never_written_twice_at_once() {
        let mut p = Pending::new(8);
        *p.waiting("a") = 1;
        assert_eq!(p.next(), Some(("a".into(), 1)));
        // Marks for `a` while its first is written: the newest waits for it, behind nobody.
        *p.waiting("a") = 2;
        *p.waiting("a") = 3;
        *p.waiting("b") = 1;
        assert_eq!(p.next(), Some(("b".into(), 1)));
        assert_eq!(p.next(), None, "a is still being written");
        p.done("a");
        assert_eq!(p.next(), Some(("a".into(), 3)));
        assert_eq!(p.next(), None);
        assert_eq!(p.queued(), 0);
    }

    #[test]
    fn a_limit_of_zero_still_writes_one() {
        let mut p = Pending::<()>::new(0);
        p.waiting("a");
        p.waiting("b");
        assert!(p.next().is_some());
        assert!(p.next().is_none());
    }
}
