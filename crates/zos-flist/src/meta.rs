//! The rfs `.fl` metadata: an SQLite file with the tables `inode`, `extra`, `block`, `tag` and `route`.
//!
//! [`Writer`] creates one (in a single transaction, written to a temporary file and renamed into place), and
//! [`Flist::open`] reads one completely into memory, validating everything a hostile file could get wrong:
//! the schema, the tree shape (root `ino = 1`, parents that are directories, no cycles or orphans), names
//! (no `/`, `.`, `..`, NUL, empty or over-long names, no duplicates), sizes, block counts and key lengths,
//! symlink targets.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params};

use crate::block::{BLOCK_SIZE, BlockId, BlockKey, HASH_LEN, block_count};

/// The schema rfs creates (columns, types and index names as rfs has them; `IF NOT EXISTS` everywhere).
pub const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    name VARCHAR(255),
    size INTEGER,
    uid INTEGER,
    gid INTEGER,
    mode INTEGER,
    rdev INTEGER,
    ctime INTEGER,
    mtime INTEGER
);
CREATE INDEX IF NOT EXISTS parents ON inode (parent);
CREATE INDEX IF NOT EXISTS names ON inode (name);
CREATE TABLE IF NOT EXISTS extra (
    ino INTEGER PRIMARY KEY,
    data VARCHAR(4096)
);
CREATE TABLE IF NOT EXISTS block (
    ino INTEGER,
    id VARCHAR(32),
    key VARCHAR(32)
);
CREATE INDEX IF NOT EXISTS block_ino ON block (ino);
CREATE TABLE IF NOT EXISTS tag (
    key VARCHAR(10) PRIMARY KEY,
    value VARCHAR(255)
);
CREATE TABLE IF NOT EXISTS route (
    start integer,
    end integer,
    url VARCHAR(2048)
);
";

/// The root inode number.
pub const ROOT_INO: u64 = 1;
/// Longest name component accepted.
pub const MAX_NAME: usize = 255;
/// Longest symlink target accepted (the `extra.data` column is declared 4096).
pub const MAX_TARGET: usize = 4096;
/// Largest regular file accepted (16 TiB): anything bigger in an flist is corrupt or hostile.
pub const MAX_FILE_SIZE: u64 = 1 << 44;
/// Most inodes accepted in one flist.
pub const MAX_INODES: usize = 4_000_000;

const S_IFMT: u32 = 0o170000;

/// Errors reading or writing an flist.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// SQLite failed (including "file is not a database").
    #[error("flist {path}: {context}")]
    Sqlite {
        /// the flist file
        path: PathBuf,
        /// what we were doing
        context: String,
        /// the SQLite error
        #[source]
        source: rusqlite::Error,
    },
    /// The file is a database but not an flist, or an flist whose content breaks the format's rules.
    #[error("flist {path}: {reason}")]
    Invalid {
        /// the flist file
        path: PathBuf,
        /// what is wrong, naming the inode or table
        reason: String,
    },
    /// Filesystem I/O on the flist file.
    #[error("flist {path}: {context}")]
    Io {
        /// the flist file
        path: PathBuf,
        /// what we were doing
        context: String,
        /// the I/O error
        #[source]
        source: std::io::Error,
    },
}

/// The type of an inode, from the `S_IFMT` bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `S_IFDIR`
    Dir,
    /// `S_IFREG`
    File,
    /// `S_IFLNK`
    Symlink,
    /// `S_IFBLK`
    BlockDevice,
    /// `S_IFCHR`
    CharDevice,
    /// `S_IFIFO`
    Fifo,
    /// `S_IFSOCK`
    Socket,
}

impl Kind {
    /// The kind of a full `st_mode`, or `None` for unknown type bits.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & S_IFMT {
            0o040000 => Kind::Dir,
            0o100000 => Kind::File,
            0o120000 => Kind::Symlink,
            0o060000 => Kind::BlockDevice,
            0o020000 => Kind::CharDevice,
            0o010000 => Kind::Fifo,
            0o140000 => Kind::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::Dir => 0o040000,
            Kind::File => 0o100000,
            Kind::Symlink => 0o120000,
            Kind::BlockDevice => 0o060000,
            Kind::CharDevice => 0o020000,
            Kind::Fifo => 0o010000,
            Kind::Socket => 0o140000,
        }
    }
}

