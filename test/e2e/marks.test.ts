// Our marks hold on UPDATE: a namespace owner who may update their PipelineRuns cannot remove or forge
// the labels and annotations under affinity.tekton.dev/ on a managed run (src/webhooks/gate.ts
// guardMarks). Removing the managed label would drop the run out of our watch, with its placeholder left
// behind; a forged cleaned-up would skip our cleanup.

import { join } from "node:path";
import { expect } from "chai";
import { MANAGED_LABEL, PLACEMENT_LABEL } from "../../src/api/constants.js";
import { kubectlRun } from "../cluster/kube.js";
import { e2e } from "./env.js";
import { applyPolicy, createNamespace, createRun, getRun, pipelineRun, waitRunSucceeded } from "./helpers.js";

const TENANT = "tenant-developer";

describe("our marks on UPDATE", function () {
  this.timeout(120_000);

  it("a tenant's update keeps every mark of ours as it was, and keeps the tenant's own changes", async () => {
    const env = await e2e();
    const { cluster } = env;
    const ns = await createNamespace(cluster, "marks");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    // The tenant may update runs in their namespace, as Tekton's edit role allows.
    await cluster.apply(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: run-editor, namespace: ${ns}}
rules:
  - apiGroups: [tekton.dev]
    resources: [pipelineruns]
    verbs: [get, list, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: run-editor, namespace: ${ns}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ${TENANT}}]
`);
    const kubeconfig = cluster.writeImpersonatingKubeconfig(join(env.logDir, "tenant.kubeconfig"), TENANT);
    const asTenant = (...args: string[]) => kubectlRun(cluster.kubectl, kubeconfig, ["-n", ns, ...args]);

    const created = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a", seconds: 3 }] }));
    const name = created.metadata.name;
    const token = created.metadata.labels?.[PLACEMENT_LABEL];
    expect(created.metadata.labels?.[MANAGED_LABEL]).to.equal("true");

    const out = await asTenant(
      "label",
      `pipelinerun/${name}`,
      `${MANAGED_LABEL}-`,
      `${PLACEMENT_LABEL}=forged`,
      "team=blue",
      "--overwrite",
    );
    expect(out).to.contain("labeled");
    await asTenant("annotate", `pipelinerun/${name}`, "affinity.tekton.dev/cleaned-up=true", "note=mine");
    const run = await getRun(cluster, ns, name);
    expect(run.metadata.labels?.[MANAGED_LABEL], "managed label kept").to.equal("true");
    expect(run.metadata.labels?.[PLACEMENT_LABEL], "placement token kept").to.equal(token);
    expect(run.metadata.annotations, "no forged cleaned-up").to.not.have.property(
      "affinity.tekton.dev/cleaned-up",
    );
    expect(run.metadata.labels?.team, "the tenant's own label").to.equal("blue");
    expect(run.metadata.annotations?.note, "the tenant's own annotation").to.equal("mine");

    // Still ours: placed, run, and cleaned up by us.
    const done = await waitRunSucceeded(cluster, ns, name);
    expect(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.be.a("string");
  });
});
