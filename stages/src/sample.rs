//! Evenly spread samples: at most so many items of each group, spaced over the group in input order.

/// At most `limit(group)` items of each group (items without a limit are all kept), evenly spaced
/// over that group's items in input order (item `floor(i * len / n)` for `i` in `0..n`), so a
/// sample covers every source and category the group's rows were sorted by. Order is kept.
pub fn spread_by<T>(
    items: Vec<T>,
    group: impl Fn(&T) -> &str,
    limit: impl Fn(&str) -> Option<usize>,
) -> Vec<T> {
    use std::collections::HashMap;
    let mut totals: HashMap<String, usize> = HashMap::new();
    items.iter().for_each(|x| *totals.entry(group(x).to_string()).or_default() += 1);
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let keep: Vec<bool> = items
        .iter()
        .map(|x| {
            let g = group(x);
            let Some(n) = limit(g) else { return true };
            let len = totals[g];
            let (index, taken) = seen.entry(g.to_string()).or_default();
            let keep = *taken < n && *index == (*taken * len) / n.min(len).max(1);
            *taken += usize::from(keep);
            *index += 1;
            keep
        })
        .collect();
    items.into_iter().zip(keep).filter_map(|(x, k)| k.then_some(x)).collect()
}

#[cfg(test)]
mod spread_tests {
    use super::spread_by;

    #[test]
    fn evenly_spaced_per_group_in_order() {
        let items: Vec<(&str, usize)> =
            (0..10).map(|i| ("a", i)).chain((0..3).map(|i| ("b", i))).collect();
        let got = spread_by(items.clone(), |x| x.0, |g| (g == "a").then_some(4));
        let a: Vec<usize> = got.iter().filter(|x| x.0 == "a").map(|x| x.1).collect();
        assert_eq!(a, [0, 2, 5, 7]);
        assert_eq!(got.iter().filter(|x| x.0 == "b").count(), 3);
        assert_eq!(spread_by(items.clone(), |x| x.0, |_| Some(20)).len(), 13);
        assert!(spread_by(items, |x| x.0, |_| Some(0)).is_empty());
    }
}
