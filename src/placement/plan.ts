// What placeholders a run needs, per mode. Pure: the run reconciler converges the cluster to this plan.
//
// Every placeholder mounts the claims it stands for, as Tekton's assistant does: the volume then
// binds and attaches where the placeholder is (or the placeholder follows a volume that is already
// bound to a node or zone), and the tasks that follow it find their volumes there.
//   workspaces              one placeholder per claim, mounting that claim;
//   pipelineruns, isolate   one placeholder for the run, mounting every claim of the run.
// In workspaces mode, with coscheduledClaims SingleNode (the default), only claims whose volume attaches
// to one node at a time get a placeholder: a ReadWriteMany or ReadOnlyMany claim is usable from every
// node, so it holds no task anywhere (sharedClaims), and a task may bind one single-node claim beside it.
// Except a ReadWriteOncePod claim: only one pod may use it, and that must be the task's, so the
// placeholder does not mount it (mountedClaims); the tasks still follow the placeholder.

import type { AffinityPolicySpec, Mode, PipelineRun } from "../api/types.js";
import { placeholderName, tektonClaimName } from "./names.js";

/** A PersistentVolumeClaim a run's workspaces bind. */
export interface PlannedClaim {
  name: string;
  /** Workspace names backed by this claim. */
  workspaces: string[];
  /** Set when the claim comes from a volumeClaimTemplate: we create it with Tekton's name. */
  template?: Record<string, unknown>;
  /** Its spec.accessModes: the template's, or the user PVC's as read; unset when unknown (a PVC not
   * found), which counts as ReadWriteOnce. */
  accessModes?: string[];
}

export const READ_WRITE_ONCE = "ReadWriteOnce";
export const READ_WRITE_ONCE_POD = "ReadWriteOncePod";

/** Only one pod may use it (ReadWriteOncePod): the placeholder must not be that pod. */
export function isOnePodClaim(claim: PlannedClaim): boolean {
  return claim.accessModes?.includes(READ_WRITE_ONCE_POD) ?? false;
}

/** Its volume attaches to one node at a time: ReadWriteOnce or ReadWriteOncePod, or access modes unknown
 * (the safe side). ReadWriteMany and ReadOnlyMany claims alone can be used from two nodes at once. */
export function isSingleNodeClaim(claim: PlannedClaim): boolean {
  const modes = claim.accessModes;
  return !modes?.length || modes.includes(READ_WRITE_ONCE) || modes.includes(READ_WRITE_ONCE_POD);
}

/** The claims the plan's placeholder mounts: all it stands for but the ReadWriteOncePod ones; and when
 * the run shares a domain wider than a node (`nodeWide` false: topologyKey zone, say), none that attaches
 * to one node at a time. Mounting one would hold its volume on the placeholder's node for the whole run,
 * and a task the scheduler puts on another node of the domain would wait on a Multi-Attach forever;
 * the placeholder follows such a volume through its node affinity instead (volumeAffinity). */
export function mountedClaims(plan: PlaceholderPlan, nodeWide = true): PlannedClaim[] {
  return plan.claims.filter((c) => !isOnePodClaim(c) && (nodeWide || !isSingleNodeClaim(c)));
}

export interface PlaceholderPlan {
  /** StatefulSet name (and the value of the placeholder label its pod carries). */
  name: string;
  /** The claims the placeholder stands for. It mounts them (mountedClaims), so their volumes land on its
   * node, except ReadWriteOncePod ones: those land there with the first task that follows it. */
  claims: PlannedClaim[];
  /** Node requirements of the bound volumes of claims it does not mount (mountedClaims), so it still
   * lands where they can be used. Filled in by the reconciler from the PersistentVolumes it read. */
  volumeAffinity?: VolumeRequirement[];
}

/** One node-selector requirement (key In values, ...) of a PersistentVolume's node affinity. */
export interface VolumeRequirement {
  key: string;
  operator: string;
  values?: string[];
}

/** What a PersistentVolume asks of a node (its required node affinity), when it is one term: several
 * terms are alternatives, which cannot be added to every term of ours; then nothing is asked. */
export function volumeRequirements(pv: {
  spec?: {
    nodeAffinity?: { required?: { nodeSelectorTerms?: { matchExpressions?: VolumeRequirement[] }[] } };
  };
}): VolumeRequirement[] {
  const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  if (terms.length !== 1) return [];
  return (terms[0]!.matchExpressions ?? []).map((e) => ({
    key: e.key,
    operator: e.operator,
    ...(e.values ? { values: [...e.values] } : {}),
  }));
}

