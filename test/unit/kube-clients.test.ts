// The API clients' connections, over real TLS on a free port: a replica makes thousands of API calls,
// and client-node on its own opens a new TLS connection for each (src/kube/clients.ts).

import type { AddressInfo } from "node:net";
import * as k8s from "@kubernetes/client-node";
import { expect } from "chai";
import express from "express";
import { reuseConnections } from "../../src/kube/clients.js";
import { generateCertificateAuthority, generateServingCertificate } from "../../src/webhooks/certificates.js";
import { listen } from "../../src/webhooks/server.js";

describe("API client connections", function () {
  this.timeout(30_000);

  async function countConnections(configure: (kc: k8s.KubeConfig) => void, calls: number) {
    const ca = await generateCertificateAuthority({ commonName: "test-ca", validityDays: 1 });
    const tls = await generateServingCertificate(ca, {
      dnsNames: [],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const app = express();
    app.get("/api/v1/namespaces/:ns/configmaps/:name", (req, res) =>
      res.json({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: req.params.name } }),
    );
    const server = await listen(app, tls, 0, "127.0.0.1");
    let connections = 0;
    server.on("secureConnection", () => connections++);
    try {
      const kc = new k8s.KubeConfig();
      kc.loadFromOptions({
        clusters: [
          {
            name: "c",
            server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
            caData: Buffer.from(ca.certPem).toString("base64"),
          },
        ],
        users: [{ name: "u", token: "t" }],
        contexts: [{ name: "x", cluster: "c", user: "u" }],
        currentContext: "x",
      });
      configure(kc);
      const core = kc.makeApiClient(k8s.CoreV1Api);
      for (let i = 0; i < calls; i++) {
        const cm = await core.readNamespacedConfigMap({ name: `cm-${i}`, namespace: "default" });
        expect(cm.metadata?.name).to.equal(`cm-${i}`);
      }
      return connections;
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }

  it("reuses one TLS connection for calls made one after another", async () => {
    expect(await countConnections(reuseConnections, 10)).to.equal(1);
  });

  it("(the fault it guards against) client-node alone opens one per call", async () => {
    expect(await countConnections(() => undefined, 10)).to.equal(10);
  });
});
