// What placeholders a run needs, per mode. Pure: the run reconciler converges the cluster to this plan.
//
// Every placeholder mounts the claims it stands for, as Tekton's assistant does: the volume then
// binds and attaches where the placeholder is (or the placeholder follows a volume that is already
// bound to a node or zone), and the tasks that follow it find their volumes there.
//   workspaces              one placeholder per claim, mounting that claim;
//   pipelineruns, isolate   one placeholder for the run, mounting every claim of the run.

import type { Mode, PipelineRun } from "../api/types.js";
import { placeholderName, tektonClaimName } from "./names.js";

/** A PersistentVolumeClaim a run's workspaces bind. */
export interface PlannedClaim {
  name: string;
  /** Workspace names backed by this claim. */
  workspaces: string[];
  /** Set when the claim comes from a volumeClaimTemplate: we create it with Tekton's name. */
  template?: Record<string, unknown>;
}

export interface PlaceholderPlan {
  /** StatefulSet name (and the value of the placeholder label its pod carries). */
  name: string;
  /** The claims the placeholder mounts, so their volumes land on its node. */
  claims: PlannedClaim[];
}

export const RUN_KEY = "pipelinerun";

/** The run's claims in workspace order, one entry per claim (workspaces sharing one are merged). */
export function runClaims(run: PipelineRun): PlannedClaim[] {
  const uid = run.metadata.uid ?? "";
  const byName = new Map<string, PlannedClaim>();
  for (const ws of run.spec.workspaces ?? []) {
    let name: string | undefined;
    let template: Record<string, unknown> | undefined;
    if (ws.persistentVolumeClaim?.claimName) {
      name = ws.persistentVolumeClaim.claimName;
    } else if (ws.volumeClaimTemplate) {
      const meta = ws.volumeClaimTemplate.metadata as { name?: string } | undefined;
      name = tektonClaimName(meta?.name, ws.name, uid);
      template = ws.volumeClaimTemplate;
    }
    if (!name) continue;
    const existing = byName.get(name);
    if (existing) existing.workspaces.push(ws.name);
    else byName.set(name, { name, workspaces: [ws.name], ...(template ? { template } : {}) });
  }
  return [...byName.values()];
}

export function planPlaceholders(run: PipelineRun, mode: Mode): PlaceholderPlan[] {
  const uid = run.metadata.uid ?? "";
  if (mode === "disabled") return [];
  const claims = runClaims(run);
  if (mode !== "workspaces") return [{ name: placeholderName(uid, RUN_KEY), claims }];
  return claims.map((claim) => ({ name: placeholderName(uid, `claim:${claim.name}`), claims: [claim] }));
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
        `this TaskRun mounts ${claims.length} PersistentVolumeClaim-backed workspaces (${claims.join(", ")}), ` +
        'but mode "workspaces" can keep only one claim per TaskRun on one node; bind at most one PVC-backed ' +
        'workspace per task, or use an AffinityPolicy with mode "pipelineruns"',
    };
  }
  return { name: placeholderName(runUid, `claim:${claims[0]}`) };
}
