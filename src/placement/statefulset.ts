// The placeholder StatefulSet: one pause container that holds a node (and a volume) for a run.
// A StatefulSet, not a bare pod, so that deleting its pod (node cordoned, tainted, NotReady) makes the
// StatefulSet controller recreate it on another node.

import { createHash } from "node:crypto";
import type { V1PersistentVolumeClaim, V1PodAffinity, V1StatefulSet } from "@kubernetes/client-node";
import {
  COMPONENT_LABEL,
  DEFAULT_TOPOLOGY_KEY,
  GROUP,
  ISOLATE_LABEL,
  PLACEHOLDER_COMPONENT,
  PLACEHOLDER_LABEL,
  PLACEHOLDER_RUN_UID_LABEL,
  PLACEMENT_LABEL,
  RESERVATION_LABEL,
  RUN_LABEL,
  TEKTON_GROUP,
  TEKTON_PIPELINERUN_LABEL,
  TEKTON_VERSION,
  TEMPLATE_HASH_ANNOTATION,
  WORKSPACES_ANNOTATION,
} from "../api/constants.js";
import {
  containerSecurityContext,
  effectivePlaceholderTemplate,
  type TektonDefaultTemplate,
} from "../api/placeholder-template.js";
import { boundedTemplate, DEFAULT_TENANCY_LIMITS, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicySpec, PipelineRun } from "../api/types.js";
import { mountedClaims, type PlaceholderPlan, type VolumeRequirement } from "./plan.js";
import { placementValue, withoutOurTerms } from "./run-placement.js";

export function templateHash(template: unknown): string {
  return createHash("sha256").update(JSON.stringify(template)).digest("hex").slice(0, 16);
}

export function ownerReference(run: PipelineRun) {
  return {
    apiVersion: `${TEKTON_GROUP}/${TEKTON_VERSION}`,
    kind: "PipelineRun",
    name: run.metadata.name,
    uid: run.metadata.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}

/**
 * The run's labels a placeholder carries, as Tekton's assistant carries them (cost and policy tooling
 * and people's runbooks select by them), plus tekton.dev/pipelineRun. Not ours (affinity.tekton.dev/*:
 * the managed label would send the placeholder through the pods webhook) and not the component label,
 * which says what the object is: placeholderLabels sets both.
 */
export function inheritedLabels(run: PipelineRun): Record<string, string> {
  const kept = Object.entries(run.metadata.labels ?? {}).filter(
    ([key]) => !key.startsWith(`${GROUP}/`) && key !== COMPONENT_LABEL,
  );
  return { ...Object.fromEntries(kept), [TEKTON_PIPELINERUN_LABEL]: run.metadata.name };
}

export function placeholderLabels(run: PipelineRun, plan: PlaceholderPlan): Record<string, string> {
  return {
    ...inheritedLabels(run),
    [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT,
    [PLACEHOLDER_LABEL]: plan.name,
    [RUN_LABEL]: run.metadata.name,
    [PLACEHOLDER_RUN_UID_LABEL]: run.metadata.uid ?? "",
  };
}

/** What placing a run's placeholder needs beyond the run and its policy: the operator's bounds. */
export interface PlacementContext {
  limits: TenancyLimits;
  /** The run's namespace's isolation group (the value of its isolation-group label), if any. */
  isolationGroup?: string;
  /** Tekton's config-defaults default-affinity-assistant-pod-template, the lowest layer. */
  tektonDefaults?: TektonDefaultTemplate;
  /** reserve: LargestTask is in force: the placeholder joins its reservation (reservation.ts). */
  reserving?: boolean;
}

/**
 * Isolation: a placeholder refuses nodes that already hold another placeholder in scope, and (by the
 * scheduler's symmetric handling of required anti-affinity) no other placeholder in scope lands next to
 * it. The scope never reaches past the namespaces an operator grouped together: cluster scope means the
 * run's isolation group, or its own namespace when it has none. So a pod made to look like a placeholder
 * in any other namespace is not seen, and an isolated run elsewhere cannot repel this namespace's runs.
 */
export function isolationAffinity(spec: AffinityPolicySpec, ctx: PlacementContext) {
  const clusterScope = (spec.isolation?.scope ?? "cluster") === "cluster";
  const group = clusterScope ? ctx.isolationGroup : undefined;
  return {
    podAntiAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: [
        {
          labelSelector: {
            matchLabels: { [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT },
            matchExpressions: [{ key: PLACEHOLDER_RUN_UID_LABEL, operator: "Exists" }],
          },
          topologyKey: spec.topologyKey ?? DEFAULT_TOPOLOGY_KEY,
          // No namespaces and no namespaceSelector: the pod's own namespace only.
          ...(group
            ? { namespaceSelector: { matchLabels: { [ctx.limits.isolationGroupLabel]: group } } }
            : {}),
        },
      ],
    },
  };
}

/**
 * Spreading, as Tekton spreads its affinity assistants: each placeholder prefers a node that holds no
 * other placeholder of its namespace. Only a preference (the scheduler still stacks them when nothing
 * else fits), and only within the namespace, so no other team's runs weigh on where this one lands.
 */
export function spreadAffinity() {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: {
            labelSelector: {
              matchLabels: { [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT },
              matchExpressions: [{ key: PLACEHOLDER_RUN_UID_LABEL, operator: "Exists" }],
            },
            topologyKey: DEFAULT_TOPOLOGY_KEY,
          },
        },
      ],
    },
  };
}

