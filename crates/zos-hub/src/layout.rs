//! The hub's public directory (the 0-hub storage model):
//!
//! ```text
//! <public>/<repo>/<name>.flist | <name>.fl           a flist
//! <public>/<repo>/<name>.flist -> <other>.flist      a link (same repo) or -> ../<repo2>/<other>.flist
//! <public>/<repo>/.tag-<tag>/<pkg>.flist -> ../../<repo2>/<file>.flist   a tag
//! <public>/<repo>/<link> -> ../<repo2>/.tag-<tag>    a taglink
//! ```
//! Every name that comes from outside is checked (one component, no `..`, no NUL, not hidden) and every
//! symlink is resolved and must stay inside the public directory.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use md5::{Digest, Md5};

use crate::types::{Entry, EntryType, Repository, Size, clean_target};

/// Errors of the hub directory.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Something does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A name or target from a request is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// which parameter
        what: &'static str,
        /// its value
        value: String,
        /// what is wrong
        reason: &'static str,
    },
    /// Filesystem I/O.
    #[error("{path}: {context}")]
    Io {
        /// path concerned
        path: PathBuf,
        /// what we were doing
        context: &'static str,
        /// the error
        #[source]
        source: std::io::Error,
    },
}

/// Repository names that would clash with the server's own routes.
const RESERVED: &[&str] = &["api", "blocks"];

