//! The bounded write-ahead file of the disk mode.
//!
//! Records are appended, one line each (`<id>\t<json>\n`), to numbered segment files in a
//! directory; a record is in the file before [`Wal::append`] returns, so it survives the process
//! being killed. The shipper reads batches from a cursor and moves the cursor (kept in the file
//! `cursor`, replaced atomically) once the sink acknowledged them. When the files would exceed
//! the budget, the oldest segment is removed and its unshipped records are counted as dropped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::sink::Record;

/// Most bytes read for one batch.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug)]
struct Segment {
    seq: u64,
    bytes: u64,
    records: u64,
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    writer: File,
    /// The segment and byte offset of the first unshipped record.
    cursor_seq: u64,
    cursor_offset: u64,
    /// Records of the cursor segment before the cursor.
    shipped_in_cursor: u64,
    total_bytes: u64,
    pending: u64,
}

/// A batch read from the file, to be committed once shipped.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) records: Vec<Record>,
    seq: u64,
    end: u64,
    lines: u64,
    /// Lines that could not be read back (counted as failed, skipped).
    pub(crate) unreadable: u64,
}

#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    budget: u64,
    segment_bytes: u64,
    state: Mutex<State>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:020}.log"))
}

fn io_error(message: &str) -> std::io::Error {
    std::io::Error::other(message.to_owned())
}

