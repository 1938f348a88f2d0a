import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { expect } from "chai";
import { ALERTS, monitoringObjects } from "../../scripts/monitoring-lib.js";
import { parseObjects, releaseObjects, toKubeYaml } from "../../scripts/release-lib.js";
import { createMetrics } from "../../src/metrics.js";
import { version } from "../../src/version.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const IMAGE = `registry.example/tekton-affinity:1.2.3@sha256:${"a".repeat(64)}`;

/** A few objects as kustomize renders deploy/, in its order (webhook configurations last). */
const RENDERED = parseObjects(`
apiVersion: v1
kind: Namespace
metadata: {name: tekton-affinity}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: tekton-affinity-feature-flags, namespace: tekton-pipelines}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tekton-affinity, namespace: tekton-affinity}
spec:
  template:
    spec:
      initContainers: [{name: redis-password, image: "tekton-affinity:0.1.0"}]
      containers:
        - {name: controller, image: "tekton-affinity:0.1.0", env: [{name: A, value: b}]}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: affinitypolicies.affinity.tekton.dev}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: tekton-affinity}
`);

describe("release manifest", () => {
  it("pins every container of our image by digest and labels every object with the version", () => {
    const objects = releaseObjects(RENDERED, { version: "1.2.3", image: IMAGE });
    const deployment = objects.find((o) => o.kind === "Deployment") as unknown as {
      spec: { template: { spec: { initContainers: { image: string }[]; containers: { image: string }[] } } };
    };
    const pod = deployment.spec.template.spec;
    expect([...pod.initContainers, ...pod.containers].map((c) => c.image)).to.deep.equal([IMAGE, IMAGE]);
    for (const o of objects)
      expect(o.metadata.labels?.["app.kubernetes.io/version"], o.kind).to.equal("1.2.3");
    // The input is left as it was.
    expect(RENDERED.find((o) => o.kind === "Deployment")!.metadata.labels).to.equal(undefined);
  });

  it("puts the webhook configurations right after the CRD, so `kubectl delete -f` removes them first", () => {
    const kinds = releaseObjects(RENDERED, { version: "1.2.3", image: IMAGE }).map((o) => o.kind);
    expect(kinds).to.deep.equal([
      "Namespace",
      "CustomResourceDefinition",
      "MutatingWebhookConfiguration",
      "Role",
      "Deployment",
    ]);
  });

  it("moves what lives in Tekton's namespace, and tells the controller, when Tekton runs elsewhere", () => {
    const objects = releaseObjects(RENDERED, {
      version: "1.2.3",
      image: IMAGE,
      tektonNamespace: "openshift-pipelines",
    });
    expect(objects.find((o) => o.kind === "Role")!.metadata.namespace).to.equal("openshift-pipelines");
    const controller = (
      objects.find((o) => o.kind === "Deployment") as unknown as {
        spec: { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } };
      }
    ).spec.template.spec.containers[0]!;
    expect(controller.env).to.deep.include({
      name: "TEKTON_AFFINITY_TEKTON_NAMESPACE",
      value: "openshift-pipelines",
    });
    // Left alone by default.
    const plain = releaseObjects(RENDERED, { version: "1.2.3", image: IMAGE });
    expect(plain.find((o) => o.kind === "Role")!.metadata.namespace).to.equal("tekton-pipelines");
  });

  it("writes YAML kubectl reads back as written: yes/no/on stay strings", () => {
    const yaml = toKubeYaml([{ args: ["--appendonly", "no", "on", "yes"], n: 1, b: true }]);
    expect(yaml).to.include('"no"').and.include('"on"').and.include('"yes"');
    expect(parseObjects(yaml)).to.deep.equal([{ args: ["--appendonly", "no", "on", "yes"], n: 1, b: true }]);
  });

  it("refuses a render that names none of our images (nothing would be pinned)", () => {
    const none = RENDERED.filter((o) => o.kind !== "Deployment");
    expect(() => releaseObjects(none, { version: "1", image: IMAGE })).to.throw(
      "names no image tekton-affinity",
    );
  });

  it("the version lives in package.json; deploy/ and the CLI follow it", () => {
    const pkg = JSON.parse(readFileSync(resolve(ROOT, "package.json"), "utf8")) as { version: string };
    expect(version()).to.equal(pkg.version);
    const kustomization = readFileSync(resolve(ROOT, "deploy", "base", "kustomization.yaml"), "utf8");
    expect(kustomization).to.match(new RegExp(`newTag: ${pkg.version.replace(/\./g, "\\.")}\\n`));
  });
});

describe("monitoring manifest", () => {
  it("scrapes the controller pods' metrics port", () => {
    const [podMonitor] = monitoringObjects("1.2.3") as {
      kind: string;
      spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string }[] };
    }[];
    expect(podMonitor!.kind).to.equal("PodMonitor");
    expect(podMonitor!.spec.podMetricsEndpoints[0]!.port).to.equal("metrics");
    const deployment = readFileSync(resolve(ROOT, "deploy", "base", "controller.yaml"), "utf8");
    expect(deployment).to.include("- name: metrics\n              containerPort: 9090");
    for (const [k, v] of Object.entries(podMonitor!.spec.selector.matchLabels))
      expect(deployment).to.include(`${k}: ${v}`);
  });

  it("alerts on the five failures, naming only metrics the controller exports", async () => {
    expect(ALERTS.map((a) => a.alert)).to.deep.equal([
      "TektonAffinityWebhookUnavailable",
      "TektonAffinityRunsWaitingLong",
      "TektonAffinityQueueBacklog",
      "TektonAffinityRedisUnreachable",
      "TektonAffinityReplicaNotReady",
    ]);
    const families = new Set((await createMetrics().registry.getMetricsAsJSON()).map((m) => m.name));
    for (const alert of ALERTS)
      for (const name of alert.expr.match(/\btekton_affinity_[a-z_]+/g) ?? []) {
        const family = name.replace(/_(bucket|sum|count)$/, "");
        expect(families.has(family) || families.has(name), `${alert.alert}: ${name}`).to.equal(true);
      }
  });

  it("ships the Grafana dashboard as a ConfigMap", () => {
    const configMap = monitoringObjects("1.2.3").find(
      (o) => (o as { kind: string }).kind === "ConfigMap",
    ) as {
      data: Record<string, string>;
    };
    expect(JSON.parse(configMap.data["tekton-affinity.json"]!).uid).to.equal("tekton-affinity");
  });
});
