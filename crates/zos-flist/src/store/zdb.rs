//! `zdb://[user[:password]@]host[:port]/[namespace]` or `zdb:///path/to/socket`: a 0-db (or any redis) over
//! the redis protocol; blocks are `GET`/`SET` under the raw id bytes.

use tokio::sync::Mutex;

use super::{BoxFuture, Store, StoreError};

/// Default 0-db port.
pub const DEFAULT_PORT: u16 = 9900;

/// A 0-db namespace as a block store.
pub struct ZdbStore {
    url: String,
    target: Target,
    namespace: Option<String>,
    password: Option<String>,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

#[derive(Clone, Debug)]
enum Target {
    Tcp(String, u16),
    Unix(String),
}

impl ZdbStore {
    /// Parse the URL; the connection is made on first use.
    pub fn from_url(url: &str) -> Result<ZdbStore, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: super::redact(url),
            reason: reason.into(),
        };
        let rest = url
            .strip_prefix("zdb://")
            .ok_or_else(|| bad("not a zdb:// url"))?;
        if rest.starts_with('/') {
            if rest.len() < 2 {
                return Err(bad("no socket path"));
            }
            return Ok(ZdbStore {
                url: url.into(),
                target: Target::Unix(rest.into()),
                namespace: None,
                password: None,
                conn: Mutex::new(None),
            });
        }
        let (authority, ns) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let password = userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(_, p)| p.to_string())
            .filter(|p| !p.is_empty());
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| bad("unterminated [ipv6] host"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("port is not a number"))?,
            None => DEFAULT_PORT,
        };
        let namespace = (!ns.is_empty() && ns != "default").then(|| ns.to_string());
        Ok(ZdbStore {
            url: super::redact(url),
            target: Target::Tcp(host, port),
            namespace,
            password,
            conn: Mutex::new(None),
        })
    }

    fn err(&self, context: impl Into<String>) -> impl FnOnce(redis::RedisError) -> StoreError + '_ {
        let context = context.into();
        move |source| StoreError::Zdb {
            store: self.url.clone(),
            context,
            source,
        }
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let addr = match &self.target {
            Target::Tcp(h, p) => redis::ConnectionAddr::Tcp(h.clone(), *p),
            Target::Unix(p) => redis::ConnectionAddr::Unix(p.into()),
        };
        let client = redis::Client::open(addr).map_err(self.err("configuring the connection"))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(self.err("connecting"))?;
        if let Some(ns) = &self.namespace {
            let mut cmd = redis::cmd("SELECT");
            cmd.arg(ns);
            if let Some(p) = &self.password {
                cmd.arg(p);
            }
            cmd.query_async::<()>(&mut conn)
                .await
                .map_err(self.err(format!("selecting namespace {ns}")))?;
        }
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }
}

impl Store for ZdbStore {
    fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let r: Result<Option<Vec<u8>>, _> =
                redis::cmd("GET").arg(id).query_async(&mut conn).await;
            match r {
                Ok(Some(d)) if !d.is_empty() => Ok(d),
                Ok(_) => Err(StoreError::NotFound {
                    id: hex::encode(id),
                    store: self.url.clone(),
                }),
                Err(e) => {
                    if e.is_io_error() || e.is_connection_dropped() {
                        self.forget_connection().await;
                    }
                    Err(self.err(format!("GET {}", hex::encode(id)))(e))
                }
            }
        })
    }

    fn set<'a>(&'a self, id: &'a [u8], data: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let r: Result<(), redis::RedisError> = async {
                let exists: bool = redis::cmd("EXISTS").arg(id).query_async(&mut conn).await?;
                if !exists {
                    redis::cmd("SET")
                        .arg(id)
                        .arg(data)
                        .query_async::<()>(&mut conn)
                        .await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                if e.is_io_error() || e.is_connection_dropped() {
                    self.forget_connection().await;
                }
                return Err(self.err(format!("SET {}", hex::encode(id)))(e));
            }
            Ok(())
        })
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let s = ZdbStore::from_url("zdb://u:pw@hub.example:9940/ns1").unwrap();
        assert!(matches!(&s.target, Target::Tcp(h, 9940) if h == "hub.example"));
        assert_eq!(s.namespace.as_deref(), Some("ns1"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.url(), "zdb://u@hub.example:9940/ns1");
        let s = ZdbStore::from_url("zdb://hub.example").unwrap();
        assert!(matches!(&s.target, Target::Tcp(_, DEFAULT_PORT)));
        assert_eq!(s.namespace, None);
        assert_eq!(
            ZdbStore::from_url("zdb://h:1/default").unwrap().namespace,
            None
        );
        assert!(matches!(
            ZdbStore::from_url("zdb:///run/zdb.sock").unwrap().target,
            Target::Unix(_)
        ));
        assert!(ZdbStore::from_url("zdb://h:notaport/x").is_err());
        assert!(ZdbStore::from_url("zdb://:1/x").is_err());
    }
}
