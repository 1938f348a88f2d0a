// Small, plain types for the objects this project reads and writes. The AffinityPolicy spec and
// status come from the CRD (src/api/generated, regenerate with `npm run generate`); PipelineRun is
// only the subset of Tekton's tekton.dev/v1 type that we actually use.

import type {
  AffinityPolicySpec,
  AffinityPolicyStatus,
  Condition,
  LabelSelector,
  LabelSelectorRequirement,
  LocalObjectReference,
  Toleration,
} from "./generated/affinitypolicy.js";

export type {
  AffinityPolicySpec,
  AffinityPolicyStatus,
  Condition,
  LabelSelector,
  LabelSelectorRequirement,
  LocalObjectReference,
  Toleration,
};

export type Mode = AffinityPolicySpec["mode"];
export const MODES: readonly Mode[] = ["workspaces", "pipelineruns", "isolate-pipelinerun", "disabled"];

export type Strategy = NonNullable<AffinityPolicySpec["strategy"]>;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** The subset of metav1.ObjectMeta this project uses. */
export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  /** RFC 3339 timestamp, as the API server serialises it. */
  creationTimestamp?: string;
  /** Set once deletion was requested; such objects are on their way out. */
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
}

export interface AffinityPolicy {
  apiVersion: "affinity.tekton.dev/v1alpha1";
  kind: "AffinityPolicy";
  metadata: ObjectMeta;
  spec: AffinityPolicySpec;
  status?: AffinityPolicyStatus;
}

/** The parts of a Tekton PodTemplate a placeholder inherits (plus affinity, which we merge into). */
export interface PodTemplate {
  nodeSelector?: Record<string, string>;
  tolerations?: Toleration[];
  priorityClassName?: string;
  securityContext?: Record<string, unknown>;
  imagePullSecrets?: LocalObjectReference[];
  affinity?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface WorkspaceBinding {
  name: string;
  subPath?: string;
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
  volumeClaimTemplate?: Record<string, unknown>;
  emptyDir?: Record<string, unknown>;
  configMap?: Record<string, unknown>;
  secret?: Record<string, unknown>;
  projected?: Record<string, unknown>;
  csi?: Record<string, unknown>;
}

export interface PipelineRunCondition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

/** Minimal tekton.dev/v1 PipelineRun. */
export interface PipelineRun {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: {
    /** e.g. "PipelineRunPending" while gated, "Cancelled". */
    status?: string;
    taskRunTemplate?: {
      serviceAccountName?: string;
      podTemplate?: PodTemplate;
    };
    workspaces?: WorkspaceBinding[];
    pipelineRef?: { name?: string; resolver?: string; params?: unknown[] };
    pipelineSpec?: Record<string, unknown>;
    [field: string]: unknown;
  };
  status?: {
    conditions?: PipelineRunCondition[];
    startTime?: string;
    completionTime?: string;
    [field: string]: unknown;
  };
}
