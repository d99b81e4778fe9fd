//! The directory's answers: the listing of files (`list`, `search`, `GET /files`), where a
//! file's chunks are (`locate`, `GET /files/{id}`) and the members (`GET /peers`), each
//! kept under [`MAX_ANSWER_LEN`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::state::{Directory, MemberEntry, Tables};
use crate::chunkset::Ranges;
use crate::protocol::{MAX_ANSWER_LEN, Role};

/// Takes items while their JSON fits in `budget` bytes; returns them and how many did not
/// fit. The cost is the size of what is taken.
fn within_budget<T: Serialize>(items: impl IntoIterator<Item = T>, budget: usize) -> (Vec<T>, u32) {
    let (mut taken, mut used, mut left) = (Vec::new(), 0usize, 0u32);
    for item in items {
        let len = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len() + 1);
        if left == 0 && used.saturating_add(len) <= budget {
            used += len;
            taken.push(item);
        } else {
            left = left.saturating_add(1);
        }
    }
    (taken, left)
}

/// A shared file as the directory lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Small numeric id, stable while the owner shares the same files.
    pub id: u32,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Nominal chunk size in bytes.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// BLAKE3 of the whole file, hex.
    pub hash: String,
    /// Sources holding every chunk, the owner included.
    pub complete_sources: u32,
    /// Peers holding some but not all chunks.
    pub partial_sources: u32,
}

/// The answer to `list` and `search`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The search text, for `search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The matching files, by id.
    pub files: Vec<FileInfo>,
    /// Matching files left out to keep the answer under [`MAX_ANSWER_LEN`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: u32,
    /// The directory's node id (`rsw1…`), as the client's handshake proved it: set by the
    /// client (`peer list/search --json`), never taken from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most chunk ranges listed per source in a `locate` answer; a longer list is cut (the
/// count stays exact), so one answer names many sources.
pub const MAX_SOURCE_RANGES: usize = 2048;

/// Room kept in an answer for everything but its list.
const ANSWER_SLACK: usize = 16 * 1024;

/// One holder of a file's chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `IP:PORT` where it serves chunks. For the owner: the address it listens on (reach it
    /// the way you reached the owner).
    pub addr: String,
    /// True for the file owner.
    #[serde(default)]
    pub owner: bool,
    /// `peer` (a ring member), `getter` (a multi-source downloader) or `owner`.
    pub role: String,
    /// Number of chunks it holds.
    pub count: u32,
    /// True when it holds every chunk.
    pub complete: bool,
    /// The chunk ids it holds: the first [`MAX_SOURCE_RANGES`] ranges of them.
    pub chunks: Ranges,
    /// The node id it said in `hello`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The answer to `locate`: the file and who holds which of its chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locations {
    /// The file, or `None` when nothing matched (see `message`).
    pub file: Option<FileInfo>,
    /// Why `file` is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The sources, the owner first, then by address: as many as fit in [`MAX_ANSWER_LEN`],
    /// complete ones and those holding most chunks first.
    #[serde(default)]
    pub sources: Vec<SourceInfo>,
    /// Sources left out to keep the answer under [`MAX_ANSWER_LEN`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_sources: u32,
}

/// A member as `GET /peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `IP:PORT` where it serves chunks.
    pub addr: String,
    /// `peer` or `getter`.
    pub role: String,
    /// The id of the file it is in the swarm of.
    pub file_id: u32,
    /// That file's name.
    pub file: String,
    /// Chunks it holds.
    pub count: u32,
    /// True when it holds every chunk.
    pub complete: bool,
    /// When it registered, in milliseconds since the Unix epoch.
    pub joined_unix_ms: u64,
    /// Milliseconds since it was last heard from.
    pub last_seen_ms: u64,
}

/// Per file: its complete and partial sources among the members, and whether a publisher
/// shares it. One pass over the members, so a listing costs files + members, not their
/// product.
#[derive(Clone, Copy, Default)]
pub(super) struct Counts {
    complete: u32,
    partial: u32,
    pub(super) published: bool,
}

impl Tables {
    /// Whether file `f` is offered: the owner's own, or published by someone now.
    pub(super) fn offered(&self, f: usize) -> bool {
        self.files.get(&f).is_some_and(|e| e.held) || self.publishers_of(f).any(|m| !m.demoted)
    }