/** Whether the run shares one node (the default topologyKey), as opposed to a wider domain. */
export function isNodeWide(spec: AffinityPolicySpec): boolean {
  return (spec.topologyKey ?? DEFAULT_TOPOLOGY_KEY) === DEFAULT_TOPOLOGY_KEY;
}

/** Adds the volumes' requirements to every required term of a node affinity (terms are ORed, so each
 * must carry them). */
export function withVolumeAffinity(
  nodeAffinity: Record<string, unknown> | undefined,
  volume: VolumeRequirement[] | undefined,
): Record<string, unknown> | undefined {
  if (!volume?.length) return nodeAffinity;
  const required = nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution as
    | { nodeSelectorTerms?: { matchExpressions?: VolumeRequirement[] }[] }
    | undefined;
  const terms = required?.nodeSelectorTerms?.length ? required.nodeSelectorTerms : [{}];
  return {
    ...nodeAffinity,
    requiredDuringSchedulingIgnoredDuringExecution: {
      ...required,
      nodeSelectorTerms: terms.map((t) => ({
        ...t,
        matchExpressions: [...(t.matchExpressions ?? []), ...volume],
      })),
    },
  };
}

/** The required pod affinity both the reservation (reservation.ts) and the placeholder carry: to pods of this plan's
 * reservation label, in the run's topology domain. */
export function reservationAffinityTerm(spec: AffinityPolicySpec, plan: PlaceholderPlan) {
  return {
    labelSelector: { matchLabels: { [RESERVATION_LABEL]: plan.name } },
    topologyKey: spec.topologyKey ?? DEFAULT_TOPOLOGY_KEY,
  };
}

/** Pod (anti-)affinity rules with a required and a preferred list, as in core/v1. */
type TermLists = {
  requiredDuringSchedulingIgnoredDuringExecution?: unknown[];
  preferredDuringSchedulingIgnoredDuringExecution?: unknown[];
};

/** Both lists of `a` and `b` together (every required term must hold; preferences add up), or
 * undefined when neither has a term. */
export function concatTerms(a: TermLists | undefined, b: TermLists | undefined): TermLists | undefined {
  const out: TermLists = {};
  for (const list of [
    "requiredDuringSchedulingIgnoredDuringExecution",
    "preferredDuringSchedulingIgnoredDuringExecution",
  ] as const) {
    const terms = [...(a?.[list] ?? []), ...(b?.[list] ?? [])];
    if (terms.length) out[list] = terms;
  }
  return Object.keys(out).length ? out : undefined;
}

function placeholderAffinity(
  spec: AffinityPolicySpec,
  ctx: PlacementContext,
  inherited: { nodeAffinity?: Record<string, unknown>; podAffinity?: object; podAntiAffinity?: object },
  plan: PlaceholderPlan,
) {
  const isolate = spec.mode === "isolate-pipelinerun";
  // Isolation's required anti-affinity already keeps placeholders apart.
  const apart = isolate
    ? isolationAffinity(spec, ctx)
    : spec.placeholder?.spread !== false
      ? spreadAffinity()
      : undefined;
  const beside = ctx.reserving
    ? { requiredDuringSchedulingIgnoredDuringExecution: [reservationAffinityTerm(spec, plan)] }
    : undefined;
  // The run's own pod affinity, without the gate's term that makes its tasks follow this placeholder.
  const runPodAffinity = withoutOurTerms({
    podAffinity: inherited.podAffinity as V1PodAffinity,
  })?.podAffinity;
  const podAffinity = concatTerms(runPodAffinity as TermLists | undefined, beside);
  const podAntiAffinity = concatTerms(
    inherited.podAntiAffinity as TermLists | undefined,
    apart?.podAntiAffinity,
  );
  const affinity = {
    ...(inherited.nodeAffinity ? { nodeAffinity: inherited.nodeAffinity as never } : {}),
    ...(podAffinity ? { podAffinity: podAffinity as never } : {}),
    ...(podAntiAffinity ? { podAntiAffinity: podAntiAffinity as never } : {}),
  };
  return Object.keys(affinity).length ? affinity : undefined;
}

