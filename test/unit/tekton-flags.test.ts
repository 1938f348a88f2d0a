// Tekton's assistant as each release reads its feature-flags (src/kube/tekton-flags.ts).

import { expect } from "chai";
import { readsDisableFlag, tektonAssistant } from "../../src/kube/tekton-flags.js";

describe("Tekton's feature-flags, as each release reads them", () => {
  it("knows which releases read disable-affinity-assistant: v0.68 and older", () => {
    expect(["v0.68.2", "0.59.0", "v0.47.3"].map(readsDisableFlag)).to.deep.equal([true, true, true]);
    expect(["v0.69.0", "v1.0.0", "v1.15.0", undefined, "", "devel"].map(readsDisableFlag)).to.deep.equal([
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
  });

  it("current releases: only coschedule, lowercased, defaulting to workspaces", () => {
    expect(tektonAssistant({ coschedule: "Disabled" }, "v1.0.0").mode).to.equal("disabled");
    expect(tektonAssistant({ coschedule: " PIPELINERUNS " }, "v1.15.0").mode).to.equal("pipelineruns");
    expect(tektonAssistant({}, "v1.15.0").mode).to.equal("workspaces");
    // A stale disable-affinity-assistant is ignored there.
    const stale = tektonAssistant({ "disable-affinity-assistant": "true" }, "v1.0.0");
    expect(stale.mode).to.equal("workspaces");
    expect(stale.fix).to.contain('coschedule: "disabled"').and.contain("v1.0.0");
    // An unknown release is read as a current one.
    expect(tektonAssistant({ coschedule: "disabled" }).mode).to.equal("disabled");
  });

  it("v0.68 and older: disable-affinity-assistant decides, as in Tekton's migration table", () => {
    const v = "v0.68.2";
    // disable-affinity-assistant "true" alone turns the assistant off (coschedule defaults to workspaces).
    expect(tektonAssistant({ "disable-affinity-assistant": "true" }, v).mode).to.equal("disabled");
    expect(tektonAssistant({ "disable-affinity-assistant": "T", coschedule: "disabled" }, v).mode).to.equal(
      "disabled",
    );
    // coschedule "disabled" alone is rejected by that release, and its assistant stays on.
    const alone = tektonAssistant({ coschedule: "disabled" }, v);
    expect(alone.mode).to.equal("workspaces");
    expect(alone.note).to.contain("rejects").and.contain(v);
    expect(alone.fix).to.contain('disable-affinity-assistant: "true"');
    // Both set, a run-wide mode: the assistant stays on in it.
    expect(
      tektonAssistant({ "disable-affinity-assistant": "true", coschedule: "Isolate-PipelineRun" }, v).mode,
    ).to.equal("isolate-pipelinerun");
    expect(tektonAssistant({}, v).mode).to.equal("workspaces");
    expect(
      tektonAssistant({ "disable-affinity-assistant": "false", coschedule: "workspaces" }, v).mode,
    ).to.equal("workspaces");
  });
});
