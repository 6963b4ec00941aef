//! Which pushed ops a connection wants. Auth `accepts` empty = every op (minus those unsubscribed later);
//! non-empty = only those (plus those subscribed later). Op 14 subscribes, op 16 unsubscribes.
//!
//! `OpFilter` is `All{except}` or `Only(set)`; `parse_ops` reads a comma-separated op list; at most
//! `MAX_OPS` (64) ops per set.

use std::collections::BTreeSet;

/// Most ops one connection may list.
pub const MAX_OPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpFilter {
    All { except: BTreeSet<i32> },
    Only(BTreeSet<i32>),
}

impl OpFilter {
    pub fn from_accepts(accepts: &[i32]) -> OpFilter {
        if accepts.is_empty() {
            OpFilter::All {
                except: BTreeSet::new(),
            }
        } else {
            OpFilter::Only(accepts.iter().copied().take(MAX_OPS).collect())
        }
    }

    pub fn accepts(&self, op: i32) -> bool {
        match self {
            OpFilter::All { except } => !except.contains(&op),
            OpFilter::Only(ops) => ops.contains(&op),
        }
    }

    pub fn sub(&mut self, ops: &[i32]) {
        match self {
            OpFilter::All { except } => ops.iter().for_each(|op| {
                except.remove(op);
            }),
            OpFilter::Only(set) => {
                set.extend(ops.iter().copied().take(MAX_OPS.saturating_sub(set.len())))
            }
        }
    }

    pub fn unsub(&mut self, ops: &[i32]) {
        match self {
            OpFilter::All { except } => except.extend(
                ops.iter()
                    .copied()
                    .take(MAX_OPS.saturating_sub(except.len())),
            ),
            OpFilter::Only(set) => ops.iter().for_each(|op| {
                set.remove(op);
            }),
        }
    }
}

/// Parses goim's comma-separated op list (`"1000,1001"`).
pub fn parse_ops(body: &[u8]) -> Result<Vec<i32>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "op list is not UTF-8".to_string())?;
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i32>().map_err(|_| format!("bad op {s:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_minus_unsubscribed() {
        let mut f = OpFilter::from_accepts(&[]);
        assert!(f.accepts(1000) && f.accepts(1001));
        f.unsub(&[1001]);
        assert!(f.accepts(1000) && !f.accepts(1001));
        f.sub(&[1001]);
        assert!(f.accepts(1001));
    }

    #[test]
    fn only_plus_subscribed() {
        let mut f = OpFilter::from_accepts(&[1000]);
        assert!(f.accepts(1000) && !f.accepts(1001));
        f.sub(&[1001]);
        assert!(f.accepts(1001));
        f.unsub(&[1000]);
        assert!(!f.accepts(1000));
    }

    #[test]
    fn op_lists_parse() {
        assert_eq!(parse_ops(b"1000, 1001,").unwrap(), vec![1000, 1001]);
        assert!(parse_ops(b"10x").is_err());
        assert!(parse_ops(b"\xff").is_err());
    }
}
