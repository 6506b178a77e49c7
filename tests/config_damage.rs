//! A damaged config JSON is never silently replaced by an empty one: the store falls back to
//! the file's `.bak`, and without a usable one refuses to open, naming the file.

use mqlite::{Error, Message, MessageQueue, Store};

fn store_with_offsets(dir: &std::path::Path) {
    let store = Store::open(dir).unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    for i in 0..40 {
        store.put(&Message::new("t", format!("m{i}")), 0).unwrap();
    }
    let c = store.pull_consumer("g").unwrap();
    c.commit_offset(&q, 7).unwrap();
    store.close().unwrap();
    // A second commit and close, so the file has a `.bak` holding offset 7.
    let store = Store::open(dir).unwrap();
    store
        .pull_consumer("g")
        .unwrap()
        .commit_offset(&q, 9)
        .unwrap();
    store.close().unwrap();
}

/// Cuts the last two bytes that are not whitespace (closing braces): invalid JSON.
fn cut_two_bytes(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    bytes.truncate(bytes.len() - 2);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_offsets_fall_back_to_the_bak() {
    let tmp = tempfile::tempdir().unwrap();
    store_with_offsets(tmp.path());
    let file = tmp.path().join("config/consumerOffset.json");
    assert!(tmp.path().join("config/consumerOffset.json.bak").exists());
    cut_two_bytes(&file);
    let store = Store::open(tmp.path()).unwrap();
    let c = store.pull_consumer("g").unwrap();
    // The .bak is one persist behind: an older offset means redelivery, never a skip.
    assert_eq!(
        c.committed_offset(&MessageQueue::new("t", 0)).unwrap(),
        Some(7)
    );
    store.close().unwrap();
}

#[test]
fn damaged_config_without_bak_refuses_to_open() {
    for name in ["consumerOffset.json", "topics.json", "delayOffset.json"] {
        let tmp = tempfile::tempdir().unwrap();
        store_with_offsets(tmp.path());
        let store = Store::open(tmp.path()).unwrap();
        store
            .put(&Message::new("t", "later").with_delay_level(1), 0)
            .unwrap();
        store.close().unwrap();
        let file = tmp.path().join("config").join(name);
        if !file.exists() {
            continue;
        }
        let _ = std::fs::remove_file(tmp.path().join("config").join(format!("{name}.bak")));
        cut_two_bytes(&file);
        match Store::open(tmp.path()) {
            Err(Error::Corrupted { file: f, .. }) => assert_eq!(f, file, "{name}"),
            Err(e) => panic!("{name}: expected Corrupted, got {e}"),
            Ok(_) => panic!("{name}: a damaged file opened silently"),
        }
        // Removing the damaged file is the user's call; then the store opens.
        std::fs::remove_file(&file).unwrap();
        Store::open(tmp.path()).unwrap().close().unwrap();
    }
}