export function placeholderStatefulSet(
  run: PipelineRun,
  spec: AffinityPolicySpec,
  plan: PlaceholderPlan,
  ctx: PlacementContext = { limits: DEFAULT_TENANCY_LIMITS },
): V1StatefulSet {
  const t = boundedTemplate(
    effectivePlaceholderTemplate(spec, run, ctx.tektonDefaults, ctx.limits.defaultPlaceholderImage),
    ctx.limits,
  );
  const labels = placeholderLabels(run, plan);
  const podLabels = {
    ...labels,
    ...(spec.mode === "isolate-pipelinerun" ? { [ISOLATE_LABEL]: "true" } : {}),
    // The value the run's own pod templates select its placeholder by (run-placement.ts). On the pod only:
    // a StatefulSet's selector cannot change.
    ...(run.metadata.labels?.[PLACEMENT_LABEL]
      ? { [PLACEMENT_LABEL]: placementValue(run.metadata.labels[PLACEMENT_LABEL], spec.mode, plan) }
      : {}),
    // Beside its reservation, which follows it back there after a preemption (reservation.ts).
    ...(ctx.reserving ? { [RESERVATION_LABEL]: plan.name } : {}),
  };
  // Not the ReadWriteOncePod claims: only one pod may use each, and that must be the task's; nor, when
  // the run shares a zone rather than a node, a claim that attaches to one node at a time.
  const mounted = mountedClaims(plan, isNodeWide(spec));
  const template = {
    metadata: { labels: podLabels },
    spec: {
      serviceAccountName: t.serviceAccountName,
      automountServiceAccountToken: false,
      nodeSelector: t.nodeSelector,
      tolerations: t.tolerations as never,
      priorityClassName: t.priorityClassName,
      ...(t.os ? { os: { name: t.os } } : {}),
      securityContext: t.securityContext as never,
      imagePullSecrets: t.imagePullSecrets as never,
      terminationGracePeriodSeconds: 0,
      affinity: placeholderAffinity(
        spec,
        ctx,
        {
          nodeAffinity: withVolumeAffinity(t.nodeAffinity, plan.volumeAffinity),
          podAffinity: t.podAffinity,
          podAntiAffinity: t.podAntiAffinity,
        },
        plan,
      ),
      containers: [
        {
          name: "placeholder",
          image: t.image,
          resources: t.resources as never,
          securityContext: containerSecurityContext(t) as never,
          ...(mounted.length
            ? { volumeMounts: mounted.map((_, i) => ({ name: `claim-${i}`, mountPath: `/claims/${i}` })) }
            : {}),
        },
      ],
      ...(mounted.length
        ? {
            volumes: mounted.map((c, i) => ({
              name: `claim-${i}`,
              persistentVolumeClaim: { claimName: c.name },
            })),
          }
        : {}),
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: {
      name: plan.name,
      namespace: run.metadata.namespace,
      labels,
      ownerReferences: [ownerReference(run)],
      annotations: {
        [TEMPLATE_HASH_ANNOTATION]: templateHash(template),
        ...(plan.claims.length
          ? { [WORKSPACES_ANNOTATION]: plan.claims.flatMap((c) => c.workspaces).join(",") }
          : {}),
      },
    },
    spec: {
      replicas: 1,
      serviceName: plan.name,
      podManagementPolicy: "Parallel",
      selector: { matchLabels: { [PLACEHOLDER_LABEL]: plan.name } },
      template,
    },
  };
}

/** The PVCs Tekton would create for the plan's volumeClaimTemplate workspaces, created by us first. Same
 * names, same controller owner (the run), so Tekton adopts them and garbage collection removes them
 * with the run. */
export function claimsFromTemplates(run: PipelineRun, plan: PlaceholderPlan): V1PersistentVolumeClaim[] {
  return plan.claims.flatMap((c) => {
    if (!c.template) return [];
    const template = structuredClone(c.template) as V1PersistentVolumeClaim;
    return [
      {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: {
          ...template.metadata,
          name: c.name,
          namespace: run.metadata.namespace,
          ownerReferences: [ownerReference(run)],
        },
        spec: template.spec,
      },
    ];
  });
}
