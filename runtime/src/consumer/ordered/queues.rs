//! An ordered function's messages in the pod's hand, per key: of each key one message runs (or
//! waits for its retry) at a time, always the one with the lowest stream sequence held.
//!
//! A key whose running message could not be settled with the server is *blocked* at that
//! sequence: the server redelivers it (after `ack_wait`) and nothing later of the key runs
//! before it is back.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// The messages of one key.
#[derive(Debug)]
struct Queue<M> {
    /// Held, not running, by stream sequence.
    waiting: BTreeMap<u64, M>,
    /// The sequence running (or waiting for its retry) now.
    running: Option<u64>,
    /// A sequence the server will redeliver: nothing later runs before it.
    blocked: Option<u64>,
}

impl<M> Default for Queue<M> {
    fn default() -> Self {
        Self {
            waiting: BTreeMap::new(),
            running: None,
            blocked: None,
        }
    }
}

impl<M> Queue<M> {
    /// The sequence that may run next, if any.
    fn head(&self) -> Option<u64> {
        if self.running.is_some() {
            return None;
        }
        let (&first, _) = self.waiting.first_key_value()?;
        match self.blocked {
            Some(blocked) if first != blocked => None,
            _ => Some(first),
        }
    }
}

/// What [`Queues::insert`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inserted<M> {
    /// Held; runs in its turn.
    Held,
    /// A redelivery of a message already held: the new delivery replaces the old one
    /// (returned: it needs no settling, the server has superseded it).
    Replaced(M),
    /// A redelivery of the message running now: returned to the caller, which settles it as the
    /// running one ends.
    Running(M),
}

/// Every key's messages in the pod's hand.
#[derive(Debug)]
pub(super) struct Queues<M> {
    keys: HashMap<String, Queue<M>>,
    /// Keys whose head may run, in the order they became runnable.
    ready: VecDeque<String>,
    /// Messages held: waiting and running.
    held: usize,
}

impl<M> Default for Queues<M> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            ready: VecDeque::new(),
            held: 0,
        }
    }
}

impl<M> Queues<M> {
    /// Holds `message` (stream sequence `sequence`) under `key`.
    pub(super) fn insert(&mut self, key: &str, sequence: u64, message: M) -> Inserted<M> {
        let queue = self.keys.entry(key.to_owned()).or_default();
        if queue.running == Some(sequence) {
            return Inserted::Running(message);
        }
        if let Some(old) = queue.waiting.insert(sequence, message) {
            return Inserted::Replaced(old);
        }
        self.held += 1;
        if queue.blocked == Some(sequence) {
            queue.blocked = None;
        }
        if queue.head() == Some(sequence) && !self.ready.iter().any(|k| k == key) {
            self.ready.push_back(key.to_owned());
        }
        Inserted::Held
    }

