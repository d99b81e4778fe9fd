//! The codec's tests: every message round trips, split frames, malformed input, size limits.

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
            node: Some("0123456789abcdef".into()),
        },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Neighbour,
            file: None,
            have: Ranges::default(),
            port: None,
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
