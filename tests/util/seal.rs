//! A sealing relay for tests that speak the protocol by hand: a test writes plaintext frames
//! to the relay's port, and the relay runs the Noise handshake with the real server (as a
//! node with a fresh key, and the swarm's secret if given) and seals and opens every byte
//! between them. So a hostile or hand-made client still reaches the server's message
//! handling, as an attacker holding a key of its own would; closes pass through both ways.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use ringswarm::auth::Secret;
use ringswarm::key::NodeKey;
use ringswarm::secure::{self, Identity};
use tokio::net::{TcpListener, TcpStream};

/// A relay to `target` on a port of 127.0.0.1, for as long as the test process runs (one
/// per target and secret).
pub fn sealed(target: SocketAddr) -> SocketAddr {
    sealed_with(target, None)
}

/// A relay to port `port` of 127.0.0.1.
pub fn sealed_port(port: u16) -> SocketAddr {
    sealed(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// As [`sealed`], in the swarm of `secret`.
pub fn sealed_with(target: SocketAddr, secret: Option<&str>) -> SocketAddr {
    static RELAYS: Mutex<BTreeMap<(SocketAddr, Option<String>), SocketAddr>> =
        Mutex::new(BTreeMap::new());
    let mut relays = RELAYS.lock().unwrap_or_else(|p| p.into_inner());
    *relays
        .entry((target, secret.map(str::to_string)))
        .or_insert_with(|| start(target, secret))
}

fn start(target: SocketAddr, secret: Option<&str>) -> SocketAddr {
    let secret = secret.map(|s| Secret::new(s).unwrap());
    serve(move |plain| {
        let me = Identity::new(NodeKey::generate(), secret.clone());
        relay(plain, target, me)
    })
}

/// Accepts connections on a fresh port of 127.0.0.1, on a thread of its own, and runs
/// `each` for every one; returns the port's address.
fn serve<F, Fut>(each: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(each(stream));
                }
            }
        });
    });
    addr
}

/// A connection to `target` whose handshake (with a fresh key) runs here, in the caller's
/// runtime: for tests under tokio's paused clock, where a relay on another thread would run
/// in real time while the test's clock leaps.
pub async fn sealed_stream(target: SocketAddr) -> secure::SecureStream {
    let tcp = TcpStream::connect(target).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let me = Identity::ephemeral();
    secure::client(Box::new(tcp), &me, None).await.unwrap().0
}

/// The other way round, for a fake server written by hand: a port of 127.0.0.1 where real
/// nodes connect and run the handshake (with a fresh key), relayed in plaintext to `plain`,
/// the fake server's own port. Returns the port to give the nodes.
pub fn server_side(plain: SocketAddr) -> u16 {
    let me = std::sync::Arc::new(Identity::ephemeral());
    let addr = serve(move |node| {
        let me = me.clone();
        async move {
            let Ok((mut sealed, _)) = secure::server(Box::new(node), &me).await else {
                return;
            };
            let Ok(mut fake) = TcpStream::connect(plain).await else {
                return;
            };
            let _ = fake.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut sealed, &mut fake).await;
        }
    });
    addr.port()
}

async fn relay(mut plain: TcpStream, target: SocketAddr, me: Identity) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let Ok((mut sealed, _)) = secure::client(Box::new(server), &me, None).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut plain, &mut sealed).await;
}
