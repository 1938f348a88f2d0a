import type { V1Affinity, V1Pod } from "@kubernetes/client-node";
import { expect } from "chai";
import {
  CLUSTER_DEFAULT_POLICY,
  COSCHEDULED_CLAIMS_ANNOTATION,
  GATED_ANNOTATION,
  GATED_AT_ANNOTATION,
  MANAGED_LABEL,
  MODE_ANNOTATION,
  PENDING_STATUS,
  PLACEHOLDER_LABEL,
  PLACEMENT_LABEL,
  POLICY_ANNOTATION,
  SHARED_CLAIMS_ANNOTATION,
  WAITING_ANNOTATION,
} from "../../src/api/constants.js";
import { DEFAULT_TENANCY_LIMITS } from "../../src/api/tenancy.js";
import type { AffinityPolicySpec, PipelineRun } from "../../src/api/types.js";
import { placeholderName } from "../../src/placement/names.js";
import { placementValue } from "../../src/placement/run-placement.js";
import { type JsonPatchOp, reviewResponse } from "../../src/webhooks/admission.js";
import { gatePipelineRun, guardMarks } from "../../src/webhooks/gate.js";
import { mutateTaskPod, type PodContext } from "../../src/webhooks/pods.js";
import { policy, run } from "./helpers.js";

// A small RFC 6902 applier (add, replace, remove, test) so tests check the object the API server would
// store, not just the shape of the ops. Strict: a missing parent or a missing target throws, as the
// API server would reject the patch.
function decodeSegment(s: string): string {
  return s.replaceAll("~1", "/").replaceAll("~0", "~");
}

function applyPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  const root: unknown = structuredClone(doc);
  for (const op of ops) {
    if (!op.path.startsWith("/")) throw new Error(`bad pointer ${op.path}`);
    const segments = op.path.slice(1).split("/").map(decodeSegment);
    const last = segments.pop()!;
    if (op.path === "/") throw new Error("root replacement unsupported");
    let parent: unknown = root;
    for (const s of segments) {
      if (parent === null || typeof parent !== "object" || !(s in parent)) {
        throw new Error(`${op.op} ${op.path}: no parent at ${s}`);
      }
      parent = (parent as Record<string, unknown>)[s];
    }
    if (parent === null || typeof parent !== "object")
      throw new Error(`${op.op} ${op.path}: parent not a container`);
    if (Array.isArray(parent)) {
      const i = last === "-" ? parent.length : Number(last);
      if (op.op === "add") parent.splice(i, 0, structuredClone(op.value));
      else if (i >= parent.length) throw new Error(`${op.op} ${op.path}: no such index`);
      else if (op.op === "replace") parent[i] = structuredClone(op.value);
      else if (op.op === "remove") parent.splice(i, 1);
      else expect(parent[i]).to.deep.equal(op.value);
      continue;
    }
    const obj = parent as Record<string, unknown>;
    if (op.op === "add") obj[last] = structuredClone(op.value);
    else if (!(last in obj)) throw new Error(`${op.op} ${op.path}: no such member`);
    else if (op.op === "replace") obj[last] = structuredClone(op.value);
    else if (op.op === "remove") delete obj[last];
    else expect(obj[last]).to.deep.equal(op.value);
  }
  return root as T;
}

describe("test JSON patch applier", () => {
  it("applies escaped pointers and rejects missing parents", () => {
    const out = applyPatch({ a: { "x/y": 1, "t~": 2 } } as Record<string, unknown>, [
      { op: "replace", path: "/a/x~1y", value: 3 },
      { op: "remove", path: "/a/t~0" },
      { op: "add", path: "/b", value: [1] },
      { op: "add", path: "/b/-", value: 2 },
    ]);
    expect(out).to.deep.equal({ a: { "x/y": 3 }, b: [1, 2] });
    expect(() => applyPatch({}, [{ op: "add", path: "/a/b", value: 1 }])).to.throw(/no parent/);
    expect(() => applyPatch({}, [{ op: "remove", path: "/a" }])).to.throw(/no such member/);
  });
});