    /// [`Counts`] of file `f`: a pass over its members only.
    pub(super) fn counts_of(&self, f: usize) -> Counts {
        let mut c = Counts::default();
        for m in self.members_of(f) {
            c.add(m);
        }
        if self.files.get(&f).is_some_and(|e| e.held) {
            c.held();
        }
        c
    }

    /// [`Counts`] of every file, by index.
    pub(super) fn counts(&self) -> std::collections::BTreeMap<usize, Counts> {
        let mut counts: std::collections::BTreeMap<usize, Counts> =
            self.files.keys().map(|&f| (f, Counts::default())).collect();
        for m in self.members.values() {
            if let Some(c) = counts.get_mut(&m.file) {
                c.add(m);
            }
        }
        for (f, e) in &self.files {
            if e.held
                && let Some(c) = counts.get_mut(f)
            {
                c.held();
            }
        }
        counts
    }
}

impl Counts {
    fn add(&mut self, m: &MemberEntry) {
        if m.demoted {
            return;
        }
        if m.have.is_full() {
            self.complete += 1;
        } else if m.have.count() > 0 {
            self.partial += 1;
        }
        self.published |= m.role == Role::Publisher;
    }

    /// The node holds every chunk of its own files, and offers them.
    fn held(&mut self) {
        self.complete += 1;
        self.published = true;
    }
}

impl Directory {
    fn info(&self, inner: &Tables, file: usize) -> FileInfo {
        file_info(inner, file, inner.counts_of(file))
    }

    /// Every shared file, by id (a published file only while a publisher shares it).
    pub fn list(&self) -> Listing {
        self.listing(None)
    }

    /// The files whose name contains `text`, ignoring case.
    pub fn search(&self, text: &str) -> Listing {
        self.listing(Some(text))
    }

    /// The offered files, those whose name contains `text` if given.
    fn listing(&self, text: Option<&str>) -> Listing {
        let needle = text.map(str::to_lowercase);
        let inner = self.inner();
        let counts = inner.counts();
        let (files, more) = within_budget(
            counts
                .iter()
                .filter(|(_, c)| c.published)
                .filter(|(f, _)| {
                    needle.as_ref().is_none_or(|n| {
                        inner
                            .files
                            .get(f)
                            .is_some_and(|e| e.manifest.name.to_lowercase().contains(n))
                    })
                })
                .map(|(&f, &c)| file_info(&inner, f, c)),
            MAX_ANSWER_LEN - ANSWER_SLACK,
        );
        Listing {
            query: text.map(str::to_string),
            files,
            more,
            node: None,
        }
    }

    /// Where each chunk of the file `key` (an id or a name) is.
    pub fn locate(&self, key: &str) -> Locations {
        if let Some(message) = self.ambiguous(key) {
            return Locations {
                file: None,
                message: Some(message),
                sources: Vec::new(),
                more_sources: 0,
            };
        }
        let Some(file) = self.find(key) else {
            return Locations {
                file: None,
                message: Some(self.no_such_file(key)),
                sources: Vec::new(),
                more_sources: 0,
            };
        };
        let inner = self.inner();
        let Some(entry) = inner.files.get(&file) else {
            return Locations {
                file: None,
                message: Some(format!("no file with id {}", file + 1)),
                sources: Vec::new(),
                more_sources: 0,
            };
        };
        let m = &entry.manifest;
        let mut sources = Vec::new();
        if entry.held {
            sources.push(SourceInfo {
                addr: self.owner_addr.to_string(),
                owner: true,
                role: "owner".into(),
                count: m.chunk_count(),
                complete: true,
                chunks: Ranges(match m.chunk_count() {
                    0 => Vec::new(),
                    n => vec![[0, n - 1]],
                }),
                node: None,
            });
        }
        let mut members: Vec<&MemberEntry> =
            inner.members_of(file).filter(|m| !m.demoted).collect();
        // Most useful first, so those are the ones that fit; a source is built only if it
        // may fit, so the cost is bounded by the answer, not by the members.
        members.sort_by_key(|x| (std::cmp::Reverse(x.have.count()), x.addr));
        let budget = MAX_ANSWER_LEN - ANSWER_SLACK - 2 * 1024;
        let (mut listed, mut used, mut more_sources) = (Vec::new(), 0usize, 0u32);
        for x in members {
            if used < budget {
                let source = SourceInfo {
                    addr: x.addr.to_string(),
                    owner: false,
                    role: role_name(x.role).into(),
                    count: x.have.count(),
                    complete: x.have.is_full(),
                    chunks: x.have.to_ranges_capped(MAX_SOURCE_RANGES),
                    node: x.node.clone(),
                };
                let len = serde_json::to_vec(&source).map_or(usize::MAX, |v| v.len() + 1);
                if used.saturating_add(len) <= budget {
                    used += len;
                    listed.push(source);
                    continue;
                }
                used = budget;
            }
            more_sources += 1;
        }
        listed.sort_by_key(|x| x.addr.parse::<SocketAddr>().ok());
        sources.extend(listed);
        Locations {
            file: Some(self.info(&inner, file)),
            message: None,
            sources,
            more_sources,
        }
    }

