//! `MessageCodec`: frames [`Message`]s on a byte stream; see the module docs of `protocol`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::{MAX_HEADER_LEN, Message, ProtocolError};

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
    /// A frame other than a chunk, larger than [`super::KEEP_BUFFER`], went
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

    /// Whether a frame other than a chunk, larger than [`super::KEEP_BUFFER`],
    /// was decoded or encoded since the last call: the buffer it went through grew for it,
    /// and should be given back (chunks come again and again, so theirs is kept).
    pub fn take_big_frame(&mut self) -> bool {
        std::mem::take(&mut self.big_frame)
    }

    fn note_frame(&mut self, len: usize, msg: &Message) {
        if len > super::KEEP_BUFFER && !matches!(msg, Message::Chunk { .. }) {
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
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::chunkset::Ranges;
    use crate::protocol::{PROTOCOL_VERSION, Role};

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Peer,
                file: Some("a.bin".into()),
                have: Ranges(vec![[0, 3]]),
                port: Some(5001),
                nonce: Some("ab".repeat(32)),
                node: Some("0123456789abcdef".into()),
            },
            Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Neighbour,
                file: None,
                have: Ranges::default(),
                port: None,
                nonce: None,
                node: None,
            },
            Message::welcome(Ranges(vec![[1, 1]]), Bytes::from_static(b"{\"m\":1}")),
            Message::Have {
                chunks: Ranges(vec![[0, 9], [12, 12]]),
            },
            Message::Orphans {
                chunks: Ranges::default(),
            },
            Message::request(7),
            Message::chunk(7, Bytes::from(vec![42u8; 1000])),
            Message::chunk(0, Bytes::new()),
            Message::Request {
                chunk: 3,
                spare: true,
            },
            Message::List,
            Message::Search {
                text: "iso \"x\"".into(),
            },
            Message::Locate { file: "2".into() },
            Message::files(Bytes::from_static(b"{\"files\":[]}")),
            Message::locations(Bytes::from_static(b"{\"file\":null}")),
            Message::SourceLost {
                addr: "127.0.0.1:9".into(),
                bad_chunks: false,
            },
            Message::SourceLost {
                addr: "127.0.0.1:9".into(),
                bad_chunks: true,
            },
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Cancel { chunk: 4 },
            Message::Challenge {
                nonce: "01".repeat(32),
                proof: "02".repeat(32),
            },
            Message::Proof {
                proof: "03".repeat(32),
            },
            Message::Error {
                message: "bye".into(),
            },
        ]
    }

    fn encode(msg: Message) -> BytesMut {
        let mut buf = BytesMut::new();
        MessageCodec::new(4096).encode(msg, &mut buf).unwrap();
        buf
    }

    fn raw_frame(header: &[u8], body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u32((4 + header.len() + body.len()) as u32);
        buf.put_u32(header.len() as u32);
        buf.put_slice(header);
        buf.put_slice(body);
        buf
    }

    #[test]
    fn every_message_round_trips() {
        for msg in all_messages() {
            let mut buf = encode(msg.clone());
            let mut codec = MessageCodec::new(4096);
            codec.set_max_answer(4096);
            let got = codec.decode(&mut buf).unwrap();
            assert_eq!(got, Some(msg));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut codec = MessageCodec::new(4096);
        codec.set_max_answer(4096);
        for msg in all_messages() {
            let bytes = encode(msg.clone());
            let mut buf = BytesMut::new();
            let mut out = None;
            for (i, b) in bytes.iter().enumerate() {
                buf.put_u8(*b);
                out = codec.decode(&mut buf).unwrap();
                if i + 1 < bytes.len() {
                    assert!(out.is_none(), "decoded early at byte {i}");
                }
            }
            assert_eq!(out, Some(msg));
        }
    }

    #[test]
    fn oversized_frame_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = MessageCodec::new(100).decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "frame of 4294967295 bytes exceeds the limit of {} bytes",
                4 + MAX_HEADER_LEN + 100
            )
        );
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn malformed_inputs_give_specific_errors() {
        let mut codec = MessageCodec::new(100);
        let mut buf = raw_frame(b"not json", b"");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::MalformedHeader(_))
        ));
        let mut buf = raw_frame(br#"{"type":"gossip"}"#, b"");
        match codec.decode(&mut buf) {
            Err(ProtocolError::UnknownMessage(t)) => assert_eq!(t, "gossip"),
            other => panic!("{other:?}"),
        }
        let mut buf = raw_frame(br#"{"type":"chunk","chunk":1,"len":10}"#, b"short");
        assert_eq!(
            codec.decode(&mut buf).unwrap_err().to_string(),
            "chunk message declares 10 body bytes but carries 5"
        );
        let mut buf = raw_frame(br#"{"type":"request","chunk":1}"#, b"extra");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::UnexpectedBody { .. })
        ));
        let mut buf = BytesMut::new();
        buf.put_u32(2);
        buf.put_u16(0);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::FrameTooShort { len: 2 })
        ));
        let mut buf = BytesMut::new();
        buf.put_u32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::HeaderPastFrame { .. })
        ));
        let mut buf = BytesMut::new();
        buf.put_u32(8);
        buf.put_u32(MAX_HEADER_LEN as u32 + 1);
        buf.put_u32(0);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::HeaderTooLarge { .. })
        ));
    }

    #[test]
    fn body_over_limit_is_refused() {
        let mut buf = encode(Message::chunk(1, Bytes::from(vec![0u8; 200])));
        assert!(matches!(
            MessageCodec::new(100).decode(&mut buf),
            Err(ProtocolError::BodyTooLarge { len: 200, max: 100 })
        ));
    }

    #[test]
    fn a_frame_split_after_its_length_prefix_gets_the_same_error() {
        // Regression (fuzz target frame_decoder): once the inner codec had taken a frame's
        // length prefix, the next 4 bytes were checked as if they were one, so a 2-byte frame
        // arriving in two pieces was refused as a frame of 1713729024 bytes.
        let too_short = [0, 0, 0, 2, 0x66, 0x25, 0x6e, 0];
        let mut too_large_header = BytesMut::new();
        too_large_header.put_u32(8);
        too_large_header.put_u32(u32::MAX);
        too_large_header.put_u32(0);
        for stream in [&too_short[..], &too_large_header[..]] {
            let mut whole = BytesMut::from(stream);
            let expected = MessageCodec::new(64).decode(&mut whole).unwrap_err();
            let mut codec = MessageCodec::new(64);
            let mut buf = BytesMut::from(&stream[..4]);
            assert!(codec.decode(&mut buf).unwrap().is_none());
            buf.extend_from_slice(&stream[4..]);
            let got = codec.decode(&mut buf).unwrap_err();
            assert_eq!(got.to_string(), expected.to_string());
        }
    }

    #[test]
    fn eof_mid_frame_is_an_error_and_clean_eof_is_not() {
        let mut codec = MessageCodec::new(100);
        let mut empty = BytesMut::new();
        assert!(codec.decode_eof(&mut empty).unwrap().is_none());
        let mut partial = encode(Message::request(1));
        partial.truncate(6);
        assert!(matches!(
            codec.decode_eof(&mut partial),
            Err(ProtocolError::ResetMidFrame(6))
        ));
    }

    /// Directory answers may be larger than a chunk, but only where the codec accepts them;
    /// other bodies stay under the body limit.
    #[test]
    fn answers_have_their_own_limit() {
        let answer = Message::locations(Bytes::from(vec![b'x'; 500]));
        let chunk = Message::chunk(1, Bytes::from(vec![0u8; 500]));
        let mut codec = MessageCodec::new(1);
        let err = codec.decode(&mut encode(answer.clone())).unwrap_err();
        // What `peer get` met on a small file before answers had their own limit.
        assert_eq!(
            err.to_string(),
            "body of 500 bytes exceeds the limit of 1 bytes"
        );
        codec.set_max_answer(1024);
        assert_eq!(
            codec.decode(&mut encode(answer.clone())).unwrap(),
            Some(answer)
        );
        let err = codec.decode(&mut encode(chunk)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("body of 500 bytes exceeds the limit of 1 bytes"),
            "{err}"
        );
    }
}
