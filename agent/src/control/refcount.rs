//! Reference counts kept as maps (the plan's and the API index's).

/// Counts `k` in (`add`) or out of a reference count; an entry that drops to
/// zero is removed, so two maps with the same live references compare equal.
pub(crate) fn count<K: Ord>(map: &mut std::collections::BTreeMap<K, u32>, k: K, add: bool) {
    use std::collections::btree_map::Entry;
    match (map.entry(k), add) {
        (Entry::Occupied(mut e), true) => *e.get_mut() += 1,
        (Entry::Occupied(e), false) if *e.get() <= 1 => {
            e.remove();
        }
        (Entry::Occupied(mut e), false) => *e.get_mut() -= 1,
        (Entry::Vacant(e), true) => {
            e.insert(1);
        }
        (Entry::Vacant(_), false) => {}
    }
}
