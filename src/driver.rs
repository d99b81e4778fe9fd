//! The connection driver every session runs on, after its handshake: the owner's sessions,
//! the upload server's, a ring peer's downloads and a getter's sources.
//!
//! [`drive`] splits the framed connection into a reader and a writer and runs them
//! `select!`ed together with the session's cancellation: the reader waits for each message
//! under an idle limit and hands it to the session's [`Reading`] side, which may queue work for
//! the writer on a bounded channel (backpressure: a reader with a full queue stops reading);
//! the writer sends what its [`Writing`] side makes of that queue and of its own wake-ups,
//! and a keep-alive whenever nothing else went out for a while ([`Beat`]). When either side
//! ends, the session ends; an error that deserves it is answered with an `error` message
//! before the connection closes.
//!
//! Sessions are generic over the stream ([`crate::net::Stream`]), so a handler runs over
//! `tokio::io::duplex` or the simulator's links as over TCP.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::chunkset::Ranges;
use crate::connection::{ConnReader, ConnWriter, Connection};
use crate::protocol::Message;

/// What a writer's turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Nothing was sent.
    Idle,
    /// Something was sent: the next keep-alive is put off.
    Sent,
    /// The session is over (cleanly).
    Done,
}

impl From<bool> for Flow {
    /// `true`: something was sent.
    fn from(sent: bool) -> Self {
        if sent { Flow::Sent } else { Flow::Idle }
    }
}

/// The reader's side of a session.
pub(crate) trait Reading {
    /// What the reader hands the writer.
    type Out;

