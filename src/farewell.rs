//! The one way a connection says goodbye: the client is told why (an
//! ErrorResponse with the error's SQLSTATE), never left with a silently
//! closed socket.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::protocol::{ClientFacing, encode_client_error};

/// How long the proxy keeps trying to tell a client why it is closing.
pub const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Tell the client about `error` (FATAL or ERROR as the error says), unless
/// the error is one a client cannot hear (a broken socket).
pub async fn farewell<W: AsyncWrite + Unpin>(client: &mut W, error: &(dyn ClientFacing + Sync)) {
    if !error.reaches_client() {
        return;
    }
    let mut out = BytesMut::new();
    encode_client_error(&mut out, error);
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        client.write_all(&out).await?;
        client.flush().await
    })
    .await;
}
