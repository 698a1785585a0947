//! The registrar's SQLite database: accounts, farms, nodes, uptime reports, the zos version, and the X-Auth
//! challenges already used. Times are Unix nanoseconds. Every method is synchronous; the HTTP layer calls
//! them from `spawn_blocking`.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use zos_grid::clock::nanos_to_time;
use zos_grid::models::{
    Account, Farm, Interface, Location, Node, NodeRegistration, NodeUpdate, Resources,
};

/// Why a database operation failed. `NotFound` and `Conflict` are the caller's fault; the rest are ours.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored {what} is not valid json")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    twin_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    public_key  TEXT NOT NULL UNIQUE,
    relays      TEXT NOT NULL DEFAULT '[]',
    rmb_enc_key TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS farms (
    farm_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    farm_name       TEXT NOT NULL UNIQUE CHECK (farm_name <> ''),
    twin_id         INTEGER NOT NULL REFERENCES accounts(twin_id) ON DELETE RESTRICT,
    stellar_address TEXT NOT NULL,
    dedicated       INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS farms_twin ON farms(twin_id);
CREATE TABLE IF NOT EXISTS nodes (
    node_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    farm_id       INTEGER NOT NULL REFERENCES farms(farm_id) ON DELETE RESTRICT,
    twin_id       INTEGER NOT NULL UNIQUE REFERENCES accounts(twin_id) ON DELETE RESTRICT,
    location      TEXT NOT NULL,
    resources     TEXT NOT NULL,
    interfaces    TEXT NOT NULL,
    secure_boot   INTEGER NOT NULL DEFAULT 0,
    virtualized   INTEGER NOT NULL DEFAULT 0,
    serial_number TEXT NOT NULL,
    last_seen     INTEGER,
    approved      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_farm ON nodes(farm_id);
CREATE TABLE IF NOT EXISTS uptime_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id     INTEGER NOT NULL REFERENCES nodes(node_id) ON DELETE CASCADE,
    duration_ns INTEGER NOT NULL,
    timestamp   INTEGER NOT NULL,
    was_restart INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uptime_node ON uptime_reports(node_id, id);
CREATE TABLE IF NOT EXISTS zos_versions (
    key     TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_seen (
    key        BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_seen_expiry ON auth_seen(expires_at);
"#;

/// The key of the zos version row (as the reference server).
pub const ZOS_VERSION_KEY: &str = "zos_4";

/// `GET /farms` filters, already validated.
#[derive(Clone, Debug, Default)]
pub struct FarmQuery {
    pub farm_name: Option<String>,
    pub farm_id: Option<u64>,
    pub twin_id: Option<u64>,
    pub page: u64,
    pub size: u64,
}

/// `GET /nodes` filters, already validated. Times in Unix nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct NodeQuery {
    pub node_id: Option<u64>,
    pub farm_id: Option<u64>,
    pub twin_id: Option<u64>,
    /// Only nodes with `last_seen > t`.
    pub seen_after: Option<i64>,
    /// Only nodes never seen or with `last_seen <= t`.
    pub not_seen_after: Option<i64>,
    pub page: u64,
    pub size: u64,
}

/// The database.
pub struct Store {
    conn: Mutex<Connection>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializing plain data")
}

fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::new(StoreError::Corrupt { what, source: e }),
        )
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation
        && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY))
}

const ACCOUNT_COLS: &str = "twin_id, public_key, relays, rmb_enc_key, created_at, updated_at";
const FARM_COLS: &str =
    "farm_id, farm_name, twin_id, stellar_address, dedicated, created_at, updated_at";
const NODE_COLS: &str = "node_id, farm_id, twin_id, location, resources, interfaces, secure_boot, virtualized, \
                         serial_number, last_seen, approved, created_at, updated_at";

fn account_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        twin_id: r.get::<_, i64>(0)? as u64,
        public_key: r.get(1)?,
        relays: from_json(&r.get::<_, String>(2)?, "relays")?,
        rmb_enc_key: r.get(3)?,
        created_at: nanos_to_time(r.get(4)?),
        updated_at: nanos_to_time(r.get(5)?),
    })
}

fn farm_row(r: &Row<'_>) -> rusqlite::Result<Farm> {
    Ok(Farm {
        farm_id: r.get::<_, i64>(0)? as u64,
        farm_name: r.get(1)?,
        twin_id: r.get::<_, i64>(2)? as u64,
        stellar_address: r.get(3)?,
        dedicated: r.get(4)?,
        created_at: nanos_to_time(r.get(5)?),
        updated_at: nanos_to_time(r.get(6)?),
    })
}