    /// What the reader waits for (named in the timeout error), and how long it may wait.
    fn limit(&self) -> (&'static str, Duration);

    /// Runs before each wait for a message (e.g. queues requests); `Ok(false)` ends the
    /// session cleanly.
    async fn prepare(&mut self, _tx: &mpsc::Sender<Self::Out>) -> Result<bool> {
        Ok(true)
    }

    /// Resolves when the reader must look again without a message (a change elsewhere); an
    /// error (a deadline) ends the session. Only waits, so it is safe in a `select!`.
    async fn interrupt(&mut self) -> Result<()> {
        std::future::pending().await
    }

    /// Takes one message.
    async fn on_message(&mut self, msg: Message, tx: &mpsc::Sender<Self::Out>) -> Result<()>;

    /// The other side closed the connection; an error if it should not have.
    fn on_close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The writer's side of a session.
pub(crate) trait Writing {
    /// What the reader hands the writer.
    type Out;
    /// What else the writer waits for.
    type Wake;

    /// How long the writer may stay silent before it sends a keep-alive.
    fn keepalive(&self) -> Duration;

    /// Sends what is due before each wait (e.g. announcements).
    async fn flush(&mut self, _writer: &mut ConnWriter) -> Result<Flow> {
        Ok(Flow::Idle)
    }

    /// Waits for something besides the reader's queue. Only waits, so it is safe in a
    /// `select!`; never resolves by default.
    async fn wake(&mut self) -> Self::Wake {
        std::future::pending().await
    }

    /// Acts on what [`Writing::wake`] returned.
    async fn on_wake(&mut self, _wake: Self::Wake, _writer: &mut ConnWriter) -> Result<Flow> {
        Ok(Flow::Idle)
    }

    /// Acts on what the reader queued.
    async fn on_out(&mut self, out: Self::Out, writer: &mut ConnWriter) -> Result<Flow>;

    /// Runs once the session is over, before an error is answered (`cancelled`: it was
    /// ended by its token): e.g. a clean half-close.
    async fn close(
        &mut self,
        _res: &Result<()>,
        _cancelled: bool,
        _writer: &mut ConnWriter,
        _reader: &mut ConnReader,
    ) {
    }
}

/// Runs a session on `conn` until either side ends it, or `token` is cancelled; `queue` is
/// the bound of what the reader may queue for the writer. An error that deserves a reply is
/// answered with an `error` message.
///
/// # Errors
///
/// What ended the session, if it was not a clean end.
pub(crate) async fn drive<R, W>(
    conn: Connection,
    mut reading: R,
    mut writing: W,
    queue: usize,
    token: &CancellationToken,
) -> Result<()>
where
    R: Reading,
    W: Writing<Out = R::Out>,
{
    let (mut reader, mut writer) = conn.split();
    let (tx, rx) = mpsc::channel(queue.max(1));
    let res = tokio::select! {
        biased;
        () = token.cancelled() => Ok(()),
        r = read_loop(&mut reader, &mut reading, &tx) => r,
        r = write_loop(&mut writer, &mut writing, rx) => r,
    };
    writing
        .close(&res, token.is_cancelled(), &mut writer, &mut reader)
        .await;
    if let Err(e) = &res
        && e.deserves_reply()
    {
        writer.send_error(e.to_string()).await;
    }
    res
}

async fn read_loop<R: Reading>(
    reader: &mut ConnReader,
    reading: &mut R,
    tx: &mpsc::Sender<R::Out>,
) -> Result<()> {
    loop {
        if !reading.prepare(tx).await? {
            return Ok(());
        }
        let (what, limit) = reading.limit();
        let msg = tokio::select! {
            biased;
            r = reading.interrupt() => {
                r?;
                continue;
            }
            msg = reader.recv(what, limit) => msg?,
        };
        match msg {
            Some(msg) => reading.on_message(msg, tx).await?,
            None => return reading.on_close(),
        }
    }
}

async fn write_loop<W: Writing>(
    writer: &mut ConnWriter,
    writing: &mut W,
    mut rx: mpsc::Receiver<W::Out>,
) -> Result<()> {
    let mut beat = Beat::new(writing.keepalive());
    loop {
        match writing.flush(writer).await? {
            Flow::Done => return Ok(()),
            Flow::Sent => beat.sent(),
            Flow::Idle => {}
        }
        // Wake-ups before the queue: they are rare (a choke decision, a ring change, new
        // chunks to announce), and a reader that keeps the queue full must not starve them.
        let flow = tokio::select! {
            biased;
            () = beat.due() => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
                Flow::Sent
            }
            wake = writing.wake() => writing.on_wake(wake, writer).await?,
            out = rx.recv() => match out {
                Some(out) => writing.on_out(out, writer).await?,
                None => return Ok(()),
            },
        };
        match flow {
            Flow::Done => return Ok(()),
            Flow::Sent => beat.sent(),
            Flow::Idle => {}
        }
    }
}

/// When a writer's keep-alive is due: `every` after the last message it sent, however often
/// its loop wakes. A `sleep(every)` made anew on each turn of the loop never fired while
/// change signals woke the loop more often than that with nothing to say, and the other side
/// dropped the connection as silent.
pub(crate) struct Beat {
    every: Duration,
    due: Instant,
}

impl Beat {
    /// A keep-alive due `every` from now.
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            due: Instant::now() + every,
        }
    }

    /// Something was sent: the next keep-alive is due `every` from now.
    pub(crate) fn sent(&mut self) {
        self.due = Instant::now() + self.every;
    }

    /// Resolves when the keep-alive is due.
    pub(crate) async fn due(&self) {
        tokio::time::sleep_until(self.due).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::connection::IDLE_TIMEOUT;

    /// A loop woken every second with nothing to send still sends its keep-alive after
    /// `every` of silence; each message sent puts it off.
    #[tokio::test(start_paused = true)]
    async fn a_keepalive_comes_after_silence_however_often_the_loop_wakes() {
        let started = Instant::now();
        let mut beat = Beat::new(Duration::from_secs(5));
        let mut wakes = 0;
        loop {
            tokio::select! {
                biased;
                () = beat.due() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => wakes += 1,
            }
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(wakes, 4);
        beat.sent();
        tokio::time::sleep(Duration::from_secs(3)).await;
        beat.sent();
        let again = Instant::now();
        beat.due().await;
        assert_eq!(again.elapsed(), Duration::from_secs(5));
    }

    /// An echo session: the reader queues each `locate`'s file name, the writer sends it
    /// back; an `orphans` message is refused; the writer wakes every
    /// second with nothing to say.
    struct Echo;

    impl Reading for Echo {
        type Out = String;

        fn limit(&self) -> (&'static str, Duration) {
            ("waiting for a query", IDLE_TIMEOUT)
        }

        async fn on_message(&mut self, msg: Message, tx: &mpsc::Sender<String>) -> Result<()> {
            match msg {
                Message::Locate { file } => {
                    tx.send(file).await.ok();
                    Ok(())
                }
                Message::Have { .. } => Ok(()),
                other => Err(crate::protocol::ProtocolError::unexpected(
                    Some(&other),
                    "answering queries",
                )
                .into()),
            }
        }
    }

    struct EchoBack;

    impl Writing for EchoBack {
        type Out = String;
        type Wake = ();

        fn keepalive(&self) -> Duration {
            Duration::from_secs(5)
        }

        async fn wake(&mut self) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        async fn on_out(&mut self, out: String, writer: &mut ConnWriter) -> Result<Flow> {
            writer.send(Message::Locate { file: out }).await?;
            Ok(Flow::Sent)
        }
    }

    /// A session over `tokio::io::duplex` and the client's end.
    fn session() -> (
        tokio::task::JoinHandle<Result<()>>,
        Connection,
        CancellationToken,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = Connection::over(a, "client".into(), 0);
        let client = Connection::over(b, "server".into(), 0);
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move { drive(server, Echo, EchoBack, 4, &t).await });
        (task, client, token)
    }

    /// The writer answers what the reader queued, and sends keep-alives every 5 s of silence
    /// although it wakes every second; cancelling ends the session cleanly.
    #[tokio::test(start_paused = true)]
    async fn the_driver_answers_keeps_alive_and_stops_when_cancelled() {
        let (task, mut client, token) = session();
        client
            .send(Message::Locate { file: "a".into() })
            .await
            .unwrap();
        let answer = client.recv("an answer", Duration::from_secs(1)).await;
        assert!(
            matches!(&answer, Ok(Some(Message::Locate { file })) if file == "a"),
            "{answer:?}"
        );
        let started = Instant::now();
        let beat = client.recv("a keep-alive", Duration::from_secs(30)).await;
        assert!(
            matches!(&beat, Ok(Some(Message::Have { chunks })) if chunks.0.is_empty()),
            "{beat:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        token.cancel();
        task.await.unwrap().unwrap();
    }

    /// A message the session does not expect is answered with an error naming it, and the
    /// session ends with that error; silence past the idle limit ends it too.
    #[tokio::test(start_paused = true)]
    async fn the_driver_answers_an_unexpected_message_then_closes() {
        let (task, mut client, _token) = session();
        client
            .send(Message::Orphans {
                chunks: Ranges::default(),
            })
            .await
            .unwrap();
        let err = client.recv("the error", Duration::from_secs(1)).await;
        assert!(
            format!("{err:?}").contains("unexpected orphans message while answering queries"),
            "{err:?}"
        );
        let res = task.await.unwrap();
        assert!(matches!(res, Err(Error::Protocol(_))), "{res:?}");

        let (task, client, _token) = session();
        let res = task.await.unwrap();
        assert!(
            res.as_ref()
                .is_err_and(|e| e.to_string().contains("waiting for a query")),
            "{res:?}"
        );
        drop(client);
    }
}
