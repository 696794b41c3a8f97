"""A Python client generated from proto/ with grpcio-tools, against a live
gateway and a real Iggy: publish, batch publish, subscribe with manual acks,
health, and reflection (list services, describe a method, call it with JSON).

The gateway binary comes from IGGY_GRPC_BIN (default target/debug/iggy-grpc).
It runs Iggy embedded (iggy-server from IGGY_SERVER_BIN or PATH), or connects
to IGGY_TEST_ADDRESS when that is set.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

REPO = Path(__file__).resolve().parents[2]
# The 0.9.0-edge.5 build kept beside the repository for tests.
SHARED_SERVER = REPO.parent / "shared" / "iggy-server" / "iggy-server"
SECRET = "python-client-secret-0123456789"
KEY = [("x-api-key", SECRET)]


def generate_stubs(out_dir: Path) -> None:
    """Runs grpcio-tools' protoc over every .proto of the contract."""
    from grpc_tools import protoc
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    code = protoc.main(
        [
            "protoc",
            f"-I{REPO / 'proto'}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    assert code == 0, "protoc failed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stubs():
    out_dir = Path(tempfile.mkdtemp(prefix="iggy-grpc-py-"))
    generate_stubs(out_dir)
    sys.path.insert(0, str(out_dir))
    from iggy.gateway.v1 import admin_pb2, admin_pb2_grpc, common_pb2, messaging_pb2, messaging_pb2_grpc

    yield {
        "admin": admin_pb2,
        "admin_grpc": admin_pb2_grpc,
        "common": common_pb2,
        "messaging": messaging_pb2,
        "messaging_grpc": messaging_pb2_grpc,
    }
    sys.path.remove(str(out_dir))
    shutil.rmtree(out_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway():
    """A running gateway; yields its address and stops it with SIGTERM."""
    binary = os.environ.get("IGGY_GRPC_BIN", str(REPO / "target" / "debug" / "iggy-grpc"))
    if not Path(binary).exists():
        pytest.fail(f"gateway binary {binary} not found; run `cargo build` first")
    address = f"127.0.0.1:{free_port()}"
    data_dir = tempfile.mkdtemp(prefix="iggy-grpc-py-data-")
    args = [binary, "--listen", address, "--metrics-listen", ""]
    if os.environ.get("IGGY_TEST_ADDRESS"):
        args += ["--iggy-url", f"iggy://iggy:iggy@{os.environ['IGGY_TEST_ADDRESS']}"]
    elif os.environ.get("IGGY_SERVER_BIN") or shutil.which("iggy-server"):
        args += ["--embedded", "--data-dir", data_dir]
    elif SHARED_SERVER.is_file():
        args += ["--embedded", "--data-dir", data_dir, "--iggy-server-bin", str(SHARED_SERVER)]
    else:
        pytest.fail("no iggy-server: set IGGY_SERVER_BIN, put it on PATH, or set IGGY_TEST_ADDRESS")
    env = dict(os.environ, IGGY_GRPC_API_KEYS=f"py:{SECRET}:publish+subscribe+admin")
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            for update in watch:
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    watch.cancel()
                    break
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "the gateway exits 0 on SIGTERM"
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def channel(gateway):
    with grpc.insecure_channel(gateway) as channel:
        yield channel


def new_topic(stubs, channel, partitions=1):
    admin = stubs["admin_grpc"].AdminServiceStub(channel)
    common = stubs["common"]
    stream = f"py-{uuid.uuid4().hex[:12]}"
    admin.CreateStream(stubs["admin"].CreateStreamRequest(name=stream), metadata=KEY)
    admin.CreateTopic(
        stubs["admin"].CreateTopicRequest(
            stream=common.ResourceId(name=stream), name="events", partitions_count=partitions
        ),
        metadata=KEY,
    )
    return common.ResourceId(name=stream), common.ResourceId(name="events")


def test_health_is_serving(channel):
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    messaging = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="iggy.gateway.v1.MessagingService")
    )
    assert messaging.status == health_pb2.HealthCheckResponse.SERVING


def test_publish_and_batch_publish(stubs, channel):
    stream, topic = new_topic(stubs, channel)
    m, common = stubs["messaging"], stubs["common"]
    messaging = stubs["messaging_grpc"].MessagingServiceStub(channel)

    response, call = messaging.Publish.with_call(
        m.PublishRequest(
            stream=stream,
            topic=topic,
            message=common.Message(
                payload=b"hello from python",
                headers={"lang": common.HeaderValue(string_value="python")},
            ),
        ),
        metadata=KEY + [("x-request-id", "py-publish-1")],
    )
    assert response.result.partition_id == 0
    assert response.result.offset == 0
    assert uuid.UUID(response.result.id)
    assert ("x-request-id", "py-publish-1") in call.initial_metadata()

    batch = messaging.PublishBatch(
        m.PublishBatchRequest(
            stream=stream,
            topic=topic,
            messages=[
                m.BatchMessage(message=common.Message(payload=f"m{i}".encode())) for i in range(5)
            ],
        ),
        metadata=KEY,
    )
    assert [r.stored.offset for r in batch.results] == [1, 2, 3, 4, 5]

    with pytest.raises(grpc.RpcError) as refused:
        messaging.Publish(m.PublishRequest(stream=stream, topic=topic, message=common.Message(payload=b"x")))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(grpc.RpcError) as invalid:
        messaging.Publish(
            m.PublishRequest(stream=stream, topic=topic, message=common.Message(payload=b"")),
            metadata=KEY,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message.payload" in invalid.value.details()


def test_subscribe_with_manual_acks(stubs, channel):
    stream, topic = new_topic(stubs, channel)
    m, common, a = stubs["messaging"], stubs["common"], stubs["admin"]
    messaging = stubs["messaging_grpc"].MessagingServiceStub(channel)
    messaging.PublishBatch(
        m.PublishBatchRequest(
            stream=stream,
            topic=topic,
            messages=[m.BatchMessage(message=common.Message(payload=f"e{i}".encode())) for i in range(4)],
        ),
        metadata=KEY,
    )

    consumer = common.Consumer(name="py-reader")
    subscription = messaging.Subscribe(
        m.SubscribeRequest(
            stream=stream,
            topic=topic,
            consumer=consumer,
            start=common.StartPosition(offset=0),
            ack_mode=common.ACK_MODE_MANUAL,
            batch_size=10,
        ),
        metadata=KEY,
        timeout=60,
    )
    first = next(subscription)
    assert first.HasField("subscribed")
    subscription_id = first.subscribed.subscription_id
    received = []
    for item in subscription:
        if item.HasField("batch"):
            for message in item.batch.messages:
                received.append(message.payload)
                messaging.Ack(
                    m.AckRequest(
                        subscription_id=subscription_id,
                        partition_id=message.partition_id,
                        offset=message.offset,
                    ),
                    metadata=KEY,
                )
        if len(received) >= 4:
            break
    subscription.cancel()
    assert received == [b"e0", b"e1", b"e2", b"e3"]

    admin = stubs["admin_grpc"].AdminServiceStub(channel)
    stored = admin.GetConsumerOffset(
        a.GetConsumerOffsetRequest(stream=stream, topic=topic, consumer=consumer, partition_id=0),
        metadata=KEY,
    )
    assert stored.offset.stored_offset == 3, "every acknowledged offset is stored"


def test_reflection_lists_describes_and_calls_with_json(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    for service in (
        "iggy.gateway.v1.AdminService",
        "iggy.gateway.v1.MessagingService",
        "grpc.health.v1.Health",
    ):
        assert service in services

    pool = descriptor_pool.DescriptorPool(database)
    admin = pool.FindServiceByName("iggy.gateway.v1.AdminService")
    method = admin.methods_by_name["CreateStream"]
    assert method.input_type.full_name == "iggy.gateway.v1.CreateStreamRequest"
    assert "name" in method.input_type.fields_by_name

    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    name = f"py-json-{uuid.uuid4().hex[:12]}"
    request = json_format.Parse(json.dumps({"name": name}), request_class())
    call = channel.unary_unary(
        f"/{admin.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    answer = json.loads(json_format.MessageToJson(call(request, metadata=KEY)))
    assert answer["stream"]["name"] == name
