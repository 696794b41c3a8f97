// A Node client on @grpc/grpc-js, the proto loaded at run time by
// @grpc/proto-loader, against a live gateway with API keys and a real
// Iggy: publish one, publish a batch, subscribe with manual acks, ack, and
// a second subscription that starts after what was acknowledged.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { loadProto, startGateway } from "./gateway.mjs";

const SECRET = "node-client-secret-0123456789";
const v1 = loadProto();
let gateway;
let messaging;
let admin;
const key = () => {
  const metadata = new grpc.Metadata();
  metadata.set("x-api-key", SECRET);
  return metadata;
};

/** Calls a unary method and resolves to its answer. */
const call = (client, method, request) =>
  new Promise((done, fail) =>
    client[method](request, key(), (error, answer) => (error ? fail(error) : done(answer))),
  );

before(async () => {
  gateway = await startGateway({
    env: { IGGY_GRPC_API_KEYS: `node:${SECRET}:publish+subscribe+admin` },
  });
  const credentials = grpc.credentials.createInsecure();
  messaging = new v1.MessagingService(gateway.address, credentials);
  admin = new v1.AdminService(gateway.address, credentials);
});

after(async () => {
  messaging?.close();
  admin?.close();
  await gateway?.stop();
});

async function newTopic() {
  const name = `node-${randomUUID().slice(0, 12)}`;
  await call(admin, "createStream", { name });
  await call(admin, "createTopic", { stream: { name }, name: "events", partitionsCount: 1 });
  return { stream: { name }, topic: { name: "events" } };
}

/**
 * Reads a Subscribe stream until `count` messages have come; resolves to
 * the subscription id, the messages and the stream, still open.
 */
function subscribe(request, count) {
  return new Promise((done, fail) => {
    const stream = messaging.subscribe(request, key());
    let subscriptionId;
    const messages = [];
    stream.on("data", (response) => {
      if (response.kind === "subscribed") subscriptionId = response.subscribed.subscriptionId;
      if (response.kind === "batch") messages.push(...response.batch.messages);
      if (messages.length >= count) done({ subscriptionId, messages, stream });
    });
    stream.on("error", (error) => {
      if (error.code !== grpc.status.CANCELLED) fail(error);
    });
  });
}

test("a call without a key is refused UNAUTHENTICATED", async () => {
  const error = await new Promise((done) =>
    messaging.publish({}, new grpc.Metadata(), (failure) => done(failure)),
  );
  assert.equal(error.code, grpc.status.UNAUTHENTICATED);
});

test("publish, batch, subscribe with manual acks, ack, and resume after the ack", async () => {
  const { stream, topic } = await newTopic();
  const text = (message) => Buffer.from(message.payload).toString();

  const one = await call(messaging, "publish", {
    stream,
    topic,
    message: { payload: Buffer.from("one"), headers: { source: { stringValue: "node" } } },
  });
  assert.equal(one.result.partitionId, 0);
  assert.equal(one.result.offset, "0");

  const batch = await call(messaging, "publishBatch", {
    stream,
    topic,
    messages: ["two", "three", "four"].map((payload) => ({
      message: { payload: Buffer.from(payload) },
    })),
  });
  assert.deepEqual(
    batch.results.map((result) => result.stored.offset),
    ["1", "2", "3"],
  );

  const consumer = { name: "node-reader" };
  const first = await subscribe(
    { stream, topic, consumer, start: { first: {} }, ackMode: "ACK_MODE_MANUAL" },
    4,
  );
  assert.ok(first.subscriptionId, "the first response names the subscription");
  assert.deepEqual(first.messages.map(text), ["one", "two", "three", "four"]);
  assert.deepEqual(first.messages.map((message) => message.offset), ["0", "1", "2", "3"]);
  assert.equal(first.messages[0].headers.source.stringValue, "node");
  assert.equal(first.messages[0].deliveryAttempt, 1);

  await call(messaging, "ack", { subscriptionId: first.subscriptionId, partitionId: 0, offset: 1 });
  first.stream.cancel();

  await call(messaging, "publish", { stream, topic, message: { payload: Buffer.from("five") } });
  // Unset start is `next`: after the stored (acknowledged) offset.
  const second = await subscribe({ stream, topic, consumer, ackMode: "ACK_MODE_MANUAL" }, 3);
  second.stream.cancel();
  assert.deepEqual(second.messages.map(text), ["three", "four", "five"]);
});
