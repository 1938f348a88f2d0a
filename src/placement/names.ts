// Deterministic names, so that every replica (and every retry) computes the same objects.

import { createHash } from "node:crypto";

function shortHash(...parts: string[]): string {
  return createHash("sha256").update(parts.join("/")).digest("hex").slice(0, 10);
}

/** Name of a placeholder StatefulSet: stable per (run uid, what it holds), short enough that its pod's
 * name and controller-revision-hash label stay under 63 characters. */
export function placeholderName(runUid: string, key: string): string {
  return `affinity-placeholder-${shortHash(runUid, key)}`;
}

/** The PVC name Tekton gives a volumeClaimTemplate workspace (pkg/reconciler/volumeclaim): the template's
 * name (or "pvc") plus the first 10 hex digits of sha256(workspace name + owner uid). We create the claim
 * under that name before un-gating, so the placeholder can mount it; Tekton then finds it already there. */
export function tektonClaimName(
  templateName: string | undefined,
  workspaceName: string,
  runUid: string,
): string {
  const hash = createHash("sha256")
    .update(workspaceName + runUid)
    .digest("hex")
    .slice(0, 10);
  return `${templateName || "pvc"}-${hash}`;
}