/// A node row plus its raw `last_seen` (for the online computation).
fn node_row(r: &Row<'_>, online_after: i64) -> rusqlite::Result<Node> {
    let last_seen: Option<i64> = r.get(9)?;
    Ok(Node {
        node_id: r.get::<_, i64>(0)? as u64,
        farm_id: r.get::<_, i64>(1)? as u64,
        twin_id: r.get::<_, i64>(2)? as u64,
        location: from_json::<Location>(&r.get::<_, String>(3)?, "location")?,
        resources: from_json::<Resources>(&r.get::<_, String>(4)?, "resources")?,
        interfaces: from_json::<Vec<Interface>>(&r.get::<_, String>(5)?, "interfaces")?,
        secure_boot: r.get(6)?,
        virtualized: r.get(7)?,
        serial_number: r.get(8)?,
        last_seen: last_seen.map(nanos_to_time).unwrap_or_default(),
        online: last_seen.is_some_and(|t| t > online_after),
        approved: r.get(10)?,
        created_at: nanos_to_time(r.get(11)?),
        updated_at: nanos_to_time(r.get(12)?),
    })
}

fn offset(page: u64, size: u64) -> i64 {
    (page.max(1) - 1).saturating_mul(size).min(i64::MAX as u64) as i64
}

impl Store {
    /// Open (and create or migrate) the database at `path`; `:memory:` for a throw-away one.
    pub fn open(path: &str) -> Result<Store, StoreError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            if path != ":memory:" {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
            }
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open().map_err(|source| StoreError::Open {
            path: path.to_string(),
            source,
        })?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- accounts -----

