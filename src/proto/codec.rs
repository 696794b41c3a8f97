//! The codec of the gateway's services: prost, except that
//! - each message is encoded into a buffer reserved at its exact size
//!   (tonic's own prost encoder starts from 8 KiB and grows by doubling, so a
//!   large batch was copied about twice over while it was encoded);
//! - batch answers and Subscribe batches are written by [`batch_answer`] and
//!   [`subscribe_batch`], and `PublishBatch` requests read by
//!   [`batch_request`];
//! - a request that does not decode is the client's fault: INVALID_ARGUMENT
//!   with the reason MALFORMED_REQUEST, not tonic's INTERNAL;
//! - a `PublishBatch` request is gathered into a buffer that takes a 1 MiB
//!   batch without growing (tonic's starts at 8 KiB, and growing it copied
//!   what had arrived).
//!
//! Handlers see plain messages: which messages take a hand-written path is
//! decided here, by type, and nowhere else.

use super::{
    BatchEntryResult, MessageBatch, PublishBatchRequest, PublishBatchResponse,
    PublishEventBatchResponse, SubscribeResponse, batch_answer, batch_request, subscribe_batch,
};
use crate::error::GatewayError;
use bytes::Buf;
use prost::Message;
use std::{
    any::{Any, TypeId},
    marker::PhantomData,
};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// The decode buffer of a `PublishBatch` request. tonic reserves a message's
/// whole length on top of what the buffer already holds once it reads the
/// message's length, so a 1 MiB batch whose first frame is 1 MiB needs about
/// 2 MiB to be gathered without a reallocation copying that frame.
const BATCH_BUFFER_BYTES: usize = (2 << 20) + (64 << 10);

/// tonic's default for how much a stream decodes before yielding.
const YIELD_THRESHOLD_BYTES: usize = 32 << 10;

/// Encodes `T` and decodes `U` as described in the module header.
#[derive(Debug, Clone, Copy)]
pub struct PresizedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for PresizedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for PresizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = PresizedEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PresizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(PhantomData)
    }
}

/// Decodes one request message from tonic's decode buffer, however many
/// HTTP/2 frames it arrived in: tonic gathers them into that buffer, and the
/// message's bytes fields become slices of it, not copies.
#[derive(Debug, Clone, Copy)]
pub struct RequestDecoder<U>(PhantomData<U>);

impl<U: Message + Default + 'static> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn buffer_settings(&self) -> BufferSettings {
        if TypeId::of::<U>() == TypeId::of::<PublishBatchRequest>() {
            BufferSettings::new(BATCH_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
        } else {
            BufferSettings::default()
        }
    }

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let message = buf.copy_to_bytes(buf.remaining());
        let mut decoded: Option<U> = None;
        let result =
            match (&mut decoded as &mut dyn Any).downcast_mut::<Option<PublishBatchRequest>>() {
                Some(batch) => batch_request::decode(message).map(|request| *batch = Some(request)),
                None => U::decode(message).map(|request| decoded = Some(request)),
            };
        match result {
            Ok(()) => Ok(decoded),
            Err(error) => Err(GatewayError::MalformedRequest(error.to_string()).into_status()),
        }
    }
}

/// Reserves room for the whole message, then encodes it with prost.
#[derive(Debug, Clone, Copy)]
pub struct PresizedEncoder<T>(PhantomData<T>);

impl<T: Message + 'static> Encoder for PresizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        if let Some(results) = answer_results(&item) {
            buf.reserve(batch_answer::encoded_len(results));
            batch_answer::encode(results, buf);
            return Ok(());
        }
        if let Some(batch) = delivered_batch(&item) {
            let measured = subscribe_batch::measure(batch);
            buf.reserve(measured.encoded_len());
            measured.encode(buf);
            return Ok(());
        }
        buf.reserve(item.encoded_len());
        // `encode_raw`, not `encode`: `encode` only adds a capacity check,
        // which measures the whole message again (a 1,000-entry answer is
        // walked once more, about a quarter of its encoding time). The room
        // is reserved above, and the buffer would grow if it were not.
        item.encode_raw(buf);
        Ok(())
    }
}

/// The results of `item` when it is a batch answer, whose only field they
/// are.
fn answer_results(item: &dyn Any) -> Option<&[BatchEntryResult]> {
    // Every field named: an answer that gains a field breaks the build here
    // instead of losing the field on the wire.
    if let Some(PublishBatchResponse { results }) = item.downcast_ref::<PublishBatchResponse>() {
        return Some(results);
    }
    item.downcast_ref::<PublishEventBatchResponse>()
        .map(|PublishEventBatchResponse { results }| results.as_slice())
}

/// The batch of `item` when it is a Subscribe response carrying messages.
fn delivered_batch(item: &dyn Any) -> Option<&MessageBatch> {
    item.downcast_ref::<SubscribeResponse>()
        .and_then(subscribe_batch::batch_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Heartbeat, subscribe_response::Kind};

    // The hand encodings write what prost would, so the bytes on the wire
    // cannot show whether the codec chose them: these checks do.
    #[test]
    fn batch_answers_and_subscribe_batches_take_the_hand_encodings() {
        assert!(answer_results(&PublishBatchResponse::default()).is_some());
        assert!(answer_results(&PublishEventBatchResponse::default()).is_some());
        assert!(answer_results(&SubscribeResponse::default()).is_none());
        let batch = SubscribeResponse {
            kind: Some(Kind::Batch(MessageBatch::default())),
        };
        assert!(delivered_batch(&batch).is_some());
        let heartbeat = SubscribeResponse {
            kind: Some(Kind::Heartbeat(Heartbeat::default())),
        };
        assert!(delivered_batch(&heartbeat).is_none());
        assert!(delivered_batch(&PublishBatchResponse::default()).is_none());
    }
}