describe("guardMarks (UPDATE of a managed run)", () => {
  const old = (): PipelineRun => {
    const r = run({ app: "x", [MANAGED_LABEL]: "true", [PLACEMENT_LABEL]: "t0k3n" });
    r.metadata.annotations = { [MODE_ANNOTATION]: "pipelineruns", [POLICY_ANNOTATION]: "p", note: "a" };
    return r;
  };

  it("puts back every mark a user removed or changed, and drops one they forged; their own changes stay", () => {
    const updated = old();
    delete updated.metadata.labels![MANAGED_LABEL];
    updated.metadata.labels![PLACEMENT_LABEL] = "other";
    updated.metadata.labels!.app = "y";
    updated.metadata.annotations = {
      [POLICY_ANNOTATION]: "p",
      note: "b",
      "affinity.tekton.dev/cleaned-up": "true",
    };
    const decision = guardMarks(updated, old(), false);
    expect(decision.allowed).to.equal(true);
    const out = applyPatch(updated, decision.patch!);
    expect(out.metadata.labels).to.deep.equal({
      app: "y",
      [MANAGED_LABEL]: "true",
      [PLACEMENT_LABEL]: "t0k3n",
    });
    expect(out.metadata.annotations).to.deep.equal({
      [MODE_ANNOTATION]: "pipelineruns",
      [POLICY_ANNOTATION]: "p",
      note: "b",
    });
    expect(decision.warnings![0]).to.contain(MANAGED_LABEL).and.contain("affinity.tekton.dev/cleaned-up");
  });

  it("restores a label map removed whole", () => {
    const updated = old();
    delete updated.metadata.labels;
    const out = applyPatch(updated, guardMarks(updated, old(), false).patch!);
    expect(out.metadata.labels).to.deep.equal({ [MANAGED_LABEL]: "true", [PLACEMENT_LABEL]: "t0k3n" });
  });

  it("takes over a run its creator made Pending when they release it: still Pending, gated by us, maxWait from now", () => {
    const pended = old();
    pended.spec.status = PENDING_STATUS;
    const released = structuredClone(pended);
    delete released.spec.status;
    const now = new Date("2026-12-07T12:00:00Z");
    const decision = guardMarks(released, pended, false, now);
    const out = applyPatch(released, decision.patch!);
    expect(out.spec.status).to.equal(PENDING_STATUS);
    expect(out.metadata.annotations?.[GATED_ANNOTATION]).to.equal("true");
    expect(out.metadata.annotations?.[GATED_AT_ANNOTATION]).to.equal(now.toISOString());
    expect(decision.warnings!.join(" ")).to.contain("stays Pending until its placeholder is scheduled");
    // Not a run we gated ourselves, nor one no policy manages, nor an update that keeps it Pending.
    const ours = structuredClone(pended);
    ours.metadata.annotations![GATED_ANNOTATION] = "true";
    const oursReleased = structuredClone(ours);
    delete oursReleased.spec.status;
    expect(
      applyPatch(oursReleased, guardMarks(oursReleased, ours, false, now).patch ?? []).spec.status,
    ).to.equal(undefined);
    const stillPending = structuredClone(pended);
    stillPending.metadata.labels!.team = "x";
    expect(guardMarks(stillPending, pended, false, now)).to.deep.equal({ allowed: true });
    // The controller's own release is its own.
    expect(guardMarks(released, pended, true, now)).to.deep.equal({ allowed: true });
  });

  it("lets the controller change its marks, and lets an update that keeps them through untouched", () => {
    const released = old();
    delete released.metadata.labels![MANAGED_LABEL];
    expect(guardMarks(released, old(), true)).to.deep.equal({ allowed: true });
    const userEdit = old();
    userEdit.metadata.labels!.app = "z";
    expect(guardMarks(userEdit, old(), false)).to.deep.equal({ allowed: true });
  });
});

