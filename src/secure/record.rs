//! [`SecureStream`]: a byte stream sealed in Noise transport records.
//!
//! Each record is a 2-byte big-endian length and that many bytes of AEAD ciphertext (at most
//! [`MAX_RECORD`], of which 16 are the tag). The nonce is each direction's record counter,
//! never sent: a record that was changed, replayed, reordered, dropped or cut short fails to
//! open, and the stream then fails every read with that error (nothing after it is believed).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
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

/// A stream whose every byte is sealed (written) and opened (read) with a Noise transport.
pub struct SecureStream {
    inner: BoxStream,
    noise: snow::TransportState,
    /// Ciphertext read and not yet opened.
    rbuf: BytesMut,
    /// Plaintext opened and not yet read.
    plain: BytesMut,
    /// Sealed records not yet written.
    wbuf: BytesMut,
    /// Plaintext gathered for one record (vectored writes).
    gather: Vec<u8>,
    /// A record failed to open: every later read fails.
    broken: bool,
}

impl SecureStream {
    /// Wraps `inner` after a handshake; `leftover` are bytes already read past it.
    pub(super) fn new(inner: BoxStream, noise: snow::TransportState, leftover: BytesMut) -> Self {
        Self {
            inner,
            noise,
            rbuf: leftover,
            plain: BytesMut::new(),
            wbuf: BytesMut::new(),
            gather: Vec::new(),
            broken: false,
        }
    }

    /// Opens the first whole record in `rbuf` into `plain`; false when none is whole yet.
    fn open_record(&mut self) -> io::Result<bool> {
        if self.rbuf.len() < 2 {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([self.rbuf[0], self.rbuf[1]]));
        if self.rbuf.len() < 2 + len {
            return Ok(false);
        }
        self.plain.clear();
        self.plain.resize(len, 0);
        match self
            .noise
            .read_message(&self.rbuf[2..2 + len], &mut self.plain)
        {
            Ok(n) => {
                self.plain.truncate(n);
                self.rbuf.advance(2 + len);
                Ok(true)
            }
            Err(_) => {
                self.broken = true;
                self.plain.clear();
                Err(io::Error::new(io::ErrorKind::InvalidData, TAMPERED))
            }
        }
    }

    /// Seals `plain` (at most [`MAX_PLAIN`] bytes) as one record at the end of `wbuf`.
    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        let start = self.wbuf.len();
        self.wbuf.resize(start + 2 + plain.len() + TAG_LEN, 0);
        let n = self
            .noise
            .write_message(plain, &mut self.wbuf[start + 2..])
            .map_err(|e| io::Error::other(format!("sealing a frame: {e}")))?;
        let len = u16::try_from(n).map_err(|_| io::Error::other("record too long"))?;
        self.wbuf[start..start + 2].copy_from_slice(&len.to_be_bytes());
        self.wbuf.truncate(start + 2 + n);
        Ok(())
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
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                return Poll::Ready(Ok(()));
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
        ready!(this.poll_drain(cx))?;
        let mut gather = std::mem::take(&mut this.gather);
        gather.clear();
        for b in bufs {
            let room = MAX_PLAIN - gather.len();
            gather.extend_from_slice(&b[..b.len().min(room)]);
            if gather.len() == MAX_PLAIN {
                break;
            }
        }
        let n = gather.len();
        let sealed = if n > 0 { this.seal(&gather) } else { Ok(()) };
        this.gather = gather;
        sealed?;
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
