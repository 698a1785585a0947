//! Loading unit files and the environment file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zos_zinit_client::{Unit, validate_name};

/// Why a unit file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Load and validate one unit file.
pub fn load_file(path: &Path) -> Result<Unit, LoadError> {
    let fail = |reason: String| LoadError {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let unit = Unit::from_yaml(&text).map_err(|e| fail(e.to_string()))?;
    for key in Unit::unknown_keys(&text) {
        tracing::warn!("{}: unknown key {key:?} ignored", path.display());
    }
    Ok(unit)
}

/// What [`load_dir`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Valid units by service name.
    pub units: BTreeMap<String, Unit>,
    /// Files that were skipped, with the reason.
    pub errors: Vec<LoadError>,
}

/// Load every `*.yaml` regular file (symlinks to one included) directly in `dir`. A file that fails to parse
/// or validate is reported and skipped; the others still load.
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    let mut loaded = Loaded::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            loaded.errors.push(LoadError {
                path: path.clone(),
                reason: "file name is not UTF-8".into(),
            });
            continue;
        };
        if let Err(e) = validate_name(name) {
            loaded.errors.push(LoadError {
                path: path.clone(),
                reason: e.to_string(),
            });
            continue;
        }
        match load_file(&path) {
            Ok(unit) => {
                loaded.units.insert(name.to_string(), unit);
            }
            Err(e) => loaded.errors.push(e),
        }
    }
    Ok(loaded)
}

/// Parse `/etc/environment`: `KEY=VALUE` lines, `#` comments, an optional `export ` prefix, and one level
/// of matching quotes around the value.
pub fn parse_environment(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (key, value) = l.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return None;
            }
            let value = value.trim();
            let value = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(a, b)| value.strip_prefix(*a).and_then(|v| v.strip_suffix(*b)))
                .unwrap_or(value);
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_dir_skips_bad_files_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("good.yaml", "exec: sleep 100\n");
        write("noexec.yaml", "test: true\n");
        write("badlog.yaml", "exec: x\nlog: null-ish\n");
        write("other.yml", "exec: x\n");
        write("notes.txt", "exec: x\n");
        write("typo.yaml", "exec: x\nafer: [good]\n");
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("good.yaml"), dir.path().join("link.yaml"))
            .unwrap();

        let loaded = load_dir(dir.path()).unwrap();
        let names: Vec<&str> = loaded.units.keys().map(String::as_str).collect();
        assert_eq!(names, vec!["good", "link", "typo"]);
        assert!(loaded.units["typo"].after.is_empty());
        let mut errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        errors.sort();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].ends_with("badlog.yaml: invalid yaml: log: unknown variant `null-ish`, expected one of `ring`, `stdout`, `none`, `null` at line 2 column 6"), "{}", errors[0]);
        assert!(
            errors[1].ends_with("noexec.yaml: missing exec directive"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn load_dir_of_a_missing_directory_fails() {
        assert!(load_dir(Path::new("/nonexistent/zinit")).is_err());
    }

    #[test]
    fn environment_file() {
        let text = "# comment\nPATH=/usr/bin:/bin\n\nexport LANG=\"C.UTF-8\"\nQ='x y'\nbad line\n =v\nEMPTY=\n";
        assert_eq!(
            parse_environment(text),
            vec![
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("LANG".to_string(), "C.UTF-8".to_string()),
                ("Q".to_string(), "x y".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
    }
}
