// Our marks hold on UPDATE: a namespace owner who may update their PipelineRuns cannot remove or forge
// the labels and annotations under affinity.tekton.dev/ on a managed run (src/webhooks/gate.ts
// guardMarks). Removing the managed label would drop the run out of our watch, with its placeholder left
// behind; a forged cleaned-up would skip our cleanup.

import { expect } from "chai";
import { MANAGED_LABEL, PLACEMENT_LABEL } from "../../src/api/constants.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  asTenant,
  createNamespace,
  createRun,
  getRun,
  pipelineRun,
  waitRunSucceeded,
} from "./helpers.js";

describe("our marks on UPDATE", function () {
  this.timeout(120_000);

  it("a tenant's update keeps every mark of ours as it was, and keeps the tenant's own changes", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "marks");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const tenant = await asTenant(cluster, ns);
    const created = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a", seconds: 3 }] }));
    const name = created.metadata.name;
    const token = created.metadata.labels?.[PLACEMENT_LABEL];
    expect(created.metadata.labels?.[MANAGED_LABEL]).to.equal("true");

    const out = await tenant(
      "label",
      `pipelinerun/${name}`,
      `${MANAGED_LABEL}-`,
      `${PLACEMENT_LABEL}=forged`,
      "team=blue",
      "--overwrite",
    );
    expect(out).to.contain("labeled");
    await tenant("annotate", `pipelinerun/${name}`, "affinity.tekton.dev/cleaned-up=true", "note=mine");
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
