//! `mqlite`: inspect and operate an mqlite (RocketMQ-format) store directory, like `sqlite3`
//! does a database, with mqadmin's verbs where they make sense for one store. Reading verbs
//! open the store read-only (no lock, nothing written), so they work while another process
//! has it open and writes; `send` and `reset` take the lock.
//!
//! Every verb prints a table, or JSON with `--json`. Errors are one line on stderr (exit 1);
//! `verify` exits 2 when it finds damage. `mqlite --help` and `mqlite VERB --help` list the
//! options.

mod inspect;
mod messages;
mod output;
mod time;
mod write;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use mqlite::Store;

use output::BodyFormat;

/// Inspect and operate an mqlite store directory (RocketMQ's on-disk format).
///
/// Reading verbs open the store read-only: no lock is taken and nothing is written, so they
/// work while an application has the store open. `send` and `reset` take the directory lock
/// and refuse while another process holds it.
#[derive(Debug, Parser)]
#[command(name = "mqlite", version, max_term_width = 100)]
struct Cli {
    /// Print JSON instead of tables (`tail`: one JSON object per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

/// Times (`--begin`, `--end`, `--time`): ms since the Unix epoch, `now`, an ISO-8601 UTC time
/// (`2026-12-02T14:03:05Z`, `2026-12-02 14:03:05.123`) or a time ago (`-90s`, `-15m`, `-2h`,
/// `-1d`).
#[derive(Debug, Subcommand)]
enum Verb {
    /// Topics with their queue and message counts (mqadmin topicList).
    Topics {
        /// The store directory.
        dir: PathBuf,
    },
    /// Per queue: min and max offset, last store time (mqadmin topicStatus).
    Topic {
        /// The store directory.
        dir: PathBuf,
        /// The topic.
        topic: String,
    },
    /// Consumer groups with committed offsets, per topic, with their lag.
    Groups {
        /// The store directory.
        dir: PathBuf,
    },
    /// Per queue: broker offset, consumer offset, lag, last consumed store time
    /// (mqadmin consumerProgress).
    Progress {
        /// The store directory.
        dir: PathBuf,
        /// Only this group.
        group: Option<String>,
    },
    /// Messages of a topic (mqadmin printMsg).
    Print {
        /// The store directory.
        dir: PathBuf,
        /// The topic.
        topic: String,
        /// Only this queue.
        #[arg(long)]
        queue: Option<u32>,
        /// First queue offset (default: each queue's min offset).
        #[arg(long)]
        from: Option<u64>,
        /// Stop before this queue offset (default: each queue's max offset).
        #[arg(long)]
        to: Option<u64>,
        /// Tag expression: `*`, `TagA` or `TagA || TagB`.
        #[arg(long, default_value = "*", conflicts_with = "sql")]
        tag: String,
        /// SQL92 property filter instead of tags, e.g. `region = 'eu' AND amount > 100`.
        #[arg(long)]
        sql: Option<String>,
        /// At most this many messages.
        #[arg(long)]
        limit: Option<u64>,
        /// How to show bodies.
        #[arg(long, value_enum, default_value_t = BodyFormat::Utf8)]
        body: BodyFormat,
    },
    /// One message by offset msgId or UNIQ_KEY (mqadmin queryMsgById).
    Get {
        /// The store directory.
        dir: PathBuf,
        /// An offset msgId (32 hex digits naming a CommitLog offset) or a message's UNIQ_KEY.
        msg_id: String,
        /// How to show the body.
        #[arg(long, value_enum, default_value_t = BodyFormat::Utf8)]
        body: BodyFormat,
    },
    /// Messages of a topic by business key, newest first (mqadmin queryMsgByKey).
    Query {
        /// The store directory.
        dir: PathBuf,
        /// The topic.
        topic: String,
        /// The key (`Message::with_keys`) or UNIQ_KEY.
        key: String,
        /// Stored at or after this time.
        #[arg(long, value_parser = time::parse, allow_hyphen_values = true)]
        begin: Option<u64>,
        /// Stored at or before this time.
        #[arg(long, value_parser = time::parse, allow_hyphen_values = true)]
        end: Option<u64>,
        /// At most this many messages.
        #[arg(long, default_value_t = 64)]
        max: usize,
        /// How to show bodies.
        #[arg(long, value_enum, default_value_t = BodyFormat::Utf8)]
        body: BodyFormat,
    },
    /// Follows a topic of a live store, printing messages as they are stored.
    Tail {
        /// The store directory.
        dir: PathBuf,
        /// The topic.
        topic: String,
        /// Tag expression: `*`, `TagA` or `TagA || TagB`.
        #[arg(long, default_value = "*", conflicts_with = "sql")]
        tag: String,
        /// SQL92 property filter instead of tags, e.g. `region = 'eu' AND amount > 100`.
        #[arg(long)]
        sql: Option<String>,
        /// Start with the messages already stored (default: only new ones).
        #[arg(long)]
        from_start: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// How to show bodies.
        #[arg(long, value_enum, default_value_t = BodyFormat::Utf8)]
        body: BodyFormat,
    },
    /// Full check: every CommitLog record's CRC, every consume queue unit and index entry
    /// against its record. Exit status 2 when damage is found.
    Verify {
        /// The store directory.
        dir: PathBuf,
        /// Show a progress bar on stderr (the default when stderr is a terminal).
        #[arg(long)]
        progress: bool,
    },
    /// Sizes on disk, message counts, and messages stored per second over the last 1, 5 and
    /// 15 minutes (from store times).
    Stats {
        /// The store directory.
        dir: PathBuf,
    },
    /// Sends one message (takes the store's lock).
    #[command(group(ArgGroup::new("content").required(true).args(["body", "file"])))]
    Send {
        /// The store directory (created if missing).
        dir: PathBuf,
        /// The topic (created with 4 queues if missing).
        topic: String,
        /// The message's tag.
        #[arg(long)]
        tag: Option<String>,
        /// A key (repeat for several).
        #[arg(long)]
        key: Vec<String>,
        /// The body as text.
        #[arg(long)]
        body: Option<String>,
        /// The body from a file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Moves a group's offsets of a topic to the first message stored at or after a time
    /// (mqadmin resetOffsetByTime; takes the store's lock).
    Reset {
        /// The store directory.
        dir: PathBuf,
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The time.
        #[arg(long, value_parser = time::parse, allow_hyphen_values = true)]
        time: u64,
    },
}

/// A command line failure: a message, and the exit status.
struct Fail(String, u8);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail(e.to_string(), 1)
    }
}

