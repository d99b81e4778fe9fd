//! A connected byte stream, TCP or in memory ([`BoxStream`]), and how long connecting one may
//! take.

use std::time::Duration;

/// A byte stream a [`crate::connection::Connection`] can run over: a TCP socket, or an
/// in-memory one (`tokio::io::duplex`) for tests and simulations.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A stream of any kind, as connections hold it.
pub type BoxStream = Box<dyn Stream>;

/// How long one TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
