// AffinityPolicy reconciler: status that explains itself in `kubectl get` and `kubectl describe`.
//   Ready        False when the spec is invalid or Tekton's own affinity assistant would fight ours.
//   Overlapping  True when another policy can select the same runs; says which one wins.
//   activeRuns   runs this policy manages that have not finished.

import type { CoreV1Api } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { GROUP, PLURAL, POLICY_ANNOTATION, VERSION } from "../api/constants.js";
import { overlapReport } from "../api/resolve.js";
import { DEFAULT_TENANCY_LIMITS, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicy, AffinityPolicyStatus, Condition } from "../api/types.js";
import { isNotFound, type KubeClients, mergePatch } from "../kube/clients.js";
import type { EventRecorder } from "../kube/events.js";
import type { Caches } from "../kube/informers.js";
import type { TektonFlags } from "../kube/tekton-flags.js";
import { policyErrors } from "../webhooks/policies.js";
import { isDone } from "./pipelinerun.js";

export interface PolicyReconcilerOptions {
  clients: KubeClients;
  caches: Caches;
  logger: Logger;
  tektonFlags: TektonFlags;
  tenancy?: TenancyLimits;
  /** Records a Warning event on the policy when it becomes not Ready (kubectl describe shows why). */
  events?: EventRecorder;
}

