// The PipelineRun reconciler's decisions as a table: an observation in, the actions out. No cluster.

import type {
  CoreV1Event,
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StatefulSet,
  V1Toleration,
} from "@kubernetes/client-node";
import { expect } from "chai";
import { pino } from "pino";
import {
  AUTO_CLEANUP_PVC_ANNOTATION,
  CLEANED_UP_ANNOTATION,
  EVICTED_AT_ANNOTATION,
  EVICTED_FROM_ANNOTATION,
  GATED_ANNOTATION,
  GATED_AT_ANNOTATION,
  MANAGED_LABEL,
  MODE_ANNOTATION,
  PENDING_STATUS,
  PLACEMENT_LABEL,
  POLICY_ANNOTATION,
  RELEASED_UNCOSCHEDULED_ANNOTATION,
  TEMPLATE_HASH_ANNOTATION,
  WAITING_ANNOTATION,
} from "../../src/api/constants.js";
import { boundedSpec, DEFAULT_TENANCY_LIMITS } from "../../src/api/tenancy.js";
import type { AffinityPolicySpec, Mode, PipelineRun, WorkspaceBinding } from "../../src/api/types.js";
import type { KubeClients } from "../../src/kube/clients.js";
import type { EventRecorder } from "../../src/kube/events.js";
import type { Caches } from "../../src/kube/informers.js";
import type { TektonFlags } from "../../src/kube/tekton-flags.js";
import type { Metrics } from "../../src/metrics.js";
import { tektonClaimName } from "../../src/placement/names.js";
import { type PlaceholderPlan, planPlaceholders } from "../../src/placement/plan.js";
import { reservationName, reservationStatefulSet } from "../../src/placement/reservation.js";
import { placeholderStatefulSet } from "../../src/placement/statefulset.js";
import { NodeTracker } from "../../src/reconcilers/node-tracker.js";
import { PipelineRunReconciler } from "../../src/reconcilers/pipelinerun.js";
import {
  decideGate,
  decideRun,
  pinnedCannotMigrate,
  pinnedNode,
  type RunAction,
  type RunActionOf,
  type RunObservation,
} from "../../src/reconcilers/run-decisions.js";
import { run as baseRun } from "./helpers.js";

const NOW = Date.parse("2025-03-01T12:00:00Z");
const UID = "7d1e0c2a-run-uid";
const SETTLE = 10_000;
const GRACE = 30_000;
const OPTIONS = {
  limits: DEFAULT_TENANCY_LIMITS,
  notReadyGraceMs: GRACE,
  settlePeriodMs: SETTLE,
  waitRequeueMs: 1000,
};

// ---- fixtures ----

interface RunOpts {
  mode?: Mode;
  gated?: boolean;
  workspaces?: WorkspaceBinding[];
  annotations?: Record<string, string>;
  createdAgoMs?: number;
  done?: boolean;
  managed?: boolean;
}

function managedRun(o: RunOpts = {}): PipelineRun {
  const gated = o.gated ?? true;
  const r = baseRun(o.managed === false ? {} : { [MANAGED_LABEL]: "true" }, {
    pipelineRef: { name: "build" },
    workspaces: o.workspaces ?? [],
  });
  r.metadata.uid = UID;
  r.metadata.resourceVersion = "42";
  r.metadata.creationTimestamp = new Date(NOW - (o.createdAgoMs ?? 2000)).toISOString();
  r.metadata.annotations = {
    [MODE_ANNOTATION]: o.mode ?? "pipelineruns",
    [POLICY_ANNOTATION]: "default",
    ...(gated ? { [GATED_ANNOTATION]: "true" } : {}),
    ...o.annotations,
  };
  if (gated) r.spec.status = PENDING_STATUS;
  if (o.done) r.status = { conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded" }] };
  return r;
}

const pvc = (name: string, claimName: string): WorkspaceBinding => ({
  name,
  persistentVolumeClaim: { claimName },
});
const template = (name: string, prefix = "data", accessModes = ["ReadWriteOnce"]): WorkspaceBinding => ({
  name,
  volumeClaimTemplate: {
    metadata: { name: prefix },
    spec: { accessModes, resources: { requests: { storage: "1Gi" } } },
  },
});

interface PodState {
  node?: string;
  /** A PodScheduled=False message. */
  unschedulable?: string;
  deleting?: boolean;
  /** The controller owner's uid; default: the set's. */
  owner?: string;
  tolerations?: V1Toleration[];
}

interface PlaceholderState {
  /** true: a set matching the policy; "stale": one whose template hash differs. Default: none. */
  set?: true | "stale";
  setCreatedAgoMs?: number;
  setAnnotations?: Record<string, string>;
  pod?: PodState;
  failedCreates?: CoreV1Event[];
}

interface World {
  spec?: Partial<AffinityPolicySpec>;
  /** Per plan, in plan order. */
  placeholders?: PlaceholderState[];
  /** Default: a healthy node for every node a pod is on. */
  nodes?: V1Node[];
  troubleSince?: Record<string, number>;
  tektonConflict?: string;
  now?: number;
  /** The user PVCs' access modes, by claim name, as the reconciler read them; default: none known. */
  accessModes?: Record<string, string[]>;
}

const setUid = (i: number) => `set-uid-${i}`;

function observe(run: PipelineRun, w: World = {}): RunObservation {
  const mode = run.metadata.annotations?.[MODE_ANNOTATION] as Mode;
  const spec = boundedSpec({ mode, ...w.spec }, DEFAULT_TENANCY_LIMITS);
  const plans = planPlaceholders(run, spec.mode, w.accessModes, spec.coscheduledClaims);
  const placeholders = plans.map((plan, i) => {
    const st = w.placeholders?.[i] ?? {};
    let set: V1StatefulSet | undefined;
    if (st.set) {
      set = placeholderStatefulSet(run, spec, plan, { limits: DEFAULT_TENANCY_LIMITS });
      set.metadata = {
        ...set.metadata,
        uid: setUid(i),
        resourceVersion: "7",
        creationTimestamp: new Date(NOW - (st.setCreatedAgoMs ?? 1000)),
        annotations: {
          ...set.metadata?.annotations,
          ...(st.set === "stale" ? { [TEMPLATE_HASH_ANNOTATION]: "stale" } : {}),
          ...st.setAnnotations,
        },
      };
    }
    return { plan, set, pod: st.pod && pod(plan, st.pod, setUid(i)), failedCreates: st.failedCreates ?? [] };
  });
  const podNodes = placeholders.flatMap((p) => (p.pod?.spec?.nodeName ? [p.pod.spec.nodeName] : []));
  const nodes = w.nodes ?? podNodes.map((n) => node(n));
  return {
    run,
    spec,
    placeholders,
    nodes: Object.fromEntries(nodes.map((n) => [n.metadata!.name!, n])),
    troubleSince: w.troubleSince ?? {},
    ...(w.tektonConflict ? { tektonConflict: w.tektonConflict } : {}),
    now: w.now ?? NOW,
    options: OPTIONS,
  };
}

function pod(plan: PlaceholderPlan, s: PodState, ownerUid: string): V1Pod {
  return {
    metadata: {
      name: `${plan.name}-0`,
      uid: `pod-of-${plan.name}`,
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "StatefulSet",
          name: plan.name,
          uid: s.owner ?? ownerUid,
          controller: true,
        },
      ],
      ...(s.deleting ? { deletionTimestamp: new Date(NOW - 100) } : {}),
    },
    spec: { containers: [], nodeName: s.node, tolerations: s.tolerations },
    status: {
      conditions: s.unschedulable
        ? [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: s.unschedulable }]
        : [],
    },
  };
}

function node(name: string, o: { cordoned?: boolean; notReadySince?: number } = {}): V1Node {
  return {
    metadata: { name },
    spec: { unschedulable: o.cordoned },
    status: {
      conditions: [
        o.notReadySince === undefined
          ? { type: "Ready", status: "True" }
          : { type: "Ready", status: "False", lastTransitionTime: new Date(o.notReadySince) },
      ],
    },
  };
}

function failedCreate(uid: string, message: string, at: number): CoreV1Event {
  return {
    metadata: { name: `fc-${at}` },
    involvedObject: { kind: "StatefulSet", uid },
    reason: "FailedCreate",
    message,
    lastTimestamp: new Date(at),
  };
}

const types = (actions: RunAction[]) => actions.map((a) => a.type);
const only = <T extends RunAction["type"]>(actions: RunAction[], type: T): RunActionOf<T>[] =>
  actions.filter((a): a is RunActionOf<T> => a.type === type);
const planNames = (run: PipelineRun, mode: Mode) => planPlaceholders(run, mode).map((p) => p.name);

// ---- the table ----

