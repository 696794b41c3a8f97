// The browser page: publishes and reads a server stream over gRPC-Web with
// @connectrpc/connect-web (the gateway on another origin, so CORS decides),
// then reads the topic with an EventSource from this page's origin. What
// it saw is kept in `window.seen` for the test, and shown on the page.
//
// The query names the gateway (`gateway=http://host:port`), the stream
// and the topic. The contract's descriptors come bundled (contract.binpb,
// built by `buf build` from proto/ when the test bundles this page), so no
// code is generated.

import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import contract from "contract.binpb";

const query = new URLSearchParams(location.search);
const [stream, topic] = [query.get("stream"), query.get("topic")];
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, contract));
const messaging = createClient(
  registry.getService("iggy.gateway.v1.MessagingService"),
  createGrpcWebTransport({ baseUrl: query.get("gateway") }),
);
const named = (value) => ({ kind: { case: "name", value } });
const text = (bytes) => new TextDecoder().decode(bytes);
const bytes = (value) => new TextEncoder().encode(value);

const seen = (window.seen = { grpcWeb: {}, sse: { connections: 0, messages: [] }, error: null });

function row(table, cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = String(cell);
    tr.append(td);
  }
  document.getElementById(table).append(tr);
}

function state(value, failed = false) {
  const element = document.getElementById("state");
  element.textContent = value;
  element.className = failed ? "error" : "";
}

async function grpcWeb() {
  const one = await messaging.publish({
    stream: named(stream),
    topic: named(topic),
    message: { payload: bytes("web-1") },
  });
  row("grpc-web", ["Publish", `offset ${one.result.offset}`]);
  const batch = await messaging.publishBatch({
    stream: named(stream),
    topic: named(topic),
    messages: ["web-2", "web-3"].map((payload) => ({ message: { payload: bytes(payload) } })),
  });
  const offsets = batch.results.map((result) => result.outcome.value.offset);
  row("grpc-web", ["PublishBatch", `offsets ${offsets.join(", ")}`]);
  seen.grpcWeb.published = [one.result.offset, ...offsets].map(String);

  const abort = new AbortController();
  const streamed = [];
  const responses = messaging.subscribe(
    {
      stream: named(stream),
      topic: named(topic),
      consumer: named("browser-grpc-web"),
      start: { kind: { case: "first", value: {} } },
    },
    { signal: abort.signal },
  );
  try {
    for await (const response of responses) {
      if (response.kind.case === "batch") streamed.push(...response.kind.value.messages);
      if (streamed.length >= 3) break;
    }
  } finally {
    abort.abort();
  }
  seen.grpcWeb.streamed = streamed.map((message) => text(message.payload));
  row("grpc-web", ["Subscribe (server stream)", seen.grpcWeb.streamed.join(", ")]);
}

function eventSource() {
  const url = `/v1/streams/${stream}/topics/${topic}/subscribe?consumer.name=browser-sse&start.first`;
  const source = new EventSource(url);
  source.addEventListener("subscribed", () => {
    seen.sse.connections += 1;
  });
  source.addEventListener("batch", (event) => {
    for (const message of JSON.parse(event.data).messages) {
      const payload = text(Uint8Array.from(atob(message.payload), (c) => c.charCodeAt(0)));
      seen.sse.messages.push({ partition: message.partitionId, offset: message.offset, payload });
      row("sse", [seen.sse.connections, message.partitionId, message.offset, payload, event.lastEventId]);
    }
    seen.sse.lastEventId = event.lastEventId;
    state(`${seen.sse.messages.length} messages by SSE over ${seen.sse.connections} connection(s)`);
  });
  source.addEventListener("error", (event) => {
    if (event.data) seen.error = event.data; // the gateway's `event: error`
  });
}

grpcWeb()
  .then(() => {
    state("gRPC-Web done; reading by SSE");
    eventSource();
  })
  .catch((error) => {
    seen.error = String(error);
    state(`failed: ${error}`, true);
  });
