//! iggy-grpc: a gRPC gateway for Apache Iggy.
//!
//! Clients in any language publish to, subscribe to and administer Iggy over
//! gRPC; the gateway talks to Iggy over TCP with the official SDK. The
//! entry point is [`serve`]; [`iggy::embedded`] runs a local Iggy server for
//! embedded mode and tests.

pub mod admin;
pub mod config;
pub mod edge;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod health;
pub mod iggy;
pub mod layers;
pub mod messaging;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod validate;
pub mod web;

pub use config::Config;
pub use server::{ServeError, serve};
