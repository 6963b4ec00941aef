//! The comet gRPC service job calls to deliver pushes.

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
    fn push_keys(&self, keys: &[String], b: &Batch) -> u32 {
        if let Some(reason) = b.disconnect_reason() {
            // Op 6 to a key is the server closing that connection, telling it why.
            return self.comet.kick_keys(keys, &reason);
        }
        let delivered = self.comet.push_keys(keys, b);
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
        let delivered = self.push_keys(&r.keys, &batch(r.protos)?);
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
            match batch(push.protos) {
                Ok(b) => reply.delivered.push(self.push_keys(&push.keys, &b)),
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
        let batch = batch(r.protos)?;
        metrics::counter!("imcloud_comet_broadcast_total").increment(1);
        if r.speed <= 0 {
            for b in self.comet.buckets() {
                b.broadcast(&batch);
            }
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
        let delivered = self.comet.push_room(&r.room_id, &batch(r.protos)?);
        metrics::counter!("imcloud_comet_broadcast_room_total").increment(1);
        Ok(Response::new(BroadcastRoomReply { delivered }))
    }

    async fn rooms(&self, _req: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
        Ok(Response::new(RoomsReply {
            rooms: self.comet.counts().rooms,
        }))
    }
}
