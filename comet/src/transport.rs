//! What the connection lifecycle needs from a socket; implemented for websocket and goim TCP.
//!
//! The `Transport` trait (read the next frame, `feed` a frame, `flush`, `close` with a reason) and
//! `CloseReason`, each with its op 6 text, websocket close code and metric label (the table is in
//! docs/protocol.md).

use std::future::Future;

use imcloud_proto::Frame;

use crate::out_frame::OutFrame;

/// Why a connection ends, as told to the client before the close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A malformed frame, an unexpected op or a bad body.
    Protocol(String),
    /// A frame larger than the client body limit.
    TooBig(String),
    /// Text that is not UTF-8 (websocket close code 1007).
    InvalidPayload(String),
    /// A kind of message this protocol does not take, such as websocket text (close code 1003).
    Unsupported(String),
    AuthFailed(String),
    HeartbeatTimeout,
    Replaced,
    SlowConsumer,
    Shutdown,
    /// Closed on purpose by the server (op 6 pushed to the key); the text is the server's reason.
    ByServer(String),
    /// The client sent frames faster than `IMCLOUD_COMET_FRAMES_PER_SEC` allows.
    RateLimited(u32),
}

impl CloseReason {
    pub fn text(&self) -> String {
        match self {
            CloseReason::Protocol(m) => format!("protocol error: {m}"),
            CloseReason::TooBig(m) => format!("frame too large: {m}"),
            CloseReason::InvalidPayload(m) => format!("invalid payload: {m}"),
            CloseReason::Unsupported(m) => format!("unsupported: {m}"),
            CloseReason::AuthFailed(m) => format!("auth failed: {m}"),
            CloseReason::HeartbeatTimeout => "heartbeat timeout".into(),
            CloseReason::Replaced => "replaced by a new connection with the same key".into(),
            CloseReason::SlowConsumer => "slow consumer: outbound queue full".into(),
            CloseReason::Shutdown => "server shutting down".into(),
            CloseReason::ByServer(m) => m.clone(),
            CloseReason::RateLimited(n) => {
                format!("rate limited: more than {n} frames per second")
            }
        }
    }

    /// Label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CloseReason::Protocol(_) => "protocol",
            CloseReason::TooBig(_) => "too_big",
            CloseReason::InvalidPayload(_) => "invalid_payload",
            CloseReason::Unsupported(_) => "unsupported",
            CloseReason::AuthFailed(_) => "auth_failed",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::Replaced => "replaced",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ByServer(_) => "by_server",
            CloseReason::RateLimited(_) => "rate_limited",
        }
    }
}

/// What a transport has for the connection loop.
#[derive(Debug)]
pub enum Incoming {
    /// A frame from the client.
    Frame(Frame),
    /// Everything fed has been written: the loop may feed more.
    Written,
}

/// A transport error: either the peer went away, or it broke the protocol.
#[derive(Debug)]
pub enum ReadError {
    Gone,
    Close(CloseReason),
}

pub trait Transport: Send {
    /// The next frame, or [`Incoming::Written`] once what was fed has been written: while it waits for
    /// the client it also writes (see [`crate::socket_io::read_while_writing`]), so the connection loop
    /// never blocks on a write. Cancel-safe: dropping the future loses no byte, read or written.
    fn next(&mut self) -> impl Future<Output = Result<Incoming, ReadError>> + Send;
    /// Queues an encoded frame (an op 9 batch or a reply) for the next flush.
    fn feed(&mut self, frame: &OutFrame);
    /// Bytes fed and not yet written.
    fn unwritten(&self) -> usize;
    /// Writes everything fed so far. Cancel-safe: a dropped flush resumes where it stopped.
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Tells the client why (op 6 with the reason) and closes.
    fn close(&mut self, reason: &CloseReason) -> impl Future<Output = ()> + Send;
}
