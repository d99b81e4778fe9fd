//! Troubles in words a person understands.

use crate::net::Endpoint;

/// An error in words: its message and causes, without repeats.
pub(crate) fn words(e: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !out.iter().any(|o| o.contains(&s)) {
            out.push(s);
        }
    }
    out.join(": ")
}

/// Why the directory did not answer, as a person would say it.
pub(crate) fn directory_trouble(directory: &Endpoint, e: &anyhow::Error) -> String {
    let text = words(e);
    let lower = text.to_lowercase();
    if let Some((_, why)) = text.split_once("refused the connection: ") {
        format!("The directory {directory} refused this app: {why}. Trying again.")
    } else if lower.contains("connection refused") {
        format!(
            "The directory {directory} is not answering: nothing listens there (is it running?). Trying again."
        )
    } else if lower.contains("timed out") || lower.contains("unreachable") {
        format!("The directory {directory} cannot be reached from here ({text}). Trying again.")
    } else {
        format!("The directory {directory} did not answer: {text}. Trying again.")
    }
}
