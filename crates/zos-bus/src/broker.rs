//! Broker addresses.
//!
//! Accepted forms: `unix:///var/run/redis.sock` (Go zbus), `redis+unix:///path`, a bare `/path`,
//! `tcp://host:port` (Go zbus; a user part `tcp://PASS@host:port` is the password, as Go sends it),
//! and `redis://[:PASS@]host:port`.

use crate::Error;

/// Where the bus's Redis listens.
#[derive(Clone, Debug)]
pub struct Broker {
    url: String,
    client: redis::Client,
}

/// The broker every node daemon uses.
pub const DEFAULT_BROKER: &str = "unix:///var/run/redis.sock";

impl Broker {
    /// Parse a broker address (see the module docs for the forms).
    pub fn parse(url: &str) -> Result<Broker, Error> {
        let bad = |reason: &str| Error::BadBroker {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let redis_url = if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute (unix:///path)"));
            }
            format!("redis+unix://{path}")
        } else if url.starts_with('/') {
            format!("redis+unix://{url}")
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            match rest.split_once('@') {
                Some((pass, host)) => format!("redis://:{pass}@{host}"),
                None => format!("redis://{rest}"),
            }
        } else if url.starts_with("redis://") || url.starts_with("redis+unix://") {
            url.to_string()
        } else {
            return Err(bad(
                "expected unix:///path, tcp://host:port or redis://host:port",
            ));
        };
        let client = redis::Client::open(redis_url.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(Broker {
            url: url.to_string(),
            client,
        })
    }

    /// The address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection dedicated to one user at a time (blocking commands), with no response timeout.
    pub(crate) async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection, Error> {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| Error::Broker {
                url: self.url.clone(),
                source: e,
            })
    }
}

impl std::str::FromStr for Broker {
    type Err = Error;
    fn from_str(s: &str) -> Result<Broker, Error> {
        Broker::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_and_redis_forms() {
        for ok in [
            "unix:///var/run/redis.sock",
            "/tmp/r.sock",
            "tcp://127.0.0.1:6379",
            "tcp://secret@127.0.0.1:6379",
            "redis://127.0.0.1:1",
        ] {
            Broker::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["unix://var/run/redis.sock", "http://x", "redis.sock"] {
            assert!(Broker::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