describe("run decisions", () => {
  describe("which runs are ours", () => {
    it("does nothing for a run without the managed label, or with mode disabled", () => {
      const unmanaged = managedRun({ managed: false });
      expect(decideRun(observe(unmanaged))).to.deep.equal([]);
      expect(decideGate(observe(unmanaged), undefined)).to.deep.equal([]);
      const disabled = managedRun({ mode: "disabled" });
      expect(decideRun(observe(disabled))).to.deep.equal([]);
      expect(decideGate(observe(disabled), undefined)).to.deep.equal([]);
    });

    it("gives a run its creator made Pending nothing until they release it (then the gate takes it over)", () => {
      const pended = managedRun({ gated: false });
      pended.spec.status = PENDING_STATUS;
      expect(decideRun(observe(pended))).to.deep.equal([]);
      expect(decideGate(observe(pended), undefined)).to.deep.equal([]);
      // Taken over: gated by us, it gets its placeholder.
      const taken = managedRun({ annotations: { [GATED_AT_ANNOTATION]: new Date(NOW).toISOString() } });
      expect(types(decideRun(observe(taken)))).to.include("createPlaceholder");
    });

    it("only deletes the placeholders of a run released without co-scheduling", () => {
      const r = managedRun({ annotations: { [RELEASED_UNCOSCHEDULED_ANNOTATION]: "waited too long" } });
      const obs = observe(r, { placeholders: [{ set: true, pod: { node: "node-a" } }] });
      expect(decideRun(obs)).to.deep.equal([{ type: "deletePlaceholders" }]);
      expect(decideGate(obs, undefined)).to.deep.equal([]);
      // Even once the label is gone: that is how such a run looks.
      const unlabelled = managedRun({
        managed: false,
        annotations: { [RELEASED_UNCOSCHEDULED_ANNOTATION]: "waited too long" },
      });
      expect(decideRun(observe(unlabelled))).to.deep.equal([{ type: "deletePlaceholders" }]);
    });

    it("cleans up after a run released without co-scheduling once it finishes, as the matrix says", () => {
      const released = (mode: Mode, done: boolean, extra: Record<string, string> = {}) =>
        managedRun({
          mode,
          gated: false,
          done,
          workspaces: [template("source")],
          annotations: { [RELEASED_UNCOSCHEDULED_ANNOTATION]: "waited too long", ...extra },
        });
      const claim = tektonClaimName("data", "source", UID);
      // Still running: only its placeholders go.
      expect(decideRun(observe(released("pipelineruns", false)))).to.deep.equal([
        { type: "deletePlaceholders" },
      ]);
      // Finished: its template claim goes too in pipelineruns mode, and in workspaces mode only when asked.
      expect(decideRun(observe(released("pipelineruns", true)))).to.deep.equal([
        { type: "cleanUp", claims: [claim] },
      ]);
      expect(decideRun(observe(released("workspaces", true)))).to.deep.equal([
        { type: "cleanUp", claims: [] },
      ]);
      // Cleaned up: nothing more.
      const cleaned = released("pipelineruns", true, { [CLEANED_UP_ANNOTATION]: "true" });
      expect(decideRun(observe(cleaned))).to.deep.equal([]);
    });
  });

  describe("placeholders", () => {
    for (const mode of ["pipelineruns", "isolate-pipelinerun"] as const) {
      it(`creates the one run-wide placeholder in ${mode} mode, mounting every claim of the run`, () => {
        const r = managedRun({ mode, workspaces: [template("source"), pvc("cache", "user-pvc")] });
        const missing = decideRun(observe(r));
        const [name] = planNames(r, mode);
        // As Tekton's assistant does: the template claim is created first (Tekton adopts it), and the
        // placeholder mounts it and the user's claim, so the volumes land where the tasks will run.
        expect(types(missing)).to.deep.equal(["createClaim", "createPlaceholder"]);
        const create = only(missing, "createPlaceholder")[0]!;
        expect(create.plan).to.equal(name);
        expect(create.set.metadata?.name).to.equal(name);
        const mounted = create.set.spec?.template.spec?.volumes?.map(
          (v) => v.persistentVolumeClaim?.claimName,
        );
        expect(mounted).to.deep.equal([tektonClaimName("data", "source", UID), "user-pvc"]);
        const antiAffinity = create.set.spec?.template.spec?.affinity?.podAntiAffinity;
        const isolated = antiAffinity?.requiredDuringSchedulingIgnoredDuringExecution !== undefined;
        expect(isolated).to.equal(mode === "isolate-pipelinerun");

        // Present, the run gated: only the template claim is asked for again (no claim cache; 409 means
        // it exists).
        expect(types(decideRun(observe(r, { placeholders: [{ set: true }] })))).to.deep.equal([
          "createClaim",
        ]);
      });
    }

    it("creates one placeholder per claim in workspaces mode, claims from templates first", () => {
      const r = managedRun({
        mode: "workspaces",
        workspaces: [pvc("source", "user-pvc"), template("cache"), pvc("other", "user-pvc")],
      });
      const [userPlan, templatePlan] = planNames(r, "workspaces");
      const actions = decideRun(observe(r));
      expect(actions.map((a) => [a.type, "plan" in a ? a.plan : undefined])).to.deep.equal([
        ["createPlaceholder", userPlan],
        ["createClaim", templatePlan],
        ["createPlaceholder", templatePlan],
      ]);
      const claim = only(actions, "createClaim")[0]!.claim;
      expect(claim.metadata?.name).to.equal(tektonClaimName("data", "cache", UID));
      expect(claim.metadata?.ownerReferences?.[0]?.uid).to.equal(UID);
    });

    it("asks for the template claim only while it can matter: while gated, or while its set is missing", () => {
      const present: World = { placeholders: [{ set: true, pod: { node: "node-a" } }] };
      // Gated: asked on every reconcile, as there is no claim cache (409: it exists).
      const gated = managedRun({ mode: "workspaces", workspaces: [template("cache")] });
      expect(types(decideRun(observe(gated, present)))).to.deep.equal(["createClaim"]);
      // Released, its set present: Tekton creates a missing claim with the TaskRuns' pods; no POST.
      const released = managedRun({ gated: false, mode: "workspaces", workspaces: [template("cache")] });
      expect(decideRun(observe(released, present))).to.deep.equal([]);
      // Released, its set missing (deleted): the claim first, then the set that mounts it.
      const missing = decideRun(observe(released));
      expect(types(missing)).to.deep.equal(["createClaim", "createPlaceholder"]);
      expect(only(missing, "createClaim")[0]!.claim.metadata?.name).to.equal(
        tektonClaimName("data", "cache", UID),
      );
    });

    it("asks, once the run is released, only for the claims of the plans whose set is missing", () => {
      const r = managedRun({
        gated: false,
        mode: "workspaces",
        workspaces: [template("a", "first"), template("b", "second")],
      });
      const [, second] = planNames(r, "workspaces");
      const actions = decideRun(observe(r, { placeholders: [{ set: true, pod: { node: "node-a" } }, {}] }));
      expect(actions.map((a) => [a.type, "plan" in a ? a.plan : undefined])).to.deep.equal([
        ["createClaim", second],
        ["createPlaceholder", second],
      ]);
      expect(only(actions, "createClaim")[0]!.claim.metadata?.name).to.equal(
        tektonClaimName("second", "b", UID),
      );
    });

    it("creates nothing in workspaces mode without a PVC-backed workspace", () => {
      const r = managedRun({ mode: "workspaces", workspaces: [{ name: "scratch", emptyDir: {} }] });
      expect(decideRun(observe(r))).to.deep.equal([]);
    });

    it("creates what is missing while the run runs, too (not only while gated)", () => {
      const r = managedRun({ gated: false });
      expect(types(decideRun(observe(r)))).to.deep.equal(["createPlaceholder"]);
    });
  });

  describe("a ReadWriteOncePod claim", () => {
    const volumes = (a: RunActionOf<"createPlaceholder">) =>
      a.set.spec?.template.spec?.volumes?.map((v) => v.persistentVolumeClaim?.claimName);

    it("is not mounted by the run-wide placeholder, which says so once, when it is created", () => {
      const r = managedRun({ workspaces: [template("source"), pvc("solo", "solo-pvc")] });
      const accessModes = { "solo-pvc": ["ReadWriteOncePod"] };
      const actions = decideRun(observe(r, { accessModes }));
      expect(types(actions)).to.deep.equal(["createClaim", "createPlaceholder", "claimNotMounted"]);
      expect(volumes(only(actions, "createPlaceholder")[0]!)).to.deep.equal([
        tektonClaimName("data", "source", UID),
      ]);
      const note = only(actions, "claimNotMounted")[0]!;
      const [name] = planNames(r, "pipelineruns");
      expect(note.plan).to.equal(name);
      expect(note.claim).to.equal("solo-pvc");
      expect(note.message).to.equal(
        `placeholder ${name} does not mount claim solo-pvc because it is ReadWriteOncePod (only one pod may use it, and that must be the task's), so its node is chosen by the tasks' affinity alone`,
      );
      // Once the set exists: nothing more to say.
      expect(types(decideRun(observe(r, { accessModes, placeholders: [{ set: true }] })))).to.deep.equal([
        "createClaim",
      ]);
    });

    it("from a volumeClaimTemplate is still created, but its own placeholder (workspaces mode) mounts nothing", () => {
      const r = managedRun({
        mode: "workspaces",
        workspaces: [template("solo", "solo", ["ReadWriteOncePod"])],
      });
      const actions = decideRun(observe(r));
      expect(types(actions)).to.deep.equal(["createClaim", "createPlaceholder", "claimNotMounted"]);
      expect(only(actions, "createClaim")[0]!.claim.spec?.accessModes).to.deep.equal(["ReadWriteOncePod"]);
      expect(volumes(only(actions, "createPlaceholder")[0]!)).to.equal(undefined);
    });

    it("of unknown access modes (not found) is mounted, as a ReadWriteOnce one, and nothing is said", () => {
      const r = managedRun({ workspaces: [pvc("solo", "solo-pvc")] });
      const actions = decideRun(observe(r));
      expect(types(actions)).to.deep.equal(["createPlaceholder"]);
      expect(volumes(only(actions, "createPlaceholder")[0]!)).to.deep.equal(["solo-pvc"]);
    });
  });

  describe("a placeholder whose policy changed", () => {
    const r = managedRun();

    it("is replaced while the run is gated and its pod unscheduled", () => {
      const actions = decideRun(observe(r, { placeholders: [{ set: "stale", pod: {} }] }));
      expect(types(actions)).to.deep.equal(["replacePlaceholder"]);
      const replace = only(actions, "replacePlaceholder")[0]!;
      expect(replace.plan).to.equal(planNames(r, "pipelineruns")[0]);
      expect(replace.set.metadata?.uid).to.equal(setUid(0));
    });

    it("is replaced when its only pod belongs to an older set", () => {
      const obs = observe(r, { placeholders: [{ set: "stale", pod: { node: "node-a", owner: "old-set" } }] });
      expect(types(decideRun(obs))).to.deep.equal(["replacePlaceholder"]);
    });

    it("is kept once its pod is scheduled", () => {
      const obs = observe(r, { placeholders: [{ set: "stale", pod: { node: "node-a" } }] });
      expect(types(decideRun(obs))).to.deep.equal([]);
    });

    it("is kept once the run is released", () => {
      const obs = observe(managedRun({ gated: false }), { placeholders: [{ set: "stale", pod: {} }] });
      expect(decideRun(obs)).to.deep.equal([]);
    });

    it("is kept when it matches", () => {
      expect(decideRun(observe(r, { placeholders: [{ set: true, pod: {} }] }))).to.deep.equal([]);
    });
  });

  describe("the gate", () => {
    const ws = managedRun({ mode: "workspaces", workspaces: [pvc("a", "claim-a"), pvc("b", "claim-b")] });

    it("is released once every placeholder pod is scheduled, naming the nodes", () => {
      const obs = observe(ws, {
        placeholders: [
          { set: true, pod: { node: "node-a" } },
          { set: true, pod: { node: "node-b" } },
        ],
        tektonConflict: "Tekton's own affinity assistant is on",
      });
      expect(decideGate(obs, undefined)).to.deep.equal([
        {
          type: "releaseGate",
          nodes: ["node-a", "node-b"],
          message: "placeholders scheduled on node-a,node-b; the run may start",
          tektonConflict: "Tekton's own affinity assistant is on",
        },
      ]);
    });

    it("records the claims usable from every node as shared: no placeholder, and the release says so", () => {
      const mixed = managedRun({
        mode: "workspaces",
        workspaces: [
          pvc("src", "claim-a"),
          template("cache", "cache", ["ReadWriteMany"]),
          pvc("out", "claim-b"),
        ],
      });
      const cache = tektonClaimName("cache", "cache", mixed.metadata.uid!);
      const obs = observe(mixed, {
        accessModes: { "claim-a": ["ReadWriteOnce"], "claim-b": ["ReadOnlyMany"] },
        placeholders: [{ set: true, pod: { node: "node-a" } }],
      });
      expect(obs.placeholders.map((p) => p.plan.claims[0]!.name)).to.deep.equal(["claim-a"]);
      expect(decideGate(obs, undefined)).to.deep.equal([
        {
          type: "releaseGate",
          nodes: ["node-a"],
          message: `placeholder scheduled on node-a; the run may start (${cache}, claim-b can be used from every node: no placeholder, no task follows them)`,
          sharedClaims: [cache, "claim-b"],
        },
      ]);
      // coscheduledClaims All: each claim has its placeholder, as in Tekton; nothing is shared.
      const all = observe(mixed, {
        spec: { coscheduledClaims: "All" },
        accessModes: { "claim-a": ["ReadWriteOnce"], "claim-b": ["ReadOnlyMany"] },
        placeholders: [
          { set: true, pod: { node: "node-a" } },
          { set: true, pod: { node: "node-a" } },
          { set: true, pod: { node: "node-a" } },
        ],
      });
      expect(only(decideGate(all, undefined), "releaseGate")[0]).to.not.have.property("sharedClaims");
    });

    it("is released at once when there is nothing to co-schedule", () => {
      const r = managedRun({ mode: "workspaces" });
      expect(decideGate(observe(r), undefined)).to.deep.equal([
        {
          type: "releaseGate",
          nodes: [],
          message: "no PVC-backed workspace to co-schedule; the run may start",
        },
      ]);
    });

    const notYet: [string, PlaceholderState][] = [
      ["unscheduled", { set: true, pod: {} }],
      ["being deleted", { set: true, pod: { node: "node-b", deleting: true } }],
      ["missing", { set: true }],
      ["owned by an older set", { set: true, pod: { node: "node-b", owner: "old" } }],
    ];
    for (const [what, second] of notYet) {
      it(`stays while one placeholder pod is ${what}`, () => {
        const obs = observe(ws, { placeholders: [{ set: true, pod: { node: "node-a" } }, second] });
        expect(types(decideGate(obs, undefined))).to.deep.equal(["requeueAfter"]);
      });
    }

    it("stays when a create was refused, even with every pod scheduled, and says so", () => {
      const obs = observe(ws, {
        placeholders: [
          { set: true, pod: { node: "node-a" } },
          { set: true, pod: { node: "node-b" } },
        ],
      });
      const refusal = "placeholder x cannot be created: PersistentVolumeClaim claim-a was refused: quota";
      expect(decideGate(obs, refusal)).to.deep.equal([
        { type: "setWaiting", reason: refusal },
        { type: "requeueAfter", ms: 1000 },
      ]);
    });

    it("is not looked at for a run that is not gated", () => {
      const r = managedRun({ gated: false });
      expect(
        decideGate(observe(r, { placeholders: [{ set: true, pod: { node: "node-a" } }] }), undefined),
      ).to.deep.equal([]);
      // Gated means both the pending status and our annotation.
      const onlyAnnotated = managedRun();
      onlyAnnotated.spec.status = undefined;
      expect(
        decideGate(observe(onlyAnnotated, { placeholders: [{ set: true, pod: {} }] }), undefined),
      ).to.deep.equal([]);
    });
  });

  describe("the Waiting annotation", () => {
    const r = managedRun({ createdAgoMs: 20_000 });

    it("is set when the scheduler says why, with a Waiting event", () => {
      const obs = observe(r, {
        placeholders: [{ set: true, pod: { unschedulable: "0/3 nodes are available" } }],
      });
      const name = planNames(r, "pipelineruns")[0];
      expect(decideGate(obs, undefined)).to.deep.equal([
        {
          type: "setWaiting",
          reason: `placeholder ${name} cannot be scheduled: Unschedulable: 0/3 nodes are available`,
        },
        // A quarter of the 20 s waited.
        { type: "requeueAfter", ms: 5000 },
      ]);
    });

    it("is not written again when it already says the same", () => {
      const name = planNames(r, "pipelineruns")[0];
      const said = managedRun({
        createdAgoMs: 20_000,
        annotations: {
          [WAITING_ANNOTATION]: `placeholder ${name} cannot be scheduled: Unschedulable: 0/3 nodes are available`,
        },
      });
      const obs = observe(said, {
        placeholders: [{ set: true, pod: { unschedulable: "0/3 nodes are available" } }],
      });
      expect(decideGate(obs, undefined)).to.deep.equal([{ type: "requeueAfter", ms: 5000 }]);
    });

    it("is not written while nothing says why (the normal sub-second path)", () => {
      expect(decideGate(observe(r, { placeholders: [{ set: true, pod: {} }] }), undefined)).to.deep.equal([
        { type: "requeueAfter", ms: 5000 },
      ]);
      // A set younger than 10 s without a pod: not reported yet.
      expect(
        decideGate(observe(r, { placeholders: [{ set: true, setCreatedAgoMs: 9_999 }] }), undefined),
      ).to.deep.equal([{ type: "requeueAfter", ms: 5000 }]);
    });

    it("reports the latest FailedCreate of a set without a pod", () => {
      const obs = observe(r, {
        placeholders: [
          {
            set: true,
            failedCreates: [
              failedCreate(setUid(0), "older: quota", NOW - 5000),
              failedCreate(setUid(0), "pods is forbidden: exceeded quota", NOW - 1000),
              failedCreate("another-set", "not ours", NOW),
            ],
          },
        ],
      });
      const name = planNames(r, "pipelineruns")[0];
      expect(only(decideGate(obs, undefined), "setWaiting")).to.deep.equal([
        {
          type: "setWaiting",
          reason: `placeholder ${name} cannot be created: pods is forbidden: exceeded quota`,
        },
      ]);
    });

    it("reports a set that has had no pod for 10 s", () => {
      const obs = observe(r, { placeholders: [{ set: true, setCreatedAgoMs: 10_000 }] });
      const [setWaiting] = only(decideGate(obs, undefined), "setWaiting");
      expect(setWaiting?.reason).to.match(
        /cannot be scheduled: NoPod: StatefulSet affinity-placeholder-\w+ has not/,
      );
    });

    it("prefers a refusal from this reconcile to what the pods say", () => {
      const obs = observe(r, { placeholders: [{ set: true, pod: { unschedulable: "0/3 nodes" } }] });
      expect(only(decideGate(obs, "refused: quota"), "setWaiting")).to.deep.equal([
        { type: "setWaiting", reason: "refused: quota" },
      ]);
    });
  });

  describe("maxWait", () => {
    const waitedTooLong = (onMaxWait?: "Fail" | "Release") => {
      const r = managedRun({ createdAgoMs: 120_000 });
      return observe(r, {
        spec: { maxWait: "1m", ...(onMaxWait ? { onMaxWait } : {}) },
        placeholders: [{ set: true, pod: { unschedulable: "0/3 nodes are available" } }],
      });
    };

    it("fails the run by default, with the last reason", () => {
      const actions = decideGate(waitedTooLong(), undefined);
      expect(types(actions)).to.deep.equal(["failRun"]);
      const { message } = only(actions, "failRun")[0]!;
      expect(message).to.contain("waited longer than maxWait (1m)");
      expect(message).to.contain("0/3 nodes are available");
      expect(message).to.contain("(onMaxWait: Fail)");
      expect(types(decideGate(waitedTooLong("Fail"), undefined))).to.deep.equal(["failRun"]);
    });

    it("releases it with onMaxWait: Release, placeholders deleted first", () => {
      const actions = decideGate(waitedTooLong("Release"), undefined);
      expect(types(actions)).to.deep.equal(["deletePlaceholders", "releaseWithoutCoscheduling"]);
      expect(only(actions, "releaseWithoutCoscheduling")[0]!.message).to.contain("(onMaxWait: Release)");
    });

    it("fails a run that carries its placement even under onMaxWait: Release (its pods could not start without the placeholder)", () => {
      const obs = waitedTooLong("Release");
      obs.run.metadata.labels = { ...obs.run.metadata.labels, [PLACEMENT_LABEL]: "t0k3n" };
      expect(types(decideGate(obs, undefined))).to.deep.equal(["failRun"]);
    });

    it("does not count an outage of ours (Redis down) as waiting: no run fails for it", () => {
      const obs = waitedTooLong();
      // 120 s since creation, 110 s of them with Redis down: it waited 10 s of its 60 s.
      obs.unavailableMs = 110_000;
      const actions = decideGate(obs, undefined);
      expect(types(actions)).to.not.include("failRun");
      expect(types(actions)).to.include("requeueAfter");
      obs.unavailableMs = 50_000; // 70 s waited: past maxWait
      expect(types(decideGate(obs, undefined))).to.deep.equal(["failRun"]);
    });

    it("counts maxWait from when the gate took a run over (gated-at), not from its creation", () => {
      const obs = waitedTooLong();
      obs.run.metadata.annotations = {
        ...obs.run.metadata.annotations,
        [GATED_AT_ANNOTATION]: new Date(NOW - 10_000).toISOString(),
      };
      expect(types(decideGate(obs, undefined))).to.not.include("failRun");
    });

    it("waits until maxWait, never requeueing past it", () => {
      const r = managedRun({ createdAgoMs: 59_000 });
      const obs = observe(r, { spec: { maxWait: "1m" }, placeholders: [{ set: true, pod: {} }] });
      expect(decideGate(obs, undefined)).to.deep.equal([{ type: "requeueAfter", ms: 1000 }]);
      const at = observe(managedRun({ createdAgoMs: 60_000 }), {
        spec: { maxWait: "1m" },
        placeholders: [{ set: true, pod: {} }],
      });
      expect(types(decideGate(at, undefined))).to.deep.equal(["failRun"]);
    });
  });

  describe("a task binding two claims held apart (workspaces mode)", () => {
    // An inline pipeline whose "build" task binds both single-node claims, and a shared (RWX) one.
    const conflicted = (tasks?: unknown[]) => {
      const r = managedRun({
        mode: "workspaces",
        workspaces: [
          template("source", "src"),
          template("out", "out"),
          template("cache", "c", ["ReadWriteMany"]),
        ],
      });
      delete r.spec.pipelineRef;
      r.spec.pipelineSpec = {
        tasks: tasks ?? [
          { name: "clone", taskRef: { name: "git" }, workspaces: [{ name: "source" }, { name: "cache" }] },
          {
            name: "build",
            taskRef: { name: "make" },
            workspaces: [{ name: "s", workspace: "source" }, { name: "out" }],
          },
        ],
      };
      return r;
    };

    it("creates nothing and fails the run at once, naming the task and both workspaces", () => {
      const obs = observe(conflicted());
      expect(decideRun(obs)).to.deep.equal([]);
      const actions = decideGate(obs, undefined);
      expect(types(actions)).to.deep.equal(["failRun"]);
      const fail = only(actions, "failRun")[0]!;
      expect(fail.cause).to.equal("unsatisfiable");
      expect(fail.message).to.contain('task "build"').and.contain("(source, out)");
    });

    it("starts it without co-scheduling at once with onMaxWait: Release", () => {
      const obs = observe(conflicted(), { spec: { onMaxWait: "Release" } });
      const actions = decideGate(obs, undefined);
      expect(types(actions)).to.deep.equal(["deletePlaceholders", "releaseWithoutCoscheduling"]);
      expect(only(actions, "releaseWithoutCoscheduling")[0]!.cause).to.equal("unsatisfiable");
    });

    it("places a run whose tasks each bind one such claim (a shared one beside it does not count)", () => {
      const fine = conflicted([
        { name: "clone", taskRef: { name: "git" }, workspaces: [{ name: "source" }, { name: "cache" }] },
        { name: "build", taskRef: { name: "make" }, workspaces: [{ name: "out" }, { name: "cache" }] },
      ]);
      const obs = observe(fine);
      expect(types(decideRun(obs))).to.include("createPlaceholder");
      expect(types(decideGate(obs, undefined))).to.not.include("failRun");
      // With coscheduledClaims All the cache holds its tasks too: clone binds two claims held apart.
      const all = observe(fine, { spec: { coscheduledClaims: "All" } });
      expect(decideRun(all)).to.deep.equal([]);
      expect(only(decideGate(all, undefined), "failRun")[0]!.message).to.contain('task "clone"');
    });

    it("leaves a run with a pipelineRef to the pods webhook: it cannot tell, so it places it", () => {
      const r = managedRun({
        mode: "workspaces",
        workspaces: [template("source", "src"), template("out", "out")],
      });
      const obs = observe(r);
      expect(types(decideRun(obs))).to.include("createPlaceholder");
      expect(types(decideGate(obs, undefined))).to.not.include("failRun");
    });
  });

  describe("moving off a node that can no longer hold the placeholder", () => {
    // A released run whose placeholder pod is on node-a.
    const r = managedRun({ gated: false });
    const onA = (w: World = {}, p: PlaceholderState = {}) =>
      observe(r, { placeholders: [{ set: true, pod: { node: "node-a" }, ...p }], ...w });
    const cordoned = [node("node-a", { cordoned: true })];

    it("leaves a placeholder on a healthy node alone", () => {
      expect(decideRun(onA())).to.deep.equal([]);
    });

    it("sharing a zone, stays while another node of the zone is usable, and moves once none is", () => {
      const zoneWide = (others: V1Node[], nodeA = node("node-a", { cordoned: true })) => {
        const obs = onA({ nodes: [nodeA], troubleSince: { "node-a": NOW - SETTLE } });
        return { ...obs, domainNodes: { "node-a": others } };
      };
      // node-b, in node-a's zone, can take the tasks: nothing moves.
      expect(decideRun(zoneWide([node("node-b")]))).to.deep.equal([]);
      // Every other node of the zone is unusable too: the placeholder moves, as it would sharing a node.
      const noRoom = decideRun(zoneWide([node("node-b", { cordoned: true })]));
      expect(types(noRoom)).to.deep.equal(["evict"]);
      expect(types(decideRun(zoneWide([])))).to.deep.equal(["evict"]);
      // A node that is gone takes its pods with it: the placeholder moves whatever the zone.
      const gone = decideRun({
        ...onA({ nodes: [], troubleSince: { "node-a": NOW - SETTLE } }),
        domainNodes: { "node-a": [node("node-b")] },
      });
      expect(types(gone)).to.deep.equal(["evict"]);
    });

    it("waits out the settle period since the trouble began, then evicts", () => {
      const early = decideRun(onA({ nodes: cordoned, troubleSince: { "node-a": NOW - 4000 } }));
      expect(early).to.deep.equal([{ type: "requeueAfter", ms: 6000 }]);
      // Trouble not seen by this replica's node watch counts from now: a full settle period.
      expect(decideRun(onA({ nodes: cordoned }))).to.deep.equal([{ type: "requeueAfter", ms: SETTLE }]);

      const late = decideRun(onA({ nodes: cordoned, troubleSince: { "node-a": NOW - SETTLE } }));
      expect(types(late)).to.deep.equal(["evict"]);
      const evict = only(late, "evict")[0]!;
      expect(evict.nodeName).to.equal("node-a");
      expect(evict.problem.reason).to.equal("Cordoned");
      expect(evict.pod.metadata?.uid).to.equal(`pod-of-${evict.plan}`);
      expect(evict.set.metadata?.uid).to.equal(setUid(0));
      expect(evict.claimNames).to.deep.equal([]);
    });

    it("moves a placeholder at most once per settle period (evicted-at)", () => {
      const recently = { setAnnotations: { [EVICTED_AT_ANNOTATION]: String(NOW - 3000) } };
      const since = { "node-a": NOW - 60_000 };
      expect(decideRun(onA({ nodes: cordoned, troubleSince: since }, recently))).to.deep.equal([
        { type: "requeueAfter", ms: 7000 },
      ]);
      const longAgo = { setAnnotations: { [EVICTED_AT_ANNOTATION]: String(NOW - SETTLE) } };
      expect(types(decideRun(onA({ nodes: cordoned, troubleSince: since }, longAgo)))).to.deep.equal([
        "evict",
      ]);
    });

    it("tolerates a clock minutes ahead of ours in evicted-at: it waits one settle period at most", () => {
      const since = { "node-a": NOW - 60_000 };
      // The evicting replica's clock ran five minutes ahead: its evicted-at is in our future.
      const skewed = { setAnnotations: { [EVICTED_AT_ANNOTATION]: String(NOW + 5 * 60_000) } };
      expect(decideRun(onA({ nodes: cordoned, troubleSince: since }, skewed))).to.deep.equal([
        { type: "requeueAfter", ms: SETTLE },
      ]);
    });

    it("waits out the NotReady grace period", () => {
      const notReady = (sinceMs: number) => ({
        nodes: [node("node-a", { notReadySince: NOW - sinceMs })],
        troubleSince: { "node-a": NOW - sinceMs },
      });
      expect(decideRun(onA(notReady(10_000)))).to.deep.equal([{ type: "requeueAfter", ms: 20_000 }]);
      const after = decideRun(onA(notReady(GRACE)));
      expect(types(after)).to.deep.equal(["evict"]);
      expect(only(after, "evict")[0]!.problem.reason).to.equal("NotReady");
    });

    it("evicts from a node that is gone, once settled", () => {
      const actions = decideRun(onA({ nodes: [], troubleSince: { "node-a": NOW - SETTLE } }));
      expect(only(actions, "evict").map((e) => e.problem.reason)).to.deep.equal(["Gone"]);
    });

    it("does not evict a placeholder whose pod is already being deleted", () => {
      const obs = onA(
        { nodes: cordoned, troubleSince: { "node-a": NOW - SETTLE } },
        {
          pod: { node: "node-a", deleting: true },
        },
      );
      expect(decideRun(obs)).to.deep.equal([]);
    });

    it("respects the placeholder's tolerations", () => {
      const tainted: V1Node = {
        metadata: { name: "node-a" },
        spec: { taints: [{ key: "dedicated", value: "ci", effect: "NoSchedule" }] },
      };
      const since = { "node-a": NOW - SETTLE };
      expect(types(decideRun(onA({ nodes: [tainted], troubleSince: since })))).to.deep.equal(["evict"]);
      const tolerated = { pod: { node: "node-a", tolerations: [{ key: "dedicated", operator: "Exists" }] } };
      expect(decideRun(onA({ nodes: [tainted], troubleSince: since }, tolerated))).to.deep.equal([]);
    });

    describe("a placeholder holding a claim", () => {
      const ws = managedRun({ gated: false, mode: "workspaces", workspaces: [pvc("src", "claim-a")] });
      const held = (n: V1Node) =>
        observe(ws, {
          placeholders: [{ set: true, pod: { node: "node-a" } }],
          nodes: [n],
          troubleSince: { "node-a": NOW - 60_000 },
        });

      it("never moves off a NotReady node: CannotMigrate instead", () => {
        const actions = decideRun(held(node("node-a", { notReadySince: NOW - 60_000 })));
        expect(types(actions)).to.deep.equal(["cannotMigrate"]);
        const { message } = only(actions, "cannotMigrate")[0]!;
        expect(message).to.contain("stands for claim claim-a (access modes unknown, taken as ReadWriteOnce)");
        expect(message).to.contain("kubectl delete node node-a");
      });

      it("moves off a cordoned node, carrying the claim for the pinned-volume check", () => {
        const actions = decideRun(held(node("node-a", { cordoned: true })));
        expect(types(actions)).to.deep.equal(["evict"]);
        expect(only(actions, "evict")[0]!.claimNames).to.deep.equal(["claim-a"]);
      });

      it("in pipelineruns mode too: the run-wide placeholder holds every claim of the run", () => {
        const run = managedRun({
          gated: false,
          mode: "pipelineruns",
          workspaces: [pvc("src", "claim-a"), pvc("cache", "claim-b")],
        });
        const on = (n: V1Node) =>
          observe(run, {
            placeholders: [{ set: true, pod: { node: "node-a" } }],
            nodes: [n],
            troubleSince: { "node-a": NOW - 60_000 },
          });
        const notReady = decideRun(on(node("node-a", { notReadySince: NOW - 60_000 })));
        expect(types(notReady)).to.deep.equal(["cannotMigrate"]);
        expect(only(notReady, "cannotMigrate")[0]!.message).to.contain(
          "stands for claims claim-a (access modes unknown, taken as ReadWriteOnce), claim-b (access modes unknown",
        );
        const cordoned = decideRun(on(node("node-a", { cordoned: true })));
        expect(only(cordoned, "evict")[0]!.claimNames).to.deep.equal(["claim-a", "claim-b"]);
      });
    });

    describe("a NotReady node, by the access modes of the placeholder's claims", () => {
      // coscheduledClaims All: a ReadWriteMany claim has a placeholder of its own, as in Tekton.
      const notReadyFor = (run: PipelineRun, accessModes?: Record<string, string[]>) =>
        decideRun(
          observe(run, {
            spec: { coscheduledClaims: "All" },
            placeholders: [{ set: true, pod: { node: "node-a" } }],
            nodes: [node("node-a", { notReadySince: NOW - 60_000 })],
            troubleSince: { "node-a": NOW - 60_000 },
            ...(accessModes ? { accessModes } : {}),
          }),
        );
      const ws = managedRun({ gated: false, mode: "workspaces", workspaces: [pvc("src", "claim-a")] });

      it("moves a placeholder whose claim is ReadWriteMany (or ReadOnlyMany): two nodes may use it", () => {
        for (const mode of ["ReadWriteMany", "ReadOnlyMany"]) {
          const actions = notReadyFor(ws, { "claim-a": [mode] });
          expect(types(actions)).to.deep.equal(["evict"]);
          const evict = only(actions, "evict")[0]!;
          expect(evict.problem.reason).to.equal("NotReady");
          // Still checked for a volume pinned to the node; force-deleted, as nothing waits on its kubelet.
          expect(evict.claimNames).to.deep.equal(["claim-a"]);
          expect(evict.holdsSingleNodeClaim).to.equal(false);
        }
        const fromTemplate = managedRun({
          gated: false,
          mode: "workspaces",
          workspaces: [template("src", "data", ["ReadWriteMany"])],
        });
        // (The run is released and its set exists: its template claim is not asked for.)
        expect(types(notReadyFor(fromTemplate))).to.deep.equal(["evict"]);
      });

      it("keeps a placeholder whose claim is ReadWriteOnce: CannotMigrate, naming it", () => {
        const actions = notReadyFor(ws, { "claim-a": ["ReadWriteOnce"] });
        expect(types(actions)).to.deep.equal(["cannotMigrate"]);
        expect(only(actions, "cannotMigrate")[0]!.message).to.contain(
          "stands for claim claim-a (ReadWriteOnce), which may still be attached there",
        );
        const fromTemplate = managedRun({ gated: false, mode: "workspaces", workspaces: [template("src")] });
        expect(types(notReadyFor(fromTemplate))).to.deep.equal(["cannotMigrate"]);
        // Also when it allows more (RWO and ROX): the safe side.
        expect(types(notReadyFor(ws, { "claim-a": ["ReadWriteOnce", "ReadOnlyMany"] }))).to.deep.equal([
          "cannotMigrate",
        ]);
      });

      it("keeps a placeholder whose claim's access modes are unknown (PVC not found): taken as ReadWriteOnce", () => {
        const actions = notReadyFor(ws);
        expect(types(actions)).to.deep.equal(["cannotMigrate"]);
        expect(only(actions, "cannotMigrate")[0]!.message).to.contain(
          "claim-a (access modes unknown, taken as ReadWriteOnce)",
        );
      });

      it("keeps a placeholder that stands for a ReadWriteOncePod claim: a task may hold it there", () => {
        const actions = notReadyFor(ws, { "claim-a": ["ReadWriteOncePod"] });
        expect(types(actions)).to.deep.equal(["cannotMigrate"]);
        expect(only(actions, "cannotMigrate")[0]!.message).to.contain("claim-a (ReadWriteOncePod)");
      });

      it("in pipelineruns mode names only the claims that keep it, and moves it when none does", () => {
        const run = managedRun({
          gated: false,
          mode: "pipelineruns",
          workspaces: [pvc("shared", "rwx"), pvc("src", "rwo")],
        });
        const kept = notReadyFor(run, { rwx: ["ReadWriteMany"], rwo: ["ReadWriteOnce"] });
        expect(types(kept)).to.deep.equal(["cannotMigrate"]);
        const { message } = only(kept, "cannotMigrate")[0]!;
        expect(message).to.contain("stands for claim rwo (ReadWriteOnce), which");
        expect(message).to.not.contain("rwx");
        const moved = notReadyFor(run, { rwx: ["ReadWriteMany"], rwo: ["ReadOnlyMany"] });
        expect(types(moved)).to.deep.equal(["evict"]);
        expect(only(moved, "evict")[0]!.claimNames).to.deep.equal(["rwx", "rwo"]);
      });

      it("deletes a cordoned node's placeholder the normal way only while it mounts a ReadWriteOnce claim", () => {
        const cordonedWith = (accessModes?: Record<string, string[]>) =>
          only(
            decideRun(
              observe(ws, {
                spec: { coscheduledClaims: "All" },
                placeholders: [{ set: true, pod: { node: "node-a" } }],
                nodes: [node("node-a", { cordoned: true })],
                troubleSince: { "node-a": NOW - 60_000 },
                ...(accessModes ? { accessModes } : {}),
              }),
            ),
            "evict",
          )[0]!.holdsSingleNodeClaim;
        expect(cordonedWith()).to.equal(true);
        expect(cordonedWith({ "claim-a": ["ReadWriteOnce"] })).to.equal(true);
        expect(cordonedWith({ "claim-a": ["ReadWriteMany"] })).to.equal(false);
        // Not mounted: nothing of it for the kubelet to release.
        expect(cordonedWith({ "claim-a": ["ReadWriteOncePod"] })).to.equal(false);
      });
    });

    it("requeues after the soonest pending timer", () => {
      const ws = managedRun({
        gated: false,
        mode: "workspaces",
        workspaces: [pvc("a", "ca"), pvc("b", "cb")],
      });
      const obs = observe(ws, {
        placeholders: [
          { set: true, pod: { node: "node-a" } },
          { set: true, pod: { node: "node-b" } },
        ],
        nodes: [node("node-a", { cordoned: true }), node("node-b", { cordoned: true })],
        troubleSince: { "node-a": NOW - 7000, "node-b": NOW - 2000 },
      });
      expect(decideRun(obs)).to.deep.equal([{ type: "requeueAfter", ms: 3000 }]);
      obs.troubleSince = { "node-a": NOW - 2000, "node-b": NOW - 7000 };
      expect(decideRun(obs)).to.deep.equal([{ type: "requeueAfter", ms: 3000 }]);
    });

    it("leaves the requeue to the gate while the run is gated", () => {
      const gated = managedRun({ createdAgoMs: 2000 });
      const obs = observe(gated, {
        placeholders: [{ set: true, pod: { node: "node-a" } }],
        nodes: cordoned,
        troubleSince: { "node-a": NOW - 2000 },
      });
      expect(decideRun(obs)).to.deep.equal([]);
    });

    it("reports the arrival when the pod is on another node than the one it left", () => {
      const moved = decideRun(onA({}, { setAnnotations: { [EVICTED_FROM_ANNOTATION]: "node-old" } }));
      expect(moved.map((a) => (a.type === "reportArrival" ? [a.type, a.from, a.to] : a.type))).to.deep.equal([
        ["reportArrival", "node-old", "node-a"],
      ]);
      expect(decideRun(onA({}, { setAnnotations: { [EVICTED_FROM_ANNOTATION]: "node-a" } }))).to.deep.equal(
        [],
      );
      // Not before the new pod is scheduled.
      const pending = observe(r, {
        placeholders: [{ set: true, pod: {}, setAnnotations: { [EVICTED_FROM_ANNOTATION]: "node-old" } }],
      });
      expect(decideRun(pending)).to.deep.equal([]);
    });
  });

  describe("pinned volumes", () => {
    const claim = (volumeName?: string): V1PersistentVolumeClaim => ({
      metadata: { name: "claim-a" },
      spec: volumeName ? { volumeName } : {},
    });
    const pv = (...values: string[][]): V1PersistentVolume => ({
      metadata: { name: "pv-1" },
      spec: {
        nodeAffinity: {
          required: {
            nodeSelectorTerms: values.map((v) => ({
              matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: v }],
            })),
          },
        },
      },
    });

    it("pins a claim whose volume only this node can use", () => {
      expect(pinnedNode(claim("pv-1"), pv(["node-a"]), "node-a")).to.equal(
        "node node-a (PersistentVolume pv-1)",
      );
    });

    it("does not pin a volume that can follow, or lives elsewhere, or is not there", () => {
      expect(pinnedNode(claim("pv-1"), pv(["node-a", "node-b"]), "node-a")).to.equal(undefined);
      expect(pinnedNode(claim("pv-1"), pv(["node-a"], ["node-b"]), "node-a")).to.equal(undefined);
      expect(pinnedNode(claim("pv-1"), pv(["node-b"]), "node-a")).to.equal(undefined);
      expect(pinnedNode(claim("pv-1"), { metadata: { name: "pv-1" }, spec: {} }, "node-a")).to.equal(
        undefined,
      );
      expect(pinnedNode(claim(), pv(["node-a"]), "node-a")).to.equal(undefined);
      expect(pinnedNode(claim("pv-1"), undefined, "node-a")).to.equal(undefined);
      expect(pinnedNode(undefined, pv(["node-a"]), "node-a")).to.equal(undefined);
    });

    it("turns an evict into CannotMigrate naming the volume", () => {
      const ws = managedRun({ gated: false, mode: "workspaces", workspaces: [pvc("src", "claim-a")] });
      const obs = observe(ws, {
        placeholders: [{ set: true, pod: { node: "node-a" } }],
        nodes: [node("node-a", { cordoned: true })],
        troubleSince: { "node-a": NOW - SETTLE },
      });
      const evict = only(decideRun(obs), "evict")[0]!;
      expect(pinnedCannotMigrate(evict, "claim-a", "node node-a (PersistentVolume pv-1)")).to.deep.equal({
        type: "cannotMigrate",
        message: `node node-a is cordoned, but placeholder ${evict.plan} cannot move: its volume claim-a is bound to node node-a (PersistentVolume pv-1); the run's remaining tasks wait until the node is usable again`,
      });
    });
  });

  describe("a priority class the operator does not allow", () => {
    it("is left off the placeholder, and the run says so once, when the placeholder is created", () => {
      const r = managedRun();
      r.spec.taskRunTemplate = {
        podTemplate: { priorityClassName: "high" },
      } as PipelineRun["spec"]["taskRunTemplate"];
      const actions = decideRun(observe(r));
      expect(types(actions)).to.deep.equal(["createPlaceholder", "priorityClassIgnored"]);
      expect(only(actions, "createPlaceholder")[0]!.set.spec!.template.spec!.priorityClassName).to.equal(
        undefined,
      );
      expect(only(actions, "priorityClassIgnored")[0]!.message).to.contain(
        'priorityClassName "high" is not allowed',
      );
      // Allowed: used, nothing said.
      const allowed = {
        ...observe(r),
        options: { ...OPTIONS, limits: { ...DEFAULT_TENANCY_LIMITS, allowedPriorityClasses: ["high"] } },
      };
      const ok = decideRun(allowed);
      expect(types(ok)).to.deep.equal(["createPlaceholder"]);
      expect(only(ok, "createPlaceholder")[0]!.set.spec!.template.spec!.priorityClassName).to.equal("high");
      // Once the placeholder exists, nothing more is said.
      expect(types(decideRun(observe(r, { placeholders: [{ set: true }] })))).to.not.include(
        "priorityClassIgnored",
      );
    });
  });

  describe("reserve: LargestTask", () => {
    const RESERVE = { reservation: { task: "build", requests: { cpuMillis: 2000, memoryBytes: 2 ** 30 } } };
    const reserving = (r: PipelineRun, w: World = {}, extra: Partial<RunObservation> = {}) => {
      const obs = observe(r, {
        ...w,
        spec: { reserve: "LargestTask", ...w.spec } as Partial<AffinityPolicySpec>,
      });
      return { ...obs, ...extra };
    };
    /** The plan's reservation as the caches would hold it: its set, and its pod (scheduled or not). */
    const withReservation = (
      obs: RunObservation,
      podNode?: string,
      unschedulable?: string,
    ): RunObservation => {
      const p = obs.placeholders[0]!;
      const set = reservationStatefulSet(obs.run, obs.spec!, p.plan, RESERVE.reservation, {
        limits: DEFAULT_TENANCY_LIMITS,
      });
      set.metadata = { ...set.metadata, uid: "reservation-uid" };
      const reservationPod = {
        ...pod(p.plan, { node: podNode, unschedulable }, "reservation-uid"),
        metadata: {
          name: `${reservationName(p.plan)}-0`,
          uid: "reservation-pod",
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "StatefulSet",
              name: "x",
              uid: "reservation-uid",
              controller: true,
            },
          ],
        },
      };
      return {
        ...obs,
        placeholders: [{ ...p, reservation: { set, pod: reservationPod, failedCreates: [] } }],
      };
    };

    it("creates the reservation first, sized to the largest task, and no placeholder until it holds a node", () => {
      const actions = decideRun(reserving(managedRun(), {}, { reserve: RESERVE }));
      expect(types(actions)).to.deep.equal(["createReservation"]);
      const set = only(actions, "createReservation")[0]!.set;
      const pod = set.spec!.template.spec!;
      expect(pod.priorityClassName).to.equal("tekton-affinity-reservation");
      expect(pod.containers[0]!.resources?.requests).to.deep.equal({ cpu: "2000m", memory: String(2 ** 30) });
      expect(set.metadata?.annotations?.["affinity.tekton.dev/reserved-for"]).to.equal(
        "build: cpu 2, memory 1Gi",
      );
    });

    it("isolated, the reservation refuses the nodes its placeholder will refuse", () => {
      const r = managedRun({ mode: "isolate-pipelinerun" });
      const set = only(decideRun(reserving(r, {}, { reserve: RESERVE })), "createReservation")[0]!.set;
      const anti =
        set.spec!.template.spec!.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
      expect(anti?.[0]?.labelSelector?.matchLabels).to.deep.equal({
        "app.kubernetes.io/component": "affinity-placeholder",
      });
      const shared = managedRun();
      const plain = only(decideRun(reserving(shared, {}, { reserve: RESERVE })), "createReservation")[0]!.set;
      expect(plain.spec!.template.spec!.affinity?.podAntiAffinity).to.equal(undefined);
    });

    it("while the reservation finds no room, the run waits and says which task needs how much", () => {
      const obs = withReservation(
        reserving(managedRun()),
        undefined,
        "0/3 nodes are available: 3 Insufficient cpu.",
      );
      expect(decideRun(obs)).to.deep.equal([]);
      const gate = decideGate(obs, undefined);
      const waiting = only(gate, "setWaiting")[0]!.reason;
      expect(waiting).to.equal(
        "no node has room for the run's largest task (build: cpu 2, memory 1Gi): Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
      );
    });

    it("once the reservation holds a node, creates the placeholder beside it", () => {
      const actions = decideRun(withReservation(reserving(managedRun()), "node-b"));
      expect(types(actions)).to.deep.equal(["createPlaceholder"]);
      const pod = only(actions, "createPlaceholder")[0]!.set.spec!.template;
      const plan = planPlaceholders(managedRun(), "pipelineruns")[0]!;
      expect(pod.metadata?.labels?.["affinity.tekton.dev/reservation"]).to.equal(plan.name);
      expect(pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.deep.equal([
        {
          labelSelector: { matchLabels: { "affinity.tekton.dev/reservation": plan.name } },
          topologyKey: "kubernetes.io/hostname",
        },
      ]);
    });

    it("tasks it cannot resolve: no reservation, the placeholder at once, and a warning", () => {
      const why = "taskRef resolver git: reserve: LargestTask falls back to None for this run";
      const actions = decideRun(reserving(managedRun(), {}, { reserve: { unresolvable: why } }));
      expect(types(actions)).to.deep.equal(["createPlaceholder", "reserveUnresolved"]);
      expect(only(actions, "reserveUnresolved")[0]!.message).to.equal(why);
      const pod = only(actions, "createPlaceholder")[0]!.set.spec!.template;
      expect(pod.spec?.affinity?.podAffinity).to.equal(undefined);
    });

    it("moving the placeholder off a node takes its reservation pod along", () => {
      const r = managedRun({ gated: false });
      const obs = withReservation(
        reserving(r, {
          placeholders: [{ set: true, pod: { node: "node-a" } }],
          nodes: [node("node-a", { cordoned: true })],
          troubleSince: { "node-a": NOW - SETTLE },
        }),
        "node-a",
      );
      const evict = only(decideRun(obs), "evict")[0]!;
      expect(evict.reservationPod?.metadata?.name).to.equal(
        `${reservationName(obs.placeholders[0]!.plan)}-0`,
      );
    });
  });

  describe("a finished run", () => {
    const finished = (mode: Mode, annotations: Record<string, string> = {}) =>
      managedRun({
        mode,
        done: true,
        workspaces: [template("cache", "cache"), pvc("src", "user-pvc")],
        annotations,
      });

    it("is cleaned up once: placeholders and, in pipelineruns mode, its template claims", () => {
      const actions = decideRun(observe(finished("pipelineruns"), { placeholders: [{ set: true }] }));
      expect(actions).to.deep.equal([{ type: "cleanUp", claims: [tektonClaimName("cache", "cache", UID)] }]);
      expect(decideGate(observe(finished("pipelineruns")), undefined)).to.deep.equal([]);
    });

    it("keeps template claims in workspaces mode unless tekton.dev/auto-cleanup-pvc is exactly true", () => {
      expect(decideRun(observe(finished("workspaces")))).to.deep.equal([{ type: "cleanUp", claims: [] }]);
      expect(
        decideRun(observe(finished("workspaces", { [AUTO_CLEANUP_PVC_ANNOTATION]: "True" }))),
      ).to.deep.equal([{ type: "cleanUp", claims: [] }]);
      expect(
        decideRun(observe(finished("workspaces", { [AUTO_CLEANUP_PVC_ANNOTATION]: "true" }))),
      ).to.deep.equal([{ type: "cleanUp", claims: [tektonClaimName("cache", "cache", UID)] }]);
    });

    it("needs nothing more once marked cleaned up", () => {
      const r = finished("pipelineruns", { [CLEANED_UP_ANNOTATION]: "true" });
      const obs = observe(r, { placeholders: [{ set: true, pod: { node: "node-a" } }] });
      expect(decideRun(obs)).to.deep.equal([]);
      expect(decideGate(obs, undefined)).to.deep.equal([]);
    });

    it("is done only once Succeeded is True or False, not Unknown", () => {
      const running = managedRun({ gated: false });
      running.status = { conditions: [{ type: "Succeeded", status: "Unknown" }] };
      expect(types(decideRun(observe(running)))).to.deep.equal(["createPlaceholder"]);
    });
  });

  it("never reads the clock: time comes from the observation", () => {
    const realNow = Date.now;
    Date.now = () => {
      throw new Error("Date.now() called in a decision");
    };
    try {
      const r = managedRun({ createdAgoMs: 20_000 });
      const obs = observe(r, {
        placeholders: [{ set: true, pod: { node: "node-a" } }],
        nodes: [node("node-a", { notReadySince: NOW - 5000 })],
      });
      decideRun(obs);
      decideGate(obs, undefined);
      // A set without a creation time counts as created now.
      const young = observe(r, { placeholders: [{ set: true }] });
      delete young.placeholders[0]!.set!.metadata!.creationTimestamp;
      expect(decideGate(young, undefined)).to.deep.equal([{ type: "requeueAfter", ms: 5000 }]);
    } finally {
      Date.now = realNow;
    }
  });
});

