//! Why a frame or a conversation failed ([`ProtocolError`]).

use super::limits::PROTOCOL_VERSION;
use super::message::Message;

/// Errors of decoding and encoding frames, and of the conversation they carry.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is too short for its header length field")]
    FrameTooShort { len: usize },
    #[error("header length {header} exceeds the frame's {frame} bytes")]
    HeaderPastFrame { header: usize, frame: usize },
    #[error("unknown message type \"{}\"", crate::manifest::display_cut(.0, 64))]
    UnknownMessage(String),
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    #[error("{kind} message declares {declared} body bytes but carries {actual}")]
    BodyLength {
        kind: &'static str,
        declared: u64,
        actual: usize,
    },
    #[error("{kind} message must not carry a body ({len} bytes found)")]
    UnexpectedBody { kind: &'static str, len: usize },
    #[error("connection reset by peer mid-frame ({0} bytes buffered)")]
    ResetMidFrame(usize),
    #[error("unsupported protocol version {got}; this build speaks version {PROTOCOL_VERSION}")]
    Version { got: u32 },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("remote closed the connection: {0}")]
    Remote(String),
    #[error("unexpected {got} message while {doing}")]
    Unexpected {
        got: &'static str,
        doing: &'static str,
    },
    #[error("internal error: {0}")]
    Bug(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// `msg` (`None`: the end of the stream) was not expected while `doing`.
    pub fn unexpected(msg: Option<&Message>, doing: &'static str) -> Self {
        Self::Unexpected {
            got: msg.map_or("end of stream", Message::kind),
            doing,
        }
    }
}
