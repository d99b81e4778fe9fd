use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, duplex};

use super::*;
use crate::key::NodeKey;

fn boxed(s: DuplexStream) -> BoxStream {
    Box::new(s)
}

async fn pair(
    c: &Identity,
    s: &Identity,
    pin: Option<&NodeId>,
) -> (
    Result<(SecureStream, NodeId), HandshakeError>,
    Result<(SecureStream, NodeId), HandshakeError>,
) {
    let (a, b) = duplex(1 << 20);
    tokio::join!(client(boxed(a), c, pin), server(boxed(b), s))
}

#[test]
fn the_prologue_names_this_version() {
    assert_eq!(
        PROLOGUE,
        format!("ringswarm protocol {PROTOCOL_VERSION}").as_bytes()
    );
}

#[tokio::test]
async fn both_sides_prove_their_keys_and_bytes_cross_sealed() {
    let (c, s) = (Identity::ephemeral(), Identity::ephemeral());
    let (cr, sr) = pair(&c, &s, Some(&s.id())).await;
    let ((mut cs, server_id), (mut ss, client_id)) = (cr.unwrap(), sr.unwrap());
    assert_eq!(server_id, s.id());
    assert_eq!(client_id, c.id());
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let send = async {
        cs.write_all(&data).await.unwrap();
        cs.shutdown().await.unwrap();
    };
    let recv = async {
        let mut got = Vec::new();
        ss.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(send, recv);
    assert_eq!(got, data);
}

#[tokio::test]
async fn a_pinned_key_that_differs_is_refused() {
    let (c, s) = (Identity::ephemeral(), Identity::ephemeral());
    let other = NodeKey::generate().id();
    let (cr, sr) = pair(&c, &s, Some(&other)).await;
    let e = cr.err().unwrap();
    assert!(matches!(e, HandshakeError::WrongKey { .. }), "{e}");
    assert!(e.to_string().contains(&other.to_string()), "{e}");
    // The client never proved its own key.
    assert!(sr.is_err());
}

#[tokio::test]
async fn the_shared_secret_is_a_pre_shared_key() {
    let with = |s| Identity::new(NodeKey::generate(), Some(Secret::new(s).unwrap()));
    // Same secret: fine.
    let (cr, sr) = pair(&with("x"), &with("x"), None).await;
    assert!(cr.is_ok() && sr.is_ok());
    // Wrong secret: refused in one line, named.
    let (cr, sr) = pair(&with("x"), &with("y"), None).await;
    let e = cr.err().unwrap().to_string();
    assert!(e.contains("wrong shared secret"), "{e}");
    assert!(sr.is_err());
    // None where the swarm has one, and the other way round.
    let (cr, _) = pair(&Identity::ephemeral(), &with("y"), None).await;
    let e = cr.err().unwrap().to_string();
    assert!(e.contains("needs its shared secret"), "{e}");
    let (cr, _) = pair(&with("y"), &Identity::ephemeral(), None).await;
    let e = cr.err().unwrap().to_string();
    assert!(e.contains("has no shared secret"), "{e}");
}

#[tokio::test]
async fn an_old_plaintext_node_is_told_the_version_it_needs() {
    // An old client's hello frame: the server answers with a plaintext error frame.
    let (mut a, b) = duplex(1 << 16);
    let srv = tokio::spawn(async move { server(boxed(b), &Identity::ephemeral()).await });
    let mut hello = BytesMut::new();
    MessageCodec::new(0)
        .encode(
            Message::Error {
                message: "pretend hello".into(),
            },
            &mut hello,
        )
        .unwrap();
    a.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    a.read_to_end(&mut answer).await.unwrap();
    let mut buf = BytesMut::from(&answer[..]);
    let said = tokio_util::codec::Decoder::decode(&mut MessageCodec::new(0), &mut buf).unwrap();
    match said {
        Some(Message::Error { message }) => {
            assert!(message.contains("protocol 2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(srv.await.unwrap(), Err(HandshakeError::Old(_))));

    // An old server answers our first line with its own error frame: the client says so.
    let (a, mut b) = duplex(1 << 16);
    let old = tokio::spawn(async move {
        let mut first = [0u8; 8];
        b.read_exact(&mut first).await.unwrap();
        let mut out = BytesMut::new();
        MessageCodec::new(0)
            .encode(
                Message::Error {
                    message: "frame of 1380535879 bytes exceeds the limit".into(),
                },
                &mut out,
            )
            .unwrap();
        b.write_all(&out).await.unwrap();
        b.shutdown().await.unwrap();
    });
    let e = client(boxed(a), &Identity::ephemeral(), None)
        .await
        .err()
        .unwrap()
        .to_string();
    old.await.unwrap();
    assert!(
        e.contains("older ringswarm protocol") && e.contains("exceeds the limit"),
        "{e}"
    );
}

/// What a relay does to the client's records (frames after the handshake's two).
#[derive(Clone, Copy, Debug)]
enum Mangle {
    FlipBit,
    Replay,
    Reorder,
    Truncate,
}

/// Forwards `from` to `to`, reframing after the first line, applying `mangle` at the
/// second record.
async fn relay(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, mangle: Mangle) {
    let mut line = Vec::new();
    loop {
        let b = from.read_u8().await.unwrap();
        line.push(b);
        if b == b'\n' {
            break;
        }
    }
    to.write_all(&line).await.unwrap();
    let mut frames = Vec::new();
    while let Ok(len) = from.read_u16().await {
        let mut f = vec![0u8; usize::from(len)];
        from.read_exact(&mut f).await.unwrap();
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&f);
        frames.push(framed);
        // msg 1, msg 3, then records: act on records 1 and 2 (frames 3 and 4).
        if frames.len() < 3 {
            to.write_all(frames.last().unwrap()).await.unwrap();
            continue;
        }
        if frames.len() == 3 {
            continue;
        }
        let (r1, r2) = (&frames[2], &frames[3]);
        match mangle {
            Mangle::FlipBit => {
                let mut bad = r1.clone();
                bad[10] ^= 0x10;
                to.write_all(&bad).await.unwrap();
            }
            Mangle::Replay => {
                to.write_all(r1).await.unwrap();
                to.write_all(r1).await.unwrap();
            }
            Mangle::Reorder => {
                to.write_all(r2).await.unwrap();
                to.write_all(r1).await.unwrap();
            }
            Mangle::Truncate => {
                to.write_all(&r1[..r1.len() / 2]).await.unwrap();
                to.shutdown().await.unwrap();
                return;
            }
        }
        break;
    }
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn a_changed_replayed_reordered_or_cut_record_closes_the_stream() {
    for mangle in [
        Mangle::FlipBit,
        Mangle::Replay,
        Mangle::Reorder,
        Mangle::Truncate,
    ] {
        let (c, s) = (Identity::ephemeral(), Identity::ephemeral());
        let (a, a_far) = duplex(1 << 20);
        let (b_far, b) = duplex(1 << 20);
        let (a_far_r, mut a_far_w) = tokio::io::split(a_far);
        let (mut b_far_r, b_far_w) = tokio::io::split(b_far);
        tokio::spawn(relay(a_far_r, b_far_w, mangle));
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut b_far_r, &mut a_far_w).await;
        });
        let (cr, sr) = tokio::join!(client(boxed(a), &c, None), server(boxed(b), &s));
        let (mut cs, mut ss) = (cr.unwrap().0, sr.unwrap().0);
        // Two records, each a recognisable pattern.
        cs.write_all(&[1u8; 1000]).await.unwrap();
        cs.flush().await.unwrap();
        cs.write_all(&[2u8; 1000]).await.unwrap();
        cs.flush().await.unwrap();
        let mut got = Vec::new();
        let e = ss.read_to_end(&mut got).await.unwrap_err();
        match mangle {
            Mangle::Truncate => {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof,
                    "{mangle:?}: {e}"
                );
                assert!(got.is_empty(), "{mangle:?}");
            }
            Mangle::Replay => {
                assert_eq!(e.to_string(), TAMPERED, "{mangle:?}");
                assert_eq!(
                    got,
                    vec![1u8; 1000],
                    "{mangle:?}: only the first copy counts"
                );
            }
            _ => {
                assert_eq!(e.to_string(), TAMPERED, "{mangle:?}");
                assert!(
                    got.is_empty(),
                    "{mangle:?}: nothing after a bad record is believed"
                );
            }
        }
        // Every later read fails too.
        assert!(ss.read_u8().await.is_err(), "{mangle:?}");
    }
}

#[tokio::test]
async fn small_writes_and_small_reads_keep_every_byte_in_order() {
    let (c, s) = (Identity::ephemeral(), Identity::ephemeral());
    let (cr, sr) = pair(&c, &s, None).await;
    let (mut cs, mut ss) = (cr.unwrap().0, sr.unwrap().0);
    let send = async {
        for i in 0..2000u32 {
            // A frame head and a body, as the codec writes them, and now and then a flush.
            let head = i.to_be_bytes();
            let body = vec![(i % 251) as u8; (i as usize * 37) % 3000];
            let bufs = [std::io::IoSlice::new(&head), std::io::IoSlice::new(&body)];
            let mut done = 0;
            while done < head.len() + body.len() {
                let n = if done == 0 {
                    cs.write_vectored(&bufs).await.unwrap()
                } else if done < head.len() {
                    cs.write(&head[done..]).await.unwrap()
                } else {
                    cs.write(&body[done - head.len()..]).await.unwrap()
                };
                done += n;
            }
            assert_eq!(cs.write(&[]).await.unwrap(), 0);
            if i % 7 == 0 {
                cs.flush().await.unwrap();
            }
        }
        cs.shutdown().await.unwrap();
    };
    let recv = async {
        let mut got = Vec::new();
        let mut byte = [0u8; 3];
        loop {
            let n = ss.read(&mut byte).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&byte[..n]);
        }
        got
    };
    let ((), got) = tokio::join!(send, recv);
    let mut want = Vec::new();
    for i in 0..2000u32 {
        want.extend_from_slice(&i.to_be_bytes());
        want.extend(std::iter::repeat_n(
            (i % 251) as u8,
            (i as usize * 37) % 3000,
        ));
    }
    assert!(
        got == want,
        "{} bytes received of {}",
        got.len(),
        want.len()
    );
}

#[test]
fn an_identity_never_shows_its_keys() {
    let key = NodeKey::generate();
    let private = blake3::Hash::from_bytes(*key.private())
        .to_hex()
        .to_string();
    let secret = Secret::new("open sesame").unwrap();
    let psk = blake3::Hash::from_bytes(secret.psk()).to_hex().to_string();
    let shown = format!("{:?}", Identity::new(key, Some(secret)));
    assert!(shown.contains("secret: true"), "{shown}");
    assert!(
        !shown.contains(&private[..12]) && !shown.contains(&psk[..12]),
        "{shown}"
    );
}

/// What is written goes out without a flush, as on a plain socket (a writer that never
/// flushes, like a test writing a hello by hand, is still heard).
#[tokio::test]
async fn a_write_arrives_without_a_flush() {
    let (c, s) = (Identity::ephemeral(), Identity::ephemeral());
    let (cr, sr) = pair(&c, &s, None).await;
    let (mut cs, mut ss) = (cr.unwrap().0, sr.unwrap().0);
    cs.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), ss.read_exact(&mut got));
    read.await
        .expect("nothing arrived without a flush")
        .unwrap();
    assert_eq!(&got, b"hello");
    drop(cs);
}
