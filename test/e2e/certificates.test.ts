// Webhook TLS managed by the controller, on the real apiserver: the Secret, the caBundle the apiserver
// trusts, concurrent replicas converging on one certificate, and rotation of a certificate that no
// longer fits.

import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import * as k8s from "@kubernetes/client-node";
import { expect } from "chai";
import { pino } from "pino";
import { ROTATE_CA_ANNOTATION } from "../../src/api/constants.js";
import { splitPemBundle } from "../../src/webhooks/ca-rotation.js";
import { CertificateManager } from "../../src/webhooks/certificate-manager.js";
import { generateCertificateAuthority, generateServingCertificate } from "../../src/webhooks/certificates.js";
import { waitFor } from "../cluster/kube.js";
import { sleep } from "../cluster/processes.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import { createNamespace } from "./helpers.js";
import { ReplicaSet } from "./replicas.js";

const logger = pino({ level: "silent" });
const SECRET = { name: "tekton-affinity-webhook-tls", namespace: "tekton-affinity" };

/** The certificate a replica serves on 127.0.0.1:port (whoever signed it). */
function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.end();
      if (cert) resolve(cert);
      else reject(new Error(`no certificate on port ${port}`));
    });
    socket.on("error", reject);
  });
}

function secretText(secret: k8s.V1Secret, key: string): string {
  return Buffer.from(secret.data?.[key] ?? "", "base64").toString();
}

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

  it("3 replicas replace their CA in steps while admissions run without pause, and none fails", async function () {
    this.timeout(300_000);
    const env = await e2e();
    const { cluster } = env;
    await env.controller.stop();
    const replicas = new ReplicaSet(
      cluster,
      3,
      [...TEST_CONTROLLER_ARGS, "--certificate-check-interval=1s"],
      undefined,
      "rotation",
    );
    let stop = false;
    try {
      await replicas.start();
      const ns = await createNamespace(cluster, "rotation");
      // Admissions without pause: dry-run policy creates, which the apiserver sends to the validating
      // webhook (failurePolicy Fail) through the balancer, so to every replica in turn.
      let admitted = 0;
      const failures: string[] = [];
      const admit = async () => {
        while (!stop) {
          await cluster.clients.custom
            .createNamespacedCustomObject({
              group: "affinity.tekton.dev",
              version: "v1alpha1",
              plural: "affinitypolicies",
              namespace: ns,
              dryRun: "All",
              body: {
                apiVersion: "affinity.tekton.dev/v1alpha1",
                kind: "AffinityPolicy",
                metadata: { name: "probe" },
                spec: { mode: "pipelineruns" },
              },
            })
            .then(
              () => admitted++,
              (err) => failures.push(String(err.body ?? err)),
            );
        }
      };
      const load = [admit(), admit()];
      await sleep(2000);

      const before = await cluster.clients.core.readNamespacedSecret(SECRET);
      const oldCa = secretText(before, "ca.crt");
      await cluster.clients.core.patchNamespacedSecret(
        { ...SECRET, body: { metadata: { annotations: { [ROTATE_CA_ANNOTATION]: "e2e" } } } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );

      // Watch the steps go by: the published caBundle must hold both CAs for a while.
      const published = new Set<number>();
      let newCa = "";
      const admission = cluster.clients.kc.makeApiClient(k8s.AdmissionregistrationV1Api);
      await waitFor(
        "the CA rotation to finish on every replica",
        async () => {
          const config = await admission.readValidatingWebhookConfiguration({
            name: "tekton-affinity",
          });
          const caBundle = Buffer.from(
            config.webhooks?.[0]?.clientConfig.caBundle ?? "",
            "base64",
          ).toString();
          published.add(splitPemBundle(caBundle).length);
          const secret = await cluster.clients.core.readNamespacedSecret(SECRET);
          newCa = secretText(secret, "ca.crt");
          if (newCa === oldCa || secret.data?.["ca-next.crt"]) return false;
          if (secretText(secret, "ca-bundle.crt") !== newCa || caBundle !== newCa) return false;
          const key = new X509Certificate(newCa).publicKey;
          const served = await Promise.all(replicas.replicas.map((r) => servedCertificate(r.port)));
          return served.every((cert) => cert.verify(key));
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
      expect(published.has(2), "a caBundle with both CAs was published").to.equal(true);
      await sleep(2000); // admissions keep going on the new CA alone
      stop = true;
      await Promise.all(load);
      console.log(`      ${admitted} admissions during the rotation, ${failures.length} failed`);
      expect(failures).to.deep.equal([]);
      expect(admitted).to.be.greaterThan(20);
      const after = await cluster.clients.core.readNamespacedSecret(SECRET);
      expect(after.metadata?.annotations?.[ROTATE_CA_ANNOTATION], "the request is cleared").to.equal(
        undefined,
      );
    } finally {
      stop = true;
      await replicas.stop();
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});
