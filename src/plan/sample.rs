//! Stratified, deterministic sampling for waves with `take`: the same release always picks the
//! same environments, and the sample covers every combination of the `spread_by` labels in
//! proportion to its size.

use std::collections::BTreeMap;

use crate::hash::stable_hash;
use crate::intent::Environment;

/// Picks `n` of `candidates` (indexes into `envs`), spread over the strata formed by the
/// `spread_by` labels, in an order seeded by the release name.
pub fn stratified(
    candidates: &[usize],
    n: usize,
    spread_by: &[String],
    envs: &[Environment],
    release: &str,
) -> Vec<usize> {
    if n >= candidates.len() {
        return candidates.to_vec();
    }
    let mut strata: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
    for &i in candidates {
        let key = spread_by
            .iter()
            .map(|k| envs[i].labels.get(k).map(String::as_str).unwrap_or(""))
            .collect();
        strata.entry(key).or_default().push(i);
    }
    for members in strata.values_mut() {
        members.sort_by_key(|&i| stable_hash(&[release.as_bytes(), envs[i].name.as_bytes()]));
    }
    // Largest-remainder apportionment: each stratum gets its share rounded down, and the
    // leftover goes to the strata with the biggest fractions.
    let total = candidates.len() as f64;
    let mut quotas: Vec<(usize, f64, usize)> = strata
        .values()
        .enumerate()
        .map(|(s, m)| {
            let exact = n as f64 * m.len() as f64 / total;
            (exact.floor() as usize, exact - exact.floor(), s)
        })
        .collect();
    let mut left = n - quotas.iter().map(|q| q.0).sum::<usize>();
    let mut order: Vec<usize> = (0..quotas.len()).collect();
    order.sort_by(|&a, &b| quotas[b].1.total_cmp(&quotas[a].1).then(a.cmp(&b)));
    for s in order {
        if left == 0 {
            break;
        }
        quotas[s].0 += 1;
        left -= 1;
    }
    let mut picked: Vec<usize> = strata
        .values()
        .zip(&quotas)
        .flat_map(|(m, q)| m.iter().take(q.0).copied())
        .collect();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(n: usize) -> Vec<Environment> {
        (0..n)
            .map(|i| {
                let region = ["eu", "us", "ap", "sa"][i % 4];
                Environment {
                    name: format!("e{i:03}"),
                    labels: [("region".to_string(), region.to_string())].into(),
                    target: None,
                    config: Default::default(),
                    file: String::new(),
                }
            })
            .collect()
    }

    #[test]
    fn sample_is_deterministic_per_release_and_spread() {
        let e = envs(100);
        let all: Vec<usize> = (0..100).collect();
        let spread = vec!["region".to_string()];
        let a = stratified(&all, 20, &spread, &e, "r1");
        assert_eq!(a, stratified(&all, 20, &spread, &e, "r1"));
        assert_ne!(a, stratified(&all, 20, &spread, &e, "r2"));
        assert_eq!(a.len(), 20);
        for region in ["eu", "us", "ap", "sa"] {
            let count = a
                .iter()
                .filter(|&&i| e[i].labels["region"] == region)
                .count();
            assert_eq!(count, 5, "{region}");
        }
    }
}