describe("gatePipelineRun", () => {
  const managed = policy("co-schedule", { mode: "pipelineruns" });
  const fixedToken = { newToken: () => "t0k3n" };
  // The term a task pod of a run placed with token t0k3n needs: beside its placeholder.
  const term = {
    labelSelector: {
      matchLabels: { [PLACEMENT_LABEL]: "t0k3n", "app.kubernetes.io/component": "affinity-placeholder" },
    },
    topologyKey: "kubernetes.io/hostname",
  };

  it("allows a run no policy selects, without a patch", () => {
    const r = run({ app: "x" });
    const decision = gatePipelineRun(r, []);
    expect(decision).to.deep.equal({ allowed: true });
    const other = policy("other", { pipelineRunSelector: { matchLabels: { app: "y" } } });
    expect(gatePipelineRun(r, [other])).to.deep.equal({ allowed: true });
  });

  it("ignores policies of other namespaces", () => {
    const elsewhere = policy("p", { mode: "pipelineruns" }, { namespace: "team-b" });
    expect(gatePipelineRun(run(), [elsewhere])).to.deep.equal({ allowed: true });
  });

  it("does not patch a run whose policy is disabled", () => {
    const decision = gatePipelineRun(run(), [policy("off", { mode: "disabled" })]);
    expect(decision.allowed).to.equal(true);
    expect(decision.patch).to.equal(undefined);
  });

  it("gates a run with label and annotation maps: adds entries with escaped keys, and pends it", () => {
    const r = run({ app: "x" });
    r.metadata.annotations = { note: "keep" };
    const decision = gatePipelineRun(r, [managed], undefined, undefined, fixedToken);
    expect(decision.allowed).to.equal(true);
    const paths = decision.patch!.map((op) => op.path);
    expect(paths).to.include("/metadata/labels/affinity.tekton.dev~1managed");
    expect(paths).to.include("/metadata/annotations/affinity.tekton.dev~1mode");

    const out = applyPatch(r, decision.patch!);
    expect(out.metadata.labels).to.deep.equal({
      app: "x",
      [MANAGED_LABEL]: "true",
      [PLACEMENT_LABEL]: "t0k3n",
    });
    expect(out.metadata.annotations).to.deep.equal({
      note: "keep",
      [MODE_ANNOTATION]: "pipelineruns",
      [POLICY_ANNOTATION]: "co-schedule",
      [GATED_ANNOTATION]: "true",
    });
    expect(out.spec.status).to.equal(PENDING_STATUS);
    expect(out.spec.status).to.equal("PipelineRunPending");
    // The run carries its placement: every task pod follows the placeholder with no admission from us.
    expect(out.spec.taskRunTemplate).to.deep.equal({
      podTemplate: { affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term] } } },
    });
    // Nothing else changed.
    expect({
      ...out,
      metadata: r.metadata,
      spec: { ...out.spec, status: undefined, taskRunTemplate: undefined },
    }).to.deep.equal({
      ...r,
      spec: { ...r.spec, status: undefined, taskRunTemplate: undefined },
    });
  });

  it("gates a run without label or annotation maps by creating them", () => {
    const r: PipelineRun = { metadata: { name: "build-2", namespace: "team-a" }, spec: {} };
    const decision = gatePipelineRun(r, [policy("ws", { mode: "workspaces" })]);
    const out = applyPatch(r, decision.patch!);
    expect(out.metadata.labels).to.deep.equal({ [MANAGED_LABEL]: "true" });
    expect(out.metadata.annotations).to.deep.equal({
      [MODE_ANNOTATION]: "workspaces",
      [POLICY_ANNOTATION]: "ws",
      [GATED_ANNOTATION]: "true",
    });
    expect(out.spec.status).to.equal(PENDING_STATUS);
  });

  it("leaves a run the user pended without the gated annotation and without a status op", () => {
    const r = run({}, { status: PENDING_STATUS });
    const decision = gatePipelineRun(r, [managed]);
    expect(decision.patch!.some((op) => op.path === "/spec/status")).to.equal(false);
    const out = applyPatch(r, decision.patch!);
    expect(out.metadata.annotations).to.not.have.property(GATED_ANNOTATION);
    expect(out.metadata.annotations).to.deep.equal({
      [MODE_ANNOTATION]: "pipelineruns",
      [POLICY_ANNOTATION]: "co-schedule",
    });
    expect(out.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    expect(out.spec.status).to.equal(PENDING_STATUS);
  });

  it("removes our managed label from a run no policy manages, with a warning", () => {
    const r = run({ [MANAGED_LABEL]: "true", app: "x" });
    const decision = gatePipelineRun(r, []);
    expect(decision.allowed).to.equal(true);
    expect(decision.warnings).to.have.length(1);
    expect(decision.warnings![0]).to.include(MANAGED_LABEL);
    const out = applyPatch(r, decision.patch!);
    expect(out.metadata.labels).to.deep.equal({ app: "x" });
    expect(out.spec.status).to.equal(undefined);
  });

  it("removes our managed label from a run whose policy is disabled", () => {
    const r = run({ [MANAGED_LABEL]: "true" });
    const decision = gatePipelineRun(r, [policy("off", { mode: "disabled" })]);
    expect(applyPatch(r, decision.patch!).metadata.labels).to.deep.equal({});
  });

  it("applies the cluster default when no policy selects the run", () => {
    const r = run();
    const decision = gatePipelineRun(r, [], { mode: "isolate-pipelinerun" });
    const out = applyPatch(r, decision.patch!);
    expect(out.metadata.annotations?.[MODE_ANNOTATION]).to.equal("isolate-pipelinerun");
    expect(out.metadata.annotations?.[POLICY_ANNOTATION]).to.equal(CLUSTER_DEFAULT_POLICY);
    expect(out.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    expect(out.spec.status).to.equal(PENDING_STATUS);
  });

  it("prefers a selecting policy over the cluster default", () => {
    const r = run();
    const out = applyPatch(r, gatePipelineRun(r, [managed], { mode: "workspaces" }).patch!);
    expect(out.metadata.annotations?.[MODE_ANNOTATION]).to.equal("pipelineruns");
    expect(out.metadata.annotations?.[POLICY_ANNOTATION]).to.equal("co-schedule");
  });

  it("does not patch a run when the cluster default is disabled", () => {
    expect(gatePipelineRun(run(), [], { mode: "disabled" })).to.deep.equal({ allowed: true });
  });

  // What `kubectl get pipelinerun -o yaml | kubectl create -f -` sends for a run we gated, placed and cleaned up.
  function copiedRun(): PipelineRun {
    const r = run({ [MANAGED_LABEL]: "true", app: "x" }, { status: PENDING_STATUS });
    r.metadata.annotations = {
      note: "keep",
      [MODE_ANNOTATION]: "workspaces",
      [POLICY_ANNOTATION]: "old-policy",
      [GATED_ANNOTATION]: "true",
      [WAITING_ANNOTATION]: "placeholder x cannot be scheduled",
      "affinity.tekton.dev/cleaned-up": "true",
      "affinity.tekton.dev/placed-on": "node-1",
    };
    return r;
  }

  it("handles a copied run exactly like a new one: our marks are dropped and written afresh", () => {
    const r = copiedRun();
    const decision = gatePipelineRun(r, [managed], undefined, undefined, fixedToken);
    const out = applyPatch(r, decision.patch!);
    const fresh = applyPatch(
      run({ app: "x" }),
      gatePipelineRun(run({ app: "x" }), [managed], undefined, undefined, fixedToken).patch!,
    );
    expect(out.metadata.labels).to.deep.equal(fresh.metadata.labels);
    expect(out.metadata.annotations).to.deep.equal({ note: "keep", ...fresh.metadata.annotations });
    expect(out.metadata.annotations?.[GATED_ANNOTATION]).to.equal("true");
    expect(out.spec.status).to.equal(PENDING_STATUS);
    expect(decision.warnings![0]).to.contain("affinity.tekton.dev/cleaned-up");
  });

  it("never takes a mark from the user, even one that would skip our work", () => {
    const r = run({ app: "x" });
    r.metadata.annotations = { "affinity.tekton.dev/cleaned-up": "true", [WAITING_ANNOTATION]: "lies" };
    const out = applyPatch(r, gatePipelineRun(r, [managed]).patch!);
    expect(Object.keys(out.metadata.annotations ?? {}).sort()).to.deep.equal(
      [GATED_ANNOTATION, MODE_ANNOTATION, POLICY_ANNOTATION].sort(),
    );
  });

  it("a copied gated run that no policy manages any more starts as a new run would", () => {
    const r = copiedRun();
    const out = applyPatch(r, gatePipelineRun(r, []).patch!);
    expect(out.metadata.labels).to.deep.equal({ app: "x" });
    expect(out.metadata.annotations).to.deep.equal({ note: "keep" });
    expect(out.spec.status).to.equal(undefined);
  });

  it("writes the placement into the run's pod templates, keeping the user's affinity", () => {
    const userTerm = { labelSelector: { matchLabels: { db: "x" } }, topologyKey: "kubernetes.io/hostname" };
    const preferred = [{ weight: 10, podAffinityTerm: userTerm }];
    const nodeAffinity = {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["ci"] }] }],
      },
    };
    const r = run(
      {},
      {
        taskRunTemplate: {
          serviceAccountName: "builder",
          podTemplate: {
            nodeSelector: { a: "b" },
            affinity: {
              nodeAffinity,
              podAffinity: { preferredDuringSchedulingIgnoredDuringExecution: preferred },
            },
          },
        },
        taskRunSpecs: [
          { pipelineTaskName: "own", podTemplate: { affinity: { nodeAffinity } } },
          { pipelineTaskName: "inherits", podTemplate: { nodeSelector: { c: "d" } } },
        ],
      },
    );
    const zonal = policy("zonal", {
      mode: "isolate-pipelinerun",
      topologyKey: "topology.kubernetes.io/zone",
    });
    const limits = {
      ...DEFAULT_TENANCY_LIMITS,
      allowedTopologyKeys: ["kubernetes.io/hostname", "topology.kubernetes.io/zone"],
    };
    const out = applyPatch(
      r,
      gatePipelineRun(r, [zonal], undefined, undefined, { ...fixedToken, limits }).patch!,
    );
    const zoneTerm = { ...term, topologyKey: "topology.kubernetes.io/zone" };
    expect(out.spec.taskRunTemplate).to.deep.equal({
      serviceAccountName: "builder",
      podTemplate: {
        nodeSelector: { a: "b" },
        affinity: {
          nodeAffinity,
          podAffinity: {
            preferredDuringSchedulingIgnoredDuringExecution: preferred,
            requiredDuringSchedulingIgnoredDuringExecution: [zoneTerm],
          },
        },
      },
    });
    // Tekton lets a taskRunSpecs affinity replace the run's: ours goes there too; one without keeps inheriting.
    expect(out.spec.taskRunSpecs).to.deep.equal([
      {
        pipelineTaskName: "own",
        podTemplate: {
          affinity: {
            nodeAffinity,
            podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [zoneTerm] },
          },
        },
      },
      { pipelineTaskName: "inherits", podTemplate: { nodeSelector: { c: "d" } } },
    ]);
    // A topology key the operator does not allow falls back to the node, as the placeholder's does.
    const fallback = applyPatch(r, gatePipelineRun(r, [zonal], undefined, undefined, fixedToken).patch!);
    expect(JSON.stringify(fallback.spec.taskRunTemplate)).to.contain(
      '"topologyKey":"kubernetes.io/hostname"',
    );
  });

  it("leaves the placement to the pods webhook where a run-wide template cannot say it", () => {
    for (const spec of [
      { mode: "workspaces" },
      { mode: "pipelineruns", strategy: "nodePinning" },
      { mode: "pipelineruns", onMaxWait: "Release" },
    ] as AffinityPolicySpec[]) {
      const r = run();
      const out = applyPatch(
        r,
        gatePipelineRun(r, [policy("p", spec)], undefined, undefined, fixedToken).patch!,
      );
      expect(out.metadata.labels?.[MANAGED_LABEL], JSON.stringify(spec)).to.equal("true");
      expect(out.metadata.labels, JSON.stringify(spec)).to.not.have.property(PLACEMENT_LABEL);
      expect(out.spec.taskRunTemplate, JSON.stringify(spec)).to.equal(undefined);
    }
    // Nor for a run with a required pod affinity of its own, in any pod template: the scheduler needs one
    // pod to match all of a pod's required terms, and none is both the user's target and our placeholder.
    const beside = {
      labelSelector: { matchLabels: { app: "cache" } },
      topologyKey: "kubernetes.io/hostname",
    };
    const required = { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [beside] } };
    for (const withOwn of [
      run({}, { taskRunTemplate: { podTemplate: { affinity: required } } }),
      run({}, { taskRunSpecs: [{ pipelineTaskName: "a", podTemplate: { affinity: required } }] }),
    ]) {
      const out = applyPatch(
        withOwn,
        gatePipelineRun(withOwn, [managed], undefined, undefined, fixedToken).patch!,
      );
      expect(out.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
      expect(out.metadata.labels).to.not.have.property(PLACEMENT_LABEL);
      expect(JSON.stringify(out.spec)).to.not.contain(PLACEMENT_LABEL);
    }
    // Nor for a run sent as v1beta1, whose pod template has another name.
    const beta = { ...run(), apiVersion: "tekton.dev/v1beta1" };
    const out = applyPatch(beta, gatePipelineRun(beta, [managed], undefined, undefined, fixedToken).patch!);
    expect(out.metadata.labels).to.not.have.property(PLACEMENT_LABEL);
    expect(out.spec.taskRunTemplate).to.equal(undefined);
  });

  describe("in workspaces mode, a run whose inline pipeline says which claims each task binds", () => {
    const ws = policy("ws", { mode: "workspaces" });
    const template = (modes: string[]) => ({ spec: { accessModes: modes, resources: {} } });
    const hashOf = (workspace: string) =>
      placementValue("t0k3n", "workspaces", { claims: [{ name: "", workspaces: [workspace] }] });
    const termFor = (workspace: string) => ({
      ...term,
      labelSelector: {
        matchLabels: { ...term.labelSelector.matchLabels, [PLACEMENT_LABEL]: hashOf(workspace) },
      },
    });
    const wsRun = (extra: Partial<PipelineRun["spec"]> = {}, finallyTasks: unknown[] = []) =>
      run(
        {},
        {
          workspaces: [
            { name: "source", volumeClaimTemplate: template(["ReadWriteOnce"]) },
            { name: "cache", volumeClaimTemplate: template(["ReadWriteMany"]) },
            { name: "out", volumeClaimTemplate: template(["ReadWriteOnce"]) },
            { name: "config", emptyDir: {} },
          ],
          pipelineSpec: {
            workspaces: [{ name: "source" }, { name: "cache" }, { name: "out" }, { name: "config" }],
            tasks: [
              {
                name: "clone",
                taskRef: { name: "git" },
                workspaces: [{ name: "output", workspace: "source" }],
              },
              {
                name: "build",
                taskRef: { name: "make" },
                workspaces: [{ name: "src", workspace: "source" }, { name: "cache" }, { name: "config" }],
              },
              {
                name: "report",
                taskSpec: { workspaces: [{ name: "out" }], steps: [{ script: "ls $(workspaces.out.path)" }] },
                workspaces: [{ name: "out" }],
              },
              { name: "lint", taskRef: { name: "lint" } },
            ],
            finally: finallyTasks,
          },
          ...extra,
        },
      );

    it("writes each task's term into a taskRunSpecs entry for it: beside its one single-node claim's placeholder", () => {
      const r = wsRun({
        taskRunTemplate: {
          podTemplate: {
            affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } },
          },
        },
        taskRunSpecs: [{ pipelineTaskName: "build", serviceAccountName: "builder" }],
      });
      const decision = gatePipelineRun(r, [ws], undefined, undefined, fixedToken);
      const out = applyPatch(r, decision.patch!);
      // Every task pod carries the token, so the pods webhook lets it be.
      expect(out.metadata.labels?.[PLACEMENT_LABEL]).to.equal("t0k3n");
      expect(out.metadata.annotations?.[COSCHEDULED_CLAIMS_ANNOTATION]).to.equal("SingleNode");
      // The run-wide template keeps the user's affinity and gets no term: a task follows its own claim.
      expect(out.spec.taskRunTemplate).to.deep.equal(r.spec.taskRunTemplate);
      const base = { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } };
      const beside = (workspace: string) => ({
        ...base,
        podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [termFor(workspace)] },
      });
      expect(out.spec.taskRunSpecs).to.deep.equal([
        // The user's entry keeps its fields; the ReadWriteMany cache and the emptyDir hold no task.
        {
          pipelineTaskName: "build",
          serviceAccountName: "builder",
          podTemplate: { affinity: beside("source") },
        },
        { pipelineTaskName: "clone", podTemplate: { affinity: beside("source") } },
        { pipelineTaskName: "report", podTemplate: { affinity: beside("out") } },
      ]);
      // Two claims, two values: tasks of one claim never follow the other's placeholder.
      expect(hashOf("source")).to.not.equal(hashOf("out"));
      expect(hashOf("source")).to.match(/^t0k3n-[0-9a-f]{10}$/);
    });

    it("records the policy's coscheduledClaims: with All a ReadWriteMany claim holds its tasks too", () => {
      const all = policy("ws", { mode: "workspaces", coscheduledClaims: "All" });
      const r = wsRun();
      const spec = r.spec.pipelineSpec as { tasks: { name: string; workspaces?: unknown[] }[] };
      // build binds only the ReadWriteMany cache now.
      spec.tasks[1]!.workspaces = [{ name: "cache" }];
      const out = applyPatch(r, gatePipelineRun(r, [all], undefined, undefined, fixedToken).patch!);
      expect(out.metadata.annotations?.[COSCHEDULED_CLAIMS_ANNOTATION]).to.equal("All");
      const build = (out.spec.taskRunSpecs as { pipelineTaskName?: string }[]).find(
        (s) => s.pipelineTaskName === "build",
      );
      expect(JSON.stringify(build)).to.contain(hashOf("cache"));
      // A task binding two co-scheduled claims cannot be said: the pods webhook keeps the run, and refuses
      // that task's pod with the reason.
      const two = wsRun();
      const kept = applyPatch(two, gatePipelineRun(two, [all], undefined, undefined, fixedToken).patch!);
      expect(kept.metadata.labels).to.not.have.property(PLACEMENT_LABEL);
      expect(kept.metadata.annotations).to.not.have.property(COSCHEDULED_CLAIMS_ANNOTATION);
      expect(kept.spec.taskRunSpecs).to.equal(undefined);
    });

    it("leaves the run to the pods webhook where the run alone does not say which claims a task binds", () => {
      const cases: [string, PipelineRun][] = [
        [
          "a pipelineRef",
          { ...wsRun(), spec: { ...wsRun().spec, pipelineSpec: undefined, pipelineRef: { name: "p" } } },
        ],
        [
          "an embedded task spec using a workspace it does not bind (propagated)",
          wsRun({}, [
            { name: "tidy", taskSpec: { steps: [{ script: "rm -rf $(workspaces.source.path)/tmp" }] } },
          ]),
        ],
        [
          "an embedded task spec declaring a workspace it does not bind",
          wsRun({}, [{ name: "tidy", taskSpec: { workspaces: [{ name: "source" }], steps: [] } }]),
        ],
        ["a pipeline in a pipeline", wsRun({}, [{ name: "nested", pipelineRef: { name: "q" } }])],
        [
          "a user PVC, whose access modes only a read tells",
          wsRun({ workspaces: [{ name: "source", persistentVolumeClaim: { claimName: "mine" } }] }),
        ],
      ];
      for (const [what, r] of cases) {
        const out = applyPatch(r, gatePipelineRun(r, [ws], undefined, undefined, fixedToken).patch!);
        expect(out.metadata.labels?.[MANAGED_LABEL], what).to.equal("true");
        expect(out.metadata.labels, what).to.not.have.property(PLACEMENT_LABEL);
        expect(out.metadata.annotations, what).to.not.have.property(COSCHEDULED_CLAIMS_ANNOTATION);
        expect(JSON.stringify(out.spec), what).to.not.contain(PLACEMENT_LABEL);
      }
      // The positive control: the same run, its finally task binding what it uses, carries its placement.
      const bound = wsRun({}, [
        {
          name: "tidy",
          taskSpec: { steps: [{ script: "rm $(workspaces.source.path)" }] },
          workspaces: [{ name: "source" }],
        },
      ]);
      const out = applyPatch(bound, gatePipelineRun(bound, [ws], undefined, undefined, fixedToken).patch!);
      expect(out.metadata.labels?.[PLACEMENT_LABEL]).to.equal("t0k3n");
      const entries = out.spec.taskRunSpecs as { pipelineTaskName?: string }[];
      expect(entries.map((s) => s.pipelineTaskName)).to.deep.equal(["clone", "build", "report", "tidy"]);
    });

    it("warns at creation when a task binds two template claims held apart, and not for a user PVC it cannot judge", () => {
      const two = wsRun();
      const spec = two.spec.pipelineSpec as { tasks: { name: string; workspaces?: unknown[] }[] };
      spec.tasks[1]!.workspaces = [{ name: "source" }, { name: "out" }];
      const warned = gatePipelineRun(two, [ws], undefined, undefined, fixedToken).warnings ?? [];
      expect(warned.join("\n"))
        .to.contain('task "build"')
        .and.contain("(source, out)")
        .and.contain("will fail at once");
      const release = policy("ws", { mode: "workspaces", onMaxWait: "Release" });
      expect(
        (gatePipelineRun(two, [release], undefined, undefined, fixedToken).warnings ?? []).join("\n"),
      ).to.contain("will start without co-scheduling at once");
      // The same with "out" a user PVC: its access modes are unknown here, so no warning.
      const user = structuredClone(two);
      user.spec.workspaces = user.spec.workspaces!.map((w) =>
        w.name === "out" ? { name: "out", persistentVolumeClaim: { claimName: "mine" } } : w,
      );
      expect(gatePipelineRun(user, [ws], undefined, undefined, fixedToken).warnings ?? []).to.deep.equal([]);
      expect(gatePipelineRun(wsRun(), [ws], undefined, undefined, fixedToken).warnings ?? []).to.deep.equal(
        [],
      );
    });

    it("replaces a copied run's stale task terms with its own", () => {
      const first = applyPatch(
        wsRun(),
        gatePipelineRun(wsRun(), [ws], undefined, undefined, fixedToken).patch!,
      );
      const copy = {
        ...first,
        metadata: { ...first.metadata, annotations: {}, labels: { ...first.metadata.labels } },
      };
      const again = applyPatch(
        copy,
        gatePipelineRun(copy, [ws], undefined, undefined, { newToken: () => "n3w" }).patch!,
      );
      const text = JSON.stringify(again.spec.taskRunSpecs);
      expect(text).to.not.contain("t0k3n");
      expect(again.spec.taskRunSpecs).to.have.length(3);
      expect(text).to.contain('"n3w-');
    });
  });

  it("takes a copied run's stale placement out, managed or not, so its pods never wait for a gone placeholder", () => {
    const stale = {
      labelSelector: {
        matchLabels: { [PLACEMENT_LABEL]: "old", "app.kubernetes.io/component": "affinity-placeholder" },
      },
      topologyKey: "kubernetes.io/hostname",
    };
    const copy = () =>
      run(
        { [PLACEMENT_LABEL]: "old", [MANAGED_LABEL]: "true" },
        {
          taskRunTemplate: {
            podTemplate: {
              affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [stale] } },
            },
          },
        },
      );
    const unmanaged = applyPatch(copy(), gatePipelineRun(copy(), []).patch!);
    expect(unmanaged.metadata.labels).to.deep.equal({});
    expect(unmanaged.spec.taskRunTemplate).to.deep.equal({ podTemplate: {} });
    const managedCopy = applyPatch(
      copy(),
      gatePipelineRun(copy(), [managed], undefined, undefined, fixedToken).patch!,
    );
    expect(managedCopy.metadata.labels?.[PLACEMENT_LABEL]).to.equal("t0k3n");
    expect(managedCopy.spec.taskRunTemplate).to.deep.equal({
      podTemplate: { affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term] } } },
    });
  });

  it("gates nothing while Tekton's own affinity assistant is on, and says why", () => {
    const r = run({ app: "x" });
    const decision = gatePipelineRun(r, [managed], undefined, "Tekton's own affinity assistant is on");
    expect(decision.allowed).to.equal(true);
    expect(decision.patch).to.equal(undefined);
    expect(decision.warnings![0]).to.contain("not co-scheduling this PipelineRun");
    // A run no policy selects gets no warning about it.
    expect(gatePipelineRun(r, [], undefined, "on")).to.deep.equal({ allowed: true });
  });

  it("a selector cannot be satisfied by our own label", () => {
    const byOurLabel = policy("sneaky", {
      mode: "pipelineruns",
      pipelineRunSelector: { matchLabels: { [MANAGED_LABEL]: "true" } },
    });
    const r = run({ [MANAGED_LABEL]: "true" });
    const out = applyPatch(r, gatePipelineRun(r, [byOurLabel]).patch!);
    expect(out.metadata.labels).to.deep.equal({});
    expect(out.spec.status).to.equal(undefined);
  });
});

