//! `MessageCodec`: frames [`Message`]s on a byte stream; see the module docs of `protocol`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::error::ProtocolError;
use super::limits::MAX_HEADER_LEN;
use super::message::Message;

/// The largest message, other than a chunk, whose buffer room a connection keeps. A buffer
/// that grew for a larger one (a 256 KiB header, a manifest, an answer) is given back once
/// the message is through, so an idle connection costs at most a chunk's room, not the
/// largest message it ever carried. The codec flags such a frame (it owns the threshold);
/// the connection trims its buffers after it.
pub const KEEP_BUFFER: usize = 64 * 1024;

/// Length of the header-length field inside a frame.
const HEADER_LEN_FIELD: usize = 4;

/// Decodes and encodes [`Message`] frames, with a hard limit on body size.
///
/// The limit starts at whatever the owner of the connection sets: a server that only expects
/// small messages allows no body at all, a client allows a manifest until it has one and then
/// one chunk.
#[derive(Debug)]
pub struct MessageCodec {
    inner: LengthDelimitedCodec,
    max_body: usize,
    /// The body limit of directory answers (`files`, `locations`): 0 unless this side asks.
    max_answer: usize,
    /// A frame other than a chunk, larger than [`KEEP_BUFFER`], went
    /// through since [`MessageCodec::take_big_frame`] was last called.
    big_frame: bool,
    /// Bytes of the frame in progress already taken from the buffer (its length prefix).
    partial: usize,
}

impl MessageCodec {
    /// A codec accepting bodies of at most `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        let mut c = Self {
            inner: LengthDelimitedCodec::new(),
            max_body: 0,
            max_answer: 0,
            big_frame: false,
            partial: 0,
        };
        c.set_max_body(max_body);
        c
    }

    /// Changes the body limit (e.g. from manifest size to chunk size once a manifest is known).
    pub fn set_max_body(&mut self, max_body: usize) {
        self.max_body = max_body;
        self.inner.set_max_frame_length(self.max_frame_len());
    }

    /// Accepts `files` and `locations` bodies of up to `max_answer` bytes (a client of the
    /// owner's directory); other bodies stay under the body limit.
    pub fn set_max_answer(&mut self, max_answer: usize) {
        self.max_answer = max_answer;
        self.inner.set_max_frame_length(self.max_frame_len());
    }

    /// The body limit.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The body limit of directory answers.
    pub fn max_answer(&self) -> usize {
        self.max_answer
    }

    /// The longest frame accepted: header-length field + header + body.
    pub fn max_frame_len(&self) -> usize {
        HEADER_LEN_FIELD + MAX_HEADER_LEN + self.max_body.max(self.max_answer)
    }

    /// Whether a frame other than a chunk, larger than [`KEEP_BUFFER`],
    /// was decoded or encoded since the last call: the buffer it went through grew for it,
    /// and should be given back (chunks come again and again, so theirs is kept).
    pub fn take_big_frame(&mut self) -> bool {
        std::mem::take(&mut self.big_frame)
    }

    fn note_frame(&mut self, len: usize, msg: &Message) {
        if len > KEEP_BUFFER && !matches!(msg, Message::Chunk { .. }) {
            self.big_frame = true;
        }
    }
}

impl Decoder for MessageCodec {
    type Item = Message;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        // Check the declared length before the inner codec reserves room for it. Only at a
        // frame boundary: once the inner codec has taken the length prefix (`partial` > 0),
        // `src` starts inside the frame and its first bytes are no length.
        if self.partial == 0 && src.len() >= 4 {
            let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
            let max = self.max_frame_len();
            if len > max {
                return Err(ProtocolError::FrameTooLarge { len, max });
            }
        }
        let before = src.len();
        let Some(mut frame) = self.inner.decode(src)? else {
            self.partial += before - src.len();
            return Ok(None);
        };
        self.partial = 0;
        let frame_len = frame.len();
        if frame.len() < HEADER_LEN_FIELD {
            return Err(ProtocolError::FrameTooShort { len: frame.len() });
        }
        let header_len = frame.get_u32() as usize;
        if header_len > MAX_HEADER_LEN {
            return Err(ProtocolError::HeaderTooLarge {
                len: header_len,
                max: MAX_HEADER_LEN,
            });
        }
        if header_len > frame.len() {
            return Err(ProtocolError::HeaderPastFrame {
                header: header_len,
                frame: frame.len(),
            });
        }
        let body_len = frame.len() - header_len;
        if body_len > self.max_body.max(self.max_answer) {
            return Err(ProtocolError::BodyTooLarge {
                len: body_len,
                max: self.max_body.max(self.max_answer),
            });
        }
        let header = frame.split_to(header_len);
        let body = frame.freeze();
        let mut msg = parse_header(&header)?;
        let max = match msg {
            Message::Files { .. } | Message::Locations { .. } => self.max_answer,
            _ => self.max_body,
        };
        if body_len > max {
            return Err(ProtocolError::BodyTooLarge { len: body_len, max });
        }
        attach_body(&mut msg, body)?;
        self.note_frame(frame_len, &msg);
        Ok(Some(msg))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        match self.decode(buf)? {
            Some(msg) => Ok(Some(msg)),
            None if buf.is_empty() && self.partial == 0 => Ok(None),
            None => Err(ProtocolError::ResetMidFrame(buf.len() + self.partial)),
        }
    }
}

