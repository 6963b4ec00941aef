//! The behaviour every [`RoomHistory`] must show; run by each implementation's tests. The history must have
//! been built with `size` [`SIZE`] and the given `ttl` (a second or two).

use std::time::Duration;

use crate::room_history::{NewEntry, NotRecovered, RoomHistory, Source};

/// The history size the suite expects.
pub const SIZE: usize = 8;

fn entry(body: &str) -> NewEntry {
    NewEntry {
        op: 1000,
        body: body.as_bytes().to_vec(),
        source: None,
    }
}

fn sourced(body: &str, scope: &str, position: i64) -> NewEntry {
    NewEntry {
        source: Some(Source {
            scope: scope.into(),
            position,
        }),
        ..entry(body)
    }
}

pub async fn run(h: &dyn RoomHistory, ttl: Duration) {
    let tag = crate::test_name::unique_test_name("live://h");
    let room = |n: &str| format!("{tag}-{n}");

    // A room without history gets an epoch at once, and keeps it.
    let r = h.read(&room("a"), 0, 0, 1 << 20).await.expect("read");
    assert!(r.epoch > 0 && r.epoch <= crate::room_history::MAX_EPOCH);
    assert_eq!((r.top, r.first, r.entries.len()), (0, 1, 0));
    let epoch = r.epoch;
    assert_eq!(
        h.read(&room("a"), 0, 0, 1 << 20).await.unwrap().epoch,
        epoch
    );

    // Appends get the next offsets in that epoch; reads return what follows an offset, in order.
    let (e, offsets) = h
        .append(&room("a"), &[entry("m1"), entry("m2"), entry("m3")], false)
        .await
        .expect("append");
    assert_eq!((e, offsets), (epoch, vec![1, 2, 3]));
    let (_, offsets) = h.append(&room("a"), &[entry("m4")], false).await.unwrap();
    assert_eq!(offsets, vec![4]);
    let r = h.read(&room("a"), epoch, 1, 1 << 20).await.unwrap();
    assert_eq!((r.top, r.first), (4, 1));
    let got: Vec<(u64, i32, &[u8])> = r
        .entries
        .iter()
        .map(|e| (e.offset, e.op, &e.body[..]))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 1000, &b"m2"[..]),
            (3, 1000, &b"m3"[..]),
            (4, 1000, &b"m4"[..])
        ]
    );
    assert_eq!(r.outcome(epoch, 1), Ok(()));
    let r = h.read(&room("a"), epoch, 4, 1 << 20).await.unwrap();
    assert!(r.entries.is_empty());
    assert_eq!(r.outcome(epoch, 4), Ok(()));
    assert_eq!(r.outcome(epoch, 5), Err(NotRecovered::Ahead));
    // Another epoch gets no entries.
    let r = h.read(&room("a"), epoch + 1, 0, 1 << 20).await.unwrap();
    assert!(r.entries.is_empty());
    assert_eq!(r.outcome(epoch + 1, 0), Err(NotRecovered::EpochChanged));

    // The byte limit cuts a recovery short (at least one message is returned).
    let r = h.read(&room("a"), epoch, 0, 3).await.unwrap();
    assert_eq!((r.entries.len(), r.truncated), (1, true));
    assert_eq!(r.outcome(epoch, 0), Err(NotRecovered::TooLarge));

    // Past `size`, the oldest go: a client behind them is told the gap is not covered.
    let more: Vec<NewEntry> = (5..=12).map(|i| entry(&format!("m{i}"))).collect();
    let (_, offsets) = h.append(&room("a"), &more, false).await.unwrap();
    assert_eq!(offsets, (5..=12).collect::<Vec<u64>>());
    let r = h.read(&room("a"), epoch, 4, 1 << 20).await.unwrap();
    assert_eq!((r.top, r.first), (12, 12 - SIZE as u64 + 1));
    assert_eq!(r.entries.len(), SIZE);
    assert_eq!(r.outcome(epoch, 4), Ok(()));
    let r = h.read(&room("a"), epoch, 3, 1 << 20).await.unwrap();
    assert!(r.entries.is_empty());
    assert_eq!(r.outcome(epoch, 3), Err(NotRecovered::HistoryGap));

    // Rooms are apart.
    let (other, offsets) = h.append(&room("b"), &[entry("x")], false).await.unwrap();
    assert_eq!(offsets, vec![1]);
    assert_ne!(other, 0);

    // A redelivered message (same queue position) keeps its first offset and is not appended again; the
    // same position in another scope is another message.
    let (_, offsets) = h
        .append(
            &room("c"),
            &[sourced("p10", "q/0", 10), sourced("p11", "q/0", 11)],
            false,
        )
        .await
        .unwrap();
    assert_eq!(offsets, vec![1, 2]);
    let (_, offsets) = h
        .append(
            &room("c"),
            &[
                sourced("p11", "q/0", 11),
                sourced("p12", "q/0", 12),
                sourced("n1", "q/1", 1),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(offsets, vec![2, 3, 4]);
    let (epoch_c, _) = h.append(&room("c"), &[], false).await.unwrap();
    let r = h.read(&room("c"), epoch_c, 0, 1 << 20).await.unwrap();
    let bodies: Vec<&[u8]> = r.entries.iter().map(|e| &e.body[..]).collect();
    assert_eq!(bodies, vec![&b"p10"[..], b"p11", b"p12", b"n1"]);

    // A reset starts a new epoch, offsets from 1.
    let (e2, offsets) = h.append(&room("a"), &[entry("n1")], true).await.unwrap();
    assert_ne!(e2, epoch);
    assert_eq!(offsets, vec![1]);
    let r = h.read(&room("a"), epoch, 12, 1 << 20).await.unwrap();
    assert_eq!((r.epoch, r.top), (e2, 1));
    assert_eq!(r.outcome(epoch, 12), Err(NotRecovered::EpochChanged));

    // Without appends for `ttl`, a room's history is gone: a new epoch, from offset 0.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let r = h.read(&room("a"), e2, 1, 1 << 20).await.unwrap();
    assert_ne!(r.epoch, e2);
    assert_eq!((r.top, r.entries.len()), (0, 0));
    assert_eq!(r.outcome(e2, 1), Err(NotRecovered::EpochChanged));
}
