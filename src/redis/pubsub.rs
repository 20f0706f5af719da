//! A connection after SUBSCRIBE: the client and one server connection
//! relayed until either leaves. With `redis.channels` or namespace rules
//! (and mode rewrite) channel names and patterns are translated both ways,
//! keyspace and keyevent notifications included (see `subscriptions`);
//! without, the bytes pass as they are.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::session::SessionError;
use super::subscriptions::Subscriptions;
use super::upstream::Upstream;
use crate::keyspace::{Channels, Namespaces};
use crate::resp::{self, Args, Value};
use crate::stream::{ReadHalf, WriteHalf};

pub(super) struct Relay<'a> {
    pub up: Upstream,
    pub reader: ReadHalf,
    pub writer: WriteHalf,
    /// Requests read after the SUBSCRIBE, not yet sent.
    pub inbuf: BytesMut,
    /// `None`: relay bytes as they are.
    pub channels: Option<&'a Channels>,
    /// Key rules, for `__keyspace@N__:key` channels (with `channels`).
    pub namespaces: &'a Namespaces,
    /// `unmatched: forward`: keyevent notifications of unmatched keys are
    /// the client's too.
    pub unmatched_visible: bool,
    pub max_request: usize,
}

impl Relay<'_> {
    pub(super) async fn run(
        mut self,
        first: Args,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let mut subs = self
            .channels
            .map(|ch| Subscriptions::new(ch, self.namespaces, self.unmatched_visible));
        let mut bytes = BytesMut::new();
        encode(subs.as_mut(), &first, &mut bytes);
        self.pending_requests(subs.as_mut(), &mut bytes)?;
        if self.up.send(&bytes).await.is_err() {
            return Ok(());
        }
        loop {
            tokio::select! {
                n = self.reader.read_buf(&mut self.inbuf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                    let mut bytes = BytesMut::new();
                    self.pending_requests(subs.as_mut(), &mut bytes)?;
                    if !bytes.is_empty() && self.up.send(&bytes).await.is_err() {
                        return Ok(());
                    }
                }
                message = self.up.read_some() => match message {
                    Ok(Some(m)) => {
                        let m = match subs.as_mut() {
                            Some(subs) => subs.reply(m),
                            None => Some(m),
                        };
                        if let Some(m) = m {
                            self.writer.write_all(&m).await?;
                            self.writer.flush().await?;
                        }
                    }
                    _ => return Ok(()),
                },
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// The whole requests in `inbuf`, translated, into `out` (raw bytes
    /// when there are no rules).
    fn pending_requests(
        &mut self,
        mut subs: Option<&mut Subscriptions<'_>>,
        out: &mut BytesMut,
    ) -> Result<(), SessionError> {
        if subs.is_none() {
            out.extend_from_slice(&self.inbuf.split());
            return Ok(());
        }
        while let Some(args) = resp::parse_request(&mut self.inbuf, self.max_request)? {
            if !args.is_empty() {
                encode(subs.as_deref_mut(), &args, out);
            }
        }
        Ok(())
    }
}

fn encode(subs: Option<&mut Subscriptions<'_>>, args: &Args, out: &mut BytesMut) {
    match subs {
        Some(subs) => resp::encode_command(out, &subs.request(args)),
        None => resp::encode_command(out, args),
    }
}

/// Channel arguments of SUBSCRIBE and the like on the server's names:
/// `channels:` rules, and keyspace notification channels moved with their
/// keys' database.
pub(super) fn forward(args: &Args, ch: &Channels, ns: &Namespaces) -> Args {
    let name = args
        .first()
        .map(|a| a.to_ascii_lowercase())
        .unwrap_or_default();
    let pattern = match name.as_slice() {
        b"subscribe" | b"unsubscribe" | b"ssubscribe" | b"sunsubscribe" | b"publish"
        | b"spublish" => false,
        b"psubscribe" | b"punsubscribe" => true,
        _ => return args.clone(),
    };
    let map = |n: &[u8]| {
        ns.keyspace_channel(n, pattern).or_else(|| {
            if pattern {
                ch.pattern(n)
            } else {
                ch.forward(n)
            }
        })
    };
    let last = if matches!(name.as_slice(), b"publish" | b"spublish") {
        2.min(args.len())
    } else {
        args.len()
    };
    let mut out = args.clone();
    for a in out.iter_mut().take(last).skip(1) {
        if let Some(new) = map(a) {
            *a = Bytes::from(new);
        }
    }
    out
}

/// Map the channel names of a pub/sub message or confirmation back;
/// whether anything changed.
pub(super) fn back(value: &mut Value, ch: &Channels, ns: &Namespaces) -> bool {
    let Some(items) = value.elements_mut() else {
        return false;
    };
    let kind = items
        .first()
        .and_then(Value::as_bytes)
        .map(|k| k.to_ascii_lowercase())
        .unwrap_or_default();
    let names = match kind.as_slice() {
        b"message" | b"smessage" | b"subscribe" | b"unsubscribe" | b"ssubscribe"
        | b"sunsubscribe" | b"psubscribe" | b"punsubscribe" => 1..2,
        b"pmessage" => 1..3,
        _ => return false,
    };
    let mut changed = false;
    for item in &mut items[names] {
        if let Value::Bulk(_, name) = item
            && let Some(old) = ns.keyspace_channel_back(name).or_else(|| ch.back(name))
        {
            *name = Bytes::from(old);
            changed = true;
        }
    }
    changed
}