/// Where one block of a file lives and how to decode it. Other formats (the legacy `.flist`: 16-byte BLAKE2b-128
/// hashes and XXTEA) add variants here; everything above the block cache is format independent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockRef {
    /// An rfs block: id = BLAKE2b-256 of the stored bytes, key = BLAKE2b-256 of the plaintext.
    Fl {
        /// store key
        id: BlockId,
        /// AES-256-GCM key
        key: BlockKey,
    },
}

impl BlockRef {
    /// The key the block is stored under.
    pub fn store_key(&self) -> &[u8] {
        match self {
            BlockRef::Fl { id, .. } => id,
        }
    }

    /// Lowercase hex of the store key (file names in stores and caches).
    pub fn hex(&self) -> String {
        hex::encode(self.store_key())
    }
}

/// One inode of a loaded flist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Inode number (the flist's own; the FUSE mount reuses it).
    pub ino: u64,
    /// Parent inode (0 for the root).
    pub parent: u64,
    /// Name component (`/` for the root).
    pub name: OsString,
    /// Type.
    pub kind: Kind,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// `st_size`.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Change time, Unix seconds.
    pub ctime: i64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Blocks of a regular file, in order.
    pub blocks: Vec<BlockRef>,
    /// Children of a directory, in table order.
    pub children: Vec<u64>,
}

impl Node {
    /// Permission bits (including setuid, setgid, sticky).
    pub fn perm(&self) -> u32 {
        self.mode & !S_IFMT
    }
}

/// A route: block ids whose first byte is in `start..=end` live in the store at `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// First id byte covered.
    pub start: u8,
    /// Last id byte covered (inclusive).
    pub end: u8,
    /// Store URL.
    pub url: String,
}

/// A whole flist, loaded and validated.
#[derive(Debug)]
pub struct Flist {
    path: PathBuf,
    nodes: HashMap<u64, Node>,
    index: HashMap<(u64, OsString), u64>,
    tags: Vec<(String, String)>,
    routes: Vec<Route>,
}

