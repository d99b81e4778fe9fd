//! `peer list|search|locate OWNER ...`: ask the owner's directory and print the answer as a
//! table (or JSON with `--json`).
//!
//! - the query on the wire and its parsed answer are the directory's client
//!   ([`crate::directory::client`]: `ask`, `find_files`, `locate_file`);
//! - `table`: the answers as text ([`files_table`], [`locations_table`]);
//! - this file: the three commands, which fetch, format and print.

mod table;

use serde::Serialize;

use std::sync::Arc;

use crate::auth::Secret;
use crate::cli::print_out;
use crate::directory::Listing;
use crate::key::NodeKey;
use crate::net::Endpoint;
use crate::secure::Identity;

use crate::directory::client::{find_files, locate_file};
pub use table::{files_table, locations_table};

/// `peer list OWNER`.
///
/// # Errors
///
/// As [`find_files`], or stdout cannot be written.
pub async fn list(
    owner: Endpoint,
    json: bool,
    secret: Option<Arc<Secret>>,
) -> anyhow::Result<bool> {
    let listing = find_files(&owner, None, &anonymous(secret)).await?;
    print_listing(&listing, json, || "the owner shares no file\n".into())?;
    Ok(true)
}

/// `peer search OWNER TEXT`.
///
/// # Errors
///
/// As [`find_files`], or stdout cannot be written.
pub async fn search(
    owner: Endpoint,
    text: String,
    json: bool,
    secret: Option<Arc<Secret>>,
) -> anyhow::Result<bool> {
    let listing = find_files(&owner, Some(text.clone()), &anonymous(secret)).await?;
    print_listing(&listing, json, || {
        format!("no file name contains {text:?} (`peer list {owner}` shows every file)\n")
    })?;
    Ok(true)
}

/// `peer locate OWNER FILE`.
///
/// # Errors
///
/// As [`locate_file`], or stdout cannot be written.
pub async fn locate(
    owner: Endpoint,
    file: String,
    json: bool,
    secret: Option<Arc<Secret>>,
) -> anyhow::Result<bool> {
    let loc = locate_file(&owner, file, &anonymous(secret)).await?;
    if json {
        print_json(&loc)?;
    } else {
        print_out(&locations_table(&loc))?;
    }
    Ok(true)
}

/// A query keeps no identity: a fresh key, in the swarm of `secret`.
fn anonymous(secret: Option<Arc<Secret>>) -> Identity {
    Identity::new(NodeKey::generate(), secret.as_deref().cloned())
}

/// Prints `listing` as pretty JSON, as a file table, or, when it holds no file, `empty()`.
fn print_listing(
    listing: &Listing,
    json: bool,
    empty: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(listing)?;
    } else if listing.files.is_empty() {
        print_out(&empty())?;
    } else {
        print_out(&files_table(&listing.files, listing.more))?;
    }
    Ok(())
}

/// Prints `value` as pretty JSON and a newline.
fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    print_out(&format!("{}\n", serde_json::to_string_pretty(value)?))?;
    Ok(())
}
