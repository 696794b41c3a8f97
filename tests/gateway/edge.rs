//! The edge against a real Iggy: API keys and scopes, stream allow-lists,
//! lockout, rate limits with RetryInfo, request ids and trace context,
//! TLS and mutual TLS, load shedding.

use crate::support::{
    Env, TestBody, TestGateway, bad_request_field, by_name, error_reason, expect_code, new_topic,
    retry_delay, sdk_client, stored,
};
use bytes::Bytes;
use futures_util::FutureExt;
use iggy_grpc::{
    Config,
    config::TlsFiles,
    edge::{RateSpec, keys::secret_digest_hex},
    proto::{self, admin_service_client::AdminServiceClient},
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::{path::PathBuf, time::Duration};
use tonic::{
    Code, Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("edge::keys_scopes_and_stream_allow_lists", |env| {
            Box::pin(keys_and_scopes(env))
        }),
        ("edge::failed_keys_lock_the_peer_out", |env| {
            Box::pin(lockout(env))
        }),
        ("edge::request_and_message_rates_are_limited", |env| {
            Box::pin(rate_limits(env))
        }),
        ("edge::request_ids_and_traceparent_round_trip", |env| {
            Box::pin(request_ids(env))
        }),
        ("edge::tls_and_mutual_tls", |env| Box::pin(tls(env))),
        ("edge::load_is_shed_past_the_concurrency_limit", |env| {
            Box::pin(load_shedding(env))
        }),
    ]
}

const ADMIN_SECRET: &str = "admin-secret-0123456789";
const WRITER_SECRET: &str = "writer-secret-0123456789";
const READER_SECRET: &str = "reader-secret-0123456789";

/// `body` with `secret` in `x-api-key`.
fn keyed<T>(body: T, secret: &str) -> Request<T> {
    let mut request = Request::new(body);
    request
        .metadata_mut()
        .insert("x-api-key", MetadataValue::try_from(secret).expect("ascii"));
    request
}

/// `body` with `secret` as a bearer token.
fn bearer<T>(body: T, secret: &str) -> Request<T> {
    let mut request = Request::new(body);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {secret}")).expect("ascii"),
    );
    request
}