    /// The next message that may run, now marked running: the head of the key that became
    /// runnable first.
    pub(super) fn next(&mut self) -> Option<(String, u64, M)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            let Some(sequence) = queue.head() else {
                continue;
            };
            let message = queue.waiting.remove(&sequence)?;
            queue.running = Some(sequence);
            return Some((key, sequence, message));
        }
        None
    }

    /// The running message of `key` ended: settled with the server, or not (`settled` false:
    /// the key is blocked until the server redelivers it).
    pub(super) fn finish(&mut self, key: &str, sequence: u64, settled: bool) {
        let Some(queue) = self.keys.get_mut(key) else {
            return;
        };
        if queue.running != Some(sequence) {
            return;
        }
        queue.running = None;
        self.held -= 1;
        if !settled {
            queue.blocked = Some(sequence);
        }
        if queue.waiting.is_empty() && queue.blocked.is_none() {
            self.keys.remove(key);
        } else if queue.head().is_some() {
            self.ready.push_back(key.to_owned());
        }
    }

    /// Messages held: waiting and running.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Whether nothing is held and no key is blocked.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys held.
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        self.keys.len()
    }

    /// The messages waiting (not running), to keep alive.
    pub(super) fn waiting(&self) -> impl Iterator<Item = &M> {
        self.keys.values().flat_map(|queue| queue.waiting.values())
    }

    /// Takes every waiting message out (stopping or losing the lease); running ones stay
    /// counted until they finish.
    pub(super) fn take_waiting(&mut self) -> Vec<M> {
        let mut taken = Vec::new();
        for queue in self.keys.values_mut() {
            taken.extend(std::mem::take(&mut queue.waiting).into_values());
            queue.blocked = None;
        }
        self.held -= taken.len();
        self.keys.retain(|_, queue| queue.running.is_some());
        self.ready.clear();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_all(queues: &mut Queues<&'static str>) -> Vec<(String, u64)> {
        let mut started = Vec::new();
        while let Some((key, sequence, _)) = queues.next() {
            started.push((key, sequence));
        }
        started
    }

    #[test]
    fn one_message_of_a_key_at_a_time_in_sequence_order() {
        let mut queues = Queues::default();
        for (key, sequence) in [("a", 1), ("b", 2), ("a", 3), ("b", 4), ("c", 5)] {
            assert_eq!(queues.insert(key, sequence, "m"), Inserted::Held);
        }
        assert_eq!(queues.held(), 5);
        let first = run_all(&mut queues);
        assert_eq!(
            first,
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 5)],
            "one head per key"
        );
        queues.finish("b", 2, true);
        queues.finish("a", 1, true);
        assert_eq!(run_all(&mut queues), [("b".into(), 4), ("a".into(), 3)]);
        for (key, sequence) in [("a", 3), ("b", 4), ("c", 5)] {
            queues.finish(key, sequence, true);
        }
        assert!(queues.is_empty());
        assert_eq!(queues.held(), 0);
    }

    #[test]
    fn an_earlier_sequence_arriving_later_runs_first() {
        let mut queues = Queues::default();
        queues.insert("a", 7, "seven");
        queues.insert("a", 5, "five");
        assert_eq!(queues.next().map(|(_, s, m)| (s, m)), Some((5, "five")));
        assert!(queues.next().is_none(), "the key is busy");
    }

    #[test]
    fn an_unsettled_message_blocks_its_key_until_it_is_redelivered() {
        let mut queues = Queues::default();
        queues.insert("a", 1, "first");
        queues.insert("a", 2, "second");
        queues.insert("b", 3, "other");
        assert_eq!(run_all(&mut queues), [("a".into(), 1), ("b".into(), 3)]);
        queues.finish("a", 1, false);
        assert!(queues.next().is_none(), "2 waits for 1's redelivery");
        assert_eq!(queues.insert("a", 1, "again"), Inserted::Held);
        assert_eq!(queues.next().map(|(_, s, m)| (s, m)), Some((1, "again")));
        queues.finish("a", 1, true);
        assert_eq!(queues.next().map(|(_, s, _)| s), Some(2));
    }

    #[test]
    fn redeliveries_of_held_or_running_messages_are_handed_back() {
        let mut queues = Queues::default();
        queues.insert("a", 1, "one");
        queues.insert("a", 2, "two");
        assert_eq!(
            queues.insert("a", 2, "two again"),
            Inserted::Replaced("two")
        );
        let (_, sequence, _) = queues.next().expect("runs");
        assert_eq!(
            queues.insert("a", sequence, "one again"),
            Inserted::Running("one again")
        );
        assert_eq!(queues.held(), 2);
        assert_eq!(queues.waiting().copied().collect::<Vec<_>>(), ["two again"]);
    }

    #[test]
    fn taking_the_waiting_keeps_the_running_counted() {
        let mut queues = Queues::default();
        queues.insert("a", 1, "one");
        queues.insert("a", 2, "two");
        queues.insert("b", 3, "three");
        let (key, sequence, _) = queues.next().expect("runs");
        let mut taken = queues.take_waiting();
        taken.sort_unstable();
        assert_eq!(taken, ["three", "two"]);
        assert_eq!((queues.held(), queues.keys()), (1, 1));
        queues.finish(&key, sequence, true);
        assert!(queues.is_empty());
    }
}
