//! The server's knobs. The defaults close the reference server's weaknesses while staying compatible with
//! Go nodes (see the crate README for why each value).

/// Server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The only twin allowed to `PUT /zos/version`.
    pub admin_twin: u64,
    /// X-Auth timestamps are accepted within ±this many seconds of the server clock.
    pub auth_skew_secs: i64,
    /// Account-creation timestamps are accepted within ±this many seconds (reference: 2 s).
    pub account_window_secs: i64,
    /// Uptime report timestamps are accepted within ±this many seconds.
    pub uptime_skew_secs: i64,
    /// A node is online when it reported within this many seconds (nodes report every 40 min).
    pub online_cutoff_secs: i64,
    /// Page size when the request gives none.
    pub default_page_size: u64,
    /// Largest page size served (larger requests are capped).
    pub max_page_size: u64,
    /// Accept the reference `ts:twin` X-Auth headers (Go nodes send only those).
    pub accept_v1_auth: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            admin_twin: 1,
            auth_skew_secs: 60,
            account_window_secs: 300,
            uptime_skew_secs: 60,
            online_cutoff_secs: 90 * 60,
            default_page_size: 50,
            max_page_size: 100,
            accept_v1_auth: true,
        }
    }
}
