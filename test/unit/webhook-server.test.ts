// The webhook server's connection handling, over real TLS on a free port: the apiserver reuses idle
// connections for up to 90 s, so the server must not be the side that closes them.

import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import express from "express";
import { pino } from "pino";
import { createMetrics } from "../../src/metrics.js";
import { BodyBudget } from "../../src/webhooks/body-budget.js";
import { generateCertificateAuthority, generateServingCertificate } from "../../src/webhooks/certificates.js";
import {
  APISERVER_IDLE_CONNECTION_MS,
  createApp,
  listen,
  MAX_CONNECTIONS,
  MAX_REVIEW_BYTES,
  PATHS,
  REQUEST_TIMEOUT_MS,
} from "../../src/webhooks/server.js";
import { sleep } from "../cluster/processes.js";

/** Node's own default keepAliveTimeout: a server on it closes idle connections after this. */
const NODE_DEFAULT_KEEP_ALIVE_MS = 5_000;

describe("webhook server connections", function () {
  this.timeout(30_000);

  it("keeps an idle keep-alive connection open past Node's default, for the apiserver to reuse", async () => {
    const ca = await generateCertificateAuthority({ commonName: "test-ca", validityDays: 1 });
    const tls = await generateServingCertificate(ca, {
      dnsNames: [],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const app = express();
    app.post("/mutate/pods", (_req, res) => res.json({ ok: true }));
    const server = await listen(app, tls, 0, "127.0.0.1");
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.certPem });
    try {
      const port = (server.address() as AddressInfo).port;
      const post = () =>
        new Promise<TLSSocket>((resolve, reject) => {
          const req = https.request({ host: "127.0.0.1", port, path: "/mutate/pods", method: "POST", agent });
          req.on("response", (res) => {
            res.resume();
            res.on("end", () => resolve(req.socket as TLSSocket));
          });
          req.on("error", reject);
          req.end("{}");
        });
      const first = await post();
      let closedAt: number | undefined;
      first.once("close", () => {
        closedAt = Date.now();
      });
      await sleep(NODE_DEFAULT_KEEP_ALIVE_MS + 1_500);
      expect(closedAt, "the server closed the idle connection").to.equal(undefined);
      const second = await post();
      expect(second, "the second request reused the idle connection").to.equal(first);
      expect(server.keepAliveTimeout).to.be.greaterThan(APISERVER_IDLE_CONNECTION_MS);
    } finally {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("webhook server limits and failures", function () {
  this.timeout(30_000);
  let server: import("node:http").Server;
  let port: number;
  const metrics = createMetrics();
  const review = (object: unknown) => ({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: { uid: "u-1", operation: "CREATE", namespace: "team-a", object },
  });
  const post = async (path: string, body: Buffer | string, headers: Record<string, string> = {}) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : new Uint8Array(body),
    });
    const text = await res.text();
    return { status: res.status, json: res.status === 200 ? JSON.parse(text) : undefined };
  };

  before(async () => {
    const broken = () => {
      throw new Error("boom");
    };
    const app = createApp(
      { pipelineRun: broken, pod: broken, policy: broken, ready: () => true },
      metrics,
      pino({ level: "silent" }),
    );
    server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("refuses a pod or a policy when its handler fails, with the reason, and lets a run through ungated", async () => {
    const pod = await post(PATHS.pods, JSON.stringify(review({ metadata: { name: "p" } })));
    expect(pod.json.response.allowed).to.equal(false);
    expect(pod.json.response.status.message).to.contain("boom");
    const policy = await post(PATHS.policies, JSON.stringify(review({ metadata: { name: "p" } })));
    expect(policy.json.response.allowed).to.equal(false);
    const run = await post(PATHS.pipelineRuns, JSON.stringify(review({ metadata: { name: "r" } })));
    expect(run.json.response.allowed).to.equal(true);
    expect(run.json.response.warnings[0]).to.contain("boom");
    const text = await metrics.registry.metrics();
    expect(text).to.match(/tekton_affinity_webhook_errors_total\{webhook="pods"\} 1/);
    expect(text).to.match(/tekton_affinity_webhook_errors_total\{webhook="affinitypolicies"\} 1/);
  });

  it("refuses bodies larger than the apiserver can send, and compressed bodies, without reading them", async () => {
    const big = JSON.stringify(review({ metadata: { annotations: { a: "x".repeat(MAX_REVIEW_BYTES) } } }));
    expect((await post(PATHS.pods, big)).status).to.equal(413);
    // 5 MB of zeros gzip to a few kB: a server that inflated would parse them.
    const bomb = gzipSync(
      JSON.stringify(review({ metadata: { annotations: { a: "0".repeat(5_000_000) } } })),
    );
    expect(bomb.length).to.be.below(50_000);
    expect((await post(PATHS.pods, bomb, { "content-encoding": "gzip" })).status).to.equal(415);
    // An ordinary review still gets its answer.
    expect((await post(PATHS.pods, JSON.stringify(review({})))).status).to.equal(200);
  });

  it("holds at most 16 MiB of request bytes per source: a flood of large POSTs is refused unread, and the room comes back", async () => {
    const { connect } = await import("node:net");
    // Large POSTs whose bodies are still arriving: each has reserved its declared length.
    const open: import("node:net").Socket[] = [];
    const sendHeaders = (bytes: number) =>
      new Promise<{ socket: import("node:net").Socket; reply: Promise<string> }>((resolve) => {
        const socket = connect(port, "127.0.0.1", () => {
          socket.write(
            `POST ${PATHS.pods} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n{"a":"`,
          );
          let data = "";
          const reply = new Promise<string>((done) => {
            socket.on("data", (d) => {
              data += d.toString();
              done(data);
            });
            socket.on("close", () => done(data));
          });
          resolve({ socket, reply });
        });
        open.push(socket);
      });
    const before = await metrics.registry.getSingleMetricAsString(
      "tekton_affinity_webhook_requests_refused_total",
    );
    try {
      for (let i = 0; i < 4; i++) await sendHeaders(4 * 1024 * 1024);
      await sleep(100);
      // The fifth would pass 16 MiB from this address: 429 at once, its body never read.
      const fifth = await sendHeaders(4 * 1024 * 1024);
      expect(await fifth.reply).to.match(/^HTTP\/1.1 429/);
      expect(await post(PATHS.pods, JSON.stringify(review({})))).to.deep.include({ status: 429 });
      const after = await metrics.registry.getSingleMetricAsString(
        "tekton_affinity_webhook_requests_refused_total",
      );
      expect(after).to.match(/reason="source"\} [1-9]/);
      expect(after).to.not.equal(before);
    } finally {
      for (const socket of open) socket.destroy();
    }
    // Their connections closed, the room is free again: an ordinary review gets its answer.
    await sleep(100);
    expect((await post(PATHS.pods, JSON.stringify(review({})))).status).to.equal(200);
  });

  it("caps connections and the time a request may take to arrive", async () => {
    const ca = await generateCertificateAuthority({ commonName: "test-ca", validityDays: 1 });
    const tls = await generateServingCertificate(ca, {
      dnsNames: [],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const https = await listen(express(), tls, 0, "127.0.0.1");
    try {
      expect(https.maxConnections).to.equal(MAX_CONNECTIONS);
      expect(https.requestTimeout).to.equal(REQUEST_TIMEOUT_MS);
      expect(https.headersTimeout).to.be.at.most(REQUEST_TIMEOUT_MS);
    } finally {
      await new Promise((resolve) => https.close(resolve));
    }
  });
});

describe("BodyBudget", () => {
  it("refuses a source past its share, and every source past the total, and gives back what is done", () => {
    const budget = new BodyBudget({ totalBytes: 100, perSourceBytes: 60, unknownLengthBytes: 50 });
    expect(budget.take("attacker", 60)).to.equal("ok");
    expect(budget.take("attacker", 1)).to.equal("source");
    // The apiserver's address still has room...
    expect(budget.take("apiserver", 30)).to.equal("ok");
    // ...until the whole budget is used.
    expect(budget.take("other", 20)).to.equal("total");
    expect(budget.held()).to.equal(90);
    budget.give("attacker", 60);
    expect(budget.held("attacker")).to.equal(0);
    expect(budget.take("other", 20)).to.equal("ok");
    expect(budget.held()).to.equal(50);
  });
});