type Res<T = ()> = Result<T, Fail>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message is several lines; the first says what is wrong.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("mqlite: {first} (see mqlite --help)");
            return ExitCode::from(1);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg, code)) => {
            if !msg.is_empty() {
                // Errors name their file and offset; keep them on one line.
                eprintln!("mqlite: {}", msg.replace('\n', " "));
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Res {
    let json = cli.json;
    match &cli.verb {
        Verb::Topics { dir } => inspect::topics(json, &open_ro(dir)?),
        Verb::Topic { dir, topic } => inspect::topic(json, &open_ro(dir)?, topic),
        Verb::Groups { dir } => inspect::groups(json, &open_ro(dir)?),
        Verb::Progress { dir, group } => inspect::progress(json, &open_ro(dir)?, group.as_deref()),
        Verb::Verify { dir, progress } => inspect::verify(json, &open_ro(dir)?, *progress),
        Verb::Stats { dir } => inspect::stats(json, &open_ro(dir)?),
        Verb::Print {
            dir,
            topic,
            queue,
            from,
            to,
            tag,
            sql,
            limit,
            body,
        } => {
            let range = messages::Range {
                queue: *queue,
                from: *from,
                to: *to,
                limit: *limit,
            };
            let filter = messages::selector(tag, sql.as_deref())?;
            messages::print(json, &open_ro(dir)?, topic, &filter, range, *body)
        }
        Verb::Get { dir, msg_id, body } => messages::get(json, &open_ro(dir)?, msg_id, *body),
        Verb::Query {
            dir,
            topic,
            key,
            begin,
            end,
            max,
            body,
        } => {
            let window = (begin.unwrap_or(0), end.unwrap_or(u64::MAX));
            messages::query(json, &open_ro(dir)?, topic, key, window, *max, *body)
        }
        Verb::Tail {
            dir,
            topic,
            tag,
            sql,
            from_start,
            count,
            body,
        } => {
            let filter = messages::selector(tag, sql.as_deref())?;
            messages::tail(
                json,
                &open_ro(dir)?,
                topic,
                &filter,
                *from_start,
                *count,
                *body,
            )
        }
        Verb::Send {
            dir,
            topic,
            tag,
            key,
            body,
            file,
        } => {
            let content = match (body, file) {
                (Some(b), _) => b.as_bytes().to_vec(),
                (None, Some(f)) => {
                    std::fs::read(f).map_err(|e| Fail(format!("read {}: {e}", f.display()), 1))?
                }
                (None, None) => return Err(Fail("send needs --body or --file".into(), 1)),
            };
            write::send(json, dir, topic, tag.as_deref(), key, content)
        }
        Verb::Reset {
            dir,
            group,
            topic,
            time,
        } => write::reset(json, dir, group, topic, *time),
    }
}

/// Opens a store read-only; a directory that is not a store is an error, not a new store.
fn open_ro(dir: &Path) -> Res<Store> {
    if !dir.join("commitlog").is_dir() && !dir.join("config").is_dir() {
        return Err(Fail(
            format!(
                "{}: not an mqlite store (no commitlog/ or config/)",
                dir.display()
            ),
            1,
        ));
    }
    Ok(Store::open_read_only(dir)?)
}
