//! Dotted key paths into config trees (`db.pool.size`), and the patterns that name them
//! (`db.*.size`: `*` stands for one segment; a pattern covers everything under it).

use std::collections::BTreeMap;

/// Whether `pattern` names `path` or a table above it.
pub fn covers(pattern: &str, path: &str) -> bool {
    // Each part of the pattern must have its segment: a pattern longer than the path
    // names something below it, not it.
    let mut segments = path.split('.');
    pattern
        .split('.')
        .all(|p| segments.next().is_some_and(|s| p == "*" || p == s))
}

/// Whether any of `patterns` covers `path`.
pub fn any_covers(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|p| covers(p, path))
}

/// Every leaf of `table` by its dotted path (arrays are leaves: compared whole).
pub fn leaves(table: &toml::Table) -> BTreeMap<String, &toml::Value> {
    let mut out = BTreeMap::new();
    each_leaf(table, &mut |path, value| {
        out.insert(path.to_string(), value);
    });
    out
}

/// Calls `f` with every leaf of `table` and its dotted path, as [`leaves`] names them but
/// in the table's order and without collecting them: every environment's render walks
/// every layer, and one buffer for the paths spares a copy of each.
pub fn each_leaf<'a>(table: &'a toml::Table, f: &mut impl FnMut(&str, &'a toml::Value)) {
    walk(&mut String::new(), table, f)
}

fn walk<'a>(path: &mut String, table: &'a toml::Table, f: &mut impl FnMut(&str, &'a toml::Value)) {
    for (k, v) in table {
        let at = path.len();
        if at > 0 {
            path.push('.');
        }
        path.push_str(k);
        match v {
            toml::Value::Table(t) if !t.is_empty() => walk(path, t, f),
            _ => f(path, v),
        }
        path.truncate(at);
    }
}

/// Sets the value at dotted `path` of `table`, making the tables on the way (a value in
/// the way is replaced by a table).
pub fn insert(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_covers_its_key_and_what_is_under_it_with_stars_for_one_segment() {
        assert!(covers("replicas", "replicas"));
        assert!(covers("db", "db.pool.size"));
        assert!(covers("db.*.size", "db.pool.size"));
        assert!(!covers("db.*.size", "db.pool.max"));
        assert!(!covers("db.pool.size", "db.pool"));
        assert!(!covers("replica", "replicas"));
    }

    #[test]
    fn leaves_are_named_by_their_dotted_paths() {
        let t: toml::Table =
            toml::from_str("a = 1\n[db]\nhost = \"h\"\nports = [1, 2]\n[db.pool]\nsize = 3\n")
                .unwrap();
        let names: Vec<String> = leaves(&t).into_keys().collect();
        assert_eq!(names, ["a", "db.host", "db.pool.size", "db.ports"]);
    }
}
