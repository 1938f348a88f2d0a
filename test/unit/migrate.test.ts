import { expect } from "chai";
import { parse, parseAllDocuments } from "yaml";
import { migrateFeatureFlags, renderPolicyYaml } from "../../src/api/migrate.js";
import type { Mode } from "../../src/api/types.js";

const D = "disable-affinity-assistant";
const C = "coschedule";

describe("migrateFeatureFlags", () => {
  // Tekton's table: [disable-affinity-assistant, coschedule, during migration, after migration]
  const table: [string, Mode, Mode | "invalid", Mode][] = [
    ["false", "disabled", "invalid", "disabled"],
    ["false", "workspaces", "workspaces", "workspaces"],
    ["false", "pipelineruns", "invalid", "pipelineruns"],
    ["false", "isolate-pipelinerun", "invalid", "isolate-pipelinerun"],
    ["true", "disabled", "disabled", "disabled"],
    ["true", "workspaces", "disabled", "workspaces"],
    ["true", "pipelineruns", "pipelineruns", "pipelineruns"],
    ["true", "isolate-pipelinerun", "isolate-pipelinerun", "isolate-pipelinerun"],
  ];

  for (const [disable, coschedule, during, after] of table) {
    it(`${D}=${disable} ${C}=${coschedule}: during migration ${during}, after ${after}`, () => {
      const both = migrateFeatureFlags({ [D]: disable, [C]: coschedule });
      if (during === "invalid") {
        expect(both.ok).to.equal(false);
        if (!both.ok) {
          expect(both.error).to.contain(`${D}: "false"`).and.contain(`${C}: "${coschedule}"`);
          expect(both.error).to.contain("invalid").and.contain(`Set ${D}: "true"`);
        }
      } else {
        expect(both).to.include({ ok: true, mode: during });
      }
      const only = migrateFeatureFlags({ [C]: coschedule });
      expect(only).to.include({ ok: true, mode: after });
    });
  }

  it("defaults to workspaces when neither flag is set", () => {
    const r = migrateFeatureFlags({ "enable-api-fields": "beta" });
    expect(r).to.include({ ok: true, mode: "workspaces" });
    if (r.ok) expect(r.explanation).to.contain("default");
  });

  it("applies coschedule's default when only disable-affinity-assistant is set", () => {
    expect(migrateFeatureFlags({ [D]: "true" })).to.include({ ok: true, mode: "disabled" });
    expect(migrateFeatureFlags({ [D]: "false" })).to.include({ ok: true, mode: "workspaces" });
  });

  it("accepts Go boolean spellings and surrounding whitespace", () => {
    expect(migrateFeatureFlags({ [D]: " TRUE ", [C]: "pipelineruns\n" })).to.include({
      ok: true,
      mode: "pipelineruns",
    });
    expect(migrateFeatureFlags({ [D]: "0", [C]: "workspaces" })).to.include({ ok: true, mode: "workspaces" });
  });

  it("rejects unknown values, listing the accepted ones", () => {
    const r = migrateFeatureFlags({ [C]: "sometimes" });
    expect(r.ok).to.equal(false);
    if (!r.ok) {
      expect(r.error).to.contain('"sometimes"');
      for (const m of ["workspaces", "pipelineruns", "isolate-pipelinerun", "disabled"])
        expect(r.error).to.contain(m);
    }
    const r2 = migrateFeatureFlags({ [D]: "yes", [C]: "workspaces" });
    expect(r2.ok).to.equal(false);
    if (!r2.ok) expect(r2.error).to.contain('"yes"').and.contain('"true" or "false"');
    const r3 = migrateFeatureFlags({ [D]: "yes", [C]: "sometimes" });
    if (!r3.ok) expect(r3.error.split("\n")).to.have.length(2);
    else expect.fail("expected an error");
  });
});

describe("renderPolicyYaml", () => {
  it("prints one AffinityPolicy named default per namespace", () => {
    const out = renderPolicyYaml("pipelineruns", {
      namespaces: ["team-a", "team-b"],
      explanation: "because",
    });
    expect(out).to.match(/^# Tekton feature flags: because\./);
    const docs = parseAllDocuments(out).map((d) => d.toJS());
    expect(docs).to.deep.equal([
      {
        apiVersion: "affinity.tekton.dev/v1alpha1",
        kind: "AffinityPolicy",
        metadata: { name: "default", namespace: "team-a" },
        spec: { mode: "pipelineruns" },
      },
      {
        apiVersion: "affinity.tekton.dev/v1alpha1",
        kind: "AffinityPolicy",
        metadata: { name: "default", namespace: "team-b" },
        spec: { mode: "pipelineruns" },
      },
    ]);
    expect(out).to.contain('coschedule: "disabled"');
  });

  it("prints a cluster default snippet without namespaces", () => {
    const out = renderPolicyYaml("isolate-pipelinerun");
    expect(out).to.contain("--default-mode isolate-pipelinerun");
    expect(out).not.to.contain("kind: AffinityPolicy");
    expect(parse(out)).to.deep.equal({ args: ["--default-mode", "isolate-pipelinerun"] });
  });
});
