// reserve: LargestTask — room for the run's largest task pod, held on the run's node between tasks.
//
// Design (docs/namespace-owner-guide.md, "Reserving room"): a *reservation* StatefulSet per placeholder,
// whose one pause pod requests the largest task's cpu and memory at the lowest priority
// (RESERVATION_PRIORITY_CLASS: negative, preemptionPolicy Never).
//  - It is created first, while the run is gated. Its required pod affinity selects pods labelled
//    RESERVATION_LABEL=<plan>, which it carries itself: the first such pod may land anywhere that term
//    would match it ("a pod that matches its own affinity term"), so the scheduler puts it on a node
//    with room for the largest task, or it waits (Unschedulable: Insufficient cpu) and the run says so.
//  - The placeholder is created only once the reservation is scheduled. It carries the label and the
//    same required affinity, so it lands beside the reservation; the tasks follow the placeholder.
//  - A task pod that needs the room preempts the reservation (any pod may: its priority is the lowest),
//    so the reservation never delays a task. The StatefulSet recreates it, and its affinity (now matched
//    by the placeholder) brings it back to the run's node once the room is free again.
//  - Other teams' pods may use the room in between too, by preempting it; the run's next task then
//    preempts nothing but may find the node full. Holding room strictly would mean keeping it from
//    everyone, which is what `None` plus node sizing does; this is the cooperative middle.

import type { V1StatefulSet } from "@kubernetes/client-node";
import {
  COMPONENT_LABEL,
  PLACEHOLDER_RUN_UID_LABEL,
  RESERVATION_COMPONENT,
  RESERVATION_LABEL,
  RESERVATION_PRIORITY_CLASS,
  RESERVED_FOR_ANNOTATION,
  ROLE_LABEL,
  RUN_LABEL,
  TEMPLATE_HASH_ANNOTATION,
} from "../api/constants.js";
import { containerSecurityContext, effectivePlaceholderTemplate } from "../api/placeholder-template.js";
import { boundedTemplate } from "../api/tenancy.js";
import type { AffinityPolicySpec, PipelineRun } from "../api/types.js";
import type { PlaceholderPlan } from "./plan.js";
import {
  isolationAffinity,
  ownerReference,
  type PlacementContext,
  reservationAffinityTerm,
  templateHash,
  withVolumeAffinity,
} from "./statefulset.js";
import { formatResources, type Resources } from "./task-resources.js";

/** How a run's Waiting reason starts when no node has room for its largest task (run-decisions.ts). */
export const NO_ROOM = "no node has room for the run's largest task";

/** What a run reserves: its largest task (by name) and that task's requests. */
export interface Reservation {
  task: string;
  requests: Resources;
}

export function reservationName(plan: PlaceholderPlan): string {
  return `${plan.name}-room`;
}

/** Whether the policy asks for room for the largest task. */
export function reservesLargestTask(spec: AffinityPolicySpec | undefined): boolean {
  return spec?.reserve === "LargestTask";
}

export function reservationStatefulSet(
  run: PipelineRun,
  spec: AffinityPolicySpec,
  plan: PlaceholderPlan,
  reservation: Reservation,
  ctx: PlacementContext,
): V1StatefulSet {
  // Where the placeholder may go, the reservation may go: the same node constraints and tolerations.
  const t = boundedTemplate(
    effectivePlaceholderTemplate(spec, run, ctx.tektonDefaults, ctx.limits.defaultPlaceholderImage),
    ctx.limits,
  );
  const name = reservationName(plan);
  const labels = {
    [COMPONENT_LABEL]: RESERVATION_COMPONENT,
    [RESERVATION_LABEL]: plan.name,
    [ROLE_LABEL]: "reservation",
    [RUN_LABEL]: run.metadata.name,
    [PLACEHOLDER_RUN_UID_LABEL]: run.metadata.uid ?? "",
  };
  const nodeAffinity = withVolumeAffinity(t.nodeAffinity, plan.volumeAffinity);
  const template = {
    metadata: { labels },
    spec: {
      serviceAccountName: t.serviceAccountName,
      automountServiceAccountToken: false,
      nodeSelector: t.nodeSelector,
      tolerations: t.tolerations as never,
      priorityClassName: RESERVATION_PRIORITY_CLASS,
      ...(t.os ? { os: { name: t.os } } : {}),
      securityContext: t.securityContext as never,
      imagePullSecrets: t.imagePullSecrets as never,
      terminationGracePeriodSeconds: 0,
      affinity: {
        ...(nodeAffinity ? { nodeAffinity: nodeAffinity as never } : {}),
        podAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: [reservationAffinityTerm(spec, plan)],
        },
        // An isolated run's placeholder refuses nodes with other runs' placeholders: so must the
        // reservation it will join, or the pair could never meet.
        ...(spec.mode === "isolate-pipelinerun" ? isolationAffinity(spec, ctx) : {}),
      },
      containers: [
        {
          name: "reservation",
          image: t.image,
          resources: {
            requests: {
              cpu: `${reservation.requests.cpuMillis}m`,
              memory: String(reservation.requests.memoryBytes),
            },
          },
          securityContext: containerSecurityContext(t) as never,
        },
      ],
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: {
      name,
      namespace: run.metadata.namespace,
      labels,
      ownerReferences: [ownerReference(run)],
      annotations: {
        [TEMPLATE_HASH_ANNOTATION]: templateHash(template),
        [RESERVED_FOR_ANNOTATION]: `${reservation.task}: ${formatResources(reservation.requests)}`,
      },
    },
    spec: {
      replicas: 1,
      serviceName: name,
      podManagementPolicy: "Parallel",
      selector: { matchLabels: { [RESERVATION_LABEL]: plan.name, [ROLE_LABEL]: "reservation" } },
      template,
    },
  };
}