fn sql(path: &Path, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> MetaError {
    let path = path.to_path_buf();
    let context = context.into();
    move |source| MetaError::Sqlite {
        path,
        context,
        source,
    }
}

/// Whether `name` is acceptable as one path component.
pub fn check_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "name of {} bytes is longer than {MAX_NAME}",
            name.len()
        ));
    }
    if name == b"." || name == b".." {
        return Err(format!(
            "name {:?} is not allowed",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&b'/') {
        return Err(format!(
            "name {:?} contains '/'",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&0) {
        return Err(format!(
            "name {:?} contains a NUL byte",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

fn int(row: &rusqlite::Row<'_>, col: usize, what: &str, ino: i64) -> Result<i64, String> {
    match row.get_ref(col) {
        Ok(ValueRef::Integer(v)) => Ok(v),
        Ok(ValueRef::Null) => Err(format!("inode {ino}: {what} is NULL")),
        Ok(_) => Err(format!("inode {ino}: {what} is not an integer")),
        Err(e) => Err(format!("inode {ino}: {what}: {e}")),
    }
}

fn bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        _ => None,
    }
}

impl Flist {
    /// Open and validate an `.fl` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Flist, MetaError> {
        let path = path.as_ref();
        let invalid = |reason: String| MetaError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(MetaError::Io {
                path: path.into(),
                context: "opening".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(path, "opening the database"))?;
        check_schema(&conn, path)?;

        // inodes
        let mut nodes: HashMap<u64, Node> = HashMap::new();
        let mut order: Vec<u64> = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime FROM inode ORDER BY ino")
                .map_err(sql(path, "reading inodes"))?;
            let mut rows = stmt.query([]).map_err(sql(path, "reading inodes"))?;
            while let Some(row) = rows.next().map_err(sql(path, "reading inodes"))? {
                let ino = int(row, 0, "ino", 0).map_err(invalid)?;
                let get = |c: usize, what: &str| int(row, c, what, ino).map_err(invalid);
                let parent = get(1, "parent")?;
                let name = match row.get_ref(2).map_err(sql(path, "reading inodes"))? {
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
                    _ => return Err(invalid(format!("inode {ino}: name is not text"))),
                };
                let size = get(3, "size")?;
                let uid = get(4, "uid")?;
                let gid = get(5, "gid")?;
                let mode = get(6, "mode")?;
                let rdev = get(7, "rdev")?;
                let ctime = get(8, "ctime")?;
                let mtime = get(9, "mtime")?;
                if ino < 1 {
                    return Err(invalid(format!("inode number {ino} is not positive")));
                }
                if parent < 0 {
                    return Err(invalid(format!("inode {ino}: parent {parent} is negative")));
                }
                let mode = u32::try_from(mode)
                    .map_err(|_| invalid(format!("inode {ino}: mode {mode} is out of range")))?;
                let kind = Kind::from_mode(mode).ok_or_else(|| {
                    invalid(format!(
                        "inode {ino}: mode {mode:#o} has an unknown file type"
                    ))
                })?;
                let uid = u32::try_from(uid)
                    .map_err(|_| invalid(format!("inode {ino}: uid {uid} is out of range")))?;
                let gid = u32::try_from(gid)
                    .map_err(|_| invalid(format!("inode {ino}: gid {gid} is out of range")))?;
                if size < 0 {
                    return Err(invalid(format!("inode {ino}: size {size} is negative")));
                }
                let size = size as u64;
                if kind == Kind::File && size > MAX_FILE_SIZE {
                    return Err(invalid(format!(
                        "inode {ino}: size {size} is absurd (over {MAX_FILE_SIZE} bytes)"
                    )));
                }
                if ino as u64 == ROOT_INO {
                    if parent != 0 || kind != Kind::Dir {
                        return Err(invalid(
                            "the root inode 1 must be a directory with parent 0".into(),
                        ));
                    }
                } else {
                    check_name(&name).map_err(|r| invalid(format!("inode {ino}: {r}")))?;
                    if parent == 0 {
                        return Err(invalid(format!("inode {ino}: a second root (parent 0)")));
                    }
                }
                if nodes.len() >= MAX_INODES {
                    return Err(invalid(format!("more than {MAX_INODES} inodes")));
                }
                order.push(ino as u64);
                nodes.insert(
                    ino as u64,
                    Node {
                        ino: ino as u64,
                        parent: parent as u64,
                        name: OsString::from_vec(name),
                        kind,
                        mode,
                        size,
                        uid,
                        gid,
                        rdev: rdev as u64,
                        ctime,
                        mtime,
                        target: None,
                        blocks: Vec::new(),
                        children: Vec::new(),
                    },
                );
            }
        }
        if !nodes.contains_key(&ROOT_INO) {
            return Err(invalid("no root inode (ino 1)".into()));
        }

        // tree: parents must be directories; names unique per directory
        let mut index: HashMap<(u64, OsString), u64> = HashMap::with_capacity(nodes.len());
        for &ino in &order {
            if ino == ROOT_INO {
                continue;
            }
            let (parent, name) = {
                let n = &nodes[&ino];
                (n.parent, n.name.clone())
            };
            match nodes.get_mut(&parent) {
                None => {
                    return Err(invalid(format!(
                        "inode {ino}: parent {parent} does not exist"
                    )));
                }
                Some(p) if p.kind != Kind::Dir => {
                    return Err(invalid(format!(
                        "inode {ino}: parent {parent} is not a directory"
                    )));
                }
                Some(p) => p.children.push(ino),
            }
            if let Some(other) = index.insert((parent, name.clone()), ino) {
                return Err(invalid(format!(
                    "inodes {other} and {ino}: duplicate name {:?} in directory {parent}",
                    name.to_string_lossy()
                )));
            }
        }
        // reachability from the root (catches cycles: every inode has one parent, so a node not reached
        // from the root sits on a parent cycle)
        let mut seen = 1usize;
        let mut stack = vec![ROOT_INO];
        while let Some(ino) = stack.pop() {
            for &c in &nodes[&ino].children {
                if c == ROOT_INO {
                    return Err(invalid("the root inode is its own descendant".into()));
                }
                seen += 1;
                stack.push(c);
            }
        }
        if seen != nodes.len() {
            let stray = order
                .iter()
                .find(|&&i| !is_reachable(&nodes, i))
                .copied()
                .unwrap_or_default();
            return Err(invalid(format!(
                "{} inodes are not reachable from the root (a parent cycle), e.g. inode {stray}",
                nodes.len() - seen
            )));
        }

        // symlink targets
        {
            let mut stmt = conn
                .prepare("SELECT ino, data FROM extra")
                .map_err(sql(path, "reading extra"))?;
            let mut rows = stmt.query([]).map_err(sql(path, "reading extra"))?;
            while let Some(row) = rows.next().map_err(sql(path, "reading extra"))? {
                let ino = int(row, 0, "extra.ino", 0).map_err(invalid)?;
                let Some(node) = nodes.get_mut(&(ino as u64)) else {
                    continue;
                };
                if node.kind != Kind::Symlink {
                    continue;
                }
                let data = bytes(row.get_ref(1).map_err(sql(path, "reading extra"))?)
                    .ok_or_else(|| invalid(format!("inode {ino}: symlink target is not text")))?;
                if data.is_empty() || data.len() > MAX_TARGET || data.contains(&0) {
                    return Err(invalid(format!(
                        "inode {ino}: symlink target is empty, longer than {MAX_TARGET} bytes or contains NUL"
                    )));
                }
                node.target = Some(data);
            }
        }
        if let Some(n) = nodes
            .values()
            .find(|n| n.kind == Kind::Symlink && n.target.is_none())
        {
            return Err(invalid(format!(
                "inode {}: symlink without a target",
                n.ino
            )));
        }

        // blocks, in rowid order
        {
            let mut stmt = conn
                .prepare("SELECT ino, id, key FROM block ORDER BY rowid")
                .map_err(sql(path, "reading blocks"))?;
            let mut rows = stmt.query([]).map_err(sql(path, "reading blocks"))?;
            while let Some(row) = rows.next().map_err(sql(path, "reading blocks"))? {
                let ino = int(row, 0, "block.ino", 0).map_err(invalid)?;
                let node = nodes.get_mut(&(ino as u64)).ok_or_else(|| {
                    invalid(format!("block for inode {ino}, which does not exist"))
                })?;
                if node.kind != Kind::File {
                    return Err(invalid(format!(
                        "inode {ino}: blocks on something that is not a regular file"
                    )));
                }
                let get32 = |c: usize, what: &str| -> Result<[u8; HASH_LEN], MetaError> {
                    match row.get_ref(c).map_err(sql(path, "reading blocks"))? {
                        ValueRef::Blob(b) if b.len() == HASH_LEN => {
                            Ok(b.try_into().expect("length checked"))
                        }
                        ValueRef::Blob(b) => Err(invalid(format!(
                            "inode {ino}: block {what} is {} bytes, expected {HASH_LEN}",
                            b.len()
                        ))),
                        _ => Err(invalid(format!(
                            "inode {ino}: block {what} is not a {HASH_LEN}-byte blob"
                        ))),
                    }
                };
                let id = get32(1, "id")?;
                let key = get32(2, "key")?;
                if node.blocks.len() as u64 >= block_count(node.size) {
                    return Err(invalid(format!(
                        "inode {ino}: more blocks than its size of {} bytes needs ({})",
                        node.size,
                        block_count(node.size)
                    )));
                }
                node.blocks.push(BlockRef::Fl { id, key });
            }
        }
        if let Some(n) = nodes
            .values()
            .find(|n| n.kind == Kind::File && n.blocks.len() as u64 != block_count(n.size))
        {
            return Err(invalid(format!(
                "inode {}: {} blocks for a size of {} bytes (expected {} blocks of {BLOCK_SIZE} bytes)",
                n.ino,
                n.blocks.len(),
                n.size,
                block_count(n.size)
            )));
        }

        // tags and routes
        let mut tags = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT key, value FROM tag")
                .map_err(sql(path, "reading tags"))?;
            let mut rows = stmt.query([]).map_err(sql(path, "reading tags"))?;
            while let Some(row) = rows.next().map_err(sql(path, "reading tags"))? {
                let k = bytes(row.get_ref(0).map_err(sql(path, "reading tags"))?)
                    .ok_or_else(|| invalid("a tag key is not text".into()))?;
                let v =
                    bytes(row.get_ref(1).map_err(sql(path, "reading tags"))?).unwrap_or_default();
                tags.push((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
        }
        let mut routes = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT start, end, url FROM route")
                .map_err(sql(path, "reading routes"))?;
            let mut rows = stmt.query([]).map_err(sql(path, "reading routes"))?;
            while let Some(row) = rows.next().map_err(sql(path, "reading routes"))? {
                let start = int(row, 0, "route.start", 0).map_err(invalid)?;
                let end = int(row, 1, "route.end", 0).map_err(invalid)?;
                let url = bytes(row.get_ref(2).map_err(sql(path, "reading routes"))?)
                    .ok_or_else(|| invalid("a route url is not text".into()))?;
                let url = String::from_utf8(url)
                    .map_err(|_| invalid("a route url is not UTF-8".into()))?;
                let (Ok(start), Ok(end)) = (u8::try_from(start), u8::try_from(end)) else {
                    return Err(invalid(format!(
                        "route {url}: range {start}-{end} is not within 0-255"
                    )));
                };
                if start > end {
                    return Err(invalid(format!(
                        "route {url}: range start {start} is after its end {end}"
                    )));
                }
                routes.push(Route { start, end, url });
            }
        }
        Ok(Flist {
            path: path.to_path_buf(),
            nodes,
            index,
            tags,
            routes,
        })
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory.
    pub fn root(&self) -> &Node {
        &self.nodes[&ROOT_INO]
    }

    /// An inode by number.
    pub fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// A child of directory `parent` by name.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Option<&Node> {
        self.index
            .get(&(parent, name.to_os_string()))
            .and_then(|i| self.nodes.get(i))
    }

    /// Resolve a path relative to the root (`/a/b` or `a/b`), without following symlinks.
    pub fn resolve(&self, path: impl AsRef<Path>) -> Option<&Node> {
        let mut node = self.root();
        for c in path.as_ref().components() {
            match c {
                std::path::Component::RootDir | std::path::Component::CurDir => {}
                std::path::Component::Normal(n) => node = self.lookup(node.ino, n)?,
                _ => return None,
            }
        }
        Some(node)
    }

    /// Number of inodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the flist has only its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// The `tag` table.
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// One tag's value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `route` table.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every inode with its path (root = `/`), parents before children, children in table order.
    pub fn walk(&self) -> Vec<(PathBuf, &Node)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![(PathBuf::from("/"), self.root())];
        while let Some((path, node)) = stack.pop() {
            for &c in node.children.iter().rev() {
                let child = &self.nodes[&c];
                stack.push((path.join(&child.name), child));
            }
            out.push((path, node));
        }
        out
    }

    /// Total size of the regular files.
    pub fn content_size(&self) -> u64 {
        self.nodes
            .values()
            .filter(|n| n.kind == Kind::File)
            .map(|n| n.size)
            .sum()
    }
}

fn is_reachable(nodes: &HashMap<u64, Node>, mut ino: u64) -> bool {
    for _ in 0..=nodes.len() {
        if ino == ROOT_INO {
            return true;
        }
        match nodes.get(&ino) {
            Some(n) => ino = n.parent,
            None => return false,
        }
    }
    false
}

fn check_schema(conn: &Connection, path: &Path) -> Result<(), MetaError> {
    let want: [(&str, &[&str]); 5] = [
        (
            "inode",
            &[
                "ino", "parent", "name", "size", "uid", "gid", "mode", "rdev", "ctime", "mtime",
            ],
        ),
        ("extra", &["ino", "data"]),
        ("block", &["ino", "id", "key"]),
        ("tag", &["key", "value"]),
        ("route", &["start", "end", "url"]),
    ];
    for (table, cols) in want {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(sql(path, "reading the schema (is it an SQLite file?)"))?;
        let have: Vec<String> = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(sql(path, "reading the schema (is it an SQLite file?)"))?;
        if have.is_empty() {
            return Err(MetaError::Invalid {
                path: path.into(),
                reason: format!("not an flist: table `{table}` is missing"),
            });
        }
        for c in cols {
            if !have.iter().any(|h| h.eq_ignore_ascii_case(c)) {
                return Err(MetaError::Invalid {
                    path: path.into(),
                    reason: format!("not an flist: table `{table}` has no column `{c}`"),
                });
            }
        }
    }
    Ok(())
}

/// A new inode for [`Writer::inode`].
#[derive(Clone, Debug)]
pub struct NewInode<'a> {
    /// Parent inode (0 for the root).
    pub parent: u64,
    /// Name (`/` for the root); must be UTF-8 so rfs can read it.
    pub name: &'a [u8],
    /// `st_size`.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Full `st_mode`.
    pub mode: u32,
    /// Device number.
    pub rdev: u64,
    /// Unix seconds.
    pub ctime: i64,
    /// Unix seconds.
    pub mtime: i64,
    /// Symlink target.
    pub target: Option<&'a [u8]>,
}

/// Writes a new `.fl`: everything in one transaction, in a temporary file renamed over `path` by
/// [`Writer::finish`]. Dropping a writer without finishing leaves nothing behind.
pub struct Writer {
    conn: Option<Connection>,
    tmp: PathBuf,
    path: PathBuf,
}

impl Writer {
    /// Start a new flist at `path` (replaced when finished).
    pub fn create(path: impl AsRef<Path>) -> Result<Writer, MetaError> {
        let path = path.as_ref().to_path_buf();
        let name = path.file_name().ok_or_else(|| MetaError::Invalid {
            path: path.clone(),
            reason: "the output path has no file name".into(),
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let conn =
            Connection::open(&tmp).map_err(sql(&path, format!("creating {}", tmp.display())))?;
        let w = Writer {
            conn: Some(conn),
            tmp,
            path,
        };
        let c = w.conn();
        c.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF;")
            .map_err(sql(&w.path, "configuring the database"))?;
        c.execute_batch(SCHEMA)
            .map_err(sql(&w.path, "creating the schema"))?;
        c.execute_batch("BEGIN")
            .map_err(sql(&w.path, "starting the transaction"))?;
        Ok(w)
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("writer used after finish")
    }

    /// Add a route.
    pub fn route(&self, start: u8, end: u8, url: &str) -> Result<(), MetaError> {
        self.conn()
            .prepare_cached("INSERT INTO route (start, end, url) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![start, end, url]))
            .map(drop)
            .map_err(sql(&self.path, "adding a route"))
    }

    /// Set a tag.
    pub fn tag(&self, key: &str, value: &str) -> Result<(), MetaError> {
        self.conn()
            .prepare_cached("INSERT OR REPLACE INTO tag (key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![key, value]))
            .map(drop)
            .map_err(sql(&self.path, "adding a tag"))
    }

    /// Add an inode; returns its number (the first one added is the root, ino 1).
    pub fn inode(&self, n: &NewInode<'_>) -> Result<u64, MetaError> {
        let name = std::str::from_utf8(n.name).map_err(|_| MetaError::Invalid {
            path: self.path.clone(),
            reason: format!(
                "name {:?} is not UTF-8 (rfs flists store names as text)",
                OsStr::from_bytes(n.name).to_string_lossy()
            ),
        })?;
        let size = i64::try_from(n.size).map_err(|_| MetaError::Invalid {
            path: self.path.clone(),
            reason: format!("{name}: size {} is out of range", n.size),
        })?;
        let c = self.conn();
        c.prepare_cached(
            "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .and_then(|mut s| {
            s.execute(params![
                n.parent as i64,
                name,
                size,
                n.uid,
                n.gid,
                n.mode,
                n.rdev as i64,
                n.ctime,
                n.mtime
            ])
        })
        .map_err(sql(&self.path, format!("adding inode {name}")))?;
        let ino = c.last_insert_rowid() as u64;
        if let Some(t) = n.target {
            c.prepare_cached("INSERT INTO extra (ino, data) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![ino as i64, t]))
                .map_err(sql(&self.path, format!("adding the target of {name}")))?;
        }
        Ok(ino)
    }

    /// Correct the size of an inode (a file that changed while it was packed).
    pub fn set_size(&self, ino: u64, size: u64) -> Result<(), MetaError> {
        self.conn()
            .prepare_cached("UPDATE inode SET size = ?1 WHERE ino = ?2")
            .and_then(|mut s| s.execute(params![size as i64, ino as i64]))
            .map(drop)
            .map_err(sql(&self.path, "updating a size"))
    }

    /// Append a block to a file (call in block order).
    pub fn block(&self, ino: u64, id: &BlockId, key: &BlockKey) -> Result<(), MetaError> {
        self.conn()
            .prepare_cached("INSERT INTO block (ino, id, key) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![ino as i64, &id[..], &key[..]]))
            .map(drop)
            .map_err(sql(&self.path, "adding a block"))
    }

    /// Commit, close, sync and move the file into place.
    pub fn finish(mut self) -> Result<(), MetaError> {
        let conn = self.conn.take().expect("finish once");
        conn.execute_batch("COMMIT")
            .map_err(sql(&self.path, "committing"))?;
        conn.close()
            .map_err(|(_, e)| sql(&self.path, "closing")(e))?;
        let io = |context: &str| {
            let path = self.path.clone();
            let context = context.to_string();
            move |source| MetaError::Io {
                path,
                context,
                source,
            }
        };
        std::fs::File::open(&self.tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing"))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(io("moving the finished flist into place"))?;
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn);
            let _ = std::fs::remove_file(&self.tmp);
            let mut journal = self.tmp.clone().into_os_string();
            journal.push("-journal");
            let _ = std::fs::remove_file(journal);
        }
    }
}
