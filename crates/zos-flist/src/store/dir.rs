//! `dir:///path`: blocks as files, written `<hex[0:2]>/<hex>`, read from there or from the flat `<hex>`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{BoxFuture, Store, StoreError};

/// A directory of blocks.
#[derive(Clone, Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> DirStore {
        DirStore { root: root.into() }
    }

    /// From `dir:///abs/path`.
    pub fn from_url(url: &str) -> Result<DirStore, StoreError> {
        let path = url.strip_prefix("dir://").unwrap_or_default();
        if !path.starts_with('/') {
            return Err(StoreError::BadUrl {
                url: url.into(),
                reason: "a dir:// store needs an absolute path".into(),
            });
        }
        Ok(DirStore::new(path))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a block is written (`<hex[0:2]>/<hex>`).
    pub fn path_of(&self, id: &[u8]) -> PathBuf {
        let h = hex::encode(id);
        self.root.join(&h[..2]).join(h)
    }

    /// Read a block synchronously, from the two-level layout or else the flat one.
    pub fn get_sync(&self, id: &[u8]) -> Result<Vec<u8>, StoreError> {
        let h = hex::encode(id);
        for p in [self.path_of(id), self.root.join(&h)] {
            match std::fs::read(&p) {
                Ok(d) => return Ok(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(format!("reading {}", p.display()), e)),
            }
        }
        Err(StoreError::NotFound {
            id: h,
            store: self.url(),
        })
    }

    /// Write a block synchronously (temp file + rename; skipped when present with the same length).
    pub fn set_sync(&self, id: &[u8], data: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(id);
        if std::fs::metadata(&path)
            .map(|m| m.len() == data.len() as u64)
            .unwrap_or(false)
        {
            return Ok(());
        }
        let dir = path.parent().expect("two-level path");
        std::fs::create_dir_all(dir)
            .map_err(|e| self.io(format!("creating {}", dir.display()), e))?;
        let tmp = crate::cache::tmp_path(&path);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(format!("writing {}", path.display()), e)
        })
    }

    fn io(&self, context: String, source: std::io::Error) -> StoreError {
        StoreError::Io {
            store: self.url(),
            context,
            source,
        }
    }
}

impl Store for DirStore {
    fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let this = self.clone();
            let id = id.to_vec();
            tokio::task::spawn_blocking(move || this.get_sync(&id))
                .await
                .expect("dir store read task panicked")
        })
    }

    fn set<'a>(&'a self, id: &'a [u8], data: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let this = self.clone();
            let (id, data) = (id.to_vec(), data.to_vec());
            tokio::task::spawn_blocking(move || this.set_sync(&id, &data))
                .await
                .expect("dir store write task panicked")
        })
    }

    fn url(&self) -> String {
        format!("dir://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_layouts_are_read_and_two_level_is_written() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::from_url(&format!("dir://{}", d.path().display())).unwrap();
        let id = [0xabu8; 32];
        let h = hex::encode(id);
        assert!(matches!(s.get(&id).await, Err(StoreError::NotFound { .. })));
        // flat layout (older rfs)
        std::fs::write(d.path().join(&h), b"flat").unwrap();
        assert_eq!(s.get(&id).await.unwrap(), b"flat");
        // two-level layout wins when both exist, and is what set writes
        s.set(&id, b"nested").await.unwrap();
        assert_eq!(
            std::fs::read(d.path().join("ab").join(&h)).unwrap(),
            b"nested"
        );
        assert_eq!(s.get(&id).await.unwrap(), b"nested");
        // no temp files left behind
        let names: Vec<_> = std::fs::read_dir(d.path().join("ab"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