    /// An account by twin id.
    pub fn account(&self, twin_id: u64) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE twin_id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [twin_id as i64], account_row)
            .optional()?)
    }

    /// An account by its canonical base64 public key.
    pub fn account_by_public_key(
        &self,
        public_key_b64: &str,
    ) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE public_key = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [public_key_b64], account_row)
            .optional()?)
    }

    /// Insert an account; `Conflict` when the key already has one.
    pub fn create_account(
        &self,
        public_key_b64: &str,
        relays: &[String],
        rmb_enc_key: &str,
        now: i64,
    ) -> Result<Account, StoreError> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO accounts (public_key, relays, rmb_enc_key, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![public_key_b64, json(&relays), rmb_enc_key, now],
        );
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "an account with public key {public_key_b64} already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let twin = conn.last_insert_rowid();
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE twin_id = ?1");
        Ok(conn.query_row(&sql, [twin], account_row)?)
    }

    /// Change the fields given (others untouched).
    pub fn update_account(
        &self,
        twin_id: u64,
        relays: Option<&[String]>,
        rmb_enc_key: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE accounts SET relays = COALESCE(?2, relays), rmb_enc_key = COALESCE(?3, rmb_enc_key), updated_at = ?4
             WHERE twin_id = ?1",
            params![twin_id as i64, relays.map(|r| json(&r)), rmb_enc_key, now],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound("account not found".into()));
        }
        Ok(())
    }

    // ----- farms -----

    /// A farm by id.
    pub fn farm(&self, farm_id: u64) -> Result<Option<Farm>, StoreError> {
        let sql = format!("SELECT {FARM_COLS} FROM farms WHERE farm_id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [farm_id as i64], farm_row)
            .optional()?)
    }

    /// A farm by exact name.
    pub fn farm_by_name(&self, name: &str) -> Result<Option<Farm>, StoreError> {
        let sql = format!("SELECT {FARM_COLS} FROM farms WHERE farm_name = ?1");
        Ok(self.conn().query_row(&sql, [name], farm_row).optional()?)
    }

    /// Farms matching the filters, by id.
    pub fn list_farms(&self, q: &FarmQuery) -> Result<Vec<Farm>, StoreError> {
        let pattern = q.farm_name.as_ref().map(|n| {
            let escaped = n
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let sql = format!(
            "SELECT {FARM_COLS} FROM farms
             WHERE (?1 IS NULL OR farm_name LIKE ?1 ESCAPE '\\') AND (?2 IS NULL OR farm_id = ?2) AND (?3 IS NULL OR twin_id = ?3)
             ORDER BY farm_id LIMIT ?4 OFFSET ?5"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(
            params![
                pattern,
                q.farm_id.map(|v| v as i64),
                q.twin_id.map(|v| v as i64),
                q.size as i64,
                offset(q.page, q.size)
            ],
            farm_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Insert a farm; `Conflict` when the name is taken.
    pub fn create_farm(
        &self,
        name: &str,
        twin_id: u64,
        stellar_address: &str,
        dedicated: bool,
        now: i64,
    ) -> Result<u64, StoreError> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO farms (farm_name, twin_id, stellar_address, dedicated, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![name, twin_id as i64, stellar_address, dedicated, now],
        );
        match res {
            Ok(_) => Ok(conn.last_insert_rowid() as u64),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "farm name {name:?} is already taken"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Change the fields given; `Conflict` when the new name is taken.
    pub fn update_farm(
        &self,
        farm_id: u64,
        name: Option<&str>,
        stellar_address: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let res = self.conn().execute(
            "UPDATE farms SET farm_name = COALESCE(?2, farm_name), stellar_address = COALESCE(?3, stellar_address), updated_at = ?4
             WHERE farm_id = ?1",
            params![farm_id as i64, name, stellar_address, now],
        );
        match res {
            Ok(0) => Err(StoreError::NotFound("farm not found".into())),
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "farm name {:?} is already taken",
                name.unwrap_or_default()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    // ----- nodes -----

    /// A node by id; `online` means seen after `online_after` (Unix ns).
    pub fn node(&self, node_id: u64, online_after: i64) -> Result<Option<Node>, StoreError> {
        let sql = format!("SELECT {NODE_COLS} FROM nodes WHERE node_id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [node_id as i64], |r| node_row(r, online_after))
            .optional()?)
    }

    /// Nodes matching the filters, by id.
    pub fn list_nodes(&self, q: &NodeQuery, online_after: i64) -> Result<Vec<Node>, StoreError> {
        let sql = format!(
            "SELECT {NODE_COLS} FROM nodes
             WHERE (?1 IS NULL OR node_id = ?1) AND (?2 IS NULL OR farm_id = ?2) AND (?3 IS NULL OR twin_id = ?3)
               AND (?4 IS NULL OR (last_seen IS NOT NULL AND last_seen > ?4))
               AND (?5 IS NULL OR last_seen IS NULL OR last_seen <= ?5)
             ORDER BY node_id LIMIT ?6 OFFSET ?7"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(
            params![
                q.node_id.map(|v| v as i64),
                q.farm_id.map(|v| v as i64),
                q.twin_id.map(|v| v as i64),
                q.seen_after,
                q.not_seen_after,
                q.size as i64,
                offset(q.page, q.size)
            ],
            |r| node_row(r, online_after),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Register a node (not approved). `NotFound` for an unknown farm, `Conflict` when the twin has a node.
    pub fn create_node(&self, reg: &NodeRegistration, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let farm: Option<i64> = tx
            .query_row(
                "SELECT farm_id FROM farms WHERE farm_id = ?1",
                [reg.farm_id as i64],
                |r| r.get(0),
            )
            .optional()?;
        if farm.is_none() {
            return Err(StoreError::NotFound(format!(
                "farm {} not found",
                reg.farm_id
            )));
        }
        let existing: Option<i64> = tx
            .query_row(
                "SELECT node_id FROM nodes WHERE twin_id = ?1",
                [reg.twin_id as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Err(StoreError::Conflict(format!(
                "twin {} already has node {id}",
                reg.twin_id
            )));
        }
        tx.execute(
            "INSERT INTO nodes (farm_id, twin_id, location, resources, interfaces, secure_boot, virtualized, serial_number,
                                approved, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?9)",
            params![
                reg.farm_id as i64,
                reg.twin_id as i64,
                json(&reg.location),
                json(&reg.resources),
                json(&reg.interfaces),
                reg.secure_boot,
                reg.virtualized,
                reg.serial_number,
                now
            ],
        )?;
        let id = tx.last_insert_rowid() as u64;
        tx.commit()?;
        Ok(id)
    }

    /// Apply the fields present. Moving the node to another farm resets `approved`.
    pub fn update_node(&self, node_id: u64, u: &NodeUpdate, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let current: Option<i64> = tx
            .query_row(
                "SELECT farm_id FROM nodes WHERE node_id = ?1",
                [node_id as i64],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current_farm) = current else {
            return Err(StoreError::NotFound("node not found".into()));
        };
        if let Some(farm) = u.farm_id {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT farm_id FROM farms WHERE farm_id = ?1",
                    [farm as i64],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("farm {farm} not found")));
            }
        }
        let farm_changed = u.farm_id.is_some_and(|f| f as i64 != current_farm);
        tx.execute(
            "UPDATE nodes SET
                farm_id = COALESCE(?2, farm_id),
                location = COALESCE(?3, location),
                resources = COALESCE(?4, resources),
                interfaces = COALESCE(?5, interfaces),
                secure_boot = COALESCE(?6, secure_boot),
                virtualized = COALESCE(?7, virtualized),
                serial_number = COALESCE(?8, serial_number),
                approved = CASE WHEN ?9 THEN 0 ELSE approved END,
                updated_at = ?10
             WHERE node_id = ?1",
            params![
                node_id as i64,
                u.farm_id.map(|v| v as i64),
                u.location.as_ref().map(json),
                u.resources.as_ref().map(json),
                u.interfaces.as_ref().map(json),
                u.secure_boot,
                u.virtualized,
                u.serial_number,
                farm_changed,
                now
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Approve (or unapprove) a node (farmer approval has no endpoint yet; used by tools and tests).
    pub fn set_node_approved(&self, node_id: u64, approved: bool) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE nodes SET approved = ?2 WHERE node_id = ?1",
            params![node_id as i64, approved],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound("node not found".into()));
        }
        Ok(())
    }

    /// Record an uptime report and mark the node seen at `now`. A report whose uptime is lower than the
    /// previous one is marked as following a restart.
    pub fn report_uptime(
        &self,
        node_id: u64,
        uptime_secs: u64,
        timestamp_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE nodes SET last_seen = ?2 WHERE node_id = ?1",
            params![node_id as i64, now],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound("node not found".into()));
        }
        let previous: Option<i64> = tx
            .query_row(
                "SELECT duration_ns FROM uptime_reports WHERE node_id = ?1 ORDER BY id DESC LIMIT 1",
                [node_id as i64],
                |r| r.get(0),
            )
            .optional()?;
        let duration_ns = (uptime_secs as i64).saturating_mul(1_000_000_000);
        let restart = previous.is_some_and(|p| duration_ns < p);
        tx.execute(
            "INSERT INTO uptime_reports (node_id, duration_ns, timestamp, was_restart, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![node_id as i64, duration_ns, timestamp_secs.saturating_mul(1_000_000_000), restart, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The uptime reports of a node, oldest first: (uptime seconds, timestamp seconds, was_restart).
    pub fn uptime_reports(&self, node_id: u64) -> Result<Vec<(u64, i64, bool)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT duration_ns, timestamp, was_restart FROM uptime_reports WHERE node_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([node_id as i64], |r| {
            Ok((
                (r.get::<_, i64>(0)? / 1_000_000_000) as u64,
                r.get::<_, i64>(1)? / 1_000_000_000,
                r.get(2)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ----- zos version -----

    /// The stored zos version (base64 wire form).
    pub fn zos_version(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT version FROM zos_versions WHERE key = ?1",
                [ZOS_VERSION_KEY],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Store the zos version; `Conflict` when it is already exactly this.
    pub fn set_zos_version(&self, version_b64: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        let current: Option<String> = conn
            .query_row(
                "SELECT version FROM zos_versions WHERE key = ?1",
                [ZOS_VERSION_KEY],
                |r| r.get(0),
            )
            .optional()?;
        if current.as_deref() == Some(version_b64) {
            return Err(StoreError::Conflict("version already set".into()));
        }
        conn.execute(
            "INSERT INTO zos_versions (key, version) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET version = excluded.version",
            params![ZOS_VERSION_KEY, version_b64],
        )?;
        Ok(())
    }

    // ----- replay protection -----

    /// Remember a used challenge until `expires_at` (Unix s). Returns false when it was already used.
    /// Expired entries are dropped on the way.
    pub fn remember_challenge(
        &self,
        key: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM auth_seen WHERE expires_at < ?1", [now])?;
        let n = conn.execute(
            "INSERT OR IGNORE INTO auth_seen (key, expires_at) VALUES (?1, ?2)",
            params![key, expires_at],
        )?;
        Ok(n == 1)
    }
}
