//! Tower layers around the gRPC services, one file per layer.

mod arrival;

pub use arrival::{Arrival, ArrivalLayer};
