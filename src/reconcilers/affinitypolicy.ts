// AffinityPolicy reconciler: status that explains itself in `kubectl get` and `kubectl describe`.
//   Ready        False when the spec is invalid, what it needs is missing (its placeholder
//                ServiceAccount; for reserve: LargestTask, the reservations' PriorityClass), or
//                Tekton's own affinity assistant would fight ours.
//   Overlapping  True when another policy can select the same runs; says which one wins.
//   activeRuns   runs this policy manages that have not finished.
//
// Decide, then act. The decisions live in policy-decisions.ts: pure functions, unit-tested without a
// cluster (test/unit/policy-decisions.test.ts). A reconcile here gathers what the caches say, Tekton's
// coschedule flag and whether what the policy needs exists into a PolicyObservation (observe),
// asks decidePolicy for a list of PolicyActions, and performs them in order (execute).

import type { Logger } from "pino";
import { GROUP, PLURAL, RESERVATION_PRIORITY_CLASS, VERSION } from "../api/constants.js";
import { DEFAULT_TENANCY_LIMITS, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicy } from "../api/types.js";
import { isNotFound, type KubeClients, mergePatch } from "../kube/clients.js";
import type { EventRecorder } from "../kube/events.js";
import type { Caches } from "../kube/informers.js";
import type { TektonFlags } from "../kube/tekton-flags.js";
import { reservesLargestTask } from "../placement/reservation.js";
import type { ActiveRunCounts } from "./active-runs.js";
import { decidePolicy, type PolicyAction, type PolicyObservation } from "./policy-decisions.js";

export interface PolicyReconcilerOptions {
  clients: KubeClients;
  caches: Caches;
  logger: Logger;
  tektonFlags: TektonFlags;
  tenancy?: TenancyLimits;
  /** The count of each policy's active runs, kept from the run watch (ActiveRunIndex). */
  activeRuns: ActiveRunCounts;
  /** Records a Warning event on the policy when it becomes not Ready (kubectl describe shows why). */
  events?: EventRecorder;
}

/** Whether an object exists, by key, remembered for 10 s (policy reconciles follow every run change). */
class Existence {
  private readonly seen = new Map<string, { exists: boolean; at: number }>();
  /** @param read reads the object named by the key, throwing the apiserver's error (404: absent). */
  constructor(private readonly read: (key: string) => Promise<unknown>) {}
  async exists(key: string): Promise<boolean> {
    const hit = this.seen.get(key);
    if (hit && Date.now() - hit.at < 10_000) return hit.exists;
    let exists = true;
    try {
      await this.read(key);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      exists = false;
    }
    this.seen.set(key, { exists, at: Date.now() });
    return exists;
  }
}

export class AffinityPolicyReconciler {
  private readonly flags: TektonFlags;
  /** ServiceAccounts by namespace/name. */
  private readonly serviceAccounts: Existence;
  /** PriorityClasses by name. */
  private readonly priorityClasses: Existence;
  private readonly limits: TenancyLimits;

  constructor(private readonly o: PolicyReconcilerOptions) {
    this.flags = o.tektonFlags;
    this.serviceAccounts = new Existence((key) => {
      const [namespace = "", name = ""] = key.split("/");
      return o.clients.core.readNamespacedServiceAccount({ name, namespace });
    });
    this.priorityClasses = new Existence((name) => o.clients.scheduling.readPriorityClass({ name }));
    this.limits = o.tenancy ?? DEFAULT_TENANCY_LIMITS;
  }

  async reconcile(namespace: string, name: string): Promise<Record<string, never>> {
    const policy = this.o.caches.policies.get(name, namespace) as AffinityPolicy | undefined;
    if (!policy || policy.metadata.deletionTimestamp) return {};
    const obs = await this.observe(policy);
    await this.execute(policy, decidePolicy(obs));
    return {};
  }

  // ---- observe ----

  /** The only I/O besides the caches: Tekton's flag, the ServiceAccount and (reserve: LargestTask) the
   * reservations' PriorityClass, each read at most every 10 s. */
  private async observe(policy: AffinityPolicy): Promise<PolicyObservation> {
    const { caches } = this.o;
    const ns = policy.metadata.namespace;
    const tekton = await this.flags.state();
    const coschedule = tekton?.mode;
    // Looked up whenever the policy names one, valid or not: its absence is reported once the spec is.
    const serviceAccount = policy.spec.placeholder?.serviceAccountName;
    const serviceAccountExists =
      serviceAccount === undefined ? undefined : await this.serviceAccounts.exists(`${ns}/${serviceAccount}`);
    const reservationClassExists = reservesLargestTask(policy.spec)
      ? await this.priorityClasses.exists(RESERVATION_PRIORITY_CLASS)
      : undefined;
    const isolationGroup = caches.namespaces.get(ns)?.metadata?.labels?.[this.limits.isolationGroupLabel];
    return {
      policy,
      policies: caches.policies.list(ns) as AffinityPolicy[],
      activeRuns: this.o.activeRuns.count(ns, policy.metadata.name),
      ...(coschedule !== undefined ? { coschedule } : {}),
      ...(tekton ? { tektonFix: tekton.fix } : {}),
      ...(tekton?.note ? { tektonNote: tekton.note } : {}),
      ...(serviceAccountExists !== undefined ? { serviceAccountExists } : {}),
      ...(reservationClassExists !== undefined ? { reservationClassExists } : {}),
      ...(isolationGroup !== undefined ? { isolationGroup } : {}),
      limits: this.limits,
      now: Date.now(),
    };
  }

  // ---- act ----

  private async execute(policy: AffinityPolicy, actions: PolicyAction[]): Promise<void> {
    const { namespace, name } = policy.metadata;
    for (const a of actions) {
      switch (a.type) {
        case "event":
          // Events are for people; a reconcile does not wait for them (the recorder logs its own failures).
          void this.o.events?.record(
            {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: "AffinityPolicy",
              name,
              namespace,
              uid: policy.metadata.uid,
            },
            a.eventType,
            a.reason,
            a.message,
          );
          break;
        case "writeStatus":
          await this.o.clients.custom.patchNamespacedCustomObjectStatus(
            {
              group: GROUP,
              version: VERSION,
              plural: PLURAL,
              namespace,
              name,
              // Fenced: a stale view gets 409 and the job retries with fresh state.
              body: { metadata: { resourceVersion: a.resourceVersion }, status: a.status },
            },
            mergePatch(),
          );
          this.o.logger.debug({ namespace, name, status: a.status }, "policy status updated");
          break;
        default: {
          const unknown: never = a;
          throw new Error(`unknown policy action ${JSON.stringify(unknown)}`);
        }
      }
    }
  }
}