/// Check one name component from a request.
pub fn check_component(what: &'static str, value: &str) -> Result<(), HubError> {
    let bad = |reason| {
        Err(HubError::Invalid {
            what,
            value: value.into(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if value.contains('/') || value.contains('\\') {
        return bad("contains a slash");
    }
    if value.contains('\0') {
        return bad("contains NUL");
    }
    if value.starts_with('.') {
        return bad("starts with a dot");
    }
    Ok(())
}

/// Whether a file name is a flist (`.flist` legacy or `.fl` rfs).
pub fn is_flist_name(name: &str) -> bool {
    name.ends_with(".flist") || name.ends_with(".fl")
}

/// Append `.flist` unless the name already ends with `.flist` or `.fl`.
pub fn flist_name(name: &str) -> String {
    if is_flist_name(name) {
        name.to_string()
    } else {
        format!("{name}.flist")
    }
}

fn mtime(m: &std::fs::Metadata) -> i64 {
    m.mtime()
}

/// A hub directory.
pub struct Hub {
    root: PathBuf,
    canonical_root: PathBuf,
    md5_cache: Mutex<HashMap<PathBuf, (u64, i64, i64, String)>>,
}

impl Hub {
    /// A hub over `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Hub, HubError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io(&root, "creating the hub directory"))?;
        let canonical_root = root
            .canonicalize()
            .map_err(io(&root, "resolving the hub directory"))?;
        Ok(Hub {
            root,
            canonical_root,
            md5_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The public directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn repo_dir(&self, repo: &str) -> Result<PathBuf, HubError> {
        check_component("repository", repo)?;
        let dir = self.root.join(repo);
        if !dir.is_dir() {
            return Err(HubError::NotFound(format!("repository {repo}")));
        }
        Ok(dir)
    }

    /// Resolve `path` (following symlinks) and make sure it stays inside the hub.
    fn contained(&self, path: &Path, what: &str) -> Result<PathBuf, HubError> {
        let real = path
            .canonicalize()
            .map_err(|_| HubError::NotFound(what.to_string()))?;
        if !real.starts_with(&self.canonical_root) {
            return Err(HubError::NotFound(format!(
                "{what} (its link leaves the hub)"
            )));
        }
        Ok(real)
    }

    /// All repositories, by name.
    pub fn repositories(&self) -> Result<Vec<Repository>, HubError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root).map_err(io(&self.root, "listing"))? {
            let e = e.map_err(io(&self.root, "listing"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(m) = std::fs::metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                out.push(Repository {
                    name,
                    official: false,
                    updated: mtime(&m),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The entries of a repository, sorted by name (listing shapes: `size` as a string, no `md5`).
    pub fn entries(&self, repo: &str) -> Result<Vec<Entry>, HubError> {
        let dir = self.repo_dir(repo)?;
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir, "listing"))? {
            let e = e.map_err(io(&dir, "listing"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(entry) = self.entry_at(&dir, &name) {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn entry_at(&self, dir: &Path, name: &str) -> Option<Entry> {
        let path = dir.join(name);
        let lm = std::fs::symlink_metadata(&path).ok()?;
        if let Some(tag) = name.strip_prefix(".tag-") {
            if !lm.is_dir() || tag.is_empty() {
                return None;
            }
            return Some(Entry {
                name: tag.to_string(),
                size: Size::Text("0 KB".into()),
                updated: mtime(&lm),
                linktime: None,
                kind: EntryType::Tag,
                target: None,
                md5: None,
            });
        }
        if name.starts_with('.') {
            return None;
        }
        if lm.file_type().is_symlink() {
            let raw = std::fs::read_link(&path)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let real = self.contained(&path, name).ok()?;
            let tm = std::fs::metadata(&real).ok()?;
            if tm.is_dir() && raw.contains(".tag-") {
                return Some(Entry {
                    name: name.to_string(),
                    size: Size::kb(lm.len()),
                    updated: mtime(&tm),
                    linktime: Some(mtime(&lm)),
                    kind: EntryType::Taglink,
                    target: Some(clean_target(&raw)),
                    md5: None,
                });
            }
            if tm.is_file() && is_flist_name(name) {
                return Some(Entry {
                    name: name.to_string(),
                    size: Size::kb(tm.len()),
                    updated: mtime(&tm),
                    linktime: Some(mtime(&lm)),
                    kind: EntryType::Symlink,
                    target: Some(clean_target(&raw)),
                    md5: None,
                });
            }
            return None;
        }
        if lm.is_file() && is_flist_name(name) {
            return Some(Entry {
                name: name.to_string(),
                size: Size::kb(lm.len()),
                updated: mtime(&lm),
                linktime: None,
                kind: EntryType::Regular,
                target: None,
                md5: None,
            });
        }
        None
    }

    /// The links of a tag (shaped like symlink entries).
    pub fn tag_entries(&self, repo: &str, tag: &str) -> Result<Vec<Entry>, HubError> {
        let dir = self.repo_dir(repo)?;
        check_component("tag", tag)?;
        let tdir = dir.join(format!(".tag-{tag}"));
        if !tdir.is_dir() {
            return Err(HubError::NotFound(format!("tag {repo}/{tag}")));
        }
        let mut out = Vec::new();
        for e in std::fs::read_dir(&tdir).map_err(io(&tdir, "listing"))? {
            let e = e.map_err(io(&tdir, "listing"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(entry) = self
                .entry_at(&tdir, &name)
                .filter(|e| e.kind == EntryType::Symlink)
            {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The cleaned target of a taglink.
    pub fn taglink(&self, repo: &str, name: &str) -> Result<String, HubError> {
        let dir = self.repo_dir(repo)?;
        check_component("taglink", name)?;
        match self.entry_at(&dir, name) {
            Some(e) if e.kind == EntryType::Taglink => Ok(e.target.unwrap_or_default()),
            _ => Err(HubError::NotFound(format!("taglink {repo}/{name}"))),
        }
    }

    /// The flist file behind `repo/name` (`.flist` appended unless it ends in `.flist`/`.fl`), links followed.
    pub fn flist_path(&self, repo: &str, name: &str) -> Result<PathBuf, HubError> {
        let dir = self.repo_dir(repo)?;
        let name = flist_name(name);
        check_component("flist", &name)?;
        let path = dir.join(&name);
        let real = self.contained(&path, &format!("flist {repo}/{name}"))?;
        if !real.is_file() {
            return Err(HubError::NotFound(format!("flist {repo}/{name}")));
        }
        Ok(real)
    }

    /// The flist behind `repo/tags/tag/name`.
    pub fn tag_flist_path(&self, repo: &str, tag: &str, name: &str) -> Result<PathBuf, HubError> {
        let dir = self.repo_dir(repo)?;
        check_component("tag", tag)?;
        let name = flist_name(name);
        check_component("flist", &name)?;
        let path = dir.join(format!(".tag-{tag}")).join(&name);
        let real = self.contained(&path, &format!("flist {repo}/tags/{tag}/{name}"))?;
        if !real.is_file() {
            return Err(HubError::NotFound(format!(
                "flist {repo}/tags/{tag}/{name}"
            )));
        }
        Ok(real)
    }

    /// Light info of a flist or link: `size` as an integer, `md5` of the file, for links the raw target.
    pub fn light(&self, repo: &str, name: &str) -> Result<Entry, HubError> {
        let dir = self.repo_dir(repo)?;
        let fname = flist_name(name);
        check_component("flist", &fname)?;
        let path = dir.join(&fname);
        let lm = std::fs::symlink_metadata(&path)
            .map_err(|_| HubError::NotFound(format!("flist {repo}/{fname}")))?;
        let real = self.flist_path(repo, name)?;
        let tm = std::fs::metadata(&real).map_err(io(&real, "stat"))?;
        let md5 = self.md5(&real)?;
        let link = lm.file_type().is_symlink();
        Ok(Entry {
            name: fname,
            size: Size::Bytes(tm.len()),
            updated: mtime(&tm),
            linktime: link.then(|| mtime(&lm)),
            kind: if link {
                EntryType::Symlink
            } else {
                EntryType::Regular
            },
            target: if link {
                Some(
                    std::fs::read_link(&path)
                        .map_err(io(&path, "readlink"))?
                        .to_string_lossy()
                        .into(),
                )
            } else {
                None
            },
            md5: Some(md5),
        })
    }

    /// MD5 (hex) of a file, cached by path, size and mtime.
    pub fn md5(&self, path: &Path) -> Result<String, HubError> {
        let m = std::fs::metadata(path).map_err(io(path, "stat"))?;
        let key = (m.len(), m.mtime(), m.mtime_nsec());
        if let Some((l, s, n, h)) = self.md5_cache.lock().expect("md5 cache").get(path)
            && (*l, *s, *n) == key
        {
            return Ok(h.clone());
        }
        let mut f = std::fs::File::open(path).map_err(io(path, "opening"))?;
        let mut h = Md5::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io(path, "reading"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hex = hex::encode(h.finalize());
        self.md5_cache
            .lock()
            .expect("md5 cache")
            .insert(path.to_path_buf(), (key.0, key.1, key.2, hex.clone()));
        Ok(hex)
    }

    fn ensure_repo(&self, repo: &str) -> Result<PathBuf, HubError> {
        check_component("repository", repo)?;
        if RESERVED.contains(&repo) {
            return Err(HubError::Invalid {
                what: "repository",
                value: repo.into(),
                reason: "reserved name",
            });
        }
        let dir = self.root.join(repo);
        std::fs::create_dir_all(&dir).map_err(io(&dir, "creating the repository"))?;
        Ok(dir)
    }

    /// Publish flist bytes as `repo/name` (atomically replacing an existing one); returns its light info.
    pub fn publish(&self, repo: &str, name: &str, data: &[u8]) -> Result<Entry, HubError> {
        let dir = self.ensure_repo(repo)?;
        let name = flist_name(name);
        check_component("flist", &name)?;
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.upload-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&path)?;
            }
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&path, "publishing")(e)
        })?;
        self.light(repo, &name)
    }

    /// Publish a file from disk (see [`Hub::publish`]).
    pub fn publish_file(&self, repo: &str, name: &str, file: &Path) -> Result<Entry, HubError> {
        let data = std::fs::read(file).map_err(io(file, "reading"))?;
        self.publish(repo, name, &data)
    }

    fn split_target(target: &str) -> Result<(String, String), HubError> {
        let parts: Vec<&str> = target.split('/').collect();
        let bad = |reason| HubError::Invalid {
            what: "target",
            value: target.into(),
            reason,
        };
        match parts.as_slice() {
            [r, f] => {
                check_component("target repository", r)?;
                check_component("target flist", f)?;
                Ok((r.to_string(), flist_name(f)))
            }
            _ => Err(bad("must be <repo>/<file>")),
        }
    }

    /// Put `pkg` into tag `repo/tag`, pointing at `target` = `<repo2>/<file>` (which must exist).
    pub fn tag_add(
        &self,
        repo: &str,
        tag: &str,
        pkg: &str,
        target: &str,
    ) -> Result<Entry, HubError> {
        let dir = self.ensure_repo(repo)?;
        check_component("tag", tag)?;
        let pkg = flist_name(pkg);
        check_component("package", &pkg)?;
        let (r2, f2) = Self::split_target(target)?;
        self.flist_path(&r2, &f2)?;
        let tdir = dir.join(format!(".tag-{tag}"));
        std::fs::create_dir_all(&tdir).map_err(io(&tdir, "creating the tag"))?;
        replace_symlink(&format!("../../{r2}/{f2}"), &tdir.join(&pkg))?;
        self.tag_entries(repo, tag)?
            .into_iter()
            .find(|e| e.name == pkg)
            .ok_or_else(|| HubError::NotFound(format!("tag entry {repo}/tags/{tag}/{pkg}")))
    }

    /// Make `repo/link` a taglink to `target` = `<repo2>/tags/<tag>` (which must exist).
    pub fn taglink_set(&self, repo: &str, link: &str, target: &str) -> Result<Entry, HubError> {
        let dir = self.ensure_repo(repo)?;
        check_component("taglink", link)?;
        let parts: Vec<&str> = target.split('/').collect();
        let [r2, "tags", tag] = parts.as_slice() else {
            return Err(HubError::Invalid {
                what: "target",
                value: target.into(),
                reason: "must be <repo>/tags/<tag>",
            });
        };
        let r2dir = self.repo_dir(r2)?;
        check_component("tag", tag)?;
        if !r2dir.join(format!(".tag-{tag}")).is_dir() {
            return Err(HubError::NotFound(format!("tag {r2}/{tag}")));
        }
        replace_symlink(&format!("../{r2}/.tag-{tag}"), &dir.join(link))?;
        self.entry_at(&dir, link)
            .ok_or_else(|| HubError::NotFound(format!("taglink {repo}/{link}")))
    }

    /// Make `repo/link` a symlink to `target` = `<file>` (same repo) or `<repo2>/<file>`.
    pub fn symlink_set(&self, repo: &str, link: &str, target: &str) -> Result<Entry, HubError> {
        let dir = self.ensure_repo(repo)?;
        let link = flist_name(link);
        check_component("link", &link)?;
        let raw = if target.contains('/') {
            let (r2, f2) = Self::split_target(target)?;
            self.flist_path(&r2, &f2)?;
            format!("../{r2}/{f2}")
        } else {
            let f = flist_name(target);
            check_component("target flist", &f)?;
            self.flist_path(repo, &f)?;
            f
        };
        replace_symlink(&raw, &dir.join(&link))?;
        self.entry_at(&dir, &link)
            .ok_or_else(|| HubError::NotFound(format!("link {repo}/{link}")))
    }
}

fn replace_symlink(target: &str, at: &Path) -> Result<(), HubError> {
    let tmp = at.with_file_name(format!(
        ".link-{}-{}",
        std::process::id(),
        at.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io(at, "creating the link"))?;
    std::fs::rename(&tmp, at).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(at, "replacing the link")(e)
    })
}

fn io(path: &Path, context: &'static str) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.to_path_buf();
    move |source| HubError::Io {
        path,
        context,
        source,
    }
}
