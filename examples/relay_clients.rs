//! Drive a running proxy with tokio-postgres: simple and extended protocol,
//! pipelining, COPY both ways, LISTEN/NOTIFY, cancel, errors.
//! `cargo run --example relay_clients -- "host=127.0.0.1 port=56432 user=postgres dbname=postgres"`

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, TryStreamExt, future, stream};
use tokio_postgres::{AsyncMessage, NoTls};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conninfo = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "host=127.0.0.1 port=56432 user=postgres dbname=postgres".into());
    let (client, mut connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
    let (notify_tx, mut notify_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(m) => {
                    let _ = notify_tx.send(m);
                }
                Err(e) => {
                    eprintln!("connection error: {e}");
                    break;
                }
            }
        }
    });

    // Simple and extended protocol.
    let rows = client.simple_query("select 1; select 2").await?;
    println!("simple: {} messages", rows.len());
    let stmt = client.prepare("select $1::int + 1").await?;
    let r: i32 = client.query_one(&stmt, &[&41i32]).await?.get(0);
    assert_eq!(r, 42);
    // Pipelined extended queries: all sent before any answer is read.
    let answers = future::try_join_all((0..200i32).map(|i| {
        let (c, s) = (&client, &stmt);
        async move { c.query_one(s, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
    }))
    .await?;
    assert_eq!(answers.iter().sum::<i32>(), (1..=200).sum::<i32>());
    println!("pipelined extended: ok");

    // Errors keep the session usable, with the server's position.
    let e = client
        .simple_query("select * from nope_missing")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    println!(
        "error: {} {} position={:?}",
        db.code().code(),
        db.message(),
        db.position()
    );
    let e = client.prepare("select nope(").await.unwrap_err();
    println!("prepare error: {}", e.as_db_error().unwrap().code().code());
    assert_eq!(client.query_one("select 7", &[]).await?.get::<_, i32>(0), 7);

    // COPY in and out.
    client
        .batch_execute("drop table if exists relay_copy; create table relay_copy(a int, b text)")
        .await?;
    let sink = client.copy_in("copy relay_copy from stdin").await?;
    let mut sink = std::pin::pin!(sink);
    for chunk in 0..100 {
        let mut data = String::new();
        for i in 0..1000 {
            data.push_str(&format!("{}\trow {i}\n", chunk * 1000 + i));
        }
        sink.send(bytes::Bytes::from(data)).await?;
    }
    let n = sink.as_mut().finish().await?;
    assert_eq!(n, 100_000);
    let out = client.copy_out("copy relay_copy to stdout").await?;
    let chunks: Vec<bytes::Bytes> = out.try_collect().await?;
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    println!("copy: {n} rows in, {total} bytes out");

    // LISTEN / NOTIFY.
    client
        .batch_execute("listen relay_chan; notify relay_chan, 'hello'")
        .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), notify_rx.recv()).await? {
            Some(AsyncMessage::Notification(n)) => {
                println!("notify: {} {}", n.channel(), n.payload());
                break;
            }
            Some(AsyncMessage::Notice(_)) => continue,
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    // Cancel.
    let token = client.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let e = client
        .simple_query("select pg_sleep(10)")
        .await
        .unwrap_err();
    canceller.await??;
    let code = e.as_db_error().unwrap().code().code().to_owned();
    println!("cancel: {code} after {:?}", started.elapsed());
    assert_eq!(code, "57014");
    assert_eq!(client.query_one("select 8", &[]).await?.get::<_, i32>(0), 8);
    println!("all ok");
    Ok(())
}
