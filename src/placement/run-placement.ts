// Placement carried by the run itself. For a run with one placeholder (modes pipelineruns and
// isolate-pipelinerun, pod-affinity strategy), the gate writes on CREATE the pod affinity that every task
// pod of the run needs into the run's own pod template (spec.taskRunTemplate.podTemplate.affinity, and
// any taskRunSpecs pod template that sets its own affinity, since Tekton lets that one replace the
// run's). Tekton copies it into every TaskRun and pod, so those pods need no admission from us: with
// every replica down, a released run still creates its later task pods, and they still land beside its
// placeholder. The pods webhook's objectSelector skips pods that carry the run's placement label.
//
// Why on CREATE: Tekton's validation refuses any spec change but spec.status while a run is not done,
// Pending included (PipelineRunSpec.ValidateUpdate), so the release cannot write it.
//
// The term selects the run's placeholder by a token the gate draws (the run has no uid and maybe no
// name yet at admission): the placeholder pod carries it as PLACEMENT_LABEL, next to the component
// label that task pods do not carry. Tasks follow the placeholder, as the pods webhook's term makes
// them. Because the term cannot be taken back once the run starts, such a run is never released
// without its placeholder: onMaxWait is Fail for it (decideGate).

import { randomBytes } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import type { V1Affinity, V1PodAffinityTerm } from "@kubernetes/client-node";
import {
  COMPONENT_LABEL,
  DEFAULT_TOPOLOGY_KEY,
  PLACEHOLDER_COMPONENT,
  PLACEHOLDER_LABEL,
  PLACEMENT_LABEL,
  TEKTON_GROUP,
  TEKTON_VERSION,
} from "../api/constants.js";
import type { AffinityPolicySpec, PipelineRun } from "../api/types.js";
import type { JsonPatchOp } from "../webhooks/admission.js";

/** Whether runs under this spec carry their placement (else the pods webhook adds it to each pod). Not:
 * workspaces mode (a task follows the placeholder of the claim it mounts, which a run-wide template
 * cannot say), nodePinning (its node is known only once the placeholder is scheduled, and changes when
 * it migrates), and onMaxWait Release (the term could not be taken back to start the run without its
 * placeholder). */
export function carriesPlacement(spec: AffinityPolicySpec): boolean {
  return (
    (spec.mode === "pipelineruns" || spec.mode === "isolate-pipelinerun") &&
    spec.strategy !== "nodePinning" &&
    (spec.onMaxWait ?? "Fail") === "Fail"
  );
}

/** Only runs sent as tekton.dev/v1 (v1beta1 names the pod template fields differently). */
export function placementWritable(run: PipelineRun): boolean {
  return run.apiVersion === undefined || run.apiVersion === `${TEKTON_GROUP}/${TEKTON_VERSION}`;
}

/** Whether the run can carry its placement in its pod templates: not with a required pod affinity of
 * its own in any of them. The scheduler needs ONE pod to match every required pod affinity term of a
 * pod, and no pod is both the user's target and our placeholder. The pods webhook instead gives such a
 * run's task pods our term in place of the run-wide ones its placeholder satisfies for them
 * (pod-affinity.ts). */
export function placementCombines(run: PipelineRun): boolean {
  return ownRequiredPodAffinity(run).length === 0;
}

interface PodTemplateAffinity {
  podTemplate?: { affinity?: V1Affinity };
}

/** The run's own required pod affinity terms (not ours), from the run-wide pod template and, with
 * `everywhere`, from its taskRunSpecs' too. */
export function ownRequiredPodAffinity(run: PipelineRun, everywhere = true): V1PodAffinityTerm[] {
  const templates = [
    run.spec.taskRunTemplate as PodTemplateAffinity | undefined,
    ...(everywhere ? ((run.spec.taskRunSpecs as PodTemplateAffinity[] | undefined) ?? []) : []),
  ];
  return templates.flatMap((t) =>
    (t?.podTemplate?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []).filter(
      (term) => !isOurTerm(term),
    ),
  );
}

