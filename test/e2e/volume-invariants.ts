// The volume invariant every e2e test is checked against at its end (hooks.ts), from what the cluster
// showed while the test ran, watched independently of the controller and of the harness's attach model:
//
//  1. No two pods using one ReadWriteOnce claim were ever running on two nodes at the same time.
//  2. No task pod stayed stuck on attach: no FailedAttachVolume (Multi-Attach) wait of a task pod lasted
//     STUCK_MS or more.
//
// Running spans are ordered by the pod watch's event sequence (one watch delivers events in
// resourceVersion order), so "at the same time" does not depend on clocks.

import * as k8s from "@kubernetes/client-node";

/** A task pod waiting this long for its volume is stuck: a run tolerates a short Multi-Attach wait
 * (e.g. the next task starting while the previous one's pod is still finishing), not a long one. */
export const STUCK_MS = 15_000;
const TASK_RUN_LABEL = "tekton.dev/taskRun";

export interface Violation {
  kind: "TwoNodes" | "StuckOnAttach";
  /** The same violation seen again has the same id. */
  id: string;
  namespace: string;
  message: string;
  /** Wall-clock time the violation was observed (for attributing it to a test). */
  at: number;
}

interface Span {
  namespace: string;
  pod: string;
  node: string;
  startSeq: number;
  endSeq?: number;
  startAt: number;
}

interface AttachWait {
  namespace: string;
  pod: string;
  uid: string;
  first: number;
  last: number;
  message: string;
}

export class VolumeInvariants {
  private seq = 0;
  /** Running spans of pods that mount a claim, open or closed, per claim (namespace/name). */
  private readonly byClaim = new Map<string, Span[]>();
  /** Open spans by pod uid. */
  private readonly spans = new Map<string, Span>();
  /** Pods that ever ran. */
  private readonly started = new Set<string>();
  private readonly singleNodeClaims = new Map<string, boolean>();
  private readonly taskPods = new Set<string>();
  private readonly waits = new Map<string, AttachWait>();
  private readonly watches: k8s.ListWatch<k8s.KubernetesObject>[] = [];

  constructor(private readonly kc: k8s.KubeConfig) {}

  async start(): Promise<void> {
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const claims = this.listWatch<k8s.V1PersistentVolumeClaim>("/api/v1/persistentvolumeclaims", () =>
      core.listPersistentVolumeClaimForAllNamespaces(),
    );
    const onClaim = (c: k8s.V1PersistentVolumeClaim) => {
      const modes = c.spec?.accessModes ?? [];
      this.singleNodeClaims.set(
        `${c.metadata?.namespace}/${c.metadata?.name}`,
        !modes.includes("ReadWriteMany") && !modes.includes("ReadOnlyMany"),
      );
    };
    claims.on("add", onClaim);
    claims.on("update", onClaim);

    const pods = this.listWatch<k8s.V1Pod>("/api/v1/pods", () => core.listPodForAllNamespaces());
    pods.on("add", (p) => this.onPod(p, false));
    pods.on("update", (p) => this.onPod(p, false));
    pods.on("delete", (p) => this.onPod(p, true));

    const events = this.listWatch<k8s.CoreV1Event>(
      "/api/v1/events",
      () => core.listEventForAllNamespaces({ fieldSelector: "reason=FailedAttachVolume" }),
      "reason=FailedAttachVolume",
    );
    events.on("add", (e) => this.onAttachEvent(e));
    events.on("update", (e) => this.onAttachEvent(e));

    for (const w of [claims, pods, events]) await w.start();
  }

  stop(): void {
    for (const w of this.watches) void w.stop();
  }

  private listWatch<T extends k8s.KubernetesObject>(
    path: string,
    list: () => Promise<k8s.KubernetesListObject<T>>,
    fieldSelector?: string,
  ): k8s.ListWatch<T> {
    const w = new k8s.ListWatch<T>(path, new k8s.Watch(this.kc), list, false, undefined, fieldSelector);
    w.on("error", () => setTimeout(() => void w.start().catch(() => undefined), 1000));
    this.watches.push(w as unknown as k8s.ListWatch<k8s.KubernetesObject>);
    return w;
  }

