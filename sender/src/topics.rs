//! The Kafka topic names pushes travel on: one per priority plus the dead-letter topic. A
//! sender and the processors must agree on them; the defaults are the contract's names.

use herald_protocol::kafka::{Priority, TOPIC_DEAD, TOPIC_HIGH, TOPIC_LOW, TOPIC_NORMAL};

/// Kafka topic names, one per priority plus the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// High-priority pushes.
    pub high: String,
    /// Normal-priority pushes.
    pub normal: String,
    /// Low-priority pushes.
    pub low: String,
    /// Dead letters.
    pub dead: String,
}

impl Topics {
    /// The topic pushes of `priority` are published on.
    pub fn for_priority(&self, priority: Priority) -> &str {
        match priority {
            Priority::High => &self.high,
            Priority::Normal => &self.normal,
            Priority::Low => &self.low,
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            high: TOPIC_HIGH.into(),
            normal: TOPIC_NORMAL.into(),
            low: TOPIC_LOW.into(),
            dead: TOPIC_DEAD.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract_names_by_priority() {
        let t = Topics::default();
        for p in Priority::ALL {
            assert_eq!(t.for_priority(p), p.topic());
        }
        assert_eq!(t.dead, "herald.push.dead");
    }
}
