//! flotilla's platform directories (XDG on Linux): config, data and state. One place for
//! the identity they are named by.

/// flotilla's directories on this platform; None where the platform has no home directory.
pub fn project() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("dev", "flotilla", "flotilla")
}

/// A file in the config directory (`~/.config/flotilla/NAME` on Linux), unless the
/// variable `var` names another.
pub fn config_file(var: &str, name: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(std::path::PathBuf::from(p));
    }
    project().map(|d| d.config_dir().join(name))
}
