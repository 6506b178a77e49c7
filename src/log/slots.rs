//! The writer's queues: for each queue appended to, its consume queue and the next queue
//! offset, found by topic and queue id under the append lock.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use super::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};

/// One queue the writer appends to.
#[derive(Debug)]
pub(crate) struct QueueSlot {
    pub(crate) next_offset: u64,
    pub(crate) cq: Arc<ConsumeQueue>,
}

/// The queues of one topic, by queue id (a queue gets its slot at its first append).
#[derive(Debug)]
struct TopicSlots {
    topic: Arc<str>,
    queues: Vec<Option<QueueSlot>>,
}

/// The writer's queues by topic.
#[derive(Debug, Default)]
pub(crate) struct QueueSlots {
    topics: Vec<TopicSlots>,
    by_name: HashMap<Arc<str>, usize, FxBuildHasher>,
    /// The topic of the last lookup: appends to one topic in a row find it with one
    /// comparison instead of a hash lookup.
    last: usize,
}

impl QueueSlots {
    /// The slot of `topic`/`queue_id`; `resolve` gives the queue when it has none yet.
    pub(crate) fn get_or_insert(
        &mut self,
        topic: &str,
        queue_id: u32,
        resolve: impl FnOnce() -> Result<Arc<ConsumeQueue>>,
    ) -> Result<&mut QueueSlot> {
        let found = match self.topics.get(self.last) {
            Some(t) if *t.topic == *topic => Some(self.last),
            _ => self.by_name.get(topic).copied(),
        };
        let idx = queue_id as usize;
        let has = found.is_some_and(|ti| matches!(self.topics[ti].queues.get(idx), Some(Some(_))));
        if !has {
            let cq = resolve()?;
            // Keyed by the queue's own topic name (the same text as `topic`; looked up
            // again so that a topic never gets two entries).
            let ti = match found.or_else(|| self.by_name.get(&**cq.topic()).copied()) {
                Some(ti) => ti,
                None => {
                    self.topics.push(TopicSlots {
                        topic: cq.topic().clone(),
                        queues: Vec::new(),
                    });
                    let ti = self.topics.len() - 1;
                    self.by_name.insert(cq.topic().clone(), ti);
                    ti
                }
            };
            self.last = ti;
            let queues = &mut self.topics[ti].queues;
            if queues.len() <= idx {
                queues.resize_with(idx + 1, || None);
            }
            return Ok(queues[idx].insert(QueueSlot {
                next_offset: cq.max_offset(),
                cq,
            }));
        }
        if let Some(ti) = found {
            self.last = ti;
        }
        match self
            .topics
            .get_mut(self.last)
            .and_then(|t| t.queues.get_mut(idx))
        {
            Some(Some(slot)) => Ok(slot),
            // `has` said it is there.
            _ => Err(Error::InvalidConfig(format!(
                "no writer slot for {topic}:{queue_id}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::QueueSlots;
    use crate::log::consume_queue::ConsumeQueue;
    use crate::storage::Fs;

    #[test]
    fn each_queue_keeps_its_own_slot_in_any_order_of_topics() {
        let dir = tempfile::tempdir().unwrap();
        let mut slots = QueueSlots::default();
        let mut resolved = Vec::new();
        let topics = ["a", "b", "a-longer-name", "c"];
        // Interleaved topics and queue ids, each queue revisited many times: every visit
        // finds its own slot, and a queue is resolved once, at its first visit.
        for round in 0..50u64 {
            for (t, topic) in topics.iter().enumerate() {
                for queue_id in [3u32, 0, 7] {
                    if (round + t as u64 + u64::from(queue_id)).is_multiple_of(3) {
                        continue;
                    }
                    let slot = slots
                        .get_or_insert(topic, queue_id, || {
                            resolved.push((topic.to_string(), queue_id));
                            Ok(Arc::new(
                                ConsumeQueue::create(
                                    &Fs::default(),
                                    dir.path(),
                                    Arc::from(*topic),
                                    queue_id,
                                    1 << 12,
                                )
                                .unwrap(),
                            ))
                        })
                        .unwrap();
                    assert_eq!(&**slot.cq.topic(), *topic);
                    assert_eq!(slot.cq.queue_id(), queue_id);
                    // The count of visits so far, kept in the slot.
                    slot.next_offset += 1 + u64::from(queue_id) * 1000;
                }
            }
        }
        let mut unique = resolved.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), resolved.len(), "a queue was resolved twice");
        assert_eq!(resolved.len(), topics.len() * 3);
        for topic in topics {
            for queue_id in [3u32, 0, 7] {
                let slot = slots
                    .get_or_insert(topic, queue_id, || panic!("{topic}:{queue_id} lost"))
                    .unwrap();
                let visits = slot.next_offset / (1 + u64::from(queue_id) * 1000);
                assert!(
                    slot.next_offset
                        .is_multiple_of(1 + u64::from(queue_id) * 1000)
                );
                assert!((33..=34).contains(&visits), "{topic}:{queue_id}: {visits}");
            }
        }
    }

    #[test]
    fn a_failed_resolve_adds_nothing() {
        let mut slots = QueueSlots::default();
        let err = slots.get_or_insert("t", 1, || {
            Err(crate::error::Error::TopicNotFound("t".into()))
        });
        assert!(err.is_err());
        assert!(slots.topics.is_empty() && slots.by_name.is_empty());
    }
}
