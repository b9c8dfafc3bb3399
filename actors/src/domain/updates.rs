//! Status updates in batches: which updates may be applied side by side.
//!
//! Updates of one instance are applied in the order they came, one after the
//! other, because each reads what the one before wrote; updates of different
//! instances touch different records and run side by side, so their durable writes
//! share synced batches.

use std::collections::HashMap;

use super::placement::instance_of_member;

/// What orders an update: the instance of our task ids (`cache1-0.3` → `cache1`);
/// any other id (a task we never launched) is its own key.
pub fn update_key(task_id: &str) -> &str {
    task_id
        .rsplit_once('.')
        .filter(|(_, incarnation)| incarnation.parse::<u32>().is_ok())
        .and_then(|(member, _)| instance_of_member(member))
        .filter(|instance| !instance.is_empty())
        .unwrap_or(task_id)
}

/// Splits `items` by `key`: each group keeps the items' order, and the groups come
/// in the order of their first item.
pub fn group_in_order<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let slot = match index.get(key(&item)) {
            Some(slot) => *slot,
            None => {
                index.insert(key(&item).to_string(), groups.len());
                groups.push(Vec::new());
                groups.len() - 1
            }
        };
        groups[slot].push(item);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_task_ids_are_keyed_by_instance_and_others_by_themselves() {
        assert_eq!(update_key("cache1-0.3"), "cache1");
        assert_eq!(update_key("my-cache-12.1"), "my-cache");
        for other in [
            "",
            "foreign",
            "cache1-0",
            "cache1-x.1",
            "cache1-0.x",
            ".1",
            "-0.1",
        ] {
            assert_eq!(update_key(other), other, "{other:?}");
        }
    }

    #[test]
    fn groups_keep_the_order_of_their_items_and_of_first_arrival() {
        let updates = ["b-0.1", "a-0.1", "b-1.1", "c", "a-0.2", "b-0.2"];
        let groups = group_in_order(updates, |id| update_key(id));
        assert_eq!(
            groups,
            vec![
                vec!["b-0.1", "b-1.1", "b-0.2"],
                vec!["a-0.1", "a-0.2"],
                vec!["c"],
            ]
        );
        assert!(group_in_order(Vec::<&str>::new(), |id| id).is_empty());
    }
}
