// Starts the gateway binary for a test, against a real Iggy, and stops it.
//
// The binary comes from IGGY_GRPC_BIN (default target/debug/iggy-grpc). It
// runs Iggy embedded (iggy-server from IGGY_SERVER_BIN, PATH, or the build
// kept beside the repository), or connects to IGGY_TEST_ADDRESS when set.
// It listens on a port the system picks; the address is read from its
// `listening` log line, and the gateway counts as started once the gRPC
// health check of the whole gateway says SERVING.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHARED_SERVER = resolve(REPO, "..", "shared", "iggy-server", "iggy-server");

/** The gateway's proto contract, loaded for @grpc/grpc-js. */
export function loadProto() {
  const definition = protoLoader.loadSync(
    [
      "iggy/gateway/v1/messaging.proto",
      "iggy/gateway/v1/admin.proto",
    ],
    { includeDirs: [join(REPO, "proto")], longs: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition).iggy.gateway.v1;
}

function onPath(name) {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a gateway with the extra command-line `args` and environment
 * `env`; resolves to `{ address, stop }`. `stop()` sends SIGTERM and
 * rejects unless the gateway exits 0.
 */
export async function startGateway({ args = [], env = {} } = {}) {
  const binary = process.env.IGGY_GRPC_BIN ?? join(REPO, "target", "debug", "iggy-grpc");
  if (!existsSync(binary)) {
    throw new Error(`gateway binary ${binary} not found; run \`cargo build\` first`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), "iggy-grpc-node-"));
  const command = ["--listen", "127.0.0.1:0", "--metrics-listen", "", ...args];
  if (process.env.IGGY_TEST_ADDRESS) {
    command.push("--iggy-url", `iggy://iggy:iggy@${process.env.IGGY_TEST_ADDRESS}`);
  } else if (process.env.IGGY_SERVER_BIN || onPath("iggy-server")) {
    command.push("--embedded", "--data-dir", dataDir);
  } else if (existsSync(SHARED_SERVER)) {
    command.push("--embedded", "--data-dir", dataDir, "--iggy-server-bin", SHARED_SERVER);
  } else {
    throw new Error("no iggy-server: set IGGY_SERVER_BIN, put it on PATH, or set IGGY_TEST_ADDRESS");
  }
  const child = spawn(binary, command, {
    env: { ...process.env, IGGY_GRPC_API_KEYS: "", ...env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal })));
  const address = await new Promise((done, fail) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const found = / listening listen=(\S+)/.exec(line);
      if (found) done(found[1]);
    });
    exited.then(({ code, signal }) => fail(new Error(`the gateway exited (${code ?? signal}) before listening`)));
  });
  child.stdout.resume();
  const stop = async () => {
    child.kill("SIGTERM");
    const { code, signal } = await exited;
    rmSync(dataDir, { recursive: true, force: true });
    if (code !== 0) throw new Error(`the gateway exits 0 on SIGTERM, not ${code ?? signal}`);
  };
  try {
    await serving(address);
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  return { address, stop };
}

/** Waits on the gRPC health Watch until the whole gateway is SERVING. */
function serving(address) {
  const health = grpc.loadPackageDefinition(
    protoLoader.fromJSON({
      nested: {
        grpc: { nested: { health: { nested: { v1: { nested: {
          HealthCheckRequest: { fields: { service: { type: "string", id: 1 } } },
          HealthCheckResponse: { fields: { status: { type: "int32", id: 1 } } },
          Health: {
            methods: {
              Watch: {
                requestType: "HealthCheckRequest",
                responseType: "HealthCheckResponse",
                responseStream: true,
              },
            },
          },
        } } } } } },
      },
    }),
  ).grpc.health.v1;
  const client = new health.Health(address, grpc.credentials.createInsecure());
  const SERVING = 1;
  return new Promise((done, fail) => {
    const watch = client.watch({ service: "" }, { deadline: Date.now() + 60_000 });
    watch.on("data", ({ status }) => {
      if (status === SERVING) {
        watch.cancel();
        client.close();
        done();
      }
    });
    watch.on("error", (error) => {
      if (error.code !== grpc.status.CANCELLED) fail(error);
    });
  });
}