export const RUN_KEY = "pipelinerun";

/** The access modes of the run's user PVCs (persistentVolumeClaim workspaces), by claim name, as read;
 * a claim missing here has unknown access modes. */
export type ClaimAccessModes = Readonly<Record<string, string[] | undefined>>;

/** The run's claims in workspace order, one entry per claim (workspaces sharing one are merged). */
export function runClaims(run: PipelineRun, accessModes: ClaimAccessModes = {}): PlannedClaim[] {
  const uid = run.metadata.uid ?? "";
  const byName = new Map<string, PlannedClaim>();
  for (const ws of run.spec.workspaces ?? []) {
    let name: string | undefined;
    let template: Record<string, unknown> | undefined;
    let modes: string[] | undefined;
    if (ws.persistentVolumeClaim?.claimName) {
      name = ws.persistentVolumeClaim.claimName;
      modes = accessModes[name];
    } else if (ws.volumeClaimTemplate) {
      const meta = ws.volumeClaimTemplate.metadata as { name?: string } | undefined;
      name = tektonClaimName(meta?.name, ws.name, uid);
      template = ws.volumeClaimTemplate;
      modes = (ws.volumeClaimTemplate.spec as { accessModes?: string[] } | undefined)?.accessModes;
    }
    if (!name) continue;
    const existing = byName.get(name);
    if (existing) existing.workspaces.push(ws.name);
    else
      byName.set(name, {
        name,
        workspaces: [ws.name],
        ...(template ? { template } : {}),
        ...(modes?.length ? { accessModes: [...modes] } : {}),
      });
  }
  return [...byName.values()];
}

export type CoscheduledClaims = NonNullable<AffinityPolicySpec["coscheduledClaims"]>;
export const DEFAULT_COSCHEDULED_CLAIMS: CoscheduledClaims = "SingleNode";

/** Whether a claim gets a placeholder of its own in workspaces mode. */
export function coscheduled(claim: PlannedClaim, which: CoscheduledClaims): boolean {
  return which === "All" || isSingleNodeClaim(claim);
}

/** `accessModes`: those of the run's user PVCs, as read (runClaims). `which`: the policy's
 * coscheduledClaims (workspaces mode only; the run-wide placeholder stands for every claim). */
export function planPlaceholders(
  run: PipelineRun,
  mode: Mode,
  accessModes: ClaimAccessModes = {},
  which: CoscheduledClaims = DEFAULT_COSCHEDULED_CLAIMS,
): PlaceholderPlan[] {
  const uid = run.metadata.uid ?? "";
  if (mode === "disabled") return [];
  const claims = runClaims(run, accessModes);
  if (mode !== "workspaces") return [{ name: placeholderName(uid, RUN_KEY), claims }];
  return claims
    .filter((claim) => coscheduled(claim, which))
    .map((claim) => ({ name: placeholderName(uid, `claim:${claim.name}`), claims: [claim] }));
}

/** The run's claims that no plan stands for (workspaces mode, coscheduledClaims SingleNode): usable from
 * every node, they pin no task (SHARED_CLAIMS_ANNOTATION). */
export function sharedClaims(run: PipelineRun, plans: PlaceholderPlan[], mode: Mode): string[] {
  if (mode !== "workspaces") return [];
  const planned = new Set(plans.flatMap((p) => p.claims.map((c) => c.name)));
  return runClaims(run)
    .map((c) => c.name)
    .filter((name) => !planned.has(name));
}

interface PipelineTaskShape {
  name?: string;
  workspaces?: { name?: string; workspace?: string }[];
  taskSpec?: { workspaces?: { name?: string }[] };
  pipelineRef?: unknown;
  pipelineSpec?: unknown;
}

/** `$(workspaces.<name>.` references in an embedded task spec. */
const WORKSPACE_REFERENCE = /\$\(workspaces\.([^.)]+)[.)]/g;

/**
 * The run workspaces each pipeline task (finally tasks too) binds, by task name, read from the run's
 * inline pipelineSpec; undefined when the run alone does not say: a pipelineRef (resolved only by Tekton),
 * a pipeline in a pipeline, or an embedded task spec that declares or uses a workspace its pipeline task
 * does not bind (Tekton propagates the pipeline's workspaces into embedded specs).
 */
