//! What the engine keeps per environment, by the environment's index in the intent.
//!
//! A map from index to value, kept as one slot per environment of the intent: the engine
//! reads and writes these on every step of every environment, and at 100,000 environments
//! hashing the index and chasing a hash table's buckets cost more than the work itself.

/// A map from environment index (`0..len`) to `V`, with the parts of `HashMap`'s interface
/// the engine uses. Iteration is in index order.
#[derive(Debug, Clone)]
pub struct EnvMap<V> {
    slots: Vec<Option<V>>,
}

impl<V> EnvMap<V> {
    /// An empty map with room for environments `0..envs` (it grows past that when asked).
    pub fn new(envs: usize) -> Self {
        EnvMap {
            slots: std::iter::repeat_with(|| None).take(envs).collect(),
        }
    }

    pub fn get(&self, i: &usize) -> Option<&V> {
        self.slots.get(*i).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, i: &usize) -> Option<&mut V> {
        self.slots.get_mut(*i).and_then(Option::as_mut)
    }

    pub fn contains_key(&self, i: &usize) -> bool {
        self.get(i).is_some()
    }

    /// Sets `i`'s value; returns the one it replaced.
    pub fn insert(&mut self, i: usize, value: V) -> Option<V> {
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].replace(value)
    }

    pub fn remove(&mut self, i: &usize) -> Option<V> {
        self.slots.get_mut(*i).and_then(Option::take)
    }

    /// Every (index, value), in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(Option::as_ref)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().filter_map(Option::as_mut)
    }
}

impl<V> std::ops::Index<&usize> for EnvMap<V> {
    type Output = V;

    fn index(&self, i: &usize) -> &V {
        self.get(i)
            .unwrap_or_else(|| panic!("environment {i} is not in this map"))
    }
}

/// A set of steps (environment index, service index), one flag per step of the fleet: a
/// hashed set of 300,000 steps was looked up at random on every environment's start.
#[derive(Debug, Clone)]
pub struct StepSet {
    services: usize,
    flags: Vec<bool>,
}

impl StepSet {
    /// An empty set for environments `0..envs` of `services` services each.
    pub fn new(envs: usize, services: usize) -> Self {
        StepSet {
            services,
            flags: vec![false; envs * services],
        }
    }

    pub fn insert(&mut self, i: usize, s: usize) {
        let at = i * self.services + s;
        if at >= self.flags.len() {
            self.flags.resize(at + 1, false);
        }
        self.flags[at] = true;
    }

    pub fn contains(&self, i: usize, s: usize) -> bool {
        s < self.services && self.flags.get(i * self.services + s) == Some(&true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_by_index() {
        let mut m = EnvMap::new(3);
        assert_eq!(m.iter().count(), 0);
        assert_eq!(m.insert(2, "c"), None);
        assert_eq!(m.insert(0, "a"), None);
        assert_eq!(m.insert(2, "C"), Some("c"));
        // Past the room it was made with.
        assert_eq!(m.insert(5, "f"), None);
        assert_eq!(m.get(&1), None);
        assert_eq!(m[&2], "C");
        assert!(m.contains_key(&5) && !m.contains_key(&9));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [(0, &"a"), (2, &"C"), (5, &"f")]
        );
        assert_eq!(m.remove(&0), Some("a"));
        assert_eq!(m.remove(&0), None);
        assert_eq!(m.iter().map(|(i, _)| i).collect::<Vec<_>>(), [2, 5]);
        for v in m.values_mut() {
            *v = "x";
        }
        assert_eq!(m.values().collect::<Vec<_>>(), [&"x", &"x"]);
    }

    #[test]
    fn a_step_set_holds_each_step_apart() {
        let mut set = StepSet::new(2, 3);
        set.insert(0, 2);
        // Past the room it was made with.
        set.insert(4, 1);
        let held: Vec<(usize, usize)> = (0..6)
            .flat_map(|i| (0..4).map(move |s| (i, s)))
            .filter(|&(i, s)| set.contains(i, s))
            .collect();
        assert_eq!(held, [(0, 2), (4, 1)]);
    }
}
