//! Checks of what callers send: mount names, flist URLs, mount options.

use std::path::{Path, PathBuf};

use reqwest::Url;
use zos_api::flist::MountOptions;

use crate::error::{Error, Result};

/// Size of the writable layer when the caller gives none (as Zero-OS: 256 MiB).
pub const DEFAULT_LIMIT: u64 = 256 << 20;
/// Longest mount name (storaged's longest volume name).
pub const MAX_NAME: usize = 128;

/// Check a mount name. It names a directory under `<root>/mountpoint` and the storaged volume of the mount,
/// so it is one path component of `A-Z a-z 0-9 - _ . @ +` (1 to 128 characters) that does not start with a
/// dot: never `.`, `..`, a `/` or anything a mount option or a volume name could not carry.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad(&format!("longer than {MAX_NAME} characters")));
    }
    if name.starts_with('.') {
        return Err(bad("starts with a dot"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+')))
    {
        return Err(bad(&format!(
            "character {c:?} is not allowed (letters, digits, - _ . @ +)"
        )));
    }
    Ok(())
}

/// Check that a writable mount's volume can be named after it: storaged keeps `zos-cache`, `vdisks` and
/// names starting with `zdb` for itself (and `zos-cache` is the node's cache, never a mount's layer).
pub fn check_volume_name(name: &str) -> Result<()> {
    if name == "zos-cache" || name == "vdisks" || name.starts_with("zdb") {
        return Err(Error::InvalidName {
            name: name.into(),
            reason: "reserved by storaged for its own volumes (a writable mount is a volume of its name)"
                .into(),
        });
    }
    Ok(())
}

/// The kind of flist a URL names, by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlistKind {
    /// rfs `.fl` (SQLite metadata).
    Fl,
}

/// Check a URL to mount: `http(s)://host/.../<name>.fl`. A legacy `.flist` is refused with its own error.
pub fn check_flist_url(url: &str) -> Result<(Url, FlistKind)> {
    let u = check_http_url(url)?;
    let last = u
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    if last.ends_with(".flist") {
        return Err(Error::LegacyFlist { url: url.into() });
    }
    if !last.ends_with(".fl") || last.len() <= 3 {
        return Err(Error::InvalidUrl {
            url: url.into(),
            reason: "must name an rfs flist file ending in .fl".into(),
        });
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(Error::InvalidUrl {
            url: url.into(),
            reason: "must not carry a query or a fragment (the hub publishes <url>.md5)".into(),
        });
    }
    Ok((u, FlistKind::Fl))
}

/// Check an `http(s)://host/...` URL.
pub fn check_http_url(url: &str) -> Result<Url> {
    let bad = |reason: String| Error::InvalidUrl {
        url: url.into(),
        reason,
    };
    let u = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme {:?} is not supported (http or https)",
            u.scheme()
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    Ok(u)
}

/// Check a block store given as a mount option or in the configuration: `[<lo>-<hi>=]<url>` with a
/// `dir://`, `http(s)://` or `zdb://` URL.
pub fn check_store(store: &str) -> Result<()> {
    zos_flist::store::parse_range(store)
        .and_then(|(_, _, url)| zos_flist::store::open(&url).map(|_| ()))
        .map_err(|e| Error::InvalidOptions(format!("Storage: {e}")))
}

/// A path that goes into an overlay mount option: absolute, and without the characters that separate
/// options or layers there (`,` `:` `\`) or control characters.
pub fn check_option_path(what: &str, path: &Path) -> Result<()> {
    let s = path
        .to_str()
        .ok_or_else(|| Error::InvalidOptions(format!("{what} {} is not UTF-8", path.display())))?;
    if !path.is_absolute() {
        return Err(Error::InvalidOptions(format!(
            "{what} {s:?} is not an absolute path"
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, ',' | ':' | '\\') || c.is_control())
    {
        return Err(Error::InvalidOptions(format!(
            "{what} {s:?}: character {c:?} cannot be used in an overlay mount"
        )));
    }
    Ok(())
}

/// Mount options after checks and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub read_only: bool,
    /// Bytes of the writable layer (default [`DEFAULT_LIMIT`]); unused when read-only.
    pub limit: u64,
    /// Store override (empty: the flist's routes).
    pub storage: String,
    /// An existing directory to hold the writable layer instead of a new volume.
    pub persisted_volume: Option<PathBuf>,
}

/// Check mount options and fill in the defaults.
pub fn check_options(opt: &MountOptions) -> Result<Checked> {
    if !opt.storage.is_empty() {
        check_store(&opt.storage)?;
    }
    let persisted_volume = if opt.persisted_volume.is_empty() {
        None
    } else {
        let p = PathBuf::from(&opt.persisted_volume);
        check_option_path("PersistedVolume", &p)?;
        if opt.read_only {
            return Err(Error::InvalidOptions(
                "PersistedVolume is a writable layer; a ReadOnly mount has none".into(),
            ));
        }
        if !p.is_dir() {
            return Err(Error::InvalidOptions(format!(
                "PersistedVolume {} is not an existing directory",
                p.display()
            )));
        }
        Some(p)
    };
    Ok(Checked {
        read_only: opt.read_only,
        limit: if opt.limit == 0 {
            DEFAULT_LIMIT
        } else {
            opt.limit
        },
        storage: opt.storage.clone(),
        persisted_volume,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "my-vm_1.rootfs",
            "1-23-zmachine",
            "x@y+z",
            &"n".repeat(128),
        ] {
            check_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "dot"),
            ("..", "dot"),
            (".hidden", "dot"),
            ("../etc", "dot"),
            ("a/b", "'/'"),
            ("a/../../b", "'/'"),
            ("a b", "' '"),
            ("a,b", "','"),
            ("a:b", "':'"),
            ("a\nb", "'\\n'"),
            ("é", "'é'"),
        ] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.kind(), "invalid_input");
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
        for reserved in ["zos-cache", "vdisks", "zdb", "zdb-1"] {
            check_name(reserved).unwrap();
            let e = check_volume_name(reserved).unwrap_err();
            assert!(e.to_string().contains("reserved by storaged"), "{e}");
        }
        check_volume_name("my-zdb").unwrap();
        let e = check_name(&"n".repeat(129)).unwrap_err();
        assert!(e.to_string().contains("longer than 128"), "{e}");
    }

    #[test]
    fn urls() {
        let (u, k) = check_flist_url("https://hub.grid.tf/me/app.fl").unwrap();
        assert_eq!((u.host_str(), k), (Some("hub.grid.tf"), FlistKind::Fl));
        check_flist_url("http://10.0.0.1:8081/repo/x.y.fl").unwrap();
        let e = check_flist_url("https://hub.grid.tf/me/app.flist").unwrap_err();
        assert!(matches!(e, Error::LegacyFlist { .. }), "{e}");
        assert!(e.to_string().contains("legacy .flist"), "{e}");
        assert_eq!(e.kind(), "invalid_input");
        for (bad, why) in [
            ("hub.grid.tf/me/app.fl", "relative URL"),
            ("ftp://hub/me/app.fl", "scheme \"ftp\""),
            ("file:///tmp/app.fl", "scheme \"file\""),
            ("http://hub/me/app.tar.gz", "ending in .fl"),
            ("http://hub/me/", "ending in .fl"),
            ("http://hub/.fl", "ending in .fl"),
            ("http://hub/me/app.fl?x=1", "query"),
            ("not a url", "relative URL"),
        ] {
            let e = check_flist_url(bad).unwrap_err();
            assert_eq!(e.kind(), "invalid_input", "{bad}");
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn options() {
        let c = check_options(&MountOptions::default()).unwrap();
        assert_eq!(c.limit, DEFAULT_LIMIT);
        assert!(!c.read_only && c.persisted_volume.is_none());
        let c = check_options(&MountOptions {
            limit: 1 << 30,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.limit, 1 << 30);
        let e = check_options(&MountOptions {
            storage: "ftp://x".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("Storage"), "{e}");
        let e = check_options(&MountOptions {
            persisted_volume: "relative/dir".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not an absolute path"), "{e}");
        let e = check_options(&MountOptions {
            persisted_volume: "/no/such/dir/anywhere".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not an existing directory"), "{e}");
        let e = check_options(&MountOptions {
            persisted_volume: "/tmp/a,upperdir=/etc".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("','"), "{e}");
        let tmp = tempfile::tempdir().unwrap();
        let c = check_options(&MountOptions {
            persisted_volume: tmp.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.persisted_volume.as_deref(), Some(tmp.path()));
        let e = check_options(&MountOptions {
            read_only: true,
            persisted_volume: tmp.path().display().to_string(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("ReadOnly"), "{e}");
    }
}