/** A fresh token: 16 hex digits, a valid label value. */
export function newPlacementToken(): string {
  return randomBytes(8).toString("hex");
}

/** The run's token, when the gate gave it one. */
export function placementToken(run: PipelineRun): string | undefined {
  return run.metadata.labels?.[PLACEMENT_LABEL] || undefined;
}

/** The term every task pod of the run gets: be in the placeholder's topology domain. No namespaces: the
 * pod's own, which is the run's and its placeholder's. */
export function placementTerm(token: string, topologyKey?: string): V1PodAffinityTerm {
  return {
    labelSelector: { matchLabels: { [PLACEMENT_LABEL]: token, [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT } },
    topologyKey: topologyKey ?? DEFAULT_TOPOLOGY_KEY,
  };
}

/** A term we wrote: by the run's placement token, or by placeholder name (the pods webhook's). */
function isOurTerm(term: V1PodAffinityTerm): boolean {
  const labels = term.labelSelector?.matchLabels ?? {};
  return PLACEMENT_LABEL in labels || PLACEHOLDER_LABEL in labels;
}

/** `affinity` without our terms (a run copied from one we placed carries them); undefined when nothing
 * is left. */
export function withoutOurTerms(affinity: V1Affinity | undefined): V1Affinity | undefined {
  if (!affinity) return undefined;
  const out: V1Affinity = structuredClone(affinity);
  const required = out.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (out.podAffinity && required) {
    const kept = required.filter((t) => !isOurTerm(t));
    if (kept.length) out.podAffinity.requiredDuringSchedulingIgnoredDuringExecution = kept;
    else delete out.podAffinity.requiredDuringSchedulingIgnoredDuringExecution;
    if (Object.keys(out.podAffinity).length === 0) delete out.podAffinity;
  }
  return Object.keys(out).length ? out : undefined;
}

/** `affinity` with `term` as our only term, the user's own terms kept. */
export function withPlacement(affinity: V1Affinity | undefined, term: V1PodAffinityTerm): V1Affinity {
  const out: V1Affinity = withoutOurTerms(affinity) ?? {};
  out.podAffinity ??= {};
  out.podAffinity.requiredDuringSchedulingIgnoredDuringExecution = [
    ...(out.podAffinity.requiredDuringSchedulingIgnoredDuringExecution ?? []),
    term,
  ];
  return out;
}

/**
 * JSON patch ops that make the run's pod templates carry `term` (or, without one, none of our terms):
 * the run-wide template always, and each taskRunSpecs entry whose pod template sets its own affinity.
 * Empty when the run already says exactly that.
 */
export function placementPatch(run: PipelineRun, term: V1PodAffinityTerm | undefined): JsonPatchOp[] {
  const desired = (a: V1Affinity | undefined) => (term ? withPlacement(a, term) : withoutOurTerms(a));
  const ops: JsonPatchOp[] = [];
  const template = run.spec.taskRunTemplate;
  const current = template?.podTemplate?.affinity as V1Affinity | undefined;
  const wanted = desired(current);
  if (!isDeepStrictEqual(current, wanted)) {
    if (!wanted) ops.push({ op: "remove", path: "/spec/taskRunTemplate/podTemplate/affinity" });
    else if (!template)
      ops.push({ op: "add", path: "/spec/taskRunTemplate", value: { podTemplate: { affinity: wanted } } });
    else if (!template.podTemplate)
      ops.push({ op: "add", path: "/spec/taskRunTemplate/podTemplate", value: { affinity: wanted } });
    else ops.push({ op: "add", path: "/spec/taskRunTemplate/podTemplate/affinity", value: wanted });
  }
  const specs = (run.spec.taskRunSpecs as PodTemplateAffinity[] | undefined) ?? [];
  specs.forEach((s, i) => {
    const own = s?.podTemplate?.affinity;
    if (!own) return; // Tekton fills it from the run's template
    const next = desired(own);
    if (isDeepStrictEqual(own, next)) return;
    const path = `/spec/taskRunSpecs/${i}/podTemplate/affinity`;
    ops.push(next ? { op: "add", path, value: next } : { op: "remove", path });
  });
  return ops;
}