/// Puts `body` into the message that carries one, after checking the length its header
/// declared; any other message must come without a body.
fn attach_body(msg: &mut Message, body: Bytes) -> Result<(), ProtocolError> {
    let kind = msg.kind();
    match msg {
        Message::Chunk { len, data, .. }
        | Message::Welcome {
            len,
            manifest: data,
            ..
        }
        | Message::Publish {
            len,
            manifest: data,
        }
        | Message::Files { len, body: data }
        | Message::Locations { len, body: data } => {
            if *len != body.len() as u64 {
                return Err(ProtocolError::BodyLength {
                    kind,
                    declared: *len,
                    actual: body.len(),
                });
            }
            *data = body;
        }
        _ if !body.is_empty() => {
            return Err(ProtocolError::UnexpectedBody {
                kind,
                len: body.len(),
            });
        }
        _ => {}
    }
    Ok(())
}

fn parse_header(header: &[u8]) -> Result<Message, ProtocolError> {
    serde_json::from_slice(header).map_err(|e| {
        let text = e.to_string();
        // serde names an unknown tag "unknown variant `x`, expected one of ..."
        match text.strip_prefix("unknown variant `") {
            Some(rest) => {
                ProtocolError::UnknownMessage(rest.split('`').next().unwrap_or("").to_string())
            }
            // serde quotes some of the header's own strings raw ("unknown field `x`").
            None => ProtocolError::MalformedHeader(crate::manifest::display_cut(&text, 256)),
        }
    })
}

impl Encoder<Message> for MessageCodec {
    type Error = ProtocolError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let body: &[u8] = msg.body().map_or(&[], |b| b.as_ref());
        dst.reserve(4 + HEADER_LEN_FIELD + body.len());
        let frame_len = encode_head(&msg, dst)?;
        self.note_frame(frame_len, &msg);
        dst.put_slice(body);
        Ok(())
    }
}

/// Writes the frame of `msg` up to its body (length prefix, header length, header) into
/// `dst`; the body follows, from the encoder or, for a large body, written straight from its
/// shared buffer instead of copied (see `Connection::send`). Returns the frame length.
///
/// # Errors
///
/// A header over [`MAX_HEADER_LEN`], or a frame over `u32::MAX` bytes.
pub fn encode_head(msg: &Message, dst: &mut BytesMut) -> Result<usize, ProtocolError> {
    let header = serde_json::to_vec(msg)
        .map_err(|e| ProtocolError::MalformedHeader(format!("bug: cannot encode: {e}")))?;
    if header.len() > MAX_HEADER_LEN {
        return Err(ProtocolError::HeaderTooLarge {
            len: header.len(),
            max: MAX_HEADER_LEN,
        });
    }
    let body_len = msg.body().map_or(0, bytes::Bytes::len);
    let frame_len = HEADER_LEN_FIELD + header.len() + body_len;
    let too_large = || ProtocolError::FrameTooLarge {
        len: frame_len,
        max: u32::MAX as usize,
    };
    let frame_len32 = u32::try_from(frame_len).map_err(|_| too_large())?;
    let header_len32 = u32::try_from(header.len()).map_err(|_| too_large())?;
    dst.reserve(4 + HEADER_LEN_FIELD + header.len());
    dst.put_u32(frame_len32);
    dst.put_u32(header_len32);
    dst.put_slice(&header);
    Ok(frame_len)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
#[path = "codec_tests.rs"]
mod tests;
