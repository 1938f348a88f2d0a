// The webhook server's connection handling, over real TLS on a free port: the apiserver reuses idle
// connections for up to 90 s, so the server must not be the side that closes them.

import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { expect } from "chai";
import express from "express";
import { generateCertificateAuthority, generateServingCertificate } from "../../src/webhooks/certificates.js";
import { APISERVER_IDLE_CONNECTION_MS, listen } from "../../src/webhooks/server.js";
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
