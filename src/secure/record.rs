//! [`SecureStream`]: a byte stream sealed in Noise transport records.
//!
//! Each record is a 2-byte big-endian length and that many bytes of AES-256-GCM ciphertext
//! (at most [`MAX_RECORD`], of which 16 are the tag), as Noise's transport messages are: the
//! keys are the handshake's split, the nonce is each direction's record counter (4 zero bytes
//! and the counter, big-endian), never sent, and there is no associated data. A record that
//! was changed, replayed, reordered, dropped or cut short fails to open, and the stream then
//! fails every read with that error (nothing after it is believed).
//!
//! Records are sealed and opened in place (`ring`): a byte written is copied once into the
//! outgoing buffer and sealed there; a byte read is opened where it arrived and copied once to
//! the reader. A vectored write (a frame's head and its body) fills one record from all its
//! slices. What is written goes out at once, flush or not, as on a plain socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::BoxStream;

/// The longest record on the wire (Noise's limit).
pub const MAX_RECORD: usize = 65535;
/// The AEAD tag of every record.
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries.
pub const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;

/// The error of a record that failed to open.
pub const TAMPERED: &str = "a sealed frame failed to open (changed, replayed, reordered or cut \
                            on the way): closing the connection";

/// One direction's key and record counter.
pub(super) struct Cipher {
    key: LessSafeKey,
    counter: u64,
}

impl Cipher {
    /// The cipher of a 32-byte key from the handshake's split.
    pub(super) fn new(key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key");
        Self {
            key: LessSafeKey::new(key),
            counter: 0,
        }
    }

    fn nonce(&mut self) -> io::Result<Nonce> {
        if self.counter == u64::MAX {
            return Err(io::Error::other("2^64 - 1 records on one connection"));
        }
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        Ok(Nonce::assume_unique_for_key(n))
    }
}

/// A stream whose every byte is sealed (written) and opened (read) with the handshake's keys.
pub struct SecureStream {
    inner: BoxStream,
    send: Cipher,
    recv: Cipher,
    /// Bytes read: opened plaintext at `plain.0..plain.1`, then ciphertext not yet opened.
    rbuf: BytesMut,
    /// The opened, unread part of `rbuf`'s first record, and that record's whole length.
    plain: (usize, usize, usize),
    /// Sealed records not yet written.
    wbuf: BytesMut,
    /// A record failed to open: every later read fails.
    broken: bool,
}

impl SecureStream {
    /// Wraps `inner` after a handshake; `leftover` are bytes already read past it.
    pub(super) fn new(inner: BoxStream, send: Cipher, recv: Cipher, leftover: BytesMut) -> Self {
        Self {
            inner,
            send,
            recv,
            rbuf: leftover,
            plain: (0, 0, 0),
            wbuf: BytesMut::new(),
            broken: false,
        }
    }

    /// Opens the first whole record in `rbuf` in place; false when none is whole yet.
    fn open_record(&mut self) -> io::Result<bool> {
        if self.rbuf.len() < 2 {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([self.rbuf[0], self.rbuf[1]]));
        if self.rbuf.len() < 2 + len {
            return Ok(false);
        }
        let nonce = self.recv.nonce()?;
        match self
            .recv
            .key
            .open_in_place(nonce, Aad::empty(), &mut self.rbuf[2..2 + len])
        {
            Ok(plain) => {
                let n = plain.len();
                self.plain = (2, 2 + n, 2 + len);
                Ok(true)
            }
            Err(_) => {
                self.broken = true;
                Err(io::Error::new(io::ErrorKind::InvalidData, TAMPERED))
            }
        }
    }

    /// Seals the first [`MAX_PLAIN`] bytes of `bufs` as one record at the end of `wbuf`;
    /// returns how many it took.
    fn seal(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let n = total.min(MAX_PLAIN);
        let start = self.wbuf.len();
        self.wbuf.reserve(2 + n + TAG_LEN);
        let len = u16::try_from(n + TAG_LEN).expect("a record of at most 65535 bytes");
        self.wbuf.extend_from_slice(&len.to_be_bytes());
        let mut left = n;
        for b in bufs {
            let take = b.len().min(left);
            self.wbuf.extend_from_slice(&b[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        let nonce = self.send.nonce()?;
        let tag = self
            .send
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut self.wbuf[start + 2..])
            .map_err(|_| io::Error::other("sealing a frame failed"))?;
        self.wbuf.extend_from_slice(tag.as_ref());
        Ok(n)
    }

    /// Writes out every sealed record.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for SecureStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.broken {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, TAMPERED)));
            }
            let (from, to, whole) = this.plain;
            if whole > 0 {
                let n = (to - from).min(buf.remaining());
                buf.put_slice(&this.rbuf[from..from + n]);
                if from + n == to {
                    this.rbuf.advance(whole);
                    this.plain = (0, 0, 0);
                } else {
                    this.plain.0 += n;
                }
                if n > 0 || buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.open_record()? {
                continue;
            }
            this.rbuf.reserve(2 + MAX_RECORD);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.rbuf
            ))?;
            if n == 0 {
                if this.rbuf.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed in the middle of a sealed frame ({} bytes of it \
                         arrived)",
                        this.rbuf.len()
                    ),
                )));
            }
        }
    }
}

impl AsyncWrite for SecureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        // What is still waiting goes out first: the socket's backpressure.
        ready!(this.poll_drain(cx))?;
        let n = this.seal(bufs)?;
        // Start writing now; what the socket does not take yet goes out on the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