    /// A clear answer for a file that is not shared: the first [`MAX_NAMED_FILES`] offered
    /// files are named, and how many more there are.
    pub fn no_such_file(&self, key: &str) -> String {
        if let Some(name) = self.gone(key) {
            return format!(
                "every publisher of {name:?} has left: no one serves it now (it is no longer listed)"
            );
        }
        let shared = self.offered_names(true);
        if key.trim().parse::<u64>().is_ok() {
            // Trimmed, the key is digits only: whitespace around them is not repeated raw.
            format!("no file with id {}; the owner shares: {shared}", key.trim())
        } else {
            format!("no file named {key:?}; the owner shares: {shared}")
        }
    }

    /// The offered files' names (with their ids if `ids`), the first [`MAX_NAMED_FILES`]
    /// of them and how many more: `1 a.bin, 2 b.bin`, or `nothing now`.
    pub fn offered_names(&self, ids: bool) -> String {
        let inner = self.inner();
        let offered: Vec<usize> = inner
            .files
            .keys()
            .copied()
            .filter(|&f| inner.offered(f))
            .collect();
        if offered.is_empty() {
            return "nothing now".into();
        }
        let mut names = offered
            .iter()
            .take(MAX_NAMED_FILES)
            .filter_map(|f| {
                let name = crate::manifest::display_name(&inner.files.get(f)?.manifest.name);
                Some(if ids {
                    format!("{} {name}", f + 1)
                } else {
                    name.to_string()
                })
            })
            .collect::<Vec<_>>()
            .join(", ");
        if offered.len() > MAX_NAMED_FILES {
            names.push_str(&format!(
                " and {} more (peer list)",
                offered.len() - MAX_NAMED_FILES
            ));
        }
        names
    }

    /// Every member, by address.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let inner = self.inner();
        let mut out: Vec<PeerInfo> = inner
            .members
            .values()
            .map(|x| PeerInfo {
                addr: x.addr.to_string(),
                role: role_name(x.role).into(),
                file_id: u32::try_from(x.file + 1).unwrap_or(u32::MAX),
                file: inner
                    .files
                    .get(&x.file)
                    .map(|e| e.manifest.name.clone())
                    .unwrap_or_default(),
                count: x.have.count(),
                complete: x.have.is_full(),
                // Float to integer casts saturate (and NaN is 0).
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                joined_unix_ms: (x.joined * 1000.0) as u64,
                last_seen_ms: u64::try_from(x.last_seen.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        out.sort_by(|a, b| (a.file_id, &a.addr).cmp(&(b.file_id, &b.addr)));
        out
    }
}

/// Files a "no such file" answer names at most.
pub const MAX_NAMED_FILES: usize = 20;

/// A file's listing entry. `file` must be held.
pub(super) fn file_info(inner: &Tables, file: usize, c: Counts) -> FileInfo {
    let m = &inner.files[&file].manifest;
    FileInfo {
        id: u32::try_from(file + 1).unwrap_or(u32::MAX),
        name: m.name.clone(),
        size: m.size,
        chunk_size: m.chunk_size,
        chunks: m.chunk_count(),
        hash: m.hash.to_string(),
        complete_sources: c.complete,
        partial_sources: c.partial,
    }
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Peer | Role::Neighbour | Role::Joiner => "peer",
        Role::Getter => "getter",
        Role::Query => "query",
        Role::Publisher => "publisher",
    }
}
