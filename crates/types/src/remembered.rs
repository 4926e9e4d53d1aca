//! A small map for remembering what is costly to work out and never changes (a parsed key, a
//! user's key), shared between threads and bounded: when full, it starts over.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// At most `max` remembered values, emptied when full (what is used often is soon back).
#[derive(Debug)]
pub struct Remembered<K, V> {
    map: Mutex<HashMap<K, V>>,
    max: usize,
}

impl<K: Hash + Eq, V: Clone> Remembered<K, V> {
    /// An empty map that holds at most `max` values.
    pub fn new(max: usize) -> Self {
        Self { map: Mutex::new(HashMap::new()), max }
    }

    /// The value remembered for `key`.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.lock().expect("remembered lock").get(key).cloned()
    }

    /// Remember `value` for `key`.
    pub fn insert(&self, key: K, value: V) {
        let mut map = self.map.lock().expect("remembered lock");
        if map.len() >= self.max {
            map.clear();
        }
        map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::Remembered;

    #[test]
    fn remembers_up_to_its_bound_then_starts_over() {
        let map = Remembered::new(2);
        map.insert("a".to_string(), 1);
        map.insert("b".to_string(), 2);
        assert_eq!((map.get("a"), map.get("b"), map.get("c")), (Some(1), Some(2), None));
        map.insert("c".to_string(), 3);
        assert_eq!((map.get("a"), map.get("b"), map.get("c")), (None, None, Some(3)));
    }
}
