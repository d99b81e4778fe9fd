//! The connection's tests: remote errors shown escaped, buffers shrunk after a large message.

use bytes::Bytes;

use super::*;

async fn pair() -> (Connection, Connection) {
    let listener = crate::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (
        Connection::new(client.unwrap(), crate::protocol::MAX_MANIFEST_LEN),
        Connection::new(server.unwrap().0, 0),
    )
}

#[test]
fn remote_errors_are_shown_escaped_and_cut() {
    assert_eq!(remote_text("no such file"), "no such file");
    assert_eq!(
        remote_text("evil\x1b[2J\u{202e}txt.exe\nerror: fake"),
        "evil\\u{1b}[2J\\u{202e}txt.exe\\u{a}error: fake"
    );
    let long = "é".repeat(2000);
    let shown = remote_text(&long);
    assert!(shown.ends_with(" … (2976 more bytes)"), "{shown}");
    assert!(shown.len() < MAX_REMOTE_TEXT + 40);
}

/// A connection that carried one large message keeps no buffer of its size: the next
/// small message through it does not find the old allocation (an advanced `BytesMut`
/// takes it back on its next reserve, which is what showed the leak).
#[tokio::test]
async fn buffers_shrink_after_a_large_message() {
    let (mut client, mut server) = pair().await;
    let manifest = Bytes::from(vec![b'x'; 8 * 1024 * 1024]);
    let welcome = Message::welcome(Ranges::default(), manifest.clone());
    let (sent, got) = tokio::join!(
        server.send(welcome),
        client.recv("test", Duration::from_secs(10))
    );
    sent.unwrap();
    assert!(matches!(got.unwrap(), Some(Message::Welcome { .. })));
    client.set_max_body(100 * 1024);
    server.send(Message::request(1)).await.unwrap();
    client.recv("test", Duration::from_secs(10)).await.unwrap();
    let kept = server.framed.write_buffer().capacity();
    assert!(kept <= KEEP_BUFFER, "writer kept {kept}");
    let kept = client.framed.read_buffer().capacity();
    assert!(kept <= 2 * KEEP_BUFFER, "reader kept {kept}");
    // The same on the halves of a split connection.
    client.set_max_body(crate::protocol::MAX_MANIFEST_LEN);
    let (_r, mut w) = server.split();
    let (mut r, _w) = client.split();
    let welcome = Message::welcome(Ranges::default(), manifest);
    let (sent, got) = tokio::join!(w.send(welcome), r.recv("test", Duration::from_secs(10)));
    sent.unwrap();
    got.unwrap();
    let (sent, got) = tokio::join!(
        w.send(Message::request(2)),
        r.recv("test", Duration::from_secs(10))
    );
    sent.unwrap();
    got.unwrap();
    let kept = w.sink.write_buffer().capacity();
    assert!(kept <= KEEP_BUFFER, "split writer kept {kept}");
    let kept = r.stream.read_buffer().capacity();
    assert!(kept <= 2 * KEEP_BUFFER, "split reader kept {kept}");
}
