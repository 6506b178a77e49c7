//! The segment sizes a store was made with, recorded in `config/mqlite.json` so that a later
//! open with other settings still reads its files.
//!
//! ```text
//! {"mappedFileSizeCommitLog": 67108864, "mappedFileSizeConsumeQueue": 600000}
//! ```
//!
//! The keys are the RocketMQ broker settings that must match when the directory is handed to
//! a broker. On open, sizes come from, in order: the record; the existing files (a store made
//! by a RocketMQ broker, or by an mqlite that did not record them); the configuration (a new
//! store). What was chosen is written back before any segment is created, atomically with a
//! `.bak`, so every mqlite store that has segments has the record.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::storage::Fs;

/// The record's path under the store directory.
pub(crate) const LAYOUT_FILE: &str = "config/mqlite.json";

const COMMITLOG_KEY: &str = "mappedFileSizeCommitLog";
const CONSUME_QUEUE_KEY: &str = "mappedFileSizeConsumeQueue";

/// Segment sizes of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    commitlog: u64,
    consume_queue: u64,
}

/// Where the sizes in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Record,
    Files,
    Config,
}

/// Sets `config`'s segment sizes to the ones the store in `dir` uses (see the module docs),
/// records them, and validates the result. Runs with the directory locked, before the engine
/// opens any segment.
pub(crate) fn resolve(fs: &Fs, dir: &Path, config: &mut StoreConfig) -> Result<()> {
    let path = dir.join(LAYOUT_FILE);
    let asked = Sizes {
        commitlog: config.commitlog_segment_size,
        consume_queue: config.consume_queue_segment_size,
    };
    let recorded = fs.read_with_backup(&path, parse)?;
    let (sizes, source) = match recorded {
        Some(s) => (s, Source::Record),
        None => match infer(fs, dir)? {
            Some(s) => (
                Sizes {
                    commitlog: s.commitlog.unwrap_or(asked.commitlog),
                    consume_queue: s.consume_queue.unwrap_or(asked.consume_queue),
                },
                Source::Files,
            ),
            None => (asked, Source::Config),
        },
    };
    config.commitlog_segment_size = sizes.commitlog;
    config.consume_queue_segment_size = sizes.consume_queue;
    config.validate().map_err(|e| match (source, e) {
        (Source::Config, e) => e,
        (_, e) => Error::corrupted(
            if source == Source::Record {
                path.clone()
            } else {
                dir.to_path_buf()
            },
            0,
            format!("segment sizes found in the store are unusable: {e}"),
        ),
    })?;
    if sizes != asked {
        ::log::info!(
            "{}: using the store's segment sizes from {} (commitlog_segment_size {}, consume_queue_segment_size {}) instead of the configured {} and {}",
            dir.display(),
            match source {
                Source::Record => LAYOUT_FILE,
                _ => "its files",
            },
            sizes.commitlog,
            sizes.consume_queue,
            asked.commitlog,
            asked.consume_queue,
        );
    }
    if source != Source::Record {
        fs.create_dir_all(&dir.join("config"))?;
        let text = json!({
            COMMITLOG_KEY: sizes.commitlog,
            CONSUME_QUEUE_KEY: sizes.consume_queue,
        });
        fs.write_atomic(&path, text.to_string().as_bytes())?;
    }
    Ok(())
}

fn parse(bytes: &[u8]) -> Option<Sizes> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(Sizes {
        commitlog: v.get(COMMITLOG_KEY)?.as_u64()?,
        consume_queue: v.get(CONSUME_QUEUE_KEY)?.as_u64()?,
    })
}

/// Sizes read off existing files, each `None` where there is no file to tell.
#[derive(Debug, Default)]
struct Inferred {
    commitlog: Option<u64>,
    consume_queue: Option<u64>,
}

/// The sizes of the store's existing segment files: the longest CommitLog segment (a trailing
/// one cut short while it was created is shorter, never longer), and the longest file of the
/// first consume queue that has one. `None` when there are no files at all.
fn infer(fs: &Fs, dir: &Path) -> Result<Option<Inferred>> {
    let mut out = Inferred {
        commitlog: longest(fs, &fs.list_segments(&dir.join("commitlog"))?)?,
        consume_queue: None,
    };
    let cq_root = dir.join("consumequeue");
    'topics: for topic in fs.list(&cq_root)?.into_iter().filter(|e| e.is_dir) {
        let topic_dir = cq_root.join(&topic.name);
        for queue in fs.list(&topic_dir)?.into_iter().filter(|e| e.is_dir) {
            let files = fs.list_segments(&topic_dir.join(&queue.name))?;
            if let Some(len) = longest(fs, &files)? {
                out.consume_queue = Some(len);
                break 'topics;
            }
        }
    }
    Ok((out.commitlog.is_some() || out.consume_queue.is_some()).then_some(out))
}

fn longest(fs: &Fs, files: &[(u64, PathBuf)]) -> Result<Option<u64>> {
    let mut max = 0;
    for (_, path) in files {
        max = max.max(fs.len(path)?);
    }
    Ok((max > 0).then_some(max))
}
