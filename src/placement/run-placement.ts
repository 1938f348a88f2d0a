// Placement carried by the run itself. The gate writes on CREATE the pod affinity that the run's task
// pods need into the run's own pod templates, so those pods need no admission from us: with every replica
// down, a released run still creates its later task pods, and they still land beside its placeholder.
// The pods webhook's objectSelector skips pods that carry the run's placement label.
//   pipelineruns, isolate-pipelinerun  one term for every task, in the run-wide template
//                                      (spec.taskRunTemplate.podTemplate.affinity, and any taskRunSpecs
//                                      pod template that sets its own affinity, since Tekton lets that one
//                                      replace the run's);
//   workspaces                         one term per pipeline task that binds a co-scheduled claim, in a
//                                      taskRunSpecs entry for that task: the task follows the placeholder
//                                      of the one claim it binds. Only where the gate can tell, from the run
//                                      alone, which claims each task binds and which of them get a
//                                      placeholder (workspaceTaskTerms); other runs keep the pods webhook.
//
// Why on CREATE: Tekton's validation refuses any spec change but spec.status while a run is not done,
// Pending included (PipelineRunSpec.ValidateUpdate), so the release cannot write it.
//
// The term selects the run's placeholder by a token the gate draws (the run has no uid and maybe no
// name yet at admission): the placeholder pod carries it as PLACEMENT_LABEL (in workspaces mode, the token
// and a hash of its claim's first workspace: placementValue), next to the component label that task pods
// do not carry. Because the term cannot be taken back once the run starts, such a run is never released
// without its placeholder: onMaxWait is Fail for it (decideGate).

import { createHash, randomBytes } from "node:crypto";
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
import type { AffinityPolicySpec, Mode, PipelineRun } from "../api/types.js";
import type { JsonPatchOp } from "../webhooks/admission.js";
import {
  type CoscheduledClaims,
  coscheduled,
  type PlaceholderPlan,
  type PlannedClaim,
  pipelineTaskWorkspaces,
  runClaims,
} from "./plan.js";

/** Whether runs under this spec may carry their placement (else the pods webhook adds it to each pod).
 * Not: nodePinning (its node is known only once the placeholder is scheduled, and changes when it
 * migrates), and onMaxWait Release (the term could not be taken back to start the run without its
 * placeholder). In workspaces mode the run must also say which claims each task binds
 * (workspaceTaskTerms). */