export function pipelineTaskWorkspaces(run: PipelineRun): Map<string, Set<string>> | undefined {
  const spec = run.spec.pipelineSpec as
    | { tasks?: PipelineTaskShape[]; finally?: PipelineTaskShape[] }
    | undefined;
  if (!spec || run.spec.pipelineRef) return undefined;
  const out = new Map<string, Set<string>>();
  for (const task of [...(spec.tasks ?? []), ...(spec.finally ?? [])]) {
    if (!task?.name || task.pipelineRef || task.pipelineSpec) return undefined;
    const bound = new Map<string, string>();
    for (const b of task.workspaces ?? []) {
      if (!b?.name) return undefined;
      // Tekton binds a pipeline workspace of the binding's own name when `workspace` is left out.
      bound.set(b.name, b.workspace || b.name);
    }
    if (task.taskSpec) {
      const used = [
        ...(task.taskSpec.workspaces ?? []).map((w) => w?.name),
        ...[...JSON.stringify(task.taskSpec).matchAll(WORKSPACE_REFERENCE)].map((m) => m[1]),
      ];
      if (used.some((name) => name === undefined || !bound.has(name))) return undefined;
    }
    out.set(task.name, new Set(bound.values()));
  }
  return out;
}

/** A pipeline task that binds two claims with placeholders of their own (workspaces mode): its pod cannot
 * be beside both, wherever they land. `workspaces`: the pipeline workspaces it binds them through, one per
 * claim. */
export interface ClaimConflict {
  task: string;
  workspaces: string[];
}

/** The first pipeline task, in spec order, that binds two or more claims the plans hold apart (workspaces
 * mode), read from the run's inline pipelineSpec; undefined when none does or the run does not say
 * (pipelineTaskWorkspaces: then the pods webhook refuses such a task's pod, later). */
export function claimConflict(
  run: PipelineRun,
  mode: Mode,
  plans: PlaceholderPlan[],
): ClaimConflict | undefined {
  if (mode !== "workspaces") return undefined;
  const tasks = pipelineTaskWorkspaces(run);
  if (!tasks) return undefined;
  const claimOf = new Map<string, string>();
  for (const plan of plans)
    for (const c of plan.claims) for (const ws of c.workspaces) claimOf.set(ws, c.name);
  for (const [task, workspaces] of tasks) {
    const byClaim = new Map<string, string>();
    for (const ws of workspaces) {
      const claim = claimOf.get(ws);
      if (claim !== undefined && !byClaim.has(claim)) byClaim.set(claim, ws);
    }
    if (byClaim.size > 1) return { task, workspaces: [...byClaim.values()] };
  }
  return undefined;
}

/** What a run shows when a task binds two claims held apart: the task, the workspaces, and what to do. */
export function conflictMessage(c: ClaimConflict): string {
  return (
    `task "${c.task}" binds ${c.workspaces.length} claim-backed workspaces whose volumes attach to one node at a time ` +
    `(${c.workspaces.join(", ")}), but mode "workspaces" places each such claim on a node of its own and a TaskRun runs on one node: ` +
    'bind at most one of them per task (ReadWriteMany and ReadOnlyMany claims do not count), or use an AffinityPolicy with mode "pipelineruns"'
  );
}

/** The placeholder a task pod must follow, by the PVC claims it mounts (workspaces mode) or the run. */
export function placeholderForPod(
  runUid: string,
  mode: Mode,
  podClaims: string[],
): { name?: string; problem?: string } {
  if (mode === "disabled") return {};
  if (mode !== "workspaces") return { name: placeholderName(runUid, RUN_KEY) };
  const claims = [...new Set(podClaims)];
  if (claims.length === 0) return {};
  if (claims.length > 1) {
    return {
      problem:
        `this TaskRun mounts ${claims.length} PersistentVolumeClaim-backed workspaces whose volumes attach to one node at a time (${claims.join(", ")}), ` +
        'but mode "workspaces" can keep only one such claim per TaskRun on one node; bind at most one of them per task ' +
        '(ReadWriteMany and ReadOnlyMany claims do not count), or use an AffinityPolicy with mode "pipelineruns"',
    };
  }
  return { name: placeholderName(runUid, `claim:${claims[0]}`) };
}
