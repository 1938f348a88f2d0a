// The pod settings of a run's placeholder, from its policy and the run itself.
//
// Precedence ("Tekton's default" is config-defaults' default-affinity-assistant-pod-template, the
// cluster-wide default teams set for Tekton's own assistant; it keeps Tekton's order under the policy):
// - serviceAccountName: the policy's > Tekton's default > the run's
//   spec.taskRunTemplate.serviceAccountName > unset (the namespace's default service account). As in
//   Tekton, the default template's account overrides the one the run's pods use.
// - nodeSelector, tolerations, priorityClassName, securityContext, imagePullSecrets: the run's
//   spec.taskRunTemplate.podTemplate field when set (the run knows where its own pods may go) >
//   the policy's spec.placeholder field > Tekton's default > unset.
// - securityContext: merged field by field over a pod security context meeting the `restricted` Pod
//   Security Standard: the run's > the policy's > Tekton's default > the restricted defaults. A run
//   that sets only fsGroup keeps runAsNonRoot and the seccomp profile, so it still passes `restricted`
//   admission. The placeholder never runs as root, whatever the merge gives: a run that sets
//   `runAsUser: 0` or `runAsNonRoot: false` asks that for its tasks, and a pause container needs no
//   identity at all. Kept, that pair (with the restricted default's runAsNonRoot) is a pod the kubelet
//   refuses to start, so the run would wait for a placeholder that never runs; the placeholder keeps the
//   restricted identity (uid 65532, runAsNonRoot) instead, and the tasks still run as the run asks.
// - affinity: the run's podTemplate.affinity, all of it (as Tekton's assistant inherits it): its
//   nodeAffinity, so the placeholder only lands where the run's own pods may go (its tasks would
//   otherwise be stranded between two required rules), and its podAffinity and podAntiAffinity, merged
//   with ours (statefulset.ts), so a run that asks to be beside or away from some pods gets that node.
// - image: the policy's > the operator's --default-placeholder-image > registry.k8s.io/pause:3.10.
// - resources: the policy's; requests default per resource to cpu 1m and memory 8Mi, except for a
//   resource that has a limit but no request (Kubernetes then uses the limit as the request, and a
//   default request above the limit would make the pod invalid).
// - os: Windows when the run's pods can only land on Windows nodes (its nodeSelector, or every required
//   node affinity term, asks for kubernetes.io/os windows). The pod then says `os.name: windows` and
//   carries no Linux-only setting, which the apiserver refuses on such a pod (seccomp, capabilities,
//   uid, fsGroup, ...): it keeps runAsNonRoot, as the non-admin ContainerUser unless the run names a
//   user, and never a HostProcess container. The default pause image is built for Windows too.

import type { AffinityPolicySpec, LocalObjectReference, PipelineRun, Toleration } from "./types.js";

export const DEFAULT_PLACEHOLDER_IMAGE = "registry.k8s.io/pause:3.10";

export const DEFAULT_PLACEHOLDER_REQUESTS: Readonly<Record<string, string>> = { cpu: "1m", memory: "8Mi" };

/** Pod-level security context meeting the restricted Pod Security Standard. */
export const RESTRICTED_POD_SECURITY_CONTEXT: Readonly<Record<string, unknown>> = Object.freeze({
  runAsNonRoot: true,
  runAsUser: 65532,
  seccompProfile: { type: "RuntimeDefault" },
});

/** Container-level security context meeting the restricted Pod Security Standard. */
export const RESTRICTED_CONTAINER_SECURITY_CONTEXT: Readonly<Record<string, unknown>> = Object.freeze({
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  readOnlyRootFilesystem: true,
});

export type Quantity = number | string;

export interface PlaceholderTemplate {
  serviceAccountName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: Toleration[];
  priorityClassName?: string;
  /** Pod-level security context. */
  securityContext: Record<string, unknown>;
  imagePullSecrets?: LocalObjectReference[];
  resources: { requests: Record<string, Quantity>; limits?: Record<string, Quantity> };
  image: string;
  /** Set when the placeholder must run on Windows nodes (the header's `os`). */
  os?: "windows";
  /** The run's pod node affinity (a core/v1 NodeAffinity). */
  nodeAffinity?: Record<string, unknown>;
  /** The run's pod affinity and anti-affinity (core/v1 PodAffinity, PodAntiAffinity), as written: the
   * gate's own placement term is the placement layer's to drop. */
  podAffinity?: Record<string, unknown>;
  podAntiAffinity?: Record<string, unknown>;
}

/** The fields of Tekton's AffinityAssistantTemplate a placeholder takes from config-defaults. */
export interface TektonDefaultTemplate {
  serviceAccountName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: Toleration[];
  priorityClassName?: string;
  securityContext?: Record<string, unknown>;
  imagePullSecrets?: LocalObjectReference[];
}

function definedEntries<T>(map: Record<string, T | undefined> | undefined): Record<string, T> | undefined {
  if (!map) return undefined;
  const out: Record<string, T> = {};
  for (const [k, v] of Object.entries(map)) if (v !== undefined) out[k] = v;
  return out;
}

function clone<T>(value: T): T {
  return value === undefined ? value : structuredClone(value);
}

