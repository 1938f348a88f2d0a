// Webhook TLS managed by the controller, on the real apiserver: the Secret, the caBundle the apiserver
// trusts, concurrent replicas converging on one certificate, and rotation of a certificate that no
// longer fits.

import { X509Certificate } from "node:crypto";
import { expect } from "chai";
import { pino } from "pino";
import { CertificateManager } from "../../src/webhooks/certificate-manager.js";
import { generateCertificateAuthority, generateServingCertificate } from "../../src/webhooks/certificates.js";
import { e2e } from "./env.js";
import { createNamespace } from "./helpers.js";

const logger = pino({ level: "silent" });

describe("webhook certificates", function () {
  this.timeout(60_000);

  it("the running controller's caBundle is the CA in its Secret, and the apiserver trusts it", async () => {
    const { cluster } = await e2e();
    const secret = await cluster.clients.core.readNamespacedSecret({
      name: "tekton-affinity-webhook-tls",
      namespace: "tekton-affinity",
    });
    const ca = Buffer.from(secret.data?.["ca.crt"] ?? "", "base64").toString();
    const cert = new X509Certificate(Buffer.from(secret.data?.["tls.crt"] ?? "", "base64"));
    expect(cert.checkIP("127.0.0.1")).to.equal("127.0.0.1");
    expect(cert.verify(new X509Certificate(ca).publicKey)).to.equal(true);
    const config = await cluster.clients.kc
      .makeApiClient((await import("@kubernetes/client-node")).AdmissionregistrationV1Api)
      .readMutatingWebhookConfiguration({ name: "tekton-affinity" });
    for (const webhook of config.webhooks ?? []) {
      expect(Buffer.from(webhook.clientConfig.caBundle ?? "", "base64").toString()).to.equal(ca);
    }
    // The apiserver calls the webhook with that bundle: a validated object proves the TLS handshake.
    const ns = await createNamespace(cluster, "tls");
    const rejected = await cluster.clients.custom
      .createNamespacedCustomObject({
        group: "affinity.tekton.dev",
        version: "v1alpha1",
        plural: "affinitypolicies",
        namespace: ns,
        body: {
          apiVersion: "affinity.tekton.dev/v1alpha1",
          kind: "AffinityPolicy",
          metadata: { name: "x" },
          spec: { mode: "pipelineruns", placeholder: { priorityClassName: "Bad Name" } },
        },
      })
      .then(
        () => "created",
        (err) => String(err.body),
      );
    expect(rejected).to.contain("spec.placeholder.priorityClassName");
  });

  it("replicas starting together converge on one certificate; a certificate that no longer fits is rotated under the same CA", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "certs");
    const manager = (hosts: string[]) =>
      new CertificateManager({ core: cluster.clients.core, namespace: ns, secretName: "tls", hosts, logger });
    const bundles = await Promise.all([1, 2, 3].map(() => manager(["webhook.example.svc"]).ensure()));
    expect(new Set(bundles.map((b) => b.certPem)).size).to.equal(1);
    expect(new Set(bundles.map((b) => b.caPem)).size).to.equal(1);

    // Someone (an older version, a human) leaves a serving cert for another host in the Secret.
    const otherCa = await generateCertificateAuthority({ commonName: "other", validityDays: 10 });
    const stale = await generateServingCertificate(otherCa, {
      dnsNames: ["elsewhere.svc"],
      ipAddresses: [],
      validityDays: 10,
    });
    const secret = await cluster.clients.core.readNamespacedSecret({ name: "tls", namespace: ns });
    secret.data = {
      ...secret.data,
      "tls.crt": Buffer.from(stale.certPem).toString("base64"),
      "tls.key": Buffer.from(stale.keyPem).toString("base64"),
    };
    await cluster.clients.core.replaceNamespacedSecret({ name: "tls", namespace: ns, body: secret });

    const rotated = await manager(["webhook.example.svc"]).ensure();
    expect(rotated.caPem).to.equal(bundles[0]!.caPem);
    expect(rotated.certPem).not.to.equal(bundles[0]!.certPem);
    const cert = new X509Certificate(rotated.certPem);
    expect(cert.checkHost("webhook.example.svc")).to.equal("webhook.example.svc");
    expect(cert.verify(new X509Certificate(rotated.caPem).publicKey)).to.equal(true);
  });
});
