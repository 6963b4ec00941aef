//! The IM tier's contract, shared by the api (which decodes HTTP requests into it) and logic (which
//! runs them): validated values, every request and reply type, the operation table with its routes,
//! the websocket op 4 commands, the live events and the OpenAPI document generated from all of them.
//! It replaces the old string route table (`im_routes`): a route, its input and its reply are one
//! entry of [`operations`], checked by the compiler on both sides.

pub mod accounts;
pub mod chat;
pub mod command;
pub mod events;
pub mod friends;
pub mod groups;
pub mod notifications;
pub mod openapi;
pub mod operations;
pub mod params;
pub mod values;

pub use operations::{ImRequest, Operation, ROUTES, Route, route_of};