fn publish_to(stream: &str, topic: &str, payload: &'static [u8]) -> proto::PublishRequest {
    proto::PublishRequest {
        stream: by_name(stream),
        topic: by_name(topic),
        message: Some(proto::Message {
            payload: Bytes::from_static(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn batch_to(stream: &str, topic: &str, count: usize) -> proto::PublishBatchRequest {
    proto::PublishBatchRequest {
        stream: by_name(stream),
        topic: by_name(topic),
        messages: (0..count)
            .map(|_| proto::BatchMessage {
                message: Some(proto::Message {
                    payload: Bytes::from_static(b"m"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn poll_from(stream: &str, topic: &str) -> proto::PollRequest {
    proto::PollRequest {
        stream: by_name(stream),
        topic: by_name(topic),
        partition_id: Some(0),
        consumer: Some(proto::Consumer {
            kind: Some(proto::consumer::Kind::Name("edge-reader".into())),
        }),
        batch_size: 100,
        ..Default::default()
    }
}

/// How many messages partition 0 holds, read with the SDK.
async fn stored_count(env: &Env, stream: &str, topic: &str) -> usize {
    let iggy = sdk_client(&env.iggy.connection_string).await;
    stored(&iggy, stream, topic, 0).await.len()
}

fn config_with_keys(env: &Env, keys: String) -> Config {
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.pool.size = 2;
    config.edge.api_keys = Some(keys);
    config
}

async fn keys_and_scopes(env: Env) {
    let open = env.gateway().await;
    let (stream, topic) = new_topic(&env, &open, 1).await;
    let (other_stream, other_topic) = new_topic(&env, &open, 1).await;
    let keys = format!(
        "admin:{ADMIN_SECRET}:admin+publish+subscribe;\
         writer:{WRITER_SECRET}:publish:{stream};\
         reader:{READER_SECRET}:subscribe;\
         ops:ops-secret-0123456789:admin:{stream}"
    );
    let gateway = TestGateway::start_ready_with(config_with_keys(&env, keys)).await;
    let mut messaging = gateway.messaging();
    let mut admin = gateway.admin();

    let missing = expect_code(
        messaging.publish(publish_to(&stream, &topic, b"x")).await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&missing).as_deref(), Some("API_KEY_MISSING"));
    let wrong = expect_code(
        messaging
            .publish(keyed(publish_to(&stream, &topic, b"x"), "not-a-key"))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&wrong).as_deref(), Some("API_KEY_INVALID"));

    // The writer publishes to its stream, with either header.
    messaging
        .publish(bearer(publish_to(&stream, &topic, b"one"), WRITER_SECRET))
        .await
        .expect("writer publishes with a bearer token");
    messaging
        .publish(keyed(publish_to(&stream, &topic, b"two"), WRITER_SECRET))
        .await
        .expect("writer publishes with x-api-key");
    let elsewhere = expect_code(
        messaging
            .publish(keyed(
                publish_to(&other_stream, &other_topic, b"x"),
                WRITER_SECRET,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(
        error_reason(&elsewhere).as_deref(),
        Some("STREAM_NOT_ALLOWED")
    );
    let no_admin = expect_code(
        admin
            .list_streams(keyed(proto::ListStreamsRequest {}, WRITER_SECRET))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(error_reason(&no_admin).as_deref(), Some("SCOPE_MISSING"));
    assert_eq!(stored_count(&env, &stream, &topic).await, 2);
    assert_eq!(stored_count(&env, &other_stream, &other_topic).await, 0);

    // The reader polls any stream but may not publish.
    let polled = messaging
        .poll(keyed(poll_from(&stream, &topic), READER_SECRET))
        .await
        .expect("reader polls")
        .into_inner();
    assert_eq!(polled.messages.len(), 2);
    expect_code(
        messaging
            .publish(keyed(publish_to(&stream, &topic, b"x"), READER_SECRET))
            .await,
        Code::PermissionDenied,
    );

    // An admin restricted to one stream sees and touches only that one.
    let listed = admin
        .list_streams(keyed(proto::ListStreamsRequest {}, "ops-secret-0123456789"))
        .await
        .expect("ops lists")
        .into_inner();
    let names: Vec<&str> = listed.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec![stream.as_str()]);
    expect_code(
        admin
            .get_stream(keyed(
                proto::GetStreamRequest {
                    stream: by_name(&other_stream),
                },
                "ops-secret-0123456789",
            ))
            .await,
        Code::PermissionDenied,
    );
    let full = admin
        .list_streams(keyed(proto::ListStreamsRequest {}, ADMIN_SECRET))
        .await
        .expect("admin lists")
        .into_inner();
    assert!(full.streams.iter().any(|s| s.name == other_stream));

    // Health and reflection stay open without a key.
    assert_eq!(gateway.health_status("").await, ServingStatus::Serving);
    let services = crate::reflection::list_services_v1(gateway.channel()).await;
    assert!(
        services
            .iter()
            .any(|s| s == "iggy.gateway.v1.MessagingService")
    );

    gateway.stop().await.expect("clean stop");
    open.stop().await.expect("clean stop");
}

async fn lockout(env: Env) {
    let mut config = config_with_keys(&env, format!("admin:{ADMIN_SECRET}:admin"));
    config.edge.auth_max_failures = 3;
    config.edge.auth_lockout = Duration::from_secs(60);
    let gateway = TestGateway::start_with(config).await;
    let mut admin = gateway.admin();
    let ping = || proto::PingRequest {};
    for _ in 0..2 {
        let refused = expect_code(
            admin.ping(keyed(ping(), "guess")).await,
            Code::Unauthenticated,
        );
        assert_eq!(error_reason(&refused).as_deref(), Some("API_KEY_INVALID"));
    }
    let locked = expect_code(
        admin.ping(keyed(ping(), "guess")).await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&locked).as_deref(), Some("AUTH_LOCKED_OUT"));
    // Even the right key is refused while locked out, with the time left.
    let still = expect_code(
        admin.ping(keyed(ping(), ADMIN_SECRET)).await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&still).as_deref(), Some("AUTH_LOCKED_OUT"));
    let retry = retry_delay(&still).expect("RetryInfo with a delay");
    assert!(
        retry > Duration::from_secs(50) && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    gateway.stop().await.expect("clean stop");
}

async fn rate_limits(env: Env) {
    let open = env.gateway().await;
    let (stream, topic) = new_topic(&env, &open, 1).await;
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.pool.size = 2;
    config.edge.request_rate = RateSpec::new(1, Some(3));
    config.edge.message_rate = RateSpec::new(1, Some(10));
    let gateway = TestGateway::start_ready_with(config).await;
    let mut messaging = gateway.messaging();

    // Messages: a batch costs its size; one larger than the burst can never pass.
    let too_big = expect_code(
        messaging.publish_batch(batch_to(&stream, &topic, 11)).await,
        Code::ResourceExhausted,
    );
    assert_eq!(
        error_reason(&too_big).as_deref(),
        Some("BATCH_OVER_RATE_BURST")
    );
    messaging
        .publish_batch(batch_to(&stream, &topic, 8))
        .await
        .expect("8 of a burst of 10");
    let over = expect_code(
        messaging.publish_batch(batch_to(&stream, &topic, 8)).await,
        Code::ResourceExhausted,
    );
    assert_eq!(error_reason(&over).as_deref(), Some("RATE_LIMITED"));
    assert!(over.get_error_details().retry_info().is_some());
    assert_eq!(
        stored_count(&env, &stream, &topic).await,
        8,
        "refused batches store nothing"
    );

    // Requests: the burst of 3 is spent by the three calls above.
    let limited = expect_code(
        gateway.admin().ping(proto::PingRequest {}).await,
        Code::ResourceExhausted,
    );
    assert_eq!(error_reason(&limited).as_deref(), Some("RATE_LIMITED"));
    let delay = retry_delay(&limited).expect("RetryInfo with a delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    assert_eq!(
        limited
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Health is never rate limited.
    assert_eq!(gateway.health_status("").await, ServingStatus::Serving);
    gateway.stop().await.expect("clean stop");
    open.stop().await.expect("clean stop");
}

async fn request_ids(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut admin = gateway.admin();

    let mut request = Request::new(proto::PingRequest {});
    request.metadata_mut().insert(
        "x-request-id",
        MetadataValue::from_static("order-42/retry-1"),
    );
    let response = admin.ping(request).await.expect("ping");
    assert_eq!(
        response
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("order-42/retry-1")
    );
    let generated = admin.ping(proto::PingRequest {}).await.expect("ping");
    let id = generated
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    // Errors carry the id too.
    let mut missing = Request::new(proto::GetStreamRequest {
        stream: by_name("no-such-stream-for-request-ids"),
    });
    missing
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("lookup-7"));
    let status = expect_code(admin.get_stream(missing).await, Code::NotFound);
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("lookup-7")
    );

    let mut too_long = Request::new(proto::PingRequest {});
    too_long.metadata_mut().insert(
        "x-request-id",
        MetadataValue::try_from("x".repeat(129)).expect("ascii"),
    );
    let refused = expect_code(admin.ping(too_long).await, Code::InvalidArgument);
    assert_eq!(bad_request_field(&refused).as_deref(), Some("x-request-id"));

    // A traceparent is stored on the published message as a header.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut publish = Request::new(publish_to(&stream, &topic, b"traced"));
    publish
        .metadata_mut()
        .insert("traceparent", MetadataValue::from_static(traceparent));
    gateway.messaging().publish(publish).await.expect("publish");
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let polled = stored(&iggy, &stream, &topic, 0).await;
    let headers = polled[0]
        .user_headers_map()
        .expect("headers decode")
        .expect("headers present");
    let stored = headers
        .iter()
        .find(|(key, _)| key.as_str().ok() == Some("traceparent"))
        .map(|(_, value)| value.as_str().expect("string header").to_owned());
    assert_eq!(stored.as_deref(), Some(traceparent));
    gateway.stop().await.expect("clean stop");
}

/// A CA with a server certificate for localhost/127.0.0.1 and a client
/// certificate with common name `orders-svc`, written as PEM files.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn generate(name: &str) -> Self {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("pki dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "iggy-grpc test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server cert");
        let client_key = KeyPair::generate().expect("client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "orders-svc");
        let client = client_params
            .signed_by(&client_key, &ca)
            .expect("client cert");
        let pki = Self {
            dir,
            ca_pem: ca.pem(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).expect("write");
        std::fs::write(pki.path("server.pem"), server.pem()).expect("write");
        std::fs::write(pki.path("server.key"), server_key.serialize_pem()).expect("write");
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn client_tls(&self, with_certificate: bool) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if with_certificate {
            tls.identity(Identity::from_pem(
                &self.client_cert_pem,
                &self.client_key_pem,
            ))
        } else {
            tls
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls(env: Env) {
    iggy_grpc::edge::tls::install_crypto_provider();
    let pki = Pki::generate(&env.unique("iggy-grpc-pki"));
    let tls_config = || {
        let mut config = Config::for_connection_string(&env.iggy.connection_string);
        config.pool.size = 2;
        config.edge.tls = Some(TlsFiles {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            client_ca: None,
        });
        config
    };

    // Server TLS: a client trusting the CA gets through; plaintext does not.
    let gateway = TestGateway::start_with_tls(tls_config(), Some(pki.client_tls(false))).await;
    gateway.wait_for_health("", ServingStatus::Serving).await;
    gateway
        .admin()
        .ping(proto::PingRequest {})
        .await
        .expect("ping over TLS");
    let plaintext = Channel::from_shared(format!("http://{}", gateway.address()))
        .expect("uri")
        .connect_lazy();
    assert!(
        AdminServiceClient::new(plaintext)
            .ping(proto::PingRequest {})
            .await
            .is_err(),
        "a plaintext client must not get an answer from a TLS gateway"
    );
    gateway.stop().await.expect("clean stop");

    // Mutual TLS: the certificate's common name is the principal.
    let keys_file = pki.path("keys.toml");
    std::fs::write(
        &keys_file,
        format!(
            "[[keys]]\nid = \"orders\"\ntls_common_name = \"orders-svc\"\nscopes = [\"subscribe\"]\n\n\
             [[keys]]\nid = \"admin\"\nsecret_sha256 = \"{}\"\nscopes = [\"admin\"]\n",
            secret_digest_hex(ADMIN_SECRET)
        ),
    )
    .expect("write keys");
    let mut mutual = tls_config();
    if let Some(tls) = mutual.edge.tls.as_mut() {
        tls.client_ca = Some(pki.path("ca.pem"));
    }
    mutual.edge.api_keys_file = Some(keys_file);
    let gateway = TestGateway::start_with_tls(mutual.clone(), Some(pki.client_tls(true))).await;
    gateway.wait_for_health("", ServingStatus::Serving).await;
    let mut admin = gateway.admin();
    let by_certificate = expect_code(
        admin.ping(proto::PingRequest {}).await,
        Code::PermissionDenied,
    );
    assert!(
        by_certificate.message().contains("key:orders"),
        "the certificate maps to its key: {}",
        by_certificate.message()
    );
    admin
        .ping(keyed(proto::PingRequest {}, ADMIN_SECRET))
        .await
        .expect("an API key still works over mTLS");
    gateway.stop().await.expect("clean stop");

    // Without a client certificate the handshake fails.
    let gateway = TestGateway::start_with_tls(mutual, Some(pki.client_tls(false))).await;
    let health = gateway
        .health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(
        health.is_err(),
        "no client certificate, no call: {health:?}"
    );
    gateway.stop().await.expect("clean stop");
}

async fn load_shedding(env: Env) {
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.pool.size = 2;
    config.transport.max_concurrent_calls = 1;
    let gateway = TestGateway::start_ready_with(config).await;

    // Hold one call open: its headers are sent, its body never ends, so it
    // keeps the only slot while the handler waits for the request message.
    let tcp = tokio::net::TcpStream::connect(gateway.address())
        .await
        .expect("connect");
    let (h2_client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut h2_client = h2_client.ready().await.expect("h2 ready");
    let held_request = || {
        tonic::codegen::http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/iggy.gateway.v1.AdminService/Ping",
                gateway.address()
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request")
    };

    // Once the held call has the slot, every other call is shed at once. A
    // ping racing the held call may take the slot first and get the held
    // call shed instead; then the held call is sent again.
    let mut admin = gateway.admin();
    let (shed, _held_response, mut held_body) = 'held: {
        for _ in 0..100 {
            let (response, body) = h2_client
                .send_request(held_request(), false)
                .expect("send headers");
            let mut response = Box::pin(response);
            for _ in 0..1000 {
                match admin.ping(proto::PingRequest {}).await {
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        break 'held (status, response, body);
                    }
                    Ok(_) => {}
                    Err(status) => panic!("unexpected status {status:?}"),
                }
                if response.as_mut().now_or_never().is_some() {
                    break; // the held call was shed by a ping; hold another
                }
                tokio::task::yield_now().await;
            }
        }
        panic!("no call was ever shed while another held the only slot");
    };
    assert_eq!(error_reason(&shed).as_deref(), Some("GATEWAY_OVERLOADED"));
    assert!(shed.get_error_details().retry_info().is_some());
    assert_eq!(
        gateway.health_status("").await,
        ServingStatus::Serving,
        "health is never shed"
    );

    // Releasing the held call frees the slot.
    held_body.send_reset(h2::Reason::CANCEL);
    let mut answered = false;
    for _ in 0..1000 {
        match admin.ping(proto::PingRequest {}).await {
            Ok(_) => {
                answered = true;
                break;
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::task::yield_now().await;
            }
            Err(status) => panic!("unexpected status {status:?}"),
        }
    }
    assert!(answered, "the slot is freed when the held call ends");
    gateway.stop().await.expect("clean stop");
}
