//! A detached container's stdout and stderr, kept by its shim in
//! `container.log` in the state directory, one line per output line:
//!
//! ```text
//! 2026-11-29T04:40:00.123456789Z stdout hello
//! 2026-11-29T04:40:00.123501234Z stderr oops
//! ```
//!
//! Bounded as Docker's json-file driver with `max-size` and `max-file=2`:
//! past [`MAX_SIZE`] the file becomes `container.log.1` (the older one
//! goes) and a new one starts, so a chatty container never fills the disk
//! and `logs` still shows the last megabyte or two.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// When the current file is rotated.
pub const MAX_SIZE: u64 = 1024 * 1024;
/// A line longer than this is written in pieces: the shim buffers no more.
pub const MAX_LINE: usize = 16 * 1024;

pub fn current(dir: &Path) -> PathBuf {
    dir.join("container.log")
}

pub fn rotated(dir: &Path) -> PathBuf {
    dir.join("container.log.1")
}

/// The shim's side: lines in, a bounded pair of files out.
pub struct Writer {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

impl Writer {
    pub fn create(dir: &Path) -> std::io::Result<Writer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(current(dir))?;
        let size = file.metadata()?.len();
        Ok(Writer {
            dir: dir.to_path_buf(),
            file: Some(file),
            size,
            max: MAX_SIZE,
        })
    }

    /// One line of `stream` ("stdout" or "stderr"), without its newline.
    /// Errors are the caller's to log, never to stop on.
    pub fn line(&mut self, stream: &str, text: &[u8]) -> std::io::Result<()> {
        let mut rec = Vec::with_capacity(text.len() + 48);
        rec.extend_from_slice(crate::state::now_rfc3339().as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(text);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.max {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                self.file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(current(&self.dir))?,
                );
                self.size = 0;
                self.file.as_mut().ok_or(std::io::ErrorKind::Other)?
            }
        };
        file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    /// The current file becomes the old one; `line` opens a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        std::fs::rename(current(&self.dir), rotated(&self.dir))
    }
}

/// Splits a stream's bytes into lines, holding back an unfinished one.
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The complete lines in `partial + data` (a terminal's "\r\n" counts
    /// as one newline), and over-long pieces.
    pub fn feed(&mut self, data: &[u8], mut out: impl FnMut(&[u8])) {
        for &b in data {
            if b == b'\n' {
                if self.partial.last() == Some(&b'\r') {
                    self.partial.pop();
                }
                out(&self.partial);
                self.partial.clear();
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    out(&self.partial);
                    self.partial.clear();
                }
            }
        }
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self, mut out: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            out(&self.partial);
            self.partial.clear();
        }
    }
}

/// One record of the log, as `logs` reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub stream: String,
    pub text: String,
}

pub fn parse(line: &str) -> Option<Record> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Record {
        time: time.into(),
        stream: stream.into(),
        text: text.into(),
    })
}

/// Every record kept, oldest first.
pub fn read_all(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    for p in [rotated(dir), current(dir)] {
        if let Ok(f) = File::open(&p) {
            read_records(&mut BufReader::new(f), &mut out);
        }
    }
    out
}

fn read_records(r: &mut impl BufRead, out: &mut Vec<Record>) {
    let mut buf = Vec::new();
    while let Ok(n) = r.read_until(b'\n', &mut buf) {
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        buf.pop();
        if let Some(rec) = parse(&String::from_utf8_lossy(&buf)) {
            out.push(rec);
        }
        buf.clear();
    }
}

/// Follows `container.log` across rotations: reads what was appended since
/// the last call.
pub struct Follower {
    dir: PathBuf,
    file: Option<File>,
    /// Bytes of an unfinished record, kept for the next call.
    carry: Vec<u8>,
}

impl Follower {
    /// Starting at the current end of the log (what `read_all` returned
    /// before is not read again).
    pub fn at_end(dir: &Path) -> Follower {
        let file = File::open(current(dir)).ok().map(|mut f| {
            let _ = f.seek(SeekFrom::End(0));
            f
        });
        Follower {
            dir: dir.to_path_buf(),
            file,
            carry: Vec::new(),
        }
    }

    pub fn poll(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        loop {
            if let Some(f) = &mut self.file {
                let _ = f.read_to_end(&mut self.carry);
            }
            let mut records = Vec::new();
            let end = self
                .carry
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            read_records(&mut &self.carry[..end], &mut records);
            self.carry.drain(..end);
            out.extend(records);
            // Rotated under us: what we hold is now container.log.1, read
            // to its end above; the new file starts from its beginning.
            let now = std::fs::metadata(current(&self.dir)).ok().map(|m| ino(&m));
            let ours = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| ino(&m));
            match now {
                Some(n) if Some(n) != ours => {
                    self.file = File::open(current(&self.dir)).ok();
                    self.carry.clear();
                }
                _ => return out,
            }
        }
    }
}

fn ino(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_rotate_without_loss() {
        let dir = std::env::temp_dir().join(format!("nsbox-outlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = Writer::create(&dir).unwrap();
        w.max = 1000;
        let mut follow = Follower::at_end(&dir);
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        for i in 0..30 {
            lines.feed(format!("line {i}\r\n").as_bytes(), |l| {
                w.line("stdout", l).unwrap()
            });
            seen.extend(follow.poll());
        }
        lines.feed(b"no newline", |_| panic!("not a line yet"));
        lines.finish(|l| w.line("stderr", l).unwrap());
        seen.extend(follow.poll());
        assert!(rotated(&dir).exists(), "rotated past its bound");
        let all = read_all(&dir);
        // 30 lines of ~46 bytes in files of 1000: the oldest are gone, the
        // newest two files' worth kept, in order.
        let last = all.last().unwrap();
        assert_eq!(
            (last.stream.as_str(), last.text.as_str()),
            ("stderr", "no newline")
        );
        assert_eq!(all[all.len() - 2].text, "line 29");
        // The follower saw every line, across the rotations.
        assert_eq!(seen.len(), 31);
        assert_eq!(seen[0].text, "line 0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
