// AdmissionReview plumbing shared by our webhooks.

export interface AdmissionRequest<T = unknown> {
  uid: string;
  kind: { group: string; version: string; kind: string };
  namespace?: string;
  name?: string;
  operation: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
  object?: T;
  oldObject?: T;
  dryRun?: boolean;
  userInfo?: { username?: string; groups?: string[] };
}

export interface AdmissionReview<T = unknown> {
  apiVersion: string;
  kind: "AdmissionReview";
  request?: AdmissionRequest<T>;
}

export interface JsonPatchOp {
  op: "add" | "replace" | "remove" | "test";
  path: string;
  value?: unknown;
}

export interface AdmissionDecision {
  allowed: boolean;
  patch?: JsonPatchOp[];
  /** Shown to the user when not allowed: what is wrong and how to fix it. */
  message?: string;
  warnings?: string[];
}

export function reviewResponse(uid: string, decision: AdmissionDecision) {
  const response: Record<string, unknown> = { uid, allowed: decision.allowed };
  if (decision.patch?.length) {
    response.patchType = "JSONPatch";
    response.patch = Buffer.from(JSON.stringify(decision.patch)).toString("base64");
  }
  if (!decision.allowed)
    response.status = { code: 403, reason: "Forbidden", message: decision.message ?? "denied" };
  if (decision.warnings?.length) response.warnings = decision.warnings;
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}

/** JSON Pointer escaping for map keys such as "affinity.tekton.dev/managed". */
export function pointer(...segments: string[]): string {
  return `/${segments.map((s) => s.replaceAll("~", "~0").replaceAll("/", "~1")).join("/")}`;
}

/** Ops that set `key: value` in metadata.labels or metadata.annotations, creating the map if absent. */
export function setMetadataEntries(
  meta: { labels?: Record<string, string>; annotations?: Record<string, string> } | undefined,
  field: "labels" | "annotations",
  entries: Record<string, string>,
): JsonPatchOp[] {
  if (!meta?.[field]) return [{ op: "add", path: pointer("metadata", field), value: entries }];
  return Object.entries(entries).map(([k, v]) => ({
    op: "add",
    path: pointer("metadata", field, k),
    value: v,
  }));
}