/** Whether a ServiceAccount exists, remembered for 10 s (policy reconciles follow every run change). */
class ServiceAccounts {
  private readonly seen = new Map<string, { exists: boolean; at: number }>();
  constructor(private readonly core: CoreV1Api) {}
  async exists(namespace: string, name: string): Promise<boolean> {
    const key = `${namespace}/${name}`;
    const hit = this.seen.get(key);
    if (hit && Date.now() - hit.at < 10_000) return hit.exists;
    let exists = true;
    try {
      await this.core.readNamespacedServiceAccount({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      exists = false;
    }
    this.seen.set(key, { exists, at: Date.now() });
    return exists;
  }
}

function condition(
  type: string,
  status: Condition["status"],
  reason: string,
  message: string,
  generation?: number,
) {
  return { type, status, reason, message, observedGeneration: generation };
}

/** Keeps lastTransitionTime when a condition's status did not change. */
function withTransitionTimes(
  next: Omit<Condition, "lastTransitionTime">[],
  previous: Condition[] = [],
): Condition[] {
  const now = new Date().toISOString();
  return next.map((c) => {
    const old = previous.find((p) => p.type === c.type);
    return { ...c, lastTransitionTime: old && old.status === c.status ? old.lastTransitionTime : now };
  });
}

export class AffinityPolicyReconciler {
  private readonly flags: TektonFlags;
  private readonly serviceAccounts: ServiceAccounts;

  constructor(private readonly o: PolicyReconcilerOptions) {
    this.flags = o.tektonFlags;
    this.serviceAccounts = new ServiceAccounts(o.clients.core);
  }

  async desiredStatus(policy: AffinityPolicy): Promise<AffinityPolicyStatus> {
    const ns = policy.metadata.namespace;
    const generation = policy.metadata.generation;
    const limits = this.o.tenancy ?? DEFAULT_TENANCY_LIMITS;
    const errors = policyErrors(policy, limits);
    const coschedule = await this.flags.coschedule();
    const serviceAccount = policy.spec.placeholder?.serviceAccountName;
    const missingServiceAccount =
      serviceAccount !== undefined && !(await this.serviceAccounts.exists(ns, serviceAccount));
    let ready: Omit<Condition, "lastTransitionTime">;
    if (errors.length) {
      ready = condition(
        "Ready",
        "False",
        "InvalidSpec",
        errors.map((e) => `${e.field}: ${e.message}`).join("; "),
        generation,
      );
    } else if (missingServiceAccount) {
      ready = condition(
        "Ready",
        "False",
        "ServiceAccountNotFound",
        `spec.placeholder.serviceAccountName "${serviceAccount}" does not exist in namespace ${ns}, so placeholder pods cannot be created and runs wait at the gate; create the ServiceAccount or change the field`,
        generation,
      );
    } else if (coschedule && coschedule !== "disabled" && policy.spec.mode !== "disabled") {
      ready = condition(
        "Ready",
        "False",
        "TektonAffinityAssistantEnabled",
        `Tekton's own affinity assistant is on (feature-flags coschedule: "${coschedule}") and would co-schedule these runs too; set coschedule: "disabled" in the feature-flags ConfigMap of Tekton's namespace (tekton-affinity migrate prints the equivalent policies)`,
        generation,
      );
    } else {
      ready = condition(
        "Ready",
        "True",
        "Active",
        `mode ${policy.spec.mode} applies to the PipelineRuns this policy selects${this.isolationNote(policy, limits)}`,
        generation,
      );
    }
    const report = overlapReport(policy, this.o.caches.policies.list(ns) as AffinityPolicy[]);
    const overlapping = report?.overlaps.length
      ? condition("Overlapping", "True", "SelectorsOverlap", report.message, generation)
      : condition(
          "Overlapping",
          "False",
          "NoOverlap",
          "no other AffinityPolicy in this namespace selects the same runs",
          generation,
        );
    const activeRuns = this.o.caches.runs
      .list(ns)
      .filter(
        (r) => r.metadata.annotations?.[POLICY_ANNOTATION] === policy.metadata.name && !isDone(r),
      ).length;
    return {
      observedGeneration: generation,
      activeRuns,
      conditions: withTransitionTimes([ready, overlapping], policy.status?.conditions),
    };
  }

  /** Cluster-scope isolation reaches only the namespace's isolation group: say which, or that there is none. */
  private isolationNote(policy: AffinityPolicy, limits: TenancyLimits): string {
    if (
      policy.spec.mode !== "isolate-pipelinerun" ||
      (policy.spec.isolation?.scope ?? "cluster") !== "cluster"
    )
      return "";
    const ns = policy.metadata.namespace;
    const group = this.o.caches.namespaces.get(ns)?.metadata?.labels?.[limits.isolationGroupLabel];
    return group
      ? `; isolation spans the namespaces of isolation group "${group}"`
      : `; namespace ${ns} is in no isolation group, so its runs are isolated from this namespace's runs only (a cluster admin adds it to a group with the namespace label ${limits.isolationGroupLabel})`;
  }

  /** A Warning event each time the policy's Ready condition turns False for a new reason. */
  private reportNotReady(policy: AffinityPolicy, next: AffinityPolicyStatus): void {
    const ready = readyOf(next);
    const before = readyOf(policy.status);
    if (!this.o.events || ready?.status !== "False") return;
    if (before?.status === "False" && before.reason === ready.reason) return;
    void this.o.events.record(
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "AffinityPolicy",
        name: policy.metadata.name,
        namespace: policy.metadata.namespace,
        uid: policy.metadata.uid,
      },
      "Warning",
      ready.reason,
      ready.message,
    );
  }

  async reconcile(namespace: string, name: string): Promise<Record<string, never>> {
    const policy = this.o.caches.policies.get(name, namespace) as AffinityPolicy | undefined;
    if (!policy || policy.metadata.deletionTimestamp) return {};
    const status = await this.desiredStatus(policy);
    if (sameStatus(status, policy.status)) return {};
    this.reportNotReady(policy, status);
    await this.o.clients.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        name,
        // Fenced: a stale view gets 409 and the job retries with fresh state.
        body: { metadata: { resourceVersion: policy.metadata.resourceVersion }, status },
      },
      mergePatch(),
    );
    this.o.logger.debug({ namespace, name, status }, "policy status updated");
    return {};
  }
}

function readyOf(status: AffinityPolicyStatus | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === "Ready");
}

function sameStatus(a: AffinityPolicyStatus, b: AffinityPolicyStatus | undefined): boolean {
  if (!b || a.observedGeneration !== b.observedGeneration || a.activeRuns !== b.activeRuns) return false;
  const strip = (cs: Condition[] = []) => cs.map(({ lastTransitionTime: _, ...rest }) => rest);
  return JSON.stringify(strip(a.conditions)) === JSON.stringify(strip(b.conditions));
}