// ---- the executor, against a fake API: the answers only the apiserver has ----

describe("PipelineRunReconciler executing the decisions", () => {
  type Call = [string, unknown];
  const apiError = (code: number, message = "denied") =>
    Object.assign(new Error(message), { code, body: JSON.stringify({ message }) });

  function harness(
    r: PipelineRun,
    world: World,
    answers: Record<string, (arg: unknown) => unknown> = {},
    nodeTracker = new NodeTracker(),
  ) {
    // The executor reads the real clock: a run created just now.
    r.metadata.creationTimestamp = new Date().toISOString();
    const obs = observe(r, world);
    const calls: Call[] = [];
    const events: [string, string][] = [];
    const written: PipelineRun[] = [];
    const api = (name: string) => async (arg: unknown) => {
      calls.push([name, arg]);
      const answer = answers[name];
      if (answer) return answer(arg);
      return name === "patchNamespacedCustomObject"
        ? { ...r, metadata: { ...r.metadata, resourceVersion: "43" } }
        : {};
    };
    const client = new Proxy({}, { get: (_, name) => api(String(name)) });
    const cache = <T>(items: (T | undefined)[], key: (o: T) => string | undefined) => ({
      get: (name: string) => items.find((o) => o && key(o) === name),
      list: () => items.filter(Boolean),
    });
    const meta = (o: { metadata?: { name?: string } }) => o.metadata?.name;
    const caches = {
      runs: cache([r], meta),
      // The run's policy ("default"), when the world gives it settings.
      policies: cache(
        world.spec ? [{ metadata: { name: "default" }, spec: { mode: "pipelineruns", ...world.spec } }] : [],
        meta,
      ),
      placeholderSets: cache(
        obs.placeholders.map((p) => p.set),
        meta,
      ),
      placeholderPods: cache(
        obs.placeholders.map((p) => p.pod),
        meta,
      ),
      nodes: cache(Object.values(obs.nodes), meta),
      namespaces: cache([], meta),
      failedCreates: cache([], meta),
    } as unknown as Caches;
    const counter = (name: string) => ({ inc: (labels: unknown) => calls.push([`metric:${name}`, labels]) });
    const reconciler = new PipelineRunReconciler({
      clients: { core: client, apps: client, custom: client } as unknown as KubeClients,
      caches,
      events: {
        record: async (_t: unknown, _type: string, reason: string, message: string) => {
          events.push([reason, message]);
        },
      } as unknown as EventRecorder,
      metrics: {
        placeholderRefused: counter("placeholderRefused"),
        maxWaitExceeded: counter("maxWaitExceeded"),
        evictions: counter("evictions"),
        placementLatency: { observe: () => undefined },
      } as unknown as Metrics,
      logger: pino({ level: "silent" }),
      clusterDefault: { mode: "pipelineruns" },
      nodeTracker,
      tektonFlags: { conflict: () => undefined } as unknown as TektonFlags,
      onRunWritten: (run) => written.push(run),
    });
    return { reconcile: () => reconciler.reconcile("team-a", "build-1"), calls, events, written };
  }

  const names = (calls: Call[]) => calls.map(([name]) => name);

  it("shows a refused claim on the run in the same reconcile, and does not create its placeholder", async () => {
    const r = managedRun({ mode: "workspaces", workspaces: [template("cache")] });
    const h = harness(
      r,
      {},
      {
        createNamespacedPersistentVolumeClaim: () => {
          throw apiError(403, "exceeded quota: storage");
        },
        readNamespacedPersistentVolumeClaim: () => {
          throw apiError(404);
        },
      },
    );
    const result = await h.reconcile();
    expect(names(h.calls)).to.deep.equal([
      "createNamespacedPersistentVolumeClaim",
      "readNamespacedPersistentVolumeClaim",
      "metric:placeholderRefused",
      "patchNamespacedCustomObject",
    ]);
    const claim = tektonClaimName("data", "cache", UID);
    const reason = `placeholder ${planNames(r, "workspaces")[0]} cannot be created: PersistentVolumeClaim ${claim} was refused: exceeded quota: storage`;
    const patch = h.calls[3]![1] as { body: { metadata: { annotations: object; resourceVersion: string } } };
    expect(patch.body.metadata).to.deep.equal({
      annotations: { [WAITING_ANNOTATION]: reason },
      resourceVersion: "42",
    });
    expect(h.events).to.deep.equal([["Waiting", reason]]);
    expect(h.written.map((w) => w.metadata.resourceVersion)).to.deep.equal(["43"]);
    expect(result).to.deep.equal({ requeueAfterMs: 1000 });
  });

  it("still creates the other placeholders after one was refused, and shows the first refusal", async () => {
    const r = managedRun({
      mode: "workspaces",
      workspaces: [template("a", "first"), template("b", "second")],
    });
    const [first, second] = planNames(r, "workspaces");
    const claimA = tektonClaimName("first", "a", UID);
    const h = harness(
      r,
      {},
      {
        createNamespacedPersistentVolumeClaim: (arg) => {
          const name = (arg as { body: V1PersistentVolumeClaim }).body.metadata?.name;
          if (name === claimA) throw apiError(403, "quota");
          return {};
        },
        readNamespacedPersistentVolumeClaim: () => {
          throw apiError(404);
        },
        createNamespacedStatefulSet: () => {
          throw apiError(403, "pods quota");
        },
        readNamespacedStatefulSet: () => {
          throw apiError(404);
        },
      },
    );
    await h.reconcile();
    const created = h.calls.flatMap(([name, arg]) =>
      name.startsWith("create") ? [(arg as { body: { metadata: { name: string } } }).body.metadata.name] : [],
    );
    // The first placeholder's claim was refused: that placeholder is not created; the second one is tried.
    expect(created).to.deep.equal([claimA, tektonClaimName("second", "b", UID), second]);
    expect(h.events).to.deep.equal([
      [
        "Waiting",
        `placeholder ${first} cannot be created: PersistentVolumeClaim ${claimA} was refused: quota`,
      ],
    ]);
  });

  it("sends no claim POST while a released run's placeholder set exists", async () => {
    const r = managedRun({ gated: false, mode: "workspaces", workspaces: [template("cache")] });
    const h = harness(r, { placeholders: [{ set: true, pod: { node: "node-a" } }] });
    expect(await h.reconcile()).to.deep.equal({});
    expect(names(h.calls)).to.deep.equal([]);
    // Its set gone (deleted): the claim is asked for again before the set is made anew.
    const gone = harness(r, {});
    await gone.reconcile();
    expect(names(gone.calls)).to.deep.equal([
      "createNamespacedPersistentVolumeClaim",
      "createNamespacedStatefulSet",
    ]);
  });

  it("takes a refused create of a set the cache had not seen yet as done", async () => {
    const r = managedRun();
    const h = harness(
      r,
      {},
      {
        createNamespacedStatefulSet: () => {
          throw apiError(403, "exceeded quota: pods");
        },
      },
    );
    expect(await h.reconcile()).to.deep.equal({ requeueAfterMs: 1000 });
    expect(names(h.calls)).to.deep.equal(["createNamespacedStatefulSet", "readNamespacedStatefulSet"]);
    expect(h.events).to.deep.equal([]);
  });

  it("reports CannotMigrate instead of evicting when the claim's volume is pinned to the node", async () => {
    const r = managedRun({ gated: false, mode: "workspaces", workspaces: [pvc("src", "claim-a")] });
    const world: World = {
      placeholders: [{ set: true, pod: { node: "node-a" } }],
      nodes: [node("node-a", { cordoned: true })],
    };
    // Cordoned for longer than the settle period, as this replica's node watch saw it.
    const tracker = new NodeTracker();
    tracker.observe(node("node-a", { cordoned: true }), Date.now() - 60_000);
    const pv: V1PersistentVolume = {
      metadata: { name: "pv-1" },
      spec: {
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: "h", operator: "In", values: ["node-a"] }] }],
          },
        },
      },
    };
    const h = harness(
      r,
      world,
      {
        readNamespacedPersistentVolumeClaim: () => ({
          metadata: { name: "claim-a" },
          spec: { volumeName: "pv-1" },
        }),
        readPersistentVolume: () => pv,
      },
      tracker,
    );
    expect(await h.reconcile()).to.deep.equal({});
    expect(names(h.calls)).to.deep.equal(["readNamespacedPersistentVolumeClaim", "readPersistentVolume"]);
    expect(h.events.map(([reason]) => reason)).to.deep.equal(["CannotMigrate"]);
    expect(h.events[0]![1]).to.contain("its volume claim-a is bound to node node-a (PersistentVolume pv-1)");

    // Not pinned (a zonal volume): the pod is deleted, after the set records where it came from.
    const zonal = harness(
      r,
      world,
      {
        readNamespacedPersistentVolumeClaim: () => ({
          metadata: { name: "claim-a" },
          spec: { volumeName: "pv-2" },
        }),
        readPersistentVolume: () => ({ spec: {} }),
      },
      tracker,
    );
    await zonal.reconcile();
    expect(names(zonal.calls)).to.deep.equal([
      "readNamespacedPersistentVolumeClaim",
      "readPersistentVolume",
      "patchNamespacedStatefulSet",
      "deleteNamespacedPod",
      "metric:evictions",
    ]);
    const del = zonal.calls[3]![1] as {
      body: { preconditions: { uid: string }; gracePeriodSeconds?: number };
    };
    // It holds a claim: deleted the normal way, not forced.
    expect(del.body).to.deep.equal({ preconditions: { uid: `pod-of-${planNames(r, "workspaces")[0]}` } });
    expect(zonal.events.map(([reason]) => reason)).to.deep.equal(["Migrating"]);
  });

  it("force-deletes a placeholder whose node object is gone, claim or not: no kubelet is left to confirm", async () => {
    const r = managedRun({ gated: false, mode: "workspaces", workspaces: [pvc("src", "claim-a")] });
    // node-a is not in the cache: deleted.
    const world: World = { placeholders: [{ set: true, pod: { node: "node-a" } }], nodes: [] };
    // It went bad (then away) longer ago than the settle period, as this replica's node watch saw it.
    const tracker = new NodeTracker();
    tracker.observe(node("node-a", { cordoned: true }), Date.now() - 60_000);
    const h = harness(r, world, { readNamespacedPersistentVolumeClaim: () => ({ spec: {} }) }, tracker);
    await h.reconcile();
    const del = h.calls.find(([n]) => n === "deleteNamespacedPod")?.[1] as
      | { body: { gracePeriodSeconds?: number } }
      | undefined;
    expect(del, "the pod was deleted").to.not.equal(undefined);
    expect(del!.body.gracePeriodSeconds).to.equal(0);
  });

  it("reads the user PVCs' access modes: a ReadWriteOncePod one is not mounted, and said so once", async () => {
    const r = managedRun({ workspaces: [pvc("src", "shared"), pvc("solo", "solo-pvc")] });
    const claims: Record<string, V1PersistentVolumeClaim> = {
      shared: { metadata: { name: "shared" }, spec: { accessModes: ["ReadWriteOnce"] } },
      "solo-pvc": { metadata: { name: "solo-pvc" }, spec: { accessModes: ["ReadWriteOncePod"] } },
    };
    const read = (arg: unknown) => claims[(arg as { name: string }).name];
    const h = harness(r, {}, { readNamespacedPersistentVolumeClaim: read });
    await h.reconcile();
    expect(names(h.calls)).to.deep.equal([
      "readNamespacedPersistentVolumeClaim",
      "readNamespacedPersistentVolumeClaim",
      "createNamespacedStatefulSet",
    ]);
    const set = (h.calls[2]![1] as { body: V1StatefulSet }).body;
    expect(set.spec?.template.spec?.volumes?.map((v) => v.persistentVolumeClaim?.claimName)).to.deep.equal([
      "shared",
    ]);
    expect(h.events.map(([reason]) => reason)).to.deep.equal(["ClaimNotMounted"]);
    expect(h.events[0]![1]).to.contain("does not mount claim solo-pvc because it is ReadWriteOncePod");

    // A set that already existed (the cache had not seen it yet): no second event.
    const again = harness(
      r,
      {},
      {
        readNamespacedPersistentVolumeClaim: read,
        createNamespacedStatefulSet: () => {
          throw apiError(409, "already exists");
        },
      },
    );
    await again.reconcile();
    expect(again.events).to.deep.equal([]);
  });

  it("reports a placeholder's arrival, and fails the job on a conflict so that a retry reports it", async () => {
    const r = managedRun({ gated: false });
    const world: World = {
      placeholders: [
        { set: true, pod: { node: "node-a" }, setAnnotations: { [EVICTED_FROM_ANNOTATION]: "node-old" } },
      ],
    };
    const ok = harness(r, world);
    await ok.reconcile();
    expect(names(ok.calls)).to.include("patchNamespacedStatefulSet");
    expect(ok.events.map(([reason]) => reason)).to.deep.equal(["Migrated"]);
    // The set changed since the cache saw it (its controller writes status): no event, and the job fails
    // for a retry, rather than waiting for a next event that may never come.
    const stale = harness(r, world, {
      patchNamespacedStatefulSet: () => {
        throw apiError(409, "the object has been modified");
      },
    });
    let failed: unknown;
    await stale.reconcile().catch((err: unknown) => {
      failed = err;
    });
    expect((failed as { code?: number } | undefined)?.code).to.equal(409);
    expect(stale.events).to.deep.equal([]);
  });

  it("makes no reservation for a run with its own required pod affinity, and says why", async () => {
    const r = managedRun();
    const beside = {
      labelSelector: { matchLabels: { app: "cache" } },
      topologyKey: "kubernetes.io/hostname",
    };
    r.spec.taskRunTemplate = {
      podTemplate: {
        affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [beside] } },
      },
    };
    const h = harness(r, { spec: { reserve: "LargestTask" } });
    await h.reconcile();
    const created = h.calls.filter(([n]) => n === "createNamespacedStatefulSet");
    // The placeholder only: a reservation and the run's target cannot both be required beside it.
    expect(created).to.have.length(1);
    const set = created[0]![1] as { body: V1StatefulSet };
    expect(set.body.metadata?.labels?.["app.kubernetes.io/component"]).to.equal("affinity-placeholder");
    const [reason, message] = h.events.find(([reason]) => reason === "ReserveUnresolved") ?? [];
    expect(reason).to.equal("ReserveUnresolved");
    expect(message).to.contain("required pod affinity of their own");
  });

  it("reads no PVC for a run that is not active, nor for template claims", async () => {
    // The control: an active run binding a user PVC reads it (its access mode decides the placeholder).
    const active = harness(managedRun({ workspaces: [pvc("src", "shared")] }), {});
    await active.reconcile();
    expect(names(active.calls)).to.include("readNamespacedPersistentVolumeClaim");
    const done = harness(managedRun({ gated: false, done: true, workspaces: [pvc("src", "shared")] }), {});
    await done.reconcile();
    expect(names(done.calls)).to.not.include("readNamespacedPersistentVolumeClaim");
    expect(names(done.calls), "the done run was cleaned up").to.include("patchNamespacedCustomObject");
    const templ = harness(managedRun({ workspaces: [template("src")] }), {});
    await templ.reconcile();
    expect(names(templ.calls)).to.not.include("readNamespacedPersistentVolumeClaim");
    expect(names(templ.calls), "the template run got its placeholder").to.include(
      "createNamespacedStatefulSet",
    );
  });

  it("moves a ReadWriteMany placeholder off a NotReady node, force-deleting its pod", async () => {
    const r = managedRun({ gated: false, mode: "workspaces", workspaces: [pvc("src", "claim-a")] });
    const notReady = node("node-a", { notReadySince: Date.now() - 120_000 });
    const world: World = {
      spec: { coscheduledClaims: "All" },
      placeholders: [{ set: true, pod: { node: "node-a" } }],
      nodes: [notReady],
    };
    const tracker = new NodeTracker();
    tracker.observe(notReady, Date.now() - 120_000);
    const h = harness(
      r,
      world,
      {
        readNamespacedPersistentVolumeClaim: () => ({
          metadata: { name: "claim-a" },
          spec: { accessModes: ["ReadWriteMany"], volumeName: "pv-nfs" },
        }),
        readPersistentVolume: () => ({ spec: {} }),
      },
      tracker,
    );
    await h.reconcile();
    // The claim is read once (observe), then its PV for the pinned-volume check.
    expect(names(h.calls)).to.deep.equal([
      "readNamespacedPersistentVolumeClaim",
      "readPersistentVolume",
      "patchNamespacedStatefulSet",
      "deleteNamespacedPod",
      "metric:evictions",
    ]);
    const del = h.calls[3]![1] as { body: { gracePeriodSeconds?: number } };
    // Its kubelet may never answer; two nodes may use the volume anyway.
    expect(del.body.gracePeriodSeconds).to.equal(0);
    expect(h.events.map(([reason]) => reason)).to.deep.equal(["Migrating"]);

    // The same claim as ReadWriteOnce: CannotMigrate, nothing deleted.
    const rwo = harness(
      r,
      world,
      {
        readNamespacedPersistentVolumeClaim: () => ({
          metadata: { name: "claim-a" },
          spec: { accessModes: ["ReadWriteOnce"] },
        }),
      },
      tracker,
    );
    await rwo.reconcile();
    expect(names(rwo.calls)).to.deep.equal(["readNamespacedPersistentVolumeClaim"]);
    expect(rwo.events.map(([reason]) => reason)).to.deep.equal(["CannotMigrate"]);
  });
});
