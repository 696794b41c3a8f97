// A real browser: headless Chromium (Debian's package) loads a page, bundled
// here by esbuild, that publishes and reads a server stream over gRPC-Web
// with @connectrpc/connect-web from another origin (CORS by
// --cors-allowed-origins), then reads the topic with an EventSource. The
// test cuts the EventSource's connection, publishes more, and checks that
// the browser reconnected with Last-Event-ID and saw every message exactly
// once. A screenshot of the page at the end is kept in the artifacts folder
// (IGGY_GRPC_TEST_ARTIFACTS, default target/test-artifacts).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";
import { REPO, startGateway } from "./gateway.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const HERE = join(REPO, "tests", "node");
const ARTIFACTS = process.env.IGGY_GRPC_TEST_ARTIFACTS ?? join(REPO, "target", "test-artifacts");
const WAIT = { timeout: 30_000 };

/** The page's script: page.mjs with the contract's descriptors, for a browser. */
async function bundle(workDir) {
  const contract = join(workDir, "contract.binpb");
  execFileSync(join(HERE, "node_modules", ".bin", "buf"), ["build", "-o", contract], {
    cwd: join(REPO, "proto"),
  });
  const built = await esbuild.build({
    entryPoints: [join(HERE, "browser", "page.mjs")],
    bundle: true,
    format: "iife",
    platform: "browser",
    write: false,
    loader: { ".binpb": "binary" },
    plugins: [
      {
        name: "contract",
        setup(build) {
          build.onResolve({ filter: /^contract\.binpb$/ }, () => ({ path: contract }));
        },
      },
    ],
  });
  return built.outputFiles[0].contents;
}

/**
 * The page's own origin: serves the page and passes `/v1/` requests on to
 * the gateway, keeping each one so the test can see its headers and cut
 * its connection at a moment of its choosing.
 */
function pageServer(script) {
  const html = readFileSync(join(HERE, "browser", "index.html"));
  const passed = [];
  let gateway;
  const server = http.createServer((request, response) => {
    const path = new URL(request.url, "http://page").pathname;
    if (path === "/") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    } else if (path === "/page.js") {
      response.writeHead(200, { "content-type": "text/javascript" }).end(script);
    } else if (path.startsWith("/v1/") && gateway) {
      const upstream = http.request(`http://${gateway}${request.url}`, {
        method: request.method,
        headers: { ...request.headers, host: gateway },
      });
      upstream.on("response", (answer) => {
        response.writeHead(answer.statusCode, answer.headers);
        answer.pipe(response);
      });
      upstream.on("error", () => response.destroy());
      request.pipe(upstream);
      passed.push({ headers: request.headers, cut: () => (upstream.destroy(), response.destroy()) });
    } else {
      response.writeHead(404).end();
    }
  });
  return new Promise((done) =>
    server.listen(0, "127.0.0.1", () =>
      done({
        origin: `http://127.0.0.1:${server.address().port}`,
        passed,
        passTo: (address) => (gateway = address),
        close: () => (server.closeAllConnections(), server.close()),
      }),
    ),
  );
}

async function rest(gateway, method, path, body) {
  const response = await fetch(`http://${gateway}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.text();
  assert.equal(response.status, 200, `${method} ${path}: ${answer}`);
  return JSON.parse(answer);
}

const chromiumFound = existsSync(CHROMIUM);
let workDir;
let site;
let gateway;
let browser;

before(async () => {
  if (!chromiumFound) return;
  workDir = mkdtempSync(join(tmpdir(), "iggy-grpc-browser-"));
  site = await pageServer(await bundle(workDir));
  gateway = await startGateway({ args: ["--cors-allowed-origins", site.origin] });
  site.passTo(gateway.address);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  site?.close();
  await gateway?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test(
  "a browser publishes and streams over gRPC-Web, and its EventSource resumes after a cut",
  { skip: !chromiumFound && `NO CHROMIUM at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)` },
  async () => {
    const stream = `browser-${randomUUID().slice(0, 12)}`;
    await rest(gateway.address, "POST", "/v1/streams", { name: stream });
    await rest(gateway.address, "POST", `/v1/streams/${stream}/topics`, {
      name: "events",
      partitionsCount: 1,
    });

    const page = await browser.newPage();
    const query = new URLSearchParams({
      gateway: `http://${gateway.address}`,
      stream,
      topic: "events",
    });
    await page.goto(`${site.origin}/?${query}`);
    await page.waitForFunction(() => window.seen.error || window.seen.sse.messages.length >= 3, null, WAIT);
    const before = await page.evaluate(() => window.seen);
    assert.equal(before.error, null);
    assert.deepEqual(before.grpcWeb.published, ["0", "1", "2"]);
    assert.deepEqual(before.grpcWeb.streamed, ["web-1", "web-2", "web-3"]);
    assert.equal(before.sse.messages.length, 3);

    // Cut the EventSource's connection, then publish while it is away.
    const sse = site.passed.filter(({ headers }) => headers.accept === "text/event-stream");
    assert.equal(sse.length, 1);
    assert.equal(sse[0].headers["last-event-id"], undefined);
    sse[0].cut();
    await rest(gateway.address, "POST", `/v1/streams/${stream}/topics/events/messages:batch`, {
      messages: ["rest-4", "rest-5", "rest-6"].map((payload) => ({
        message: { payload: Buffer.from(payload).toString("base64") },
      })),
    });

    await page.waitForFunction(() => window.seen.error || window.seen.sse.messages.length >= 6, null, WAIT);
    const seen = await page.evaluate(() => window.seen);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "browser.png"), fullPage: true });

    assert.equal(seen.error, null);
    assert.equal(seen.sse.connections, 2, "the EventSource reconnected once");
    const reconnect = site.passed.filter(({ headers }) => headers.accept === "text/event-stream");
    assert.equal(reconnect.length, 2);
    assert.equal(reconnect[1].headers["last-event-id"], before.sse.lastEventId);
    assert.deepEqual(
      seen.sse.messages.map(({ offset, payload }) => `${offset}:${payload}`),
      ["0:web-1", "1:web-2", "2:web-3", "3:rest-4", "4:rest-5", "5:rest-6"],
      "every message once, in order, across the cut",
    );
  },
);
