// What the webhooks answer from: the informer caches, and on a miss (a replica whose caches are still
// listing, or lag behind) one API read bounded well inside the apiserver's webhook timeout. The decisions
// themselves are pure (gate.ts, pods.ts); this module only gathers their inputs.

import type { V1Pod } from "@kubernetes/client-node";
import {
  CLUSTER_DEFAULT_POLICY,
  GROUP,
  PLURAL,
  POLICY_ANNOTATION,
  TEKTON_GROUP,
  TEKTON_PIPELINERUN_LABEL,
  TEKTON_VERSION,
  VERSION,
} from "../api/constants.js";
import { effectiveSpec } from "../api/effective-spec.js";
import type { TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicy, AffinityPolicySpec, PipelineRun } from "../api/types.js";
import { apiMessage, type KubeClients, orUndefinedIfNotFound } from "../kube/clients.js";
import type { Caches } from "../kube/informers.js";
import type { Metrics } from "../metrics.js";
import type { AdmissionDecision } from "./admission.js";
import { gatePipelineRun } from "./gate.js";
import { mutateTaskPod } from "./pods.js";

/** The webhooks' fallback reads must answer well inside the apiserver's 5 s webhook timeout, so that
 * the webhook's own decision (with its explanation) reaches the user, not a bare timeout. */
const FALLBACK_READ_TIMEOUT_MS = 2_000;

export function withTimeout<T>(read: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`reading ${what} took longer than ${FALLBACK_READ_TIMEOUT_MS} ms`)),
      FALLBACK_READ_TIMEOUT_MS,
    );
  });
  return Promise.race([read, timeout]).finally(() => clearTimeout(timer));
}

/** One API read of a run; undefined when it does not exist. */
/** One namespaced custom object, or undefined when it does not exist. */
async function readCustomObject<T>(
  clients: KubeClients,
  kind: { group: string; version: string; plural: string },
  namespace: string,
  name: string,
): Promise<T | undefined> {
  const read = clients.custom.getNamespacedCustomObject({ ...kind, namespace, name });
  return (await orUndefinedIfNotFound(read)) as T | undefined;
}

const PIPELINE_RUNS = { group: TEKTON_GROUP, version: TEKTON_VERSION, plural: "pipelineruns" };
const AFFINITY_POLICIES = { group: GROUP, version: VERSION, plural: PLURAL };

export interface WebhookInputsOptions {
  clients: KubeClients;
  caches: Caches;
  clusterDefault: AffinityPolicySpec | undefined;
  tenancy: TenancyLimits;
  metrics: Metrics;
}

export class WebhookInputs {
  constructor(private readonly o: WebhookInputsOptions) {}

  /**
   * The gate. It answers from the policies cache; until that cache has listed (this replica is not
   * ready, so the apiserver should not be calling it) it lists the namespace's policies once instead of
   * gating nothing. If that fails too it admits the run ungated with a warning, as the gate's
   * failurePolicy (Ignore) would: refusing would stop the CI of every namespace, managed or not.
   */
  async gate(run: PipelineRun, tektonConflict: string | undefined): Promise<AdmissionDecision> {
    const { clients, caches, clusterDefault } = this.o;
    const ns = run.metadata.namespace;
    let policies = caches.policies.list(ns) as AffinityPolicy[];
    if (!caches.policies.synced) {
      this.o.metrics.webhookCacheMisses.inc({ kind: "AffinityPolicyList" });
      try {
        const list = (await withTimeout(
          clients.custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            namespace: ns,
          }),
          `the AffinityPolicies of ${ns}`,
        )) as { items: AffinityPolicy[] };
        policies = list.items;
      } catch (err) {
        return {
          allowed: true,
          warnings: [
            `tekton-affinity: not gated: this controller replica has not loaded the AffinityPolicies yet and reading them failed (${apiMessage(err)})`,
          ],
        };
      }
    }
    return gatePipelineRun(run, policies, clusterDefault, tektonConflict, { limits: this.o.tenancy });
  }

  /**
   * The pods webhook. It answers from the caches. On a miss (the pod's run, or its policy, is not in
   * this replica's cache: its caches are still listing, or lag behind) it reads the API once rather
   * than admit a managed pod without its affinity; if that read fails, it refuses the pod with a
   * message saying why. Refusing costs the TaskRun (Tekton does not retry a refused pod), but admitting
   * it without affinity could put it on a node its volume cannot reach, which fails later and silently.
   */
  async admitTaskPod(pod: V1Pod, namespace: string): Promise<AdmissionDecision> {
    const { clients, caches, clusterDefault } = this.o;
    const runName = pod.metadata?.labels?.[TEKTON_PIPELINERUN_LABEL];
    let run: PipelineRun | undefined = runName ? caches.runs.get(runName, namespace) : undefined;
    const policies = new Map<string, AffinityPolicy | undefined>();
    try {
      if (runName && !run) {
        this.o.metrics.webhookCacheMisses.inc({ kind: "PipelineRun" });
        run = await withTimeout(
          readCustomObject<PipelineRun>(clients, PIPELINE_RUNS, namespace, runName),
          `PipelineRun ${namespace}/${runName}`,
        );
      }
      const policyName = run?.metadata.annotations?.[POLICY_ANNOTATION];
      if (run && policyName && policyName !== CLUSTER_DEFAULT_POLICY && !caches.policies.synced) {
        this.o.metrics.webhookCacheMisses.inc({ kind: "AffinityPolicy" });
        policies.set(
          policyName,
          await withTimeout(
            readCustomObject<AffinityPolicy>(clients, AFFINITY_POLICIES, namespace, policyName),
            `AffinityPolicy ${namespace}/${policyName}`,
          ),
        );
      }
    } catch (err) {
      return {
        allowed: false,
        message: `tekton-affinity: this pod's PipelineRun ${namespace}/${runName} is not in this replica's cache yet and reading it failed (${apiMessage(err)}); refusing to create the pod without its co-scheduling affinity. Re-run the PipelineRun once the tekton-affinity controller is ready`,
      };
    }
    const findPolicy = (ns: string, n: string) =>
      policies.has(n) ? policies.get(n) : (caches.policies.get(n, ns) as AffinityPolicy | undefined);
    return mutateTaskPod(pod, {
      run,
      spec: run ? effectiveSpec(run, findPolicy, clusterDefault, this.o.tenancy) : undefined,
      placeholderNode: (ns, placeholder) =>
        caches.placeholderPods.get(`${placeholder}-0`, ns)?.spec?.nodeName,
      nodeLabels: (node) => caches.nodes.get(node)?.metadata?.labels,
    });
  }
}
