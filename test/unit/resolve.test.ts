import { expect } from "chai";
import {
  COSCHEDULED_CLAIMS_ANNOTATION,
  MODE_ANNOTATION,
  POLICY_ANNOTATION,
} from "../../src/api/constants.js";
import { effectiveSpec } from "../../src/api/effective-spec.js";
import { findOverlaps, resolvePolicy } from "../../src/api/resolve.js";
import { policy, run } from "./helpers.js";

describe("resolvePolicy", () => {
  it("prefers the most specific matching selector", () => {
    const all = policy("all", { mode: "workspaces" });
    const team = policy("team", {
      mode: "pipelineruns",
      pipelineRunSelector: { matchLabels: { team: "x" } },
    });
    const teamCi = policy("team-ci", {
      mode: "isolate-pipelinerun",
      pipelineRunSelector: {
        matchLabels: { team: "x" },
        matchExpressions: [{ key: "ci", operator: "Exists" }],
      },
    });
    const r = resolvePolicy(run({ team: "x", ci: "true" }), [all, team, teamCi]);
    expect(r.source).to.equal("policy");
    expect(r.policy?.metadata.name).to.equal("team-ci");
    expect(r.spec?.mode).to.equal("isolate-pipelinerun");
    expect(r.losers.map((p) => p.metadata.name)).to.deep.equal(["team", "all"]);
    expect(r.reason).to.contain("team-ci").and.contain("most specific");

    const r2 = resolvePolicy(run({ team: "x" }), [all, team, teamCi]);
    expect(r2.policy?.metadata.name).to.equal("team");
  });

  it("breaks specificity ties by age, then by name", () => {
    const older = policy("zzz", {}, { creationTimestamp: "2023-01-01T00:00:00Z" });
    const newer = policy("aaa", {}, { creationTimestamp: "2024-06-01T00:00:00Z" });
    expect(resolvePolicy(run(), [newer, older]).policy?.metadata.name).to.equal("zzz");
    expect(resolvePolicy(run(), [newer, older]).reason).to.contain("older");

    const b = policy("b");
    const a = policy("a");
    const r = resolvePolicy(run(), [b, a]);
    expect(r.policy?.metadata.name).to.equal("a");
    expect(r.losers.map((p) => p.metadata.name)).to.deep.equal(["b"]);
    expect(r.reason).to.contain("name sorts first");
  });

  it("treats a policy without creationTimestamp as the newest", () => {
    const unsaved = policy("aaa", {}, { creationTimestamp: undefined });
    expect(resolvePolicy(run(), [unsaved, policy("zzz")]).policy?.metadata.name).to.equal("zzz");
  });

  it("ignores policies being deleted and policies of other namespaces", () => {
    const deleting = policy("a", { mode: "pipelineruns" }, { deletionTimestamp: "2024-02-01T00:00:00Z" });
    const elsewhere = policy("b", { mode: "isolate-pipelinerun" }, { namespace: "team-b" });
    const live = policy("c", { mode: "disabled" });
    const r = resolvePolicy(run(), [deleting, elsewhere, live]);
    expect(r.policy?.metadata.name).to.equal("c");
    expect(r.losers).to.deep.equal([]);
    expect(resolvePolicy(run(), [deleting, elsewhere]).source).to.equal("none");
  });

  it("ignores policies whose selector does not match", () => {
    const other = policy("other", { pipelineRunSelector: { matchLabels: { team: "y" } } });
    const r = resolvePolicy(run({ team: "x" }), [other]);
    expect(r.source).to.equal("none");
    expect(r.policy).to.equal(undefined);
    expect(r.spec).to.equal(undefined);
  });

  it("falls back to the cluster default, then to none", () => {
    const other = policy("other", { pipelineRunSelector: { matchLabels: { team: "y" } } });
    const r = resolvePolicy(run({ team: "x" }), [other], { mode: "pipelineruns" });
    expect(r.source).to.equal("cluster-default");
    expect(r.spec).to.deep.equal({ mode: "pipelineruns" });
    expect(r.policy).to.equal(undefined);
    expect(r.reason).to.contain("cluster default");
    const none = resolvePolicy(run(), []);
    expect(none.source).to.equal("none");
    expect(none.reason).to.contain("no cluster default");
  });

  it("prefers a matching policy over the cluster default", () => {
    const r = resolvePolicy(run(), [policy("p", { mode: "disabled" })], { mode: "pipelineruns" });
    expect(r.source).to.equal("policy");
    expect(r.spec?.mode).to.equal("disabled");
  });
});

describe("findOverlaps", () => {
  it("reports overlapping policies of the same namespace and who wins", () => {
    const all = policy("all");
    const team = policy("team", { pipelineRunSelector: { matchLabels: { team: "x" } } });
    const otherTeam = policy("other-team", { pipelineRunSelector: { matchLabels: { team: "y" } } });
    const elsewhere = policy("elsewhere", {}, { namespace: "team-b" });
    const reports = findOverlaps([all, team, otherTeam, elsewhere]);
    const byName = new Map(reports.map((r) => [r.policy.metadata.name, r]));

    const allReport = byName.get("all")!;
    expect(allReport.overlaps.map((o) => o.other.metadata.name)).to.have.members(["team", "other-team"]);
    expect(allReport.overlaps.every((o) => o.winner !== all)).to.equal(true);
    expect(allReport.message).to.contain("loses to");

    const teamReport = byName.get("team")!;
    expect(teamReport.overlaps.map((o) => o.other.metadata.name)).to.deep.equal(["all"]);
    expect(teamReport.overlaps[0]!.winner).to.equal(team);
    expect(teamReport.message).to.contain("wins over all");

    expect(byName.get("elsewhere")!.overlaps).to.deep.equal([]);
    expect(byName.get("elsewhere")!.message).to.equal("");
  });

  it("ignores deleting policies and disjoint selectors", () => {
    const a = policy("a", { pipelineRunSelector: { matchLabels: { env: "prod" } } });
    const b = policy("b", { pipelineRunSelector: { matchLabels: { env: "dev" } } });
    const gone = policy("gone", {}, { deletionTimestamp: "2024-02-01T00:00:00Z" });
    const reports = findOverlaps([a, b, gone]);
    expect(reports.map((r) => r.policy.metadata.name)).to.deep.equal(["a", "b"]);
    expect(reports.every((r) => r.overlaps.length === 0)).to.equal(true);
  });
});

describe("effectiveSpec", () => {
  const gated = (annotations: Record<string, string>) => ({
    ...run(),
    metadata: {
      ...run().metadata,
      annotations: { [MODE_ANNOTATION]: "workspaces", [POLICY_ANNOTATION]: "p", ...annotations },
    },
  });
  const current = policy("p", { mode: "pipelineruns", coscheduledClaims: "All", maxWait: "5m" });
  const find = () => current;

  it("keeps the mode, and the coscheduledClaims a run that carries its placement recorded; the rest is the policy's now", () => {
    const spec = effectiveSpec(gated({ [COSCHEDULED_CLAIMS_ANNOTATION]: "SingleNode" }), find);
    expect(spec?.mode).to.equal("workspaces");
    expect(spec?.coscheduledClaims).to.equal("SingleNode");
    expect(spec?.maxWait).to.equal("5m");
  });

  it("takes the policy's coscheduledClaims where the run recorded none, or nothing it knows", () => {
    expect(effectiveSpec(gated({}), find)?.coscheduledClaims).to.equal("All");
    expect(
      effectiveSpec(gated({ [COSCHEDULED_CLAIMS_ANNOTATION]: "Some" }), find)?.coscheduledClaims,
    ).to.equal("All");
  });
});
