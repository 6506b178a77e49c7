//! Quickstart: open a store, write messages with tags and keys, read them back, reopen.
//!
//! `cargo run --release --example quickstart [DIR]` (a temporary directory when DIR is absent).

use std::time::Duration;

use mqlite::{FlushPolicy, Message, MessageQueue, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    println!("store directory: {}", dir.display());

    // Durable acknowledgements: each put returns once its record is on disk.
    let builder = Store::builder(&dir)
        .flush_policy(FlushPolicy::Sync {
            timeout: Duration::from_secs(5),
        })
        .commitlog_segment_size(64 << 20);
    let store = builder.clone().open()?;
    store.create_topic("orders", 4)?;

    for (i, step) in ["created", "paid", "shipped"].iter().enumerate() {
        let order = format!("ORDER-{}", i + 1);
        let msg = Message::new("orders", format!("{order} {step}").into_bytes())
            .with_tags(*step)
            .with_keys([order.as_str()])
            .with_property("region", "eu");
        let r = store.put(&msg, 0)?;
        println!(
            "put {order:<8} tag={step:<8} -> {:?} queue {} offset {} msgId {} offsetMsgId {}",
            r.status, r.queue_id, r.queue_offset, r.msg_id, r.offset_msg_id
        );
    }

    let queue = MessageQueue::new("orders", 0);
    let read = store.get_messages(&queue, 0, 32)?;
    println!(
        "read {} messages from {queue} (min {}, max {})",
        read.messages.len(),
        read.min_offset,
        read.max_offset
    );
    for m in &read.messages {
        println!(
            "  offset {} tag {:?} keys {:?} body {:?}",
            m.queue_offset(),
            m.tags().unwrap_or(""),
            m.keys().collect::<Vec<_>>(),
            String::from_utf8_lossy(m.body())
        );
    }
    store.close()?;

    // Reopen: a clean close needs no scan, and every offset is where it was.
    let started = std::time::Instant::now();
    let store = builder.open()?;
    println!(
        "reopened in {:?}: max offset of {queue} is {}",
        started.elapsed(),
        store.max_offset(&queue)?
    );
    let first = &store.get_messages(&queue, 0, 1)?.messages[0];
    let again = store.view_message(&first.offset_msg_id().to_string())?;
    println!(
        "view_message({}) -> {:?}",
        first.offset_msg_id(),
        String::from_utf8_lossy(again.body())
    );
    store.close()?;
    Ok(())
}