/** The placeholder's identity is never root (see the header): root settings give way to the restricted ones. */
function withoutRoot(context: Record<string, unknown>): Record<string, unknown> {
  const asksForRoot = context.runAsUser === 0 || context.runAsNonRoot === false;
  if (!asksForRoot) return context;
  return {
    ...context,
    runAsNonRoot: RESTRICTED_POD_SECURITY_CONTEXT.runAsNonRoot,
    runAsUser:
      context.runAsUser === 0 || context.runAsUser === undefined
        ? RESTRICTED_POD_SECURITY_CONTEXT.runAsUser
        : context.runAsUser,
  };
}

const OS_LABEL = "kubernetes.io/os";

/** Whether pods with this nodeSelector and node affinity can only land on Windows nodes. */
export function onlyWindowsNodes(
  nodeSelector: Record<string, string> | undefined,
  nodeAffinity: Record<string, unknown> | undefined,
): boolean {
  if (nodeSelector?.[OS_LABEL] === "windows") return true;
  type Requirement = { key?: string; operator?: string; values?: string[] };
  const required = nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution as
    | { nodeSelectorTerms?: { matchExpressions?: Requirement[] }[] }
    | undefined;
  const terms = required?.nodeSelectorTerms ?? [];
  // Terms are ORed: every one must require Windows.
  return (
    terms.length > 0 &&
    terms.every((t) =>
      (t.matchExpressions ?? []).some(
        (e) =>
          e.key === OS_LABEL &&
          e.operator === "In" &&
          (e.values ?? []).length > 0 &&
          e.values!.every((v) => v === "windows"),
      ),
    )
  );
}

/** A pod security context keeping only what a Windows pod may carry (the header's `os`). */
function forWindows(context: Record<string, unknown>): Record<string, unknown> {
  const { hostProcess: _never, ...options } = (context.windowsOptions ?? {}) as Record<string, unknown>;
  return {
    runAsNonRoot: context.runAsNonRoot ?? true,
    windowsOptions: { runAsUserName: "ContainerUser", ...options },
  };
}

/** The container security context of a placeholder or reservation: `restricted`'s on Linux; none on
 * Windows, where every one of those fields is refused. */
export function containerSecurityContext(
  t: Pick<PlaceholderTemplate, "os">,
): Record<string, unknown> | undefined {
  return t.os === "windows" ? undefined : { ...RESTRICTED_CONTAINER_SECURITY_CONTEXT };
}

export function effectivePlaceholderTemplate(
  spec: AffinityPolicySpec,
  run: PipelineRun,
  tekton: TektonDefaultTemplate = {},
  defaultImage: string = DEFAULT_PLACEHOLDER_IMAGE,
): PlaceholderTemplate {
  const policy = spec.placeholder ?? {};
  const trt = run.spec.taskRunTemplate;
  const pod = trt?.podTemplate ?? {};

  const limits = definedEntries(policy.resources?.limits);
  const requests: Record<string, Quantity> = {};
  for (const [name, q] of Object.entries(DEFAULT_PLACEHOLDER_REQUESTS)) {
    if (limits?.[name] === undefined) requests[name] = q;
  }
  Object.assign(requests, definedEntries(policy.resources?.requests));

  const template: PlaceholderTemplate = {
    securityContext: withoutRoot(
      clone({
        ...RESTRICTED_POD_SECURITY_CONTEXT,
        ...(tekton.securityContext ?? {}),
        ...(policy.securityContext ?? {}),
        ...(pod.securityContext ?? {}),
      }),
    ),
    resources: limits && Object.keys(limits).length > 0 ? { requests, limits } : { requests },
    image: policy.image?.trim() ? policy.image : defaultImage,
  };
  const serviceAccountName =
    policy.serviceAccountName || tekton.serviceAccountName || trt?.serviceAccountName;
  if (serviceAccountName) template.serviceAccountName = serviceAccountName;
  const nodeSelector = pod.nodeSelector ?? definedEntries(policy.nodeSelector) ?? tekton.nodeSelector;
  if (nodeSelector) template.nodeSelector = { ...nodeSelector };
  const tolerations = pod.tolerations ?? policy.tolerations ?? tekton.tolerations;
  if (tolerations) template.tolerations = clone(tolerations);
  const priorityClassName = pod.priorityClassName || policy.priorityClassName || tekton.priorityClassName;
  if (priorityClassName) template.priorityClassName = priorityClassName;
  const affinity = pod.affinity as Record<string, Record<string, unknown> | undefined> | undefined;
  for (const part of ["nodeAffinity", "podAffinity", "podAntiAffinity"] as const) {
    const value = affinity?.[part];
    if (value) template[part] = clone(value);
  }
  const imagePullSecrets = pod.imagePullSecrets ?? policy.imagePullSecrets ?? tekton.imagePullSecrets;
  if (imagePullSecrets) template.imagePullSecrets = clone(imagePullSecrets);
  if (onlyWindowsNodes(template.nodeSelector, template.nodeAffinity)) {
    template.os = "windows";
    template.securityContext = forWindows(template.securityContext);
  }
  return template;
}