export function carriesPlacement(spec: AffinityPolicySpec): boolean {
  return spec.mode !== "disabled" && spec.strategy !== "nodePinning" && (spec.onMaxWait ?? "Fail") === "Fail";
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

/** The value of PLACEMENT_LABEL on a placeholder pod, which the run's task pods select: the run's token;
 * in workspaces mode, the token and a hash of the first workspace its claim backs (known at admission,
 * unlike the claim's name, which needs the run's uid). */
export function placementValue(token: string, mode: Mode, plan: Pick<PlaceholderPlan, "claims">): string {
  const workspace = plan.claims[0]?.workspaces[0];
  if (mode !== "workspaces" || workspace === undefined) return token;
  return `${token}-${createHash("sha256").update(workspace).digest("hex").slice(0, 10)}`;
}

/**
 * In workspaces mode: the term each pipeline task needs, by task name (none for a task that binds no
 * co-scheduled claim). Undefined when the run cannot carry its placement, and its pods keep going
 * through the pods webhook: the run does not say which claims its tasks bind (pipelineTaskWorkspaces), a
 * task binds a user PVC whose access modes only a read of the claim tells (coscheduledClaims SingleNode:
 * the gate reads nothing), or a task binds two co-scheduled claims (the pods webhook refuses its pod,
 * with the reason).
 */
export function workspaceTaskTerms(
  run: PipelineRun,
  which: CoscheduledClaims,
  token: string,
  topologyKey?: string,
): Map<string, V1PodAffinityTerm> | undefined {
  const tasks = pipelineTaskWorkspaces(run);
  if (!tasks) return undefined;
  const claimOf = new Map<string, PlannedClaim>();
  for (const claim of runClaims(run)) for (const ws of claim.workspaces) claimOf.set(ws, claim);
  const terms = new Map<string, V1PodAffinityTerm>();
  for (const [task, workspaces] of tasks) {
    const claims = new Set([...workspaces].flatMap((ws) => (claimOf.has(ws) ? [claimOf.get(ws)!] : [])));
    if ([...claims].some((c) => !c.template && which !== "All")) return undefined;
    const followed = [...claims].filter((c) => coscheduled(c, which));
    if (followed.length > 1) return undefined;
    if (followed.length === 1)
      terms.set(task, placementTerm(placementValue(token, "workspaces", { claims: followed }), topologyKey));
  }
  return terms;
}

interface TaskRunSpecShape extends PodTemplateAffinity {
  pipelineTaskName?: string;
}

/**
 * JSON patch ops that make the run's pod templates carry our terms (or, with none, none of ours):
 *  - `term`, the run-wide one: in the run-wide template, and in each taskRunSpecs entry whose pod template
 *    sets its own affinity;
 *  - `taskTerms` (workspaces mode), each task's own: in that task's taskRunSpecs entry, added when the run
 *    has none, its affinity based on the run-wide one when it sets none (Tekton merges the two templates
 *    field by field, the task's first).
 * Empty when the run already says exactly that.
 */
export function placementPatch(
  run: PipelineRun,
  term: V1PodAffinityTerm | undefined,
  taskTerms: ReadonlyMap<string, V1PodAffinityTerm> = new Map(),
): JsonPatchOp[] {
  const desired = (a: V1Affinity | undefined, t: V1PodAffinityTerm | undefined) =>
    t ? withPlacement(a, t) : withoutOurTerms(a);
  const ops: JsonPatchOp[] = [];
  const template = run.spec.taskRunTemplate;
  const current = template?.podTemplate?.affinity as V1Affinity | undefined;
  const wanted = desired(current, term);
  if (!isDeepStrictEqual(current, wanted)) {
    if (!wanted) ops.push({ op: "remove", path: "/spec/taskRunTemplate/podTemplate/affinity" });
    else if (!template)
      ops.push({ op: "add", path: "/spec/taskRunTemplate", value: { podTemplate: { affinity: wanted } } });
    else if (!template.podTemplate)
      ops.push({ op: "add", path: "/spec/taskRunTemplate/podTemplate", value: { affinity: wanted } });
    else ops.push({ op: "add", path: "/spec/taskRunTemplate/podTemplate/affinity", value: wanted });
  }
  const specs = (run.spec.taskRunSpecs as TaskRunSpecShape[] | undefined) ?? [];
  const covered = new Set<string>();
  specs.forEach((s, i) => {
    const own = s?.podTemplate?.affinity;
    const taskTerm = s?.pipelineTaskName === undefined ? undefined : taskTerms.get(s.pipelineTaskName);
    if (taskTerm) covered.add(s.pipelineTaskName!);
    // Without an affinity of its own, Tekton fills it from the run's template.
    if (!own && !taskTerm) return;
    const next = desired(own ?? wanted, taskTerm ?? term);
    if (isDeepStrictEqual(own, next)) return;
    const path = `/spec/taskRunSpecs/${i}/podTemplate`;
    if (!next) ops.push({ op: "remove", path: `${path}/affinity` });
    else if (!s.podTemplate) ops.push({ op: "add", path, value: { affinity: next } });
    else ops.push({ op: "add", path: `${path}/affinity`, value: next });
  });
  const added = [...taskTerms]
    .filter(([task]) => !covered.has(task))
    .map(([task, t]) => ({ pipelineTaskName: task, podTemplate: { affinity: desired(wanted, t) } }));
  if (added.length && !run.spec.taskRunSpecs)
    ops.push({ op: "add", path: "/spec/taskRunSpecs", value: added });
  else for (const value of added) ops.push({ op: "add", path: "/spec/taskRunSpecs/-", value });
  return ops;
}
