//! The JSON shapes of the 0-hub API, as the real hub emits them and as clients must tolerate them.

use serde::{Deserialize, Serialize};

/// A size: a human string (`"12.34 KB"`) in listings, an integer in light info. Clients accept both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// Human text as listings show it.
    Text(String),
}

impl Size {
    /// The listing text for `bytes` (`"%.2f KB"`).
    pub fn kb(bytes: u64) -> Size {
        Size::Text(format!("{:.2} KB", bytes as f64 / 1024.0))
    }

    /// Bytes, when this is a number (or a text that parses back to roughly the byte count).
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(*b),
            Size::Text(t) => {
                let t = t.trim();
                let (num, unit) = t.split_once(' ').unwrap_or((t, "B"));
                let n: f64 = num.parse().ok()?;
                let mult = match unit.to_ascii_uppercase().as_str() {
                    "B" => 1.0,
                    "KB" => 1024.0,
                    "MB" => 1024.0 * 1024.0,
                    "GB" => 1024.0 * 1024.0 * 1024.0,
                    _ => return None,
                };
                Some((n * mult).round() as u64)
            }
        }
    }
}

impl Default for Size {
    fn default() -> Self {
        Size::Bytes(0)
    }
}

/// The type of a hub entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// A flist file.
    Regular,
    /// A link to a flist (same or other repository).
    Symlink,
    /// A link to a tag (`<repo>/tags/<tag>`).
    Taglink,
    /// A tag (a directory of links).
    Tag,
    /// Anything a newer hub may add.
    #[serde(other)]
    Unknown,
}

/// One entry of a repository or tag listing, or a light info object (then `md5` is set and `size` is a
/// number).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Entry name (`x.flist`, `v4.0.5`, `production-v4`).
    pub name: String,
    /// Size (string in listings, integer in light info).
    #[serde(default)]
    pub size: Size,
    /// Modification time (of the target, for links), Unix seconds.
    #[serde(default)]
    pub updated: i64,
    /// Modification time of the link itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linktime: Option<i64>,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Link target (cleaned in listings, raw in light info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// MD5 of the flist file (light info only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// One repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    /// Name.
    pub name: String,
    /// Whether it is an official repository.
    #[serde(default)]
    pub official: bool,
    /// Modification time, Unix seconds.
    #[serde(default)]
    pub updated: i64,
}

/// The error body of the hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Always `"error"`.
    pub status: String,
    /// What went wrong.
    pub message: String,
}

/// Body of publishing requests that create links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkRequest {
    /// What to link to: `repo/file.flist` (tag entries, symlinks) or `repo/tags/tag` (taglinks).
    pub target: String,
}

/// "Cleaning" a link target for the API: drop every `../` and turn `.tag-` into `tags/`.
pub fn clean_target(raw: &str) -> String {
    raw.replace("../", "").replace(".tag-", "tags/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_both_ways() {
        let e: Entry = serde_json::from_str(
            r#"{"name":"x.flist","size":"12.34 KB","updated":1,"type":"regular"}"#,
        )
        .unwrap();
        assert_eq!(e.size, Size::Text("12.34 KB".into()));
        assert_eq!(e.size.bytes(), Some(12636));
        let e: Entry = serde_json::from_str(
            r#"{"name":"x.flist","size":1234,"updated":1,"type":"regular","md5":"ab"}"#,
        )
        .unwrap();
        assert_eq!(e.size.bytes(), Some(1234));
        assert_eq!(e.md5.as_deref(), Some("ab"));
        // missing size, md5, target, linktime; unknown type
        let e: Entry = serde_json::from_str(r#"{"name":"y","type":"weird"}"#).unwrap();
        assert_eq!(e.kind, EntryType::Unknown);
        assert_eq!(e.target, None);
        assert_eq!(Size::kb(12636), Size::Text("12.34 KB".into()));
    }

    #[test]
    fn targets_are_cleaned() {
        assert_eq!(
            clean_target("../tf-autobuilder/.tag-v4.0.5"),
            "tf-autobuilder/tags/v4.0.5"
        );
        assert_eq!(clean_target("../../repo2/x.flist"), "repo2/x.flist");
        assert_eq!(clean_target("x.flist"), "x.flist");
    }
}
