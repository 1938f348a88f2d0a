import { readFileSync } from "node:fs";
import { expect } from "chai";
import { parseAllDocuments } from "yaml";
import { WEBHOOKS_PATH, webhooksManifest } from "../../scripts/generate-webhooks-lib.js";
import { caBundleOnly, webhookConfigurations } from "../../src/webhooks/configurations.js";

describe("shipped webhook configurations", () => {
  it("deploy/base/webhooks.yaml is what a replica would apply, without caBundle (run `npm run generate`)", () => {
    const committed = readFileSync(WEBHOOKS_PATH, "utf8");
    expect(committed === webhooksManifest(), "stale: run `npm run generate` and commit the result").to.equal(
      true,
    );
    const shipped = parseAllDocuments(committed).map((d) => d.toJS());
    expect(shipped.map((o) => o.kind)).to.deep.equal([
      "MutatingWebhookConfiguration",
      "ValidatingWebhookConfiguration",
    ]);
    for (const o of shipped)
      for (const w of o.webhooks) {
        expect(w.clientConfig, w.name).to.not.have.property("caBundle");
        expect(w.clientConfig.service, w.name).to.include({
          name: "tekton-affinity-webhook",
          namespace: "tekton-affinity",
        });
      }
  });

  it("a replica's patch of an installed configuration names only each webhook's caBundle", () => {
    const [mutating] = webhookConfigurations({
      caBundle: "Q0E=",
      service: { name: "s", namespace: "n", port: 443 },
      excludedNamespaces: ["n"],
    });
    expect(caBundleOnly(mutating!, "Q0E=")).to.deep.equal({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingWebhookConfiguration",
      metadata: { name: "tekton-affinity" },
      webhooks: [
        { name: "pipelineruns.affinity.tekton.dev", clientConfig: { caBundle: "Q0E=" } },
        { name: "pipelinerun-marks.affinity.tekton.dev", clientConfig: { caBundle: "Q0E=" } },
        { name: "pods.affinity.tekton.dev", clientConfig: { caBundle: "Q0E=" } },
      ],
    });
  });
});
