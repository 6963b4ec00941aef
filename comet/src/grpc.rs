//! The comet gRPC service job (and logic) call to deliver pushes, behind `COMET_POLICY`.
//!
//! - `PushMsg`: one push to connections by key. A push holding op 6 is not delivered: it closes those
//!   connections, telling them its body (`Comet::kick_keys`).
//! - `PushMsgs`: several such pushes applied in order in one call; the invalid ones are reported by index
//!   (`rejected`) while the others are delivered.
//! - `BroadcastRoom`: one batch to every bucket's share of a room. `Broadcast`: to every connection; with
//!   `speed > 0` (goim's connections per second) it is paced bucket by bucket in a background task that is
//!   neither bounded nor tracked, and the call answers once it has started.
//! - `Rooms`: this comet's room counts.
//!
//! An empty request is `INVALID_ARGUMENT` (job does not retry it). `imcloud_push_e2e_latency_seconds{type}`
//! is recorded here, from the api's acceptance time that travels with each message.

use std::sync::Arc;
use std::time::Duration;

use imcloud_proto::comet::comet_server::Comet as CometRpc;
use imcloud_proto::comet::*;
use tonic::{Request, Response, Status};

use crate::batch::Batch;
use crate::comet::Comet;

pub struct CometService {
    pub comet: Arc<Comet>,
}

/// When the api accepted each message (0 = unknown), read before the messages become a [`Batch`].
fn accepted(protos: &[imcloud_proto::protocol::Proto]) -> Vec<i64> {
    protos.iter().map(|p| p.accepted_unix_us).collect()
}

/// Records `imcloud_push_e2e_latency_seconds{type}`: from the api accepting each message to this comet
/// having queued its frame on every target connection here (their writes follow at once; a backlogged
/// connection's is later). Nothing when no connection here took the push.
fn observe_latency(kind: &'static str, accepted: &[i64], delivered: u32) {
    if delivered == 0 {
        return;
    }
    let now = imcloud_common::grpc_telemetry::now_unix_us();
    for &t in accepted.iter().filter(|t| **t > 0) {
        let secs = (now - t).max(0) as f64 / 1e6;
        metrics::histogram!("imcloud_push_e2e_latency_seconds", "type" => kind).record(secs);
    }
}

fn batch(protos: Vec<imcloud_proto::protocol::Proto>) -> Result<Batch, Status> {
    let b = Batch::new(protos);
    if b.is_empty() {
        Err(Status::invalid_argument("no messages"))
    } else {
        Ok(b)
    }
}

impl CometService {
    /// One push to the connections with these keys; returns how many were held here.
    fn push_keys(&self, keys: &[String], b: &Batch, accepted: &[i64]) -> u32 {
        if let Some(reason) = b.disconnect_reason() {
            // Op 6 to a key is the server closing that connection, telling it why.
            return self.comet.kick_keys(keys, &reason);
        }
        let _span = imcloud_common::traced_span!("comet.deliver", kind = "push", keys = keys.len())
            .entered();
        let delivered = self.comet.push_keys(keys, b);
        observe_latency("push", accepted, delivered);
        metrics::counter!("imcloud_comet_push_msg_total").increment(1);
        metrics::counter!("imcloud_comet_push_msg_keys_total").increment(keys.len() as u64);
        // Keys addressed here that this comet does not hold (closed meanwhile, or routed wrongly).
        metrics::counter!("imcloud_comet_push_msg_keys_missing_total")
            .increment((keys.len() as u64).saturating_sub(delivered.into()));
        delivered
    }
}

#[tonic::async_trait]
impl CometRpc for CometService {
    async fn push_msg(&self, req: Request<PushMsgReq>) -> Result<Response<PushMsgReply>, Status> {
        let r = req.into_inner();
        let accepted = accepted(&r.protos);
        let delivered = self.push_keys(&r.keys, &batch(r.protos)?, &accepted);
        Ok(Response::new(PushMsgReply { delivered }))
    }

    async fn push_msgs(
        &self,
        req: Request<PushMsgsReq>,
    ) -> Result<Response<PushMsgsReply>, Status> {
        let r = req.into_inner();
        metrics::counter!("imcloud_comet_push_msgs_total").increment(1);
        let mut reply = PushMsgsReply::default();
        for (i, push) in r.pushes.into_iter().enumerate() {
            let accepted = accepted(&push.protos);
            match batch(push.protos) {
                Ok(b) => reply
                    .delivered
                    .push(self.push_keys(&push.keys, &b, &accepted)),
                Err(_) => {
                    reply.delivered.push(0);
                    reply.rejected.push(i as u32);
                }
            }
        }
        Ok(Response::new(reply))
    }

    async fn broadcast(
        &self,
        req: Request<BroadcastReq>,
    ) -> Result<Response<BroadcastReply>, Status> {
        let r = req.into_inner();
        let accepted = accepted(&r.protos);
        let batch = batch(r.protos)?;
        metrics::counter!("imcloud_comet_broadcast_total").increment(1);
        if r.speed <= 0 {
            let _span = imcloud_common::traced_span!("comet.deliver", kind = "broadcast").entered();
            let delivered: u32 = self
                .comet
                .buckets()
                .iter()
                .map(|b| b.broadcast(&batch))
                .sum();
            observe_latency("broadcast", &accepted, delivered);
        } else {
            // goim's speed: connections per second. Pace bucket by bucket in the background.
            let comet = self.comet.clone();
            tokio::spawn(async move {
                for b in comet.buckets() {
                    let n = b.broadcast(&batch);
                    tokio::time::sleep(Duration::from_secs_f64(n as f64 / r.speed as f64)).await;
                }
            });
        }
        Ok(Response::new(BroadcastReply {}))
    }

    async fn broadcast_room(
        &self,
        req: Request<BroadcastRoomReq>,
    ) -> Result<Response<BroadcastRoomReply>, Status> {
        let r = req.into_inner();
        let accepted = accepted(&r.protos);
        let _span = imcloud_common::traced_span!("comet.deliver", kind = "room", room = %r.room_id)
            .entered();
        let b = Batch::room(&r.room_id, r.protos);
        if b.is_empty() {
            return Err(Status::invalid_argument("no messages"));
        }
        let delivered = self.comet.push_room(&r.room_id, &b);
        observe_latency("room", &accepted, delivered);
        metrics::counter!("imcloud_comet_broadcast_room_total").increment(1);
        Ok(Response::new(BroadcastRoomReply { delivered }))
    }

    async fn rooms(&self, _req: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
        Ok(Response::new(RoomsReply {
            rooms: self.comet.counts().rooms,
        }))
    }
}
