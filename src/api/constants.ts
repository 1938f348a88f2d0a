// Names this project owns. Everything lives under affinity.tekton.dev so it can never collide
// with Tekton's own affinity assistant (which uses tekton.dev/* and app.kubernetes.io/component=affinity-assistant).

export const GROUP = "affinity.tekton.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "AffinityPolicy";
export const PLURAL = "affinitypolicies";

export const TEKTON_GROUP = "tekton.dev";
export const TEKTON_VERSION = "v1";

/** Label put on a gated PipelineRun. Tekton copies run labels to its TaskRuns and Pods, so the pod
 * webhook's objectSelector can match it and no other pod in the cluster reaches our webhook. */
export const MANAGED_LABEL = `${GROUP}/managed`;
/** The managed label's value while we co-schedule the run: the pods webhook and the marks guard select it. */
export const MANAGED = "true";
/** Its value once the run was released without co-scheduling (onMaxWait: Release): still watched, so its
 * template claims are cleaned up when it finishes, but its later pods skip the pods webhook, and the
 * user owns the run's marks again. */
export const RELEASED = "released";

/** Whether the controller watches the run: managed, or released but not yet cleaned up after. */
export function isWatchedRun(run: { metadata: { labels?: Record<string, string> } }): boolean {
  const value = run.metadata.labels?.[MANAGED_LABEL];
  return value === MANAGED || value === RELEASED;
}
/** Label on a run's pods naming the run; Tekton sets tekton.dev/pipelineRun too, but we only trust our own. */
export const RUN_LABEL = `${GROUP}/pipelinerun`;

/** Label the gate puts on a run whose placement it writes into the run itself (run-placement.ts): its value
 * is a token the run's placeholder pod also carries, and the run's task pods select it by pod affinity.
 * Tekton copies it to the task pods, and the pods webhook's objectSelector skips pods that carry it. */
export const PLACEMENT_LABEL = `${GROUP}/placement`;

/** Annotations the gate webhook records on a run. */
export const MODE_ANNOTATION = `${GROUP}/mode`;
export const POLICY_ANNOTATION = `${GROUP}/policy`;
/** On a finished run whose placeholders and claims the controller has removed: nothing is left to do. */
export const CLEANED_UP_ANNOTATION = `${GROUP}/cleaned-up`;
/** "true" when *we* set spec.status=PipelineRunPending; absent when the user pended the run themselves. */
export const GATED_ANNOTATION = `${GROUP}/gated`;
/** When the gate took over a run that a user or a queueing controller had created Pending and then
 * released (RFC 3339): its maxWait counts from here, not from its creation. */
export const GATED_AT_ANNOTATION = `${GROUP}/gated-at`;
/** On a run of mode workspaces that carries its placement (run-placement.ts): the policy's coscheduledClaims
 * when it was gated. Its task terms follow the placeholders of those claims, so they stay its placeholders. */
export const COSCHEDULED_CLAIMS_ANNOTATION = `${GROUP}/coscheduled-claims`;
/** On a placed run in mode workspaces: the claims it binds that got no placeholder (usable from every node
 * at once: coscheduledClaims SingleNode), comma-separated; its task pods follow only the others. */
export const SHARED_CLAIMS_ANNOTATION = `${GROUP}/shared-claims`;
/** On a placed run: the node (or nodes) its placeholders were scheduled on. */
export const PLACED_ON_ANNOTATION = `${GROUP}/placed-on`;
/** On a run that waited past maxWait and was started without co-scheduling (onMaxWait: Release). */
export const RELEASED_UNCOSCHEDULED_ANNOTATION = `${GROUP}/released-without-coscheduling`;
/** Tekton's own: in workspaces mode, delete the run's volumeClaimTemplate PVCs when it finishes ("true"). */
export const AUTO_CLEANUP_PVC_ANNOTATION = "tekton.dev/auto-cleanup-pvc";
/** Where Tekton's resolvers run, and its cluster resolver keeps its settings (OpenShift Pipelines:
 * openshift-pipelines; --tekton-resolvers-namespace). */
export const DEFAULT_TEKTON_RESOLVERS_NAMESPACE = "tekton-pipelines-resolvers";
/** Tekton's own: it labels every TaskRun pod with its PipelineRun's name; its assistant carries it too. */
export const TEKTON_PIPELINERUN_LABEL = "tekton.dev/pipelineRun";
/** Human-readable "what this run is waiting for", visible in kubectl describe. */
export const WAITING_ANNOTATION = `${GROUP}/waiting-for`;

/** Labels on placeholder StatefulSets and their pods. */
export const COMPONENT_LABEL = "app.kubernetes.io/component";
export const PLACEHOLDER_COMPONENT = "affinity-placeholder";
export const PLACEHOLDER_LABEL = `${GROUP}/placeholder`;
export const PLACEHOLDER_RUN_UID_LABEL = `${GROUP}/pipelinerun-uid`;
export const ISOLATE_LABEL = `${GROUP}/isolate`;
/** On a placeholder StatefulSet: the node its pod was evicted from, and when (for the settle period). */
export const EVICTED_FROM_ANNOTATION = `${GROUP}/evicted-from`;
export const EVICTED_AT_ANNOTATION = `${GROUP}/evicted-at`;
/** On a placeholder StatefulSet: a hash of its pod template, to see that its policy changed since. */
export const TEMPLATE_HASH_ANNOTATION = `${GROUP}/template-hash`;
/** On a placeholder StatefulSet: the workspaces its claims are bound to. */
export const WORKSPACES_ANNOTATION = `${GROUP}/workspaces`;
/** A run's reservation (reserve: LargestTask): its own component, so isolation and spreading, which select
 * placeholders, ignore it. Its pod and the placeholder's carry RESERVATION_LABEL (value: the plan). */
export const RESERVATION_COMPONENT = "affinity-reservation";
export const RESERVATION_LABEL = `${GROUP}/reservation`;
/** The lowest-priority, never-preempting PriorityClass deploy/ installs for reservation pods. */
export const RESERVATION_PRIORITY_CLASS = "tekton-affinity-reservation";

/** The topology key a placeholder shares with its tasks unless a policy names another: one node. */
export const DEFAULT_TOPOLOGY_KEY = "kubernetes.io/hostname";

/** On a reservation set: the task it holds room for and how much, e.g. "build: cpu 2, memory 1Gi". */
export const RESERVED_FOR_ANNOTATION = `${GROUP}/reserved-for`;
/** Marks the reservation's StatefulSet selector apart from the placeholder pod, which carries the
 * reservation label too. */
export const ROLE_LABEL = `${GROUP}/role`;

/** On the webhook Secret: set it (any value) to replace the CA, in steps, without failing an admission. */
export const ROTATE_CA_ANNOTATION = `${GROUP}/rotate-ca`;
/** On the webhook Secret: the rotation step last taken. */
export const LAST_STEP_ANNOTATION = `${GROUP}/ca-last-step`;
/** On each replica's Lease: the label that finds them, and what CA the replica trusts and serves with. */
export const REPLICA_LEASE_LABEL = `${GROUP}/webhook-replica`;
export const TRUSTS_ANNOTATION = `${GROUP}/trusts`;
export const SERVES_ANNOTATION = `${GROUP}/serves`;

/** The policy name a run records when the operator's cluster-wide default policy (--default-mode) applies. */
export const CLUSTER_DEFAULT_POLICY = "(cluster-default)";

export const PENDING_STATUS = "PipelineRunPending";