impl Wal {
    /// Opens (or creates) the file in `dir`, keeping at most `budget` bytes; a record cut short
    /// by a crash at the end of the last segment is removed.
    pub(crate) fn open(dir: &Path, budget: u64) -> std::io::Result<(Self, u64)> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("segment-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        seqs.sort_unstable();
        let (mut cursor_seq, mut cursor_offset) = fs::read_to_string(dir.join("cursor"))
            .ok()
            .and_then(|text| {
                let (seq, offset) = text.trim().split_once(' ')?;
                Some((seq.parse().ok()?, offset.parse().ok()?))
            })
            .unwrap_or((0, 0));
        let mut segments = VecDeque::new();
        let mut shipped_in_cursor = 0;
        let mut total_bytes = 0;
        let mut pending = 0;
        let last = seqs.last().copied();
        for seq in seqs {
            let path = segment_path(dir, seq);
            if seq < cursor_seq {
                // Shipped entirely; left behind by a crash before its removal.
                let _ = fs::remove_file(&path);
                continue;
            }
            let mut data = fs::read(&path)?;
            let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if complete < data.len() && Some(seq) == last {
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(complete as u64)?;
                data.truncate(complete);
            }
            let records = data.iter().filter(|b| **b == b'\n').count() as u64;
            if segments.is_empty() {
                if seq != cursor_seq {
                    cursor_seq = seq;
                    cursor_offset = 0;
                }
                let offset = usize::try_from(cursor_offset)
                    .unwrap_or(usize::MAX)
                    .min(complete);
                // Only a cursor at a line boundary is trusted.
                let offset = data
                    .get(..offset)
                    .and_then(|head| head.iter().rposition(|b| *b == b'\n'))
                    .map_or(0, |i| i + 1);
                cursor_offset = offset as u64;
                shipped_in_cursor = data
                    .get(..offset)
                    .map_or(0, |head| head.iter().filter(|b| **b == b'\n').count())
                    as u64;
            }
            total_bytes += data.len() as u64;
            pending += records;
            segments.push_back(Segment {
                seq,
                bytes: data.len() as u64,
                records,
            });
        }
        pending -= shipped_in_cursor;
        if segments.is_empty() {
            cursor_seq = cursor_seq.max(1);
            cursor_offset = 0;
            segments.push_back(Segment {
                seq: cursor_seq,
                bytes: 0,
                records: 0,
            });
        }
        let last_seq = segments.back().map_or(cursor_seq, |s| s.seq);
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, last_seq))?;
        let wal = Self {
            dir: dir.to_owned(),
            budget: budget.max(4096),
            segment_bytes: (budget / 8).clamp(4096, 64 << 20),
            state: Mutex::new(State {
                segments,
                writer,
                cursor_seq,
                cursor_offset,
                shipped_in_cursor,
                total_bytes,
                pending,
            }),
        };
        Ok((wal, pending))
    }

    /// Appends a record; returns how many older records were dropped to stay in the budget.
    pub(crate) fn append(&self, record: &Record) -> std::io::Result<u64> {
        let id: String = record
            .id
            .chars()
            .map(|c| if c == '\t' || c == '\n' { '_' } else { c })
            .collect();
        let line = format!("{id}\t{}\n", record.body);
        let len = line.len() as u64;
        let mut state = self.state.lock().map_err(|_| io_error("poisoned"))?;
        let current = state.segments.back().map_or(0, |s| s.bytes);
        if current > 0
            && (current + len > self.segment_bytes || state.total_bytes + len > self.budget)
        {
            let seq = state.segments.back().map_or(1, |s| s.seq + 1);
            state.writer = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, seq))?;
            state.segments.push_back(Segment {
                seq,
                bytes: 0,
                records: 0,
            });
        }
        let mut dropped = 0;
        while state.total_bytes + len > self.budget && state.segments.len() > 1 {
            let Some(oldest) = state.segments.pop_front() else {
                break;
            };
            let lost = if oldest.seq == state.cursor_seq {
                oldest.records - state.shipped_in_cursor
            } else {
                oldest.records
            };
            dropped += lost;
            state.pending -= lost;
            state.total_bytes -= oldest.bytes;
            let _ = fs::remove_file(segment_path(&self.dir, oldest.seq));
            if let Some(next) = state.segments.front() {
                state.cursor_seq = next.seq;
            }
            state.cursor_offset = 0;
            state.shipped_in_cursor = 0;
        }
        state.writer.write_all(line.as_bytes())?;
        if let Some(last) = state.segments.back_mut() {
            last.bytes += len;
            last.records += 1;
        }
        state.total_bytes += len;
        state.pending += 1;
        Ok(dropped)
    }

    /// Records written and not yet shipped.
    pub(crate) fn pending(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.pending)
    }

    /// Reads up to `max` records from the cursor.
    pub(crate) fn read(&self, max: usize) -> std::io::Result<Option<Batch>> {
        let mut state = self.state.lock().map_err(|_| io_error("poisoned"))?;
        loop {
            let seq = state.cursor_seq;
            let Some(segment) = state.segments.iter().find(|s| s.seq == seq) else {
                return Ok(None);
            };
            let is_last = state.segments.back().is_some_and(|s| s.seq == seq);
            if state.cursor_offset >= segment.bytes {
                if is_last {
                    return Ok(None);
                }
                // Shipped entirely: remove it and go on with the next.
                let bytes = segment.bytes;
                state.segments.retain(|s| s.seq != seq);
                state.total_bytes -= bytes;
                let _ = fs::remove_file(segment_path(&self.dir, seq));
                if let Some(next) = state.segments.front() {
                    state.cursor_seq = next.seq;
                }
                state.cursor_offset = 0;
                state.shipped_in_cursor = 0;
                self.save_cursor(&state)?;
                continue;
            }
            let want = usize::try_from(segment.bytes - state.cursor_offset)
                .unwrap_or(READ_CHUNK)
                .min(READ_CHUNK);
            let mut file = File::open(segment_path(&self.dir, seq))?;
            file.seek(SeekFrom::Start(state.cursor_offset))?;
            let mut data = vec![0; want];
            let got = read_full(&mut file, &mut data)?;
            data.truncate(got);
            let mut batch = Batch {
                records: Vec::new(),
                seq,
                end: state.cursor_offset,
                lines: 0,
                unreadable: 0,
            };
            let mut start = 0;
            while batch.records.len() < max {
                let Some(rest) = data.get(start..) else { break };
                let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                    break;
                };
                let line = rest.get(..nl).unwrap_or_default();
                start += nl + 1;
                batch.end += nl as u64 + 1;
                batch.lines += 1;
                match parse_line(line) {
                    Some(record) => batch.records.push(record),
                    None => batch.unreadable += 1,
                }
            }
            if batch.lines == 0 {
                if want == READ_CHUNK {
                    return Err(io_error("a decision log record is larger than 1 MiB"));
                }
                return Ok(None);
            }
            return Ok(Some(batch));
        }
    }

    /// Moves the cursor past a shipped batch.
    pub(crate) fn commit(&self, batch: &Batch) -> std::io::Result<()> {
        let mut state = self.state.lock().map_err(|_| io_error("poisoned"))?;
        // The segment may have been dropped for the budget meanwhile.
        if state.cursor_seq != batch.seq || state.cursor_offset > batch.end {
            return Ok(());
        }
        state.cursor_offset = batch.end;
        state.shipped_in_cursor += batch.lines;
        state.pending = state.pending.saturating_sub(batch.lines);
        self.save_cursor(&state)
    }

    fn save_cursor(&self, state: &State) -> std::io::Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        fs::write(
            &tmp,
            format!("{} {}\n", state.cursor_seq, state.cursor_offset),
        )?;
        fs::rename(&tmp, self.dir.join("cursor"))
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match file.read(rest)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(line).ok()?;
    let (id, body) = text.split_once('\t')?;
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let outcome = value
        .get("outcome")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    Some(Record {
        id: id.to_owned(),
        outcome,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        Record {
            id: format!("id-{i}"),
            outcome: "deny".into(),
            body: format!("{{\"outcome\":\"deny\",\"n\":{i}}}"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warden-wal-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_a_reopen_and_shipped_ones_are_not_read_again() {
        let dir = temp_dir("reopen");
        let (wal, pending) = Wal::open(&dir, 1 << 20).unwrap();
        assert_eq!(pending, 0);
        for i in 0..10 {
            wal.append(&record(i)).unwrap();
        }
        let batch = wal.read(4).unwrap().unwrap();
        assert_eq!(batch.records.len(), 4);
        wal.commit(&batch).unwrap();
        drop(wal);
        let (wal, pending) = Wal::open(&dir, 1 << 20).unwrap();
        assert_eq!(pending, 6);
        let batch = wal.read(100).unwrap().unwrap();
        assert_eq!(batch.records.first().unwrap().id, "id-4");
        assert_eq!(batch.records.len(), 6);
        wal.commit(&batch).unwrap();
        assert!(wal.read(100).unwrap().is_none());
        assert_eq!(wal.pending(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_cut_and_garbage_lines_are_skipped_not_shipped() {
        let dir = temp_dir("torn");
        let (wal, _) = Wal::open(&dir, 1 << 20).unwrap();
        wal.append(&record(0)).unwrap();
        drop(wal);
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment_path(&dir, 1))
            .unwrap();
        file.write_all(b"garbage without a tab\nid-9\t{\"outcome\":\"de")
            .unwrap();
        drop(file);
        let (wal, pending) = Wal::open(&dir, 1 << 20).unwrap();
        assert_eq!(pending, 2);
        wal.append(&record(1)).unwrap();
        let batch = wal.read(100).unwrap().unwrap();
        let ids: Vec<_> = batch.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["id-0", "id-1"]);
        assert_eq!(batch.unreadable, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_budget_drops_the_oldest_records_and_counts_them() {
        let dir = temp_dir("budget");
        let (wal, _) = Wal::open(&dir, 8192).unwrap();
        let mut dropped = 0;
        for i in 0..1000 {
            dropped += wal.append(&record(i)).unwrap();
        }
        assert!(dropped > 0);
        let on_disk: u64 = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 8192 + 64, "{on_disk}");
        assert_eq!(wal.pending() + dropped, 1000);
        // The newest record is kept, the oldest is gone.
        let mut ids = Vec::new();
        while let Some(batch) = wal.read(1000).unwrap() {
            ids.extend(batch.records.iter().map(|r| r.id.clone()));
            wal.commit(&batch).unwrap();
        }
        assert_eq!(ids.last().unwrap(), "id-999");
        assert!(!ids.contains(&"id-0".to_owned()));
        assert_eq!(ids.len() as u64 + dropped, 1000);
        fs::remove_dir_all(&dir).unwrap();
    }
}
