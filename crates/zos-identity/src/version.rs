//! The running zos version, as the installed release names it.
//!
//! The release is the taglink that bootstrap (or the upgrader) wrote to `/tmp/tag.info`, e.g.
//! `{"type":"taglink","name":"production-v4","target":"tf-autobuilder/tags/v4.0.5",...}`. The version is the
//! last path element of `target`: `v4.0.5` gives 4.0.5; a name that is not a version (a commit, `latest`) gives
//! the pre-release `0.0.0-<name>`. Without a readable tag.info (a dev machine, the sandbox) the version is this
//! crate's own version.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use zos_types::Version;
use zos_types::go::PrVersion;

#[derive(Deserialize)]
struct TagInfo {
    #[serde(default)]
    target: String,
}

/// Where the version comes from.
#[derive(Clone, Debug)]
pub struct VersionSource {
    tag_info: PathBuf,
}

impl VersionSource {
    /// Read the release from `tag_info` (normally [`zos_config::paths::TAG_INFO`]).
    pub fn new(tag_info: impl Into<PathBuf>) -> VersionSource {
        VersionSource {
            tag_info: tag_info.into(),
        }
    }

    /// The tag.info path.
    pub fn path(&self) -> &Path {
        &self.tag_info
    }

    /// The current version (never fails: falls back to the crate version, and logs why at debug level).
    pub fn current(&self) -> Version {
        match std::fs::read(&self.tag_info) {
            Ok(data) => match serde_json::from_slice::<TagInfo>(&data) {
                Ok(tag) if !tag.target.trim_end_matches('/').is_empty() => {
                    version_of_target(&tag.target)
                }
                Ok(_) => {
                    tracing::debug!(path = %self.tag_info.display(), "tag.info has no target; using the built-in version");
                    builtin_version()
                }
                Err(e) => {
                    tracing::debug!(path = %self.tag_info.display(), error = %e, "tag.info is not JSON; using the built-in version");
                    builtin_version()
                }
            },
            Err(_) => builtin_version(),
        }
    }
}

/// The version named by a taglink target (`tf-autobuilder/tags/v4.0.5` → 4.0.5).
pub fn version_of_target(target: &str) -> Version {
    let last = target
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    match Version::from_str(last) {
        Ok(v) => v,
        Err(_) => {
            let mut v = Version::new(0, 0, 0);
            v.pre = vec![PrVersion {
                version_str: last.to_string(),
                version_num: 0,
                is_num: false,
            }];
            v
        }
    }
}

/// This crate's version, used when no release is installed.
pub fn builtin_version() -> Version {
    Version::from_str(env!("CARGO_PKG_VERSION")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_taglink_targets() {
        assert_eq!(
            version_of_target("tf-autobuilder/tags/v4.0.5"),
            Version::new(4, 0, 5)
        );
        assert_eq!(
            version_of_target("tf-autobuilder/tags/4.1.0/"),
            Version::new(4, 1, 0)
        );
        assert_eq!(
            version_of_target("tf-autobuilder/tags/3b51aa5").to_string(),
            "0.0.0-3b51aa5"
        );
        assert_eq!(version_of_target("v4.0.6-rc.2").to_string(), "4.0.6-rc.2");
    }

    #[test]
    fn tag_info_file_or_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tag.info");
        let source = VersionSource::new(&path);
        assert_eq!(
            source.current(),
            builtin_version(),
            "no file: the crate version"
        );
        std::fs::write(&path, br#"{"type":"taglink","updated":1,"md5":"","name":"production-v4","target":"tf-autobuilder/tags/v4.0.5"}"#)
            .unwrap();
        assert_eq!(source.current(), Version::new(4, 0, 5));
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(
            source.current(),
            builtin_version(),
            "unreadable file: the crate version"
        );
        assert_ne!(builtin_version(), Version::default());
    }
}
