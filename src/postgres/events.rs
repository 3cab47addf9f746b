//! `store.events` in SQL: rows keyed (store, stream, seq) and a per-stream row holding the last
//! seq. An append locks the stream row (an upsert that adds the batch size), so seqs are
//! gapless and unique across every client of the database; it NOTIFYs in the same transaction.
//!
//! `wait` is woken by LISTEN on a dedicated connection (opened on the first wait, reconnected
//! after a failure) and by this process's own appends; it also polls the stream's last seq, so
//! an event whose notification was lost (a reconnect, a server restart) is still seen.

use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{lock, pg_err, read, write, Inner, CHANNEL};
use crate::clock::{iso8601, new_id, now_ms};
use crate::error::{ErrorCode, PersistError, Result};
use crate::model::{NewEvent, StoredEvent};
use crate::validate::prefix_successor;

/// Poll interval while the listening connection is up / down.
const POLL_LISTENING: Duration = Duration::from_millis(1000);
const POLL_DEAF: Duration = Duration::from_millis(200);

pub async fn append(
    inner: &Inner,
    stream: String,
    events: Vec<NewEvent>,
    expected: Option<u64>,
) -> Result<u64> {
    let store = inner.store_id();
    let n = events.len() as i64;
    let time = iso8601(now_ms());
    let (mut kinds, mut datas, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        kinds.push(e.kind);
        datas.push(e.data);
        ids.push(new_id());
    }
    let payload = format!("{}/{}/{}", inner.schema, store, stream);
    write!(inner, c => {
        c.batch_execute("BEGIN").await.map_err(pg_err)?;
        let res: Result<u64> = async {
            let bump = c.prepare_cached(
                "INSERT INTO persist_event_streams (store_id, stream, last_seq) VALUES ($1, $2, $3)
                 ON CONFLICT (store_id, stream) DO UPDATE SET last_seq = persist_event_streams.last_seq + $3
                 RETURNING last_seq",
            ).await.map_err(pg_err)?;
            let last: i64 = c.query_one(&bump, &[&store, &stream, &n]).await.map_err(pg_err)?.get(0);
            let before = (last - n) as u64;
            if let Some(expected) = expected {
                if expected != before {
                    return Err(PersistError::conflict(format!(
                        "stream {stream:?}: expectedSeq is {expected} but the stream is at seq {before}"
                    )));
                }
            }
            let insert = c.prepare_cached(
                "WITH ins AS (INSERT INTO persist_events (store_id, stream, seq, type, data, time, id)
                   SELECT $1, $2, $3 + ord, k, d, $4, i
                   FROM unnest($5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS t(k, d, i, ord))
                 SELECT pg_notify($8, $9)",
            ).await.map_err(pg_err)?;
            let base = last - n;
            c.execute(&insert, &[&store, &stream, &base, &time, &kinds, &datas, &ids, &CHANNEL, &payload]).await.map_err(pg_err)?;
            Ok(last as u64)
        }.await;
        match res {
            Ok(last) => {
                c.batch_execute("COMMIT").await.map_err(pg_err)?;
                Ok(last)
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    })
}

pub async fn last_seq(inner: &Inner, stream: &str) -> Result<u64> {
    let store = inner.store_id();
    let row = read!(inner, c => {
        let stmt = c.prepare_cached(
            "SELECT last_seq FROM persist_event_streams WHERE store_id = $1 AND stream = $2",
        ).await.map_err(pg_err)?;
        c.query_opt(&stmt, &[&store, &stream]).await.map_err(pg_err)
    })?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0)) as u64)
}

pub async fn read_page(
    inner: &Inner,
    stream: String,
    from: u64,
    reverse: bool,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let store = inner.store_id();
    let sql = if reverse {
        "SELECT seq, type, data, time, id FROM persist_events WHERE store_id = $1 AND stream = $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4"
    } else {
        "SELECT seq, type, data, time, id FROM persist_events WHERE store_id = $1 AND stream = $2 AND seq >= $3 ORDER BY seq ASC LIMIT $4"
    };
    let from = from.min(i64::MAX as u64) as i64;
    let limit = limit as i64;
    let rows = read!(inner, c => {
        let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
        c.query(&stmt, &[&store, &stream, &from, &limit]).await.map_err(pg_err)
    })?;
    Ok(rows
        .iter()
        .map(|r| StoredEvent {
            stream: stream.clone(),
            seq: r.get::<_, i64>(0) as u64,
            kind: r.get(1),
            data: r.get(2),
            time: r.get(3),
            id: r.get(4),
        })
        .collect())
}

pub async fn streams_page(
    inner: &Inner,
    prefix: String,
    after: Option<String>,
    limit: usize,
) -> Result<Vec<String>> {
    let store = inner.store_id();
    let mut sql =
        "SELECT stream FROM persist_event_streams WHERE store_id = $1 AND stream >= $2".to_string();
    let mut texts = vec![prefix.clone()];
    if let Some(succ) = prefix_successor(&prefix) {
        texts.push(succ);
        sql.push_str(&format!(" AND stream < ${}", texts.len() + 1));
    }
    if let Some(a) = after {
        texts.push(a);
        sql.push_str(&format!(" AND stream > ${}", texts.len() + 1));
    }
    sql.push_str(&format!(" ORDER BY stream LIMIT ${}", texts.len() + 2));
    let limit = limit as i64;
    let rows = read!(inner, c => {
        let stmt = c.prepare_cached(&sql).await.map_err(pg_err)?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&store];
        for t in &texts {
            params.push(t);
        }
        params.push(&limit);
        c.query(&stmt, &params).await.map_err(pg_err)
    })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Returns once the stream's last seq passes `after_seq`, or after `timeout`. A lost
/// connection is not an error here (the caller reads again and the pool reconnects).
pub async fn wait(inner: &Inner, stream: String, after_seq: u64, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changed = inner.changed.subscribe();
    loop {
        match last_seq(inner, &stream).await {
            Ok(last) if last > after_seq => return Ok(()),
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::Closed => return Err(e),
            Err(e) if matches!(e.code, ErrorCode::Connection | ErrorCode::Timeout) => {}
            Err(e) => return Err(e),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let listening = *lock(&inner.listening);
        let poll = if listening { POLL_LISTENING } else { POLL_DEAF };
        let wake = (now + poll).min(deadline);
        tokio::select! {
            res = changed.changed() => { if res.is_err() { return Err(PersistError::closed()); } }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// The LISTEN connection: forwards notifications for this store to `inner.changed`; reconnects
/// after a failure; ends when the backend is dropped or closed.
pub async fn listen_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut config = inner.pg_config.clone();
        config.application_name(format!("cuitty-persist-listen/{}", inner.schema));
        let prefix = format!("{}/{}/", inner.schema, inner.store_id());
        drop(inner);
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(msg) = messages.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx.send(n.payload().to_string()).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                if let Some(inner) = weak.upgrade() {
                    *lock(&inner.listening) = true;
                    // Waiters re-check: something may have been appended while deaf.
                    inner.bump();
                }
                while let Some(payload) = rx.recv().await {
                    let Some(inner) = weak.upgrade() else {
                        driver.abort();
                        return;
                    };
                    if payload.starts_with(&prefix) {
                        inner.bump();
                    }
                }
            }
            driver.abort();
            if let Some(inner) = weak.upgrade() {
                *lock(&inner.listening) = false;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
