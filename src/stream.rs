//! A connection that is either a plain TCP socket or TLS over one, for
//! both sides of a session. The plain case keeps tokio's own split halves
//! (`into_split`, no lock between the directions); only TLS goes through
//! `tokio::io::split`, whose halves share the one TLS state.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// What a TLS stream of either side is to the relay.
pub trait TlsIo: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> TlsIo for T {}

/// A connection to a client or an upstream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<dyn TlsIo>),
    /// A plain socket kept in its two halves between relays (transaction
    /// pooling hands a server connection's halves to a new relay at every
    /// transaction; splitting allocates and reuniting frees what the halves
    /// share, each time).
    Split(OwnedReadHalf, OwnedWriteHalf),
    /// Left behind while the socket is handed to a TLS handshake that did
    /// not give it back: reads see the end, writes fail.
    Closed,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Plain(tcp) => f.debug_tuple("Plain").field(tcp).finish(),
            Stream::Tls(_) => f.write_str("Tls"),
            Stream::Split(r, _) => f.debug_tuple("Split").field(r).finish(),
            Stream::Closed => f.write_str("Closed"),
        }
    }
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Take the plain socket out (for a TLS handshake), leaving
    /// [`Stream::Closed`]; `None` if the stream is not plain.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Stream::Closed) {
            Stream::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The two directions, to run concurrently.
    /// Whether an idle connection still looks usable: no EOF and no
    /// unexpected bytes waiting (a server that restarted or timed the
    /// connection out). TLS streams cannot be peeked; they are trusted.
    /// The same connection registered with the I/O driver of the event
    /// loop this runs on, so that its readiness wakes tasks there without
    /// a cross-thread wake-up. TLS streams stay where they are (rustls's
    /// stream cannot be taken apart and rebuilt around the socket).
    pub fn rehome(self) -> io::Result<Stream> {
        match self {
            Stream::Split(r, w) => Stream::Plain(r.reunite(w).map_err(io::Error::other)?).rehome(),
            Stream::Plain(tcp) => {
                let std = tcp.into_std()?;
                Ok(Stream::Plain(TcpStream::from_std(std)?))
            }
            other => Ok(other),
        }
    }

    pub fn looks_alive(&self) -> bool {
        match self {
            Stream::Plain(tcp) => {
                let mut byte = [0u8; 1];
                matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Split(r, _) => {
                let mut byte = [0u8; 1];
                matches!(r.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(_) => true,
            Stream::Closed => false,
        }
    }

    /// Put the halves of [`Stream::into_split`] back together; `None` if
    /// they are not two halves of one stream.
    pub fn reunite(read: ReadHalf, write: WriteHalf) -> Option<Stream> {
        match (read, write) {
            (ReadHalf::Plain(r), WriteHalf::Plain(w)) => r.reunite(w).ok().map(Stream::Plain),
            (ReadHalf::Tls(r), WriteHalf::Tls(w)) => {
                r.is_pair_of(&w).then(|| Stream::Tls(r.unsplit(w)))
            }
            _ => None,
        }
    }

    /// Keep the two halves of one plain socket as they are, or reunite TLS
    /// ones; `None` if there is no stream left (a closed half). Only for
    /// halves the caller knows are one stream's (see [`Stream::Split`]);
    /// [`Stream::reunite`] checks.
    pub fn rejoin(read: ReadHalf, write: WriteHalf) -> Option<Stream> {
        match (read, write) {
            (ReadHalf::Plain(r), WriteHalf::Plain(w)) => Some(Stream::Split(r, w)),
            (read, write) => Stream::reunite(read, write),
        }
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Split(r, w) => (ReadHalf::Plain(r), WriteHalf::Plain(w)),
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(tls) => {
                let (r, w) = tokio::io::split(tls);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
            Stream::Closed => (ReadHalf::Closed, WriteHalf::Closed),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

/// A stream's read direction.
pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Box<dyn TlsIo>>),
    Closed,
}

/// A stream's write direction.
pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Box<dyn TlsIo>>),
    Closed,
}

impl WriteHalf {
    /// Whether writes must be flushed: rustls keeps ciphertext it could not
    /// write yet until the next write or a flush (tokio-rustls behaves as a
    /// `BufWriter`); a plain socket needs no flush.
    #[inline]
    pub fn is_tls(&self) -> bool {
        matches!(self, WriteHalf::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Split(r, _) => Pin::new(r).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Split(_, w) => Pin::new(w).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Split(_, w) => Pin::new(w).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Split(_, w) => Pin::new(w).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for ReadHalf {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            other => other.poll_read_other(cx, buf),
        }
    }
}

impl ReadHalf {
    /// The TLS and closed cases, out of line: inlined, the TLS half's
    /// locking read made every plain read of the relay longer (callgrind:
    /// about 60 instructions per statement).
    #[cold]
    #[inline(never)]
    fn poll_read_other(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Tls(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for WriteHalf {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            other => other.poll_write_other(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Tls(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Tls(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl WriteHalf {
    /// The TLS and closed cases, out of line (see `ReadHalf::poll_read_other`).
    #[cold]
    #[inline(never)]
    fn poll_write_other(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Tls(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Closed => Poll::Ready(Err(closed())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A socket made on one event loop keeps working on another once
    /// rehomed, even after its first loop is gone (its registration went
    /// with it).
    #[test]
    fn a_rehomed_stream_works_on_its_new_loop_after_the_old_one_is_gone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut peer, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4];
            peer.read_exact(&mut buf).unwrap();
            peer.write_all(&buf).unwrap();
        });
        let first = runtime();
        let stream =
            first.block_on(async { Stream::Plain(TcpStream::connect(addr).await.unwrap()) });
        drop(first);
        let second = runtime();
        second.block_on(async {
            let Stream::Plain(mut tcp) = stream.rehome().unwrap() else {
                unreachable!("a plain stream stays plain")
            };
            tcp.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tcp.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        });
        echo.join().unwrap();
    }

    /// Halves kept apart by `rejoin` are still one connection: it reads,
    /// writes, tells a closed peer from an idle one, and rehomes (as a
    /// whole socket again).
    #[test]
    fn rejoined_halves_work_as_one_stream() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = runtime();
        rt.block_on(async {
            let client = Stream::Plain(TcpStream::connect(addr).await.unwrap());
            let (mut peer, _) = listener.accept().unwrap();
            let (r, w) = client.into_split();
            let mut stream = Stream::rejoin(r, w).expect("two halves");
            assert!(matches!(stream, Stream::Split(..)));
            stream.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            std::io::Read::read_exact(&mut peer, &mut buf).unwrap();
            std::io::Write::write_all(&mut peer, b"pong").unwrap();
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
            assert!(stream.looks_alive());
            let mut stream = stream.rehome().unwrap();
            assert!(matches!(stream, Stream::Plain(_)));
            drop(peer);
            // The peer's FIN reaches the I/O driver at its next turn.
            assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
            let (r, w) = stream.into_split();
            assert!(!Stream::rejoin(r, w).unwrap().looks_alive());
        });
    }

    /// Without rehoming, the same socket fails once its loop is gone: what
    /// the test above shows rehoming changes.
    #[test]
    fn a_stream_left_on_a_dropped_loop_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let first = runtime();
        let stream =
            first.block_on(async { Stream::Plain(TcpStream::connect(addr).await.unwrap()) });
        let _peer = listener.accept().unwrap();
        drop(first);
        let second = runtime();
        second.block_on(async {
            let Stream::Plain(mut tcp) = stream else {
                unreachable!()
            };
            assert!(tcp.write_all(b"ping").await.is_err());
        });
    }
}