describe("mutateTaskPod", () => {
  const UID = "7c1d2e3f-0000-4000-8000-000000000001";
  const taskRun: PipelineRun = {
    metadata: {
      name: "build-1",
      namespace: "team-a",
      uid: UID,
      annotations: { [MODE_ANNOTATION]: "pipelineruns" },
    },
    spec: {},
  };
  const runPlaceholder = placeholderName(UID, "pipelinerun");

  function pod(spec: Partial<V1Pod["spec"]> = {}): V1Pod {
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "build-1-fetch-pod", namespace: "team-a", labels: { [MANAGED_LABEL]: "true" } },
      spec: { containers: [{ name: "step-fetch", image: "alpine" }], ...spec },
    };
  }

  function ctx(
    spec: AffinityPolicySpec | undefined,
    nodes: Record<string, string> = {},
    r: PipelineRun | undefined = taskRun,
  ): PodContext & { lookups: string[] } {
    const lookups: string[] = [];
    return {
      run: r,
      spec,
      lookups,
      placeholderNode: (ns, name) => {
        lookups.push(`${ns}/${name}`);
        return nodes[`${ns}/${name}`];
      },
    };
  }

  const podAffinityTo = (name: string, topologyKey = "kubernetes.io/hostname"): V1Affinity => ({
    podAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: [
        {
          labelSelector: { matchLabels: { [PLACEHOLDER_LABEL]: name } },
          namespaces: ["team-a"],
          topologyKey,
        },
      ],
    },
  });

  it("allows the pod with a warning and no patch when the run is not in the cache", () => {
    const notCached = { ...ctx({ mode: "pipelineruns" }), run: undefined };
    const decision = mutateTaskPod(pod(), notCached);
    expect(decision.allowed).to.equal(true);
    expect(decision.patch).to.equal(undefined);
    expect(decision.warnings).to.have.length(1);
    expect(decision.warnings![0]).to.include("not in the controller's cache");
    // A run without a uid (not yet persisted) or without an effective spec is treated the same way.
    const noUid = { ...taskRun, metadata: { ...taskRun.metadata, uid: undefined } };
    expect(mutateTaskPod(pod(), ctx({ mode: "pipelineruns" }, {}, noUid)).patch).to.equal(undefined);
    expect(mutateTaskPod(pod(), ctx(undefined)).patch).to.equal(undefined);
  });

  it("leaves placeholder pods alone", () => {
    const p = pod();
    p.metadata!.labels![PLACEHOLDER_LABEL] = "affinity-placeholder-x";
    expect(mutateTaskPod(p, ctx({ mode: "pipelineruns" }))).to.deep.equal({ allowed: true });
  });

  it("adds pod affinity to the run's placeholder in pipelineruns mode", () => {
    const p = pod();
    const decision = mutateTaskPod(
      p,
      ctx({ mode: "pipelineruns", topologyKey: "topology.kubernetes.io/zone" }),
    );
    expect(decision.allowed).to.equal(true);
    expect(decision.patch).to.deep.equal([
      {
        op: "add",
        path: "/spec/affinity",
        value: podAffinityTo(runPlaceholder, "topology.kubernetes.io/zone"),
      },
    ]);
    expect(applyPatch(p, decision.patch!).spec?.affinity).to.deep.equal(
      podAffinityTo(runPlaceholder, "topology.kubernetes.io/zone"),
    );
  });

  it("follows the mode recorded on the run over the policy's current mode", () => {
    // The run was gated under pipelineruns; the policy later changed to workspaces. A pod without claims
    // still follows the run placeholder.
    const decision = mutateTaskPod(pod(), ctx({ mode: "workspaces" }));
    expect(decision.patch?.[0]?.value).to.deep.equal(podAffinityTo(runPlaceholder));
  });

  it("pins to the placeholder's node with nodePinning when the node is known", () => {
    const c = ctx(
      { mode: "pipelineruns", strategy: "nodePinning" },
      { [`team-a/${runPlaceholder}`]: "node-7" },
    );
    const p = pod();
    const decision = mutateTaskPod(p, c);
    expect(c.lookups).to.deep.equal([`team-a/${runPlaceholder}`]);
    expect(applyPatch(p, decision.patch!).spec?.affinity).to.deep.equal({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: ["node-7"] }] },
          ],
        },
      },
    });
  });

  it("falls back to pod affinity with nodePinning when the placeholder's node is unknown", () => {
    const decision = mutateTaskPod(pod(), ctx({ mode: "pipelineruns", strategy: "nodePinning" }));
    expect(decision.patch).to.deep.equal([
      { op: "add", path: "/spec/affinity", value: podAffinityTo(runPlaceholder) },
    ]);
  });

  describe("nodePinning to a topology domain (topologyKey)", () => {
    const zoneKey = "topology.kubernetes.io/zone";
    const placed = { [`team-a/${runPlaceholder}`]: "node-7" };
    const required = (key: string, value: string) => ({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key, operator: "In", values: [value] }] }],
        },
      },
    });
    const labelled = (labels: Record<string, string> | undefined) => ({
      ...ctx({ mode: "pipelineruns", strategy: "nodePinning", topologyKey: zoneKey }, placed),
      nodeLabels: (node: string) => (node === "node-7" ? labels : undefined),
    });

    it("pins to the zone of the placeholder's node, by its zone label's value", () => {
      const decision = mutateTaskPod(
        pod(),
        labelled({ [zoneKey]: "zone-b", "kubernetes.io/hostname": "n7" }),
      );
      expect(decision.patch?.[0]?.value).to.deep.equal(required(zoneKey, "zone-b"));
    });

    it("falls back to zone-level pod affinity when the node's zone is not known", () => {
      const decision = mutateTaskPod(pod(), labelled(undefined));
      expect(decision.patch?.[0]?.value).to.deep.equal(podAffinityTo(runPlaceholder, zoneKey));
    });

    it("pins by the node's hostname label, which need not be its name", () => {
      const c = {
        ...ctx({ mode: "pipelineruns", strategy: "nodePinning" }, placed),
        nodeLabels: () => ({ "kubernetes.io/hostname": "ip-10-0-0-7" }),
      };
      const decision = mutateTaskPod(pod(), c);
      expect(decision.patch?.[0]?.value).to.deep.equal(required("kubernetes.io/hostname", "ip-10-0-0-7"));
    });
  });

  it("does not look the node up with the podAffinity strategy", () => {
    const c = ctx({ mode: "pipelineruns" }, { [`team-a/${runPlaceholder}`]: "node-7" });
    const decision = mutateTaskPod(pod(), c);
    expect(c.lookups).to.deep.equal([]);
    expect(decision.patch?.[0]?.value).to.deep.equal(podAffinityTo(runPlaceholder));
  });

  describe("in workspaces mode", () => {
    const wsRun: PipelineRun = {
      ...taskRun,
      metadata: { ...taskRun.metadata, annotations: { [MODE_ANNOTATION]: "workspaces" } },
      spec: {
        ...taskRun.spec,
        workspaces: ["data", "alpha", "beta"].map((c) => ({
          name: c,
          persistentVolumeClaim: { claimName: c },
        })),
      },
    };
    const volumes = (...claims: string[]) => [
      { name: "scratch", emptyDir: {} },
      ...claims.map((c, i) => ({ name: `ws-${i}`, persistentVolumeClaim: { claimName: c } })),
    ];

    it("adds pod affinity to the claim's placeholder", () => {
      const decision = mutateTaskPod(
        pod({ volumes: volumes("data") }),
        ctx({ mode: "workspaces" }, {}, wsRun),
      );
      expect(decision.patch?.[0]?.value).to.deep.equal(podAffinityTo(placeholderName(UID, "claim:data")));
    });

    it("leaves a pod without PVC volumes alone", () => {
      expect(
        mutateTaskPod(pod({ volumes: volumes() }), ctx({ mode: "workspaces" }, {}, wsRun)),
      ).to.deep.equal({
        allowed: true,
      });
    });

    it("ignores a PVC the pod mounts as a plain volume, not through a workspace of the run", () => {
      // A Task's own volume: no placeholder exists for it, so no affinity and no refusal.
      expect(
        mutateTaskPod(pod({ volumes: volumes("cache") }), ctx({ mode: "workspaces" }, {}, wsRun)),
      ).to.deep.equal({ allowed: true });
      const decision = mutateTaskPod(
        pod({ volumes: volumes("data", "cache") }),
        ctx({ mode: "workspaces" }, {}, wsRun),
      );
      expect(decision.allowed).to.equal(true);
      expect(decision.patch?.[0]?.value).to.deep.equal(podAffinityTo(placeholderName(UID, "claim:data")));
    });

    it("denies a pod mounting two PVC-backed workspaces, explaining why", () => {
      const decision = mutateTaskPod(
        pod({ volumes: volumes("alpha", "beta") }),
        ctx({ mode: "workspaces" }, {}, wsRun),
      );
      expect(decision.allowed).to.equal(false);
      expect(decision.patch).to.equal(undefined);
      expect(decision.message).to.match(/^tekton-affinity: /);
      expect(decision.message).to.include("alpha").and.include("beta").and.include('mode "pipelineruns"');
    });

    it("follows the one single-node claim of a pod that also mounts claims the release recorded as shared", () => {
      const released: PipelineRun = {
        ...wsRun,
        metadata: {
          ...wsRun.metadata,
          annotations: { ...wsRun.metadata.annotations, [SHARED_CLAIMS_ANNOTATION]: "alpha,data" },
        },
      };
      const decision = mutateTaskPod(
        pod({ volumes: volumes("alpha", "beta", "data") }),
        ctx({ mode: "workspaces" }, {}, released),
      );
      expect(decision.allowed).to.equal(true);
      expect(decision.patch?.[0]?.value).to.deep.equal(podAffinityTo(placeholderName(UID, "claim:beta")));
      // Only shared claims: nothing to follow.
      const sharedOnly = mutateTaskPod(
        pod({ volumes: volumes("alpha", "data") }),
        ctx({ mode: "workspaces" }, {}, released),
      );
      expect(sharedOnly).to.deep.equal({ allowed: true });
    });
  });

  it("merges into an existing affinity with a replace op", () => {
    const existing: V1Affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: "arch", operator: "In", values: ["arm64"] }] }],
        },
      },
      podAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [
          { labelSelector: { matchLabels: { app: "cache" } }, topologyKey: "kubernetes.io/hostname" },
        ],
      },
    };
    const p = pod({ affinity: existing });
    const decision = mutateTaskPod(p, ctx({ mode: "pipelineruns" }));
    expect(decision.patch).to.have.length(1);
    expect(decision.patch![0]!.op).to.equal("replace");
    expect(decision.patch![0]!.path).to.equal("/spec/affinity");
    const affinity = applyPatch(p, decision.patch!).spec?.affinity;
    expect(affinity?.nodeAffinity).to.deep.equal(existing.nodeAffinity);
    expect(affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.deep.equal([
      ...existing.podAffinity!.requiredDuringSchedulingIgnoredDuringExecution!,
      ...podAffinityTo(runPlaceholder).podAffinity!.requiredDuringSchedulingIgnoredDuringExecution!,
    ]);
    // The pod object handed in is untouched.
    expect(p.spec?.affinity).to.deep.equal(existing);
    expect(existing.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.have.length(1);
  });
});

