//! What the `zinit` CLI prints (v0.2.14: YAML with a `---` header) and its `log` filter.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use zos_zinit_client::{Client, Error, RawStatus};

/// `zinit list`: every service with its state.
pub fn list_yaml(list: &BTreeMap<String, String>) -> String {
    yaml(list)
}

/// `zinit status S`, fields in v0.2.14's order (name, pid, state, target, after).
pub fn status_yaml(status: &RawStatus) -> String {
    #[derive(Serialize)]
    struct Ordered<'a> {
        name: &'a str,
        pid: u32,
        state: &'a str,
        target: &'a str,
        after: &'a BTreeMap<String, String>,
    }
    yaml(&Ordered {
        name: &status.name,
        pid: status.pid,
        state: &status.state,
        target: &status.target,
        after: &status.after,
    })
}

fn yaml<T: Serialize>(value: &T) -> String {
    let body = serde_yaml::to_string(value).expect("maps of strings serialize");
    format!("---\n{body}")
}

/// Whether a log line belongs to `filter` (v0.2.14: the text after the `[+] `/`[-] ` marker starts with
/// `<filter>:`, so `<name>/test` lines are not included).
pub fn log_line_matches(line: &str, filter: &str) -> bool {
    line.get(4..).is_some_and(|rest| {
        rest.strip_prefix(filter)
            .is_some_and(|r| r.starts_with(':'))
    })
}

/// `zinit log [-s] [FILTER]`: check the filter names a service, then copy (matching) lines to `out`.
pub async fn log<W: AsyncWrite + Unpin>(
    client: &Client,
    filter: Option<&str>,
    follow: bool,
    mut out: W,
) -> Result<(), Error> {
    if let Some(name) = filter {
        client.status_raw(name).await?;
    }
    let wanted = |line: &str| filter.is_none_or(|f| log_line_matches(line, f));
    let write_err = |source| Error::Io {
        socket: client.socket().to_path_buf(),
        source,
    };
    if !follow {
        for line in client.log_snapshot().await? {
            if wanted(&line) {
                out.write_all(format!("{line}\n").as_bytes())
                    .await
                    .map_err(write_err)?;
            }
        }
        return out.flush().await.map_err(write_err);
    }
    let mut stream = client.log_follow().await?;
    while let Some(line) = stream.next_line().await? {
        if wanted(&line) {
            out.write_all(format!("{line}\n").as_bytes())
                .await
                .map_err(write_err)?;
            out.flush().await.map_err(write_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_status_print_like_v0_2_14() {
        let list: BTreeMap<String, String> = [
            ("web", "Spawned"),
            ("app", "Blocked"),
            ("fail", "Error(Exited(Pid(25380), 3))"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(
            list_yaml(&list),
            "---\napp: Blocked\nfail: Error(Exited(Pid(25380), 3))\nweb: Spawned\n"
        );
        assert_eq!(list_yaml(&BTreeMap::new()), "---\n{}\n");

        let mut status = RawStatus {
            after: [("init".to_string(), "Success".to_string())]
                .into_iter()
                .collect(),
            name: "web".into(),
            pid: 25532,
            state: "Spawned".into(),
            target: "Up".into(),
        };
        assert_eq!(
            status_yaml(&status),
            "---\nname: web\npid: 25532\nstate: Spawned\ntarget: Up\nafter:\n  init: Success\n"
        );
        status.after.clear();
        assert_eq!(
            status_yaml(&status),
            "---\nname: web\npid: 25532\nstate: Spawned\ntarget: Up\nafter: {}\n"
        );
    }

    #[test]
    fn log_filter_matches_the_exact_service() {
        assert!(log_line_matches("[+] web: hello", "web"));
        assert!(log_line_matches(
            "[-] web: ------------ [start] ------------",
            "web"
        ));
        assert!(!log_line_matches("[+] web/test: ok", "web"));
        assert!(!log_line_matches("[+] webapp: x", "web"));
        assert!(!log_line_matches("[+]", "web"));
    }
}
