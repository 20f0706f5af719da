//! `migrate-keys`: copy the keys already stored under the old layout to
//! where the namespace rules send them, so the data moves the way the
//! traffic does. Per rule: SCAN the old database for the old prefix, then
//! `COPY old new DB to_db` (Redis 6.2+; TTL kept, an existing destination
//! left alone), or DUMP + PTTL + RESTORE on older servers. Copies, never
//! moves: the old keys stay for a rollback to mode off. Running it again
//! copies only what is missing (idempotent, so an interrupted run resumes by
//! running it again).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::config::{Config, RedisConfig};
use crate::keyspace::Rule;
use crate::redis::{Setup, Upstream};
use crate::resp::Value;

/// What one rule's pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuleReport {
    pub scanned: u64,
    pub copied: u64,
    /// Already at the destination (a previous run, or live traffic).
    pub present: u64,
    /// Gone between SCAN and COPY (expired or deleted).
    pub vanished: u64,
}

/// Copy (or with `dry_run` only count) every rule's keys; progress and a
/// summary per rule go to `out`.
pub async fn migrate_keys(
    config: &Config,
    dry_run: bool,
    batch: usize,
    out: &mut impl Write,
) -> anyhow::Result<Vec<RuleReport>> {
    let Some(redis) = &config.redis else {
        bail!("the config has no `redis:` section");
    };
    let mut reports = Vec::new();
    for rule in redis.namespaces.rules() {
        let report = migrate_rule(redis, config.connect_timeout, rule, dry_run, batch, out)
            .await
            .with_context(|| format!("rule {}", rule.label()))?;
        writeln!(
            out,
            "{} {} -> {}@{}: {} scanned, {} {}, {} already there, {} gone meanwhile",
            if dry_run { "dry-run" } else { "done" },
            rule.label(),
            String::from_utf8_lossy(&rule.to),
            rule.to_db,
            report.scanned,
            report.copied,
            if dry_run { "to copy" } else { "copied" },
            report.present,
            report.vanished,
        )?;
        reports.push(report);
    }
    Ok(reports)
}

async fn connect(redis: &RedisConfig, db: u16, timeout: Duration) -> anyhow::Result<Upstream> {
    Ok(Upstream::connect(Setup {
        upstream: &redis.upstream,
        client_commands: &[],
        db,
        timeout,
        max_reply: redis.max_reply_bytes,
    })
    .await?)
}

async fn call(up: &mut Upstream, args: Vec<Bytes>) -> anyhow::Result<Value> {
    let reply = up.call(&[args]).await?;
    Ok(Value::decode(&reply[0])?)
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn error_text(v: &Value) -> Option<String> {
    match v {
        Value::Line(b'-', t) | Value::Bulk(b'!', t) => {
            Some(String::from_utf8_lossy(t).into_owned())
        }
        _ => None,
    }
}

async fn migrate_rule(
    redis: &RedisConfig,
    timeout: Duration,
    rule: &Rule,
    dry_run: bool,
    batch: usize,
    out: &mut impl Write,
) -> anyhow::Result<RuleReport> {
    let mut source = connect(redis, rule.from_db, timeout).await?;
    let mut target = connect(redis, rule.to_db, timeout).await?;
    let mut pattern = glob_escape(&rule.from);
    pattern.push(b'*');
    let mut report = RuleReport::default();
    let mut use_copy = true;
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let reply = call(
            &mut source,
            vec![
                b(b"SCAN"),
                cursor.clone(),
                b(b"MATCH"),
                Bytes::from(pattern.clone()),
                b(b"COUNT"),
                Bytes::from(batch.to_string()),
            ],
        )
        .await?;
        if let Some(e) = error_text(&reply) {
            bail!("SCAN: {e}");
        }
        let items = reply.elements().context("SCAN reply")?;
        cursor = items
            .first()
            .and_then(Value::as_bytes)
            .context("SCAN cursor")?
            .clone();
        let keys = items.get(1).and_then(Value::elements).unwrap_or_default();
        for key in keys.iter().filter_map(Value::as_bytes) {
            // A rule whose new prefix extends the old one on the same db
            // would find its own copies again.
            if rule.to_db == rule.from_db && key.starts_with(&rule.to) {
                continue;
            }
            report.scanned += 1;
            let mut new = rule.to.clone();
            new.extend_from_slice(&key[rule.from.len()..]);
            if dry_run {
                let exists = call(&mut target, vec![b(b"EXISTS"), Bytes::from(new)]).await?;
                if exists.as_int() == Some(1) {
                    report.present += 1;
                } else {
                    report.copied += 1;
                }
                continue;
            }
            let outcome = if use_copy {
                let r = call(
                    &mut source,
                    vec![
                        b(b"COPY"),
                        key.clone(),
                        Bytes::from(new.clone()),
                        b(b"DB"),
                        Bytes::from(rule.to_db.to_string()),
                    ],
                )
                .await?;
                match (error_text(&r), r.as_int()) {
                    (Some(e), _) if e.contains("unknown command") => {
                        use_copy = false;
                        restore(&mut source, &mut target, key, &new).await?
                    }
                    (Some(e), _) => bail!("COPY: {e}"),
                    // COPY says 0 both for a missing source and an existing
                    // destination: ask which.
                    (None, Some(0)) => {
                        let e = call(&mut target, vec![b(b"EXISTS"), Bytes::from(new)]).await?;
                        if e.as_int() == Some(1) {
                            Copied::Present
                        } else {
                            Copied::Vanished
                        }
                    }
                    (None, _) => Copied::Done,
                }
            } else {
                restore(&mut source, &mut target, key, &new).await?
            };
            match outcome {
                Copied::Done => report.copied += 1,
                Copied::Present => report.present += 1,
                Copied::Vanished => report.vanished += 1,
            }
        }
        if report.scanned > 0 && report.scanned.is_multiple_of(10_000) {
            writeln!(out, "  {}: {} keys so far", rule.label(), report.scanned)?;
        }
        if cursor.as_ref() == b"0" {
            break;
        }
    }
    Ok(report)
}

enum Copied {
    Done,
    Present,
    Vanished,
}

/// DUMP + PTTL on the source, RESTORE (no REPLACE) on the target: for
/// servers without COPY.
async fn restore(
    source: &mut Upstream,
    target: &mut Upstream,
    key: &Bytes,
    new: &[u8],
) -> anyhow::Result<Copied> {
    let dump = call(source, vec![b(b"DUMP"), key.clone()]).await?;
    let Value::Bulk(_, payload) = dump else {
        return Ok(Copied::Vanished);
    };
    let ttl = call(source, vec![b(b"PTTL"), key.clone()])
        .await?
        .as_int()
        .unwrap_or(-1);
    if ttl == -2 {
        return Ok(Copied::Vanished);
    }
    let r = call(
        target,
        vec![
            b(b"RESTORE"),
            b(new),
            Bytes::from(ttl.max(0).to_string()),
            payload,
        ],
    )
    .await?;
    match error_text(&r) {
        Some(e) if e.starts_with("BUSYKEY") => Ok(Copied::Present),
        Some(e) => bail!("RESTORE: {e}"),
        None => Ok(Copied::Done),
    }
}

/// `text` as a glob that matches only itself.
fn glob_escape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &c in text {
        if matches!(c, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_escape_quotes_every_special_character() {
        assert_eq!(super::glob_escape(b"a*b?[c]\\:"), b"a\\*b\\?\\[c\\]\\\\:");
    }
}
