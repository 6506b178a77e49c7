//! Transactional messages: an order service inserts an order row into its database (here a
//! `HashMap`) and announces it with a message, atomically: the message is delivered if and
//! only if the row was written. A crash or an undecided local transaction is resolved by the
//! store asking the service's checker, which looks the row up.
//!
//! `cargo run --release --example transaction`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlite::{Message, MessageExt, MessageQueue, Store, TransactionState};

/// The service's database: order id → status.
type Db = Arc<Mutex<HashMap<String, &'static str>>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("mqlite-transaction-{}", std::process::id()));
    let store = Store::builder(&dir)
        .transaction_check_interval(Duration::from_millis(200))
        .transaction_timeout(Duration::from_millis(500))
        .open()?;
    store.create_topic("orders", 1)?;
    let db: Db = Arc::default();

    // The checker answers for transactions the service did not finish: committed if the row
    // exists, rolled back otherwise.
    let lookup = db.clone();
    let tx = store.transaction_producer("order-service", move |msg: &MessageExt| {
        let order = msg.keys().next().unwrap_or_default().to_owned();
        let found = lookup
            .lock()
            .map(|db| db.contains_key(&order))
            .unwrap_or(false);
        println!("  check-back for {order}: row found = {found}");
        if found {
            TransactionState::Commit
        } else {
            TransactionState::Rollback
        }
    })?;

    let order = |id: &str| Message::new("orders", format!("{id} created")).with_keys([id]);
    // 1. The row is written: commit.
    let insert = |id: &'static str| {
        let db = db.clone();
        move |_: &Message| {
            db.lock().expect("db").insert(id.to_owned(), "created");
            TransactionState::Commit
        }
    };
    let r = tx.send_in_transaction(order("ORDER-1"), insert("ORDER-1"))?;
    println!("ORDER-1: local transaction {:?}", r.local_state);
    // 2. The insert fails: roll back; the message is never delivered.
    let r = tx.send_in_transaction(order("ORDER-2"), |_| TransactionState::Rollback)?;
    println!("ORDER-2: local transaction {:?}", r.local_state);
    // 3. The row is written but the service cannot tell yet (say a commit timed out): the
    //    store checks back once the half message is older than the transaction timeout.
    let r = tx.send_in_transaction(order("ORDER-3"), |_| {
        db.lock().expect("db").insert("ORDER-3".into(), "created");
        TransactionState::Unknown
    })?;
    println!("ORDER-3: local transaction {:?}", r.local_state);

    let q = MessageQueue::new("orders", 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.max_offset(&q)? < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let delivered = store.get_messages(&q, 0, 32)?.messages;
    for m in &delivered {
        println!("delivered: {}", String::from_utf8_lossy(m.body()));
    }
    assert_eq!(delivered.len(), 2, "ORDER-1 and ORDER-3, never ORDER-2");
    drop(tx);
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
