// What placeholders a run needs, per mode. Pure: the run reconciler converges the cluster to this plan.

import type { Mode, PipelineRun } from "../api/types.js";
import { placeholderName, tektonClaimName } from "./names.js";

export interface PlaceholderPlan {
  /** StatefulSet name (and the value of the placeholder label its pod carries). */
  name: string;
  /** The claim the placeholder mounts (workspaces mode), so the volume lands on its node. */
  claimName?: string;
  /** Workspace names backed by that claim. */
  workspaces: string[];
  /** Set when the claim comes from a volumeClaimTemplate: we create it with Tekton's name. */
  claimTemplate?: Record<string, unknown>;
}

export const RUN_KEY = "pipelinerun";

export function planPlaceholders(run: PipelineRun, mode: Mode): PlaceholderPlan[] {
  const uid = run.metadata.uid ?? "";
  if (mode === "disabled") return [];
  if (mode !== "workspaces") return [{ name: placeholderName(uid, RUN_KEY), workspaces: [] }];

  const byClaim = new Map<string, PlaceholderPlan>();
  for (const ws of run.spec.workspaces ?? []) {
    let claimName: string | undefined;
    let claimTemplate: Record<string, unknown> | undefined;
    if (ws.persistentVolumeClaim?.claimName) {
      claimName = ws.persistentVolumeClaim.claimName;
    } else if (ws.volumeClaimTemplate) {
      const meta = ws.volumeClaimTemplate.metadata as { name?: string } | undefined;
      claimName = tektonClaimName(meta?.name, ws.name, uid);
      claimTemplate = ws.volumeClaimTemplate;
    }
    if (!claimName) continue;
    const existing = byClaim.get(claimName);
    if (existing) existing.workspaces.push(ws.name);
    else
      byClaim.set(claimName, {
        name: placeholderName(uid, `claim:${claimName}`),
        claimName,
        workspaces: [ws.name],
        claimTemplate,
      });
  }
  return [...byClaim.values()];
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
