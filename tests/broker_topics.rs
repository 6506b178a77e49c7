//! Topics a RocketMQ broker writes that mqlite's clients would refuse: a topic over 127 bytes
//! (stored as v2 records) and a pop-retry topic `%RETRY%{group}+{topic}`. Found on disk, they
//! are served like any other: no message skipped, no consume queue deleted, no committed
//! offset reset.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;

use mqlite::format::record::{self, RecordMeta};
use mqlite::{Message, MessageQueue, Store};

const SEG: u64 = 1 << 20;

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .commitlog_segment_size(SEG)
        .open()
        .unwrap()
}

/// Appends `n` records of `topic` queue 0 at the end of the log, as a broker would have
/// written them. Returns the new end.
fn append_as_broker(dir: &Path, mut end: u64, topic: &str, n: u64) -> u64 {
    let path = dir.join("commitlog").join(format!("{:020}", 0));
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let host: SocketAddr = "10.0.0.7:10911".parse().unwrap();
    for i in 0..n {
        let body = format!("{topic}-{i}");
        let props = "UNIQ_KEY\u{1}0A00000700002A9F0000000000000001\u{2}";
        let meta = RecordMeta {
            queue_id: 0,
            flag: 0,
            queue_offset: i,
            physical_offset: end,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: host,
            store_timestamp: 1_700_000_000_000 + i as i64,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let len = record::encoded_len(&meta, body.len(), topic.len(), props.len()).unwrap();
        let mut out = vec![0u8; len];
        record::encode_into(
            &mut out,
            &meta,
            body.as_bytes(),
            topic,
            props.len(),
            |dst| dst.copy_from_slice(props.as_bytes()),
        );
        f.write_all_at(&out, end).unwrap();
        end += len as u64;
    }
    end
}

fn bodies(store: &Store, topic: &str) -> Vec<String> {
    store
        .get_messages(&MessageQueue::new(topic, 0), 0, 1000)
        .unwrap()
        .messages
        .iter()
        .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
        .collect()
}

#[test]
fn long_and_pop_retry_topics_found_on_disk_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    store.put(&Message::new("plain", "first"), 0).unwrap();
    let end = store.commitlog_max_offset();
    store.close().unwrap();

    let long = "L".repeat(140);
    let pop_retry = "%RETRY%billing+orders";
    let end = append_as_broker(dir, end, &long, 30);
    append_as_broker(dir, end, pop_retry, 5);
    std::fs::write(
        dir.join("config").join("consumerOffset.json"),
        format!(r#"{{"offsetTable":{{"{long}@g":{{"0":13}}}}}}"#),
    )
    .unwrap();
    // The broker crashed (or was killed): recovery dispatches its records.
    std::fs::write(dir.join("abort"), b"1").unwrap();

    for round in 0..2 {
        let store = open(dir);
        let want: Vec<String> = (0..30).map(|i| format!("{long}-{i}")).collect();
        assert_eq!(bodies(&store, &long), want, "round {round}");
        let want: Vec<String> = (0..5).map(|i| format!("{pop_retry}-{i}")).collect();
        assert_eq!(bodies(&store, pop_retry), want, "round {round}");
        assert_eq!(bodies(&store, "plain"), ["first"], "round {round}");
        let c = store.pull_consumer("g").unwrap();
        assert_eq!(
            c.committed_offset(&MessageQueue::new(long.as_str(), 0))
                .unwrap(),
            Some(13),
            "round {round}"
        );
        assert!(
            dir.join("consumequeue").join(&long).join("0").is_dir(),
            "round {round}"
        );
        // Round 1 is a clean reopen that loads the consume queues written in round 0.
        store.close().unwrap();
    }
}
