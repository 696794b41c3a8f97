//! gRPC calls made by hand over HTTP/2, for what a generated client will not
//! send: bodies that do not decode, cut-off messages, unsupported encodings,
//! unknown paths, and a message split into DATA frames of a chosen size.

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use tonic::{Status, codegen::http};

/// A gRPC body carrying `message` as one message (`compressed` sets the flag).
pub fn grpc_frame(message: &[u8], compressed: bool) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + message.len());
    body.extend_from_slice(&[u8::from(compressed)]);
    body.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    body.extend_from_slice(message);
    body.freeze()
}

/// The answer to a raw call: its status, and its response message if any.
pub struct RawAnswer {
    /// The gRPC status, from the headers (trailers-only) or the trailers.
    pub status: Status,
    /// The response body's bytes before the trailers (gRPC-framed).
    pub body: Bytes,
}

/// Calls `path` on the gateway at `address` with `body`, sent in DATA frames
/// of at most `frame_bytes`, and `headers` beside the usual gRPC ones.
pub async fn raw_call(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    frame_bytes: usize,
) -> RawAnswer {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).expect("request"), false)
        .expect("send headers");
    // The gateway may answer (and close the stream) before it reads the
    // body, e.g. for an unknown path: then sending ends early.
    let mut rest = body;
    let mut sending = Ok(());
    while !rest.is_empty() && sending.is_ok() {
        let chunk = rest.split_to(frame_bytes.min(rest.len()));
        send.reserve_capacity(chunk.len());
        sending = send.send_data(chunk, false);
    }
    if sending.is_ok() {
        let _ = send.send_data(Bytes::new(), true);
    }
    let response = response.await.expect("response headers");
    let (parts, mut received) = response.into_parts();
    let answer = if let Some(status) = Status::from_header_map(&parts.headers) {
        RawAnswer {
            status,
            body: Bytes::new(),
        }
    } else {
        let mut body = BytesMut::new();
        while let Some(data) = received.data().await {
            let data = data.expect("response data");
            let _ = received.flow_control().release_capacity(data.len());
            body.extend_from_slice(&data);
        }
        let trailers = received
            .trailers()
            .await
            .expect("trailers")
            .expect("a status in the trailers");
        RawAnswer {
            status: Status::from_header_map(&trailers).expect("grpc-status"),
            body: body.freeze(),
        }
    };
    drop(client);
    connection.abort();
    answer
}