describe("reviewResponse", () => {
  it("encodes a patch as base64 JSONPatch", () => {
    const patch: JsonPatchOp[] = [{ op: "add", path: "/metadata/labels", value: { a: "b" } }];
    const review = reviewResponse("uid-1", { allowed: true, patch });
    expect(review.apiVersion).to.equal("admission.k8s.io/v1");
    expect(review.kind).to.equal("AdmissionReview");
    expect(review.response.uid).to.equal("uid-1");
    expect(review.response.allowed).to.equal(true);
    expect(review.response.patchType).to.equal("JSONPatch");
    const decoded = JSON.parse(Buffer.from(review.response.patch as string, "base64").toString("utf8"));
    expect(decoded).to.deep.equal(patch);
    expect(review.response).to.not.have.property("status");
  });

  it("sends neither patch nor patchType for an empty or absent patch", () => {
    for (const decision of [{ allowed: true }, { allowed: true, patch: [] }]) {
      const r = reviewResponse("u", decision).response;
      expect(r).to.deep.equal({ uid: "u", allowed: true });
    }
  });

  it("answers a denial with a 403 status carrying the message", () => {
    const r = reviewResponse("u", { allowed: false, message: "no way" }).response;
    expect(r.allowed).to.equal(false);
    expect(r.status).to.deep.equal({ code: 403, reason: "Forbidden", message: "no way" });
    expect(reviewResponse("u", { allowed: false }).response.status).to.deep.equal({
      code: 403,
      reason: "Forbidden",
      message: "denied",
    });
  });

  it("passes warnings through", () => {
    expect(reviewResponse("u", { allowed: true, warnings: ["w1"] }).response.warnings).to.deep.equal(["w1"]);
    expect(reviewResponse("u", { allowed: true, warnings: [] }).response).to.not.have.property("warnings");
  });
});
