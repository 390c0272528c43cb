//! The state's line format (NDJSON): a header line, one line per record, an end line.
//!
//! ```text
//! {"larkstack_state":2,"fixture":"[[tenants]]\n..."}
//! {"chat":{"chat_id":"oc_...",...}}
//! {"message":{...}}
//! {"token":{...}}
//! {"end":{"records":3}}
//! ```
//!
//! Both directions stream: an export is written as the store reads it, an import is parsed and
//! handed to the store in batches as it arrives, so neither holds the state in memory.

use axum::body::{Body, Bytes};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::control_error;
use crate::envelope::ApiError;
use crate::error::ControlErr;
use crate::store::{ImportBatch, StateRecord, StoreError};

/// Format version of exported states (1 was a single JSON document).
pub const STATE_FORMAT: u32 = 2;
/// Records handed to the store at a time on import.
pub const IMPORT_BATCH: usize = 1000;
/// The longest line an import accepts (one record: a chat with all its members).
pub const MAX_LINE: usize = 64 << 20;
/// Bytes of lines the export collects before sending them as one chunk.
const EXPORT_CHUNK: usize = 64 << 10;

/// The first line: the format and the directory's fixture, when larkstack knows its text.
#[derive(Serialize, Deserialize)]
pub struct StateHeader {
    pub larkstack_state: u32,
    pub fixture: Option<String>,
}

/// The last line: how many records came before it, so a cut-off file is never taken for a
/// whole one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: End,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    records: u64,
}

fn push_line(buf: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *buf, value).expect("plain data serialises");
    buf.push(b'\n');
}

/// The export's body: `header`, then every record the store sends (`first` is one already
/// taken), then the end line. A store failure midway ends the body with an error, so the client
/// sees a broken transfer rather than a short state.
pub fn export_body(
    header: &StateHeader,
    first: Option<Result<StateRecord, StoreError>>,
    records: mpsc::Receiver<Result<StateRecord, StoreError>>,
) -> Body {
    struct Export {
        pending: Option<Result<StateRecord, StoreError>>,
        records: mpsc::Receiver<Result<StateRecord, StoreError>>,
        buf: Vec<u8>,
        count: u64,
        done: bool,
    }
    let mut buf = Vec::with_capacity(EXPORT_CHUNK * 2);
    push_line(&mut buf, header);
    let start = Export { pending: first, records, buf, count: 0, done: false };
    let chunks = futures_util::stream::unfold(start, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let next = match s.pending.take() {
                Some(item) => Some(item),
                None => s.records.recv().await,
            };
            match next {
                Some(Ok(record)) => {
                    push_line(&mut s.buf, &record);
                    s.count += 1;
                    if s.buf.len() >= EXPORT_CHUNK {
                        let chunk = Bytes::from(std::mem::replace(&mut s.buf, Vec::with_capacity(EXPORT_CHUNK * 2)));
                        return Some((Ok(chunk), s));
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "state export failed");
                    s.done = true;
                    return Some((Err(std::io::Error::other(format!("state export failed: {e}"))), s));
                }
                None => {
                    push_line(&mut s.buf, &EndLine { end: End { records: s.count } });
                    s.done = true;
                    return Some((Ok(Bytes::from(std::mem::take(&mut s.buf))), s));
                }
            }
        }
    });
    Body::from_stream(chunks)
}

/// Lines of a streamed body, at most `MAX_LINE` bytes each.
pub struct Lines<S> {
    body: S,
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// How far past `start` there is surely no newline.
    scanned: usize,
    eof: bool,
    /// 1-based number of the last line returned.
    pub number: u64,
}

impl<S, E> Lines<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(body: S) -> Self {
        Lines { body, buf: Vec::new(), start: 0, scanned: 0, eof: false, number: 0 }
    }

    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        loop {
            let rest = &self.buf[self.start + self.scanned..];
            if let Some(at) = rest.iter().position(|b| *b == b'\n') {
                let end = self.start + self.scanned + at;
                let line = self.buf[self.start..end].to_vec();
                self.start = end + 1;
                self.scanned = 0;
                self.number += 1;
                return Ok(Some(line));
            }
            self.scanned = self.buf.len() - self.start;
            if self.eof {
                if self.scanned == 0 {
                    return Ok(None);
                }
                let line = self.buf[self.start..].to_vec();
                self.start = self.buf.len();
                self.scanned = 0;
                self.number += 1;
                return Ok(Some(line));
            }
            if self.scanned > MAX_LINE {
                return Err(control_error(ControlErr::PayloadTooLarge, format!("line {} is longer than {MAX_LINE} bytes", self.number + 1)));
            }
            self.buf.drain(..self.start);
            self.start = 0;
            match self.body.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(e)) => return Err(control_error(ControlErr::BadRequest, format!("reading the request body: {e}"))),
                None => self.eof = true,
            }
        }
    }
}

/// Why feeding an import stopped early.
pub enum FeedError {
    /// The body is not a valid state: nothing is committed.
    Invalid(ApiError),
    /// The store stopped taking records; its own result says why.
    StoreGone,
}

/// Parses the records after the header and hands them to the store in batches, through the end
/// line. Returns how many records there were.
pub async fn feed<S, E>(lines: &mut Lines<S>, to: &mpsc::Sender<ImportBatch>) -> Result<u64, FeedError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut count = 0u64;
    let invalid = |msg: String| FeedError::Invalid(control_error(ControlErr::BadRequest, msg));
    loop {
        let Some(line) = lines.next().await.map_err(FeedError::Invalid)? else {
            return Err(invalid(format!("the state ends after {count} records without its end line (cut off?)")));
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let number = lines.number;
        match serde_json::from_slice::<StateRecord>(&line) {
            Ok(record) => {
                batch.push(record);
                count += 1;
                if batch.len() == IMPORT_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                    to.send(ImportBatch::Records(full)).await.map_err(|_| FeedError::StoreGone)?;
                }
            }
            Err(e) => {
                let Ok(end) = serde_json::from_slice::<EndLine>(&line) else {
                    return Err(invalid(format!("line {number}: not a state record: {e}")));
                };
                if end.end.records != count {
                    return Err(invalid(format!("the end line counts {} records, the state has {count}", end.end.records)));
                }
                while let Some(extra) = lines.next().await.map_err(FeedError::Invalid)? {
                    if !extra.iter().all(u8::is_ascii_whitespace) {
                        return Err(invalid(format!("line {}: nothing may follow the end line", lines.number)));
                    }
                }
                if !batch.is_empty() {
                    to.send(ImportBatch::Records(batch)).await.map_err(|_| FeedError::StoreGone)?;
                }
                return Ok(count);
            }
        }
    }
}