  private onPod(p: k8s.V1Pod, deleted: boolean): void {
    const uid = p.metadata?.uid ?? "";
    if (p.metadata?.labels?.[TASK_RUN_LABEL]) this.taskPods.add(uid);
    const running = !deleted && p.status?.phase === "Running";
    const open = this.spans.get(uid);
    if (running && !open && p.spec?.nodeName) {
      const claims = (p.spec.volumes ?? []).flatMap((v) =>
        v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : [],
      );
      if (claims.length === 0) return;
      const namespace = p.metadata?.namespace ?? "";
      const span: Span = {
        namespace,
        pod: p.metadata?.name ?? "",
        node: p.spec.nodeName,
        startSeq: ++this.seq,
        startAt: Date.now(),
      };
      this.spans.set(uid, span);
      this.started.add(uid);
      for (const c of claims) {
        const key = `${namespace}/${c}`;
        this.byClaim.set(key, [...(this.byClaim.get(key) ?? []), span]);
      }
    } else if (!running && open) {
      open.endSeq = ++this.seq;
      this.spans.delete(uid);
    }
  }

  private onAttachEvent(e: k8s.CoreV1Event): void {
    const uid = e.involvedObject.uid ?? "";
    if (e.involvedObject.kind !== "Pod" || !uid) return;
    const first = new Date(e.firstTimestamp ?? e.eventTime ?? Date.now()).getTime();
    const last = new Date(e.lastTimestamp ?? e.firstTimestamp ?? Date.now()).getTime();
    const known = this.waits.get(uid);
    this.waits.set(uid, {
      namespace: e.involvedObject.namespace ?? "",
      pod: e.involvedObject.name ?? "",
      uid,
      first: Math.min(first, known?.first ?? first),
      last: Math.max(last, known?.last ?? last),
      message: e.message ?? "",
    });
  }

  /** Namespaces whose violations a test provokes on purpose (and asserts itself). */
  private readonly exempt = new Set<string>();

  /** Leaves `namespace` out of the end-of-test check: the test asserts its violations itself. */
  provokedIn(namespace: string): void {
    this.exempt.add(namespace);
  }

  /** The violations observed since `since` (ms since the epoch): in `namespaces`, or in every
   * namespace no test provoked them in on purpose. */
  violations(since: number, namespaces?: string[]): Violation[] {
    const inScope = (ns: string) => (namespaces ? namespaces.includes(ns) : !this.exempt.has(ns));
    const found: Violation[] = [];
    for (const [claim, spans] of this.byClaim) {
      if (!inScope(spans[0]!.namespace) || this.singleNodeClaims.get(claim) === false) continue;
      for (let j = 0; j < spans.length; j++) {
        const b = spans[j]!;
        if (b.startAt < since) continue;
        const a = spans
          .slice(0, j)
          .find((x) => x.node !== b.node && (x.endSeq === undefined || x.endSeq > b.startSeq));
        if (!a) continue;
        found.push({
          kind: "TwoNodes",
          id: `TwoNodes/${claim}/${a.pod}/${b.pod}`,
          namespace: b.namespace,
          at: b.startAt,
          message: `ReadWriteOnce claim ${claim} was in use on two nodes at once: pod ${a.pod} on ${a.node} and pod ${b.pod} on ${b.node}`,
        });
      }
    }
    const now = Date.now();
    for (const w of this.waits.values()) {
      if (!inScope(w.namespace) || !this.taskPods.has(w.uid)) continue;
      const end = !this.started.has(w.uid) && this.waitStillOpen(w) ? now : w.last;
      if (end - w.first < STUCK_MS || end < since) continue;
      found.push({
        kind: "StuckOnAttach",
        id: `StuckOnAttach/${w.uid}`,
        namespace: w.namespace,
        at: w.first,
        message: `task pod ${w.namespace}/${w.pod} waited ${Math.round((end - w.first) / 1000)} s for its volume: ${w.message}`,
      });
    }
    return found;
  }

  /** A wait whose last event is recent is still going on (the attach model repeats it every 2 s). */
  private waitStillOpen(w: AttachWait): boolean {
    return Date.now() - w.last < 5_000;
  }
}
