// What a run's largest task pod requests, for the `reserve: LargestTask` policy setting: the run is placed
// only on a node with room for that pod. Pure: the caller reads the Pipeline, Tasks and LimitRanges (the
// *Source functions say which to read) and hands them in.
//
// The request computed is the one the scheduler will see for the task's pod, so it follows what Tekton
// (pkg/pod/pod.go Build, pkg/internal/computeresources) and then Kubernetes (pod defaulting, LimitRanger
// admission) do to the containers' requests, in that order:
//   1. steps: stepTemplate, then the taskRunSpec's stepSpecs, deep-merged per resource name; then a
//      task-level computeResources replaces the step requests (split evenly over the steps);
//   2. with a LimitRange, Tekton gives each step without a request its share of the LimitRange's default
//      request (divided by the number of steps, at least its min);
//   3. Kubernetes defaults a missing request to the container's limit;
//   4. LimitRanger gives every container still without a request the LimitRange's default request: the
//      sidecars, and the init containers Tekton injects (prepare, always; place-scripts, ...);
//   5. the pod's effective request is, per resource, max(sum of its containers, largest init container).
// Only cpu and memory are computed; other resources (ephemeral-storage, extended resources) are ignored.
// Not modelled: Tekton's default-container-resource-requirements ConfigMap (off by default), pod overhead
// from a RuntimeClass, and the min/max-merging of several LimitRanges (limitRangeDefaults takes the first).

import { parseCpuMillis, parseMemoryBytes, type Quantity } from "../api/quantity.js";
import type { PipelineRun } from "../api/types.js";

export { parseCpuMillis, parseMemoryBytes, parseQuantity, type Quantity } from "../api/quantity.js";

export interface Resources {
  /** Millicores. */
  cpuMillis: number;
  /** Bytes. */
  memoryBytes: number;
}

function formatCpu(millis: number): string {
  return millis % 1000 === 0 ? String(millis / 1000) : `${millis}m`;
}

const MEMORY_UNITS: [string, number][] = [
  ["Ei", 2 ** 60],
  ["Pi", 2 ** 50],
  ["Ti", 2 ** 40],
  ["Gi", 2 ** 30],
  ["Mi", 2 ** 20],
  ["Ki", 2 ** 10],
  ["E", 1e18],
  ["P", 1e15],
  ["T", 1e12],
  ["G", 1e9],
  ["M", 1e6],
  ["k", 1e3],
];

/** The shortest exact form (binary units first on a tie); "~" and one decimal when the exact form would
 * be a long run of digits (sums of divided defaults such as 1073741823 bytes). */
function formatMemory(bytes: number): string {
  let best = String(bytes);
  for (const [suffix, unit] of MEMORY_UNITS) {
    const text = `${bytes / unit}${suffix}`;
    if (bytes % unit === 0 && text.length < best.length) best = text;
  }
  if (best.replace(/[A-Za-z]+$/, "").length <= 5) return best;
  const [suffix, unit] = MEMORY_UNITS.slice(0, 6).find(([, u]) => bytes >= u)!;
  return `~${Number((bytes / unit).toFixed(1))}${suffix}`;
}

/** For events and logs: "cpu 1500m, memory 2Gi". */
export function formatResources(r: Resources): string {
  return `cpu ${formatCpu(r.cpuMillis)}, memory ${formatMemory(r.memoryBytes)}`;
}

export function fits(free: Resources, need: Resources): boolean {
  return need.cpuMillis <= free.cpuMillis && need.memoryBytes <= free.memoryBytes;
}

// ---------------------------------------------------------------------------------------------------------
// Tekton shapes (tekton.dev/v1), only the fields used here

export interface ResourceRequirements {
  requests?: Record<string, Quantity>;
  limits?: Record<string, Quantity>;
}

/** A step, a sidecar or the stepTemplate. `computeResources` is Tekton v1's name, `resources` v1beta1's. */
export interface ContainerSpec {
  name?: string;
  computeResources?: ResourceRequirements;
  resources?: ResourceRequirements;
  [field: string]: unknown;
}

export interface TaskSpec {
  steps?: ContainerSpec[];
  stepTemplate?: ContainerSpec;
  sidecars?: ContainerSpec[];
  /** Set (with kind) only on the embedded spec of a custom task. */
  apiVersion?: string;
  kind?: string;
  [field: string]: unknown;
}

export interface Param {
  name: string;
  value: unknown;
}

export interface TaskRef {
  name?: string;
  /** "Task" (the default) or "ClusterTask"; a custom task's kind, with apiVersion. */
  kind?: string;
  apiVersion?: string;
  resolver?: string;
  params?: Param[];
}

export interface PipelineTask {
  name: string;
  taskRef?: TaskRef;
  taskSpec?: TaskSpec;
  /** Pipelines in pipelines (TEP-0056). */
  pipelineRef?: unknown;
  pipelineSpec?: unknown;
  [field: string]: unknown;
}

export interface PipelineSpec {
  tasks?: PipelineTask[];
  finally?: PipelineTask[];
  [field: string]: unknown;
}

/** A step's or sidecar's override in a PipelineRun's taskRunSpecs (or a TaskRun's spec). */
export interface ContainerOverride {
  name: string;
  computeResources?: ResourceRequirements;
  resources?: ResourceRequirements;
}

/** The parts of a PipelineRun taskRunSpecs entry that change a task pod's requests. */
export interface TaskRunSpecOverrides {
  computeResources?: ResourceRequirements;
  stepSpecs?: ContainerOverride[];
  sidecarSpecs?: ContainerOverride[];
}

// ---------------------------------------------------------------------------------------------------------
// Where the specs come from

/** An inline spec, a ref to read from the cluster, or why neither can be had (`unresolvable` is a message
 * for the user: what the reference is and that the run gets no reservation). */
export type Source<S> = { inline: S } | { ref: SourceRef } | { unresolvable: string };

/** An object to read: by name in the run's namespace, or through the cluster resolver, which Tekton
 * lets read only the namespaces its settings allow (clusterResolverRefusal). */
export interface SourceRef {
  name: string;
  namespace: string;
  resolver?: "cluster";
}

/** The cluster resolver's namespace rules: Tekton's ConfigMap `cluster-resolver-config`, in its resolvers'
 * namespace (tekton-pipelines-resolvers by default). Comma-separated namespace names; blocked "*": only
 * the allowed ones. */
export interface ClusterResolverConfig {
  "allowed-namespaces"?: string;
  "blocked-namespaces"?: string;
}

/**
 * Why Tekton's cluster resolver would refuse to read from `namespace`, or undefined if it would read it.
 * Its order (pkg/resolution/resolver/cluster): blocked names first; then an allowed name passes; then a
 * blocked "*" refuses the rest; then a non-empty allowed list refuses what it does not name. Names match
 * exactly, as Tekton matches them (no trimming).
 */
export function clusterResolverRefusal(namespace: string, config: ClusterResolverConfig): string | undefined {
  const blocked = config["blocked-namespaces"] ?? "";
  const allowed = config["allowed-namespaces"] ?? "";
  const names = (list: string) => list.split(",");
  if (blocked !== "" && names(blocked).includes(namespace))
    return `the cluster resolver's blocked-namespaces lists ${namespace}`;
  if (allowed !== "" && names(allowed).includes(namespace)) return undefined;
  if (blocked === "*")
    return `the cluster resolver's blocked-namespaces is "*" and its allowed-namespaces does not list ${namespace}`;
  if (allowed !== "") return `the cluster resolver's allowed-namespaces does not list ${namespace}`;
  return undefined;
}

const FALLBACK = "reserve: LargestTask falls back to None for this run";
const NOT_FOLLOWED =
  "which tekton-affinity does not follow (it reads Pipelines and Tasks from the cluster only)";

/** A JSON object (not null, not an array). Typed inputs come from the API as loose JSON, so their fields
 * are checked at run time too; the guard keeps the static type it is given. */
function isObject<T>(v: T): v is Exclude<T, null | undefined> & object {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const usesSubstitution = (s: string): boolean => s.includes("$(");

/**
 * The target of a cluster-resolver reference: its params `kind` (which must equal `kind`: the resolver's
 * kinds are lowercase), `name` and `namespace`. All three are required here: the resolver's defaults for
 * kind and namespace live in its ConfigMap, which this module cannot see. A value using parameter
 * substitution ("$(params.x)") is not resolved either.
 */
function clusterResolverTarget(
  params: unknown,
  kind: "pipeline" | "task",
  what: string,
): { ref: SourceRef } | { unresolvable: string } {
  const values = new Map<string, unknown>();
  for (const p of Array.isArray(params) ? params : [])
    if (isObject(p)) values.set(String((p as Param).name), (p as Param).value);
  const param = (name: string): string | undefined => {
    const v = values.get(name);
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  const given = param("kind");
  if (given !== kind) {
    return {
      unresolvable: given
        ? `${what} uses the "cluster" resolver for kind "${given}", not "${kind}"; ${FALLBACK}`
        : `${what} uses the "cluster" resolver without a kind param (its default is in the resolver's ConfigMap); ${FALLBACK}`,
    };
  }
  const name = param("name");
  const namespace = param("namespace");
  if (!name || !namespace) {
    return {
      unresolvable: `${what} uses the "cluster" resolver without a ${name ? "namespace" : "name"} param; ${FALLBACK}`,
    };
  }
  if (usesSubstitution(name) || usesSubstitution(namespace)) {
    return {
      unresolvable: `${what} uses the "cluster" resolver with parameter substitution in its params (name "${name}", namespace "${namespace}"); ${FALLBACK}`,
    };
  }
  return { ref: { name, namespace, resolver: "cluster" } };
}

/**
 * Where a run's Pipeline spec is: inline (spec.pipelineSpec); a Pipeline of the run's namespace
 * (spec.pipelineRef.name); a Pipeline in the namespace a cluster-resolver reference names (kind
 * "pipeline"). Any other resolver (git, bundles, hub, http, ...) is unresolvable.
 */
export function pipelineSource(run: Pick<PipelineRun, "metadata" | "spec">): Source<PipelineSpec> {
  const { pipelineSpec, pipelineRef } = run.spec;
  if (isObject(pipelineSpec)) return { inline: pipelineSpec as PipelineSpec };
  if (!isObject(pipelineRef))
    return { unresolvable: `the run has neither pipelineSpec nor pipelineRef; ${FALLBACK}` };
  const what = "the run's pipelineRef";
  if (pipelineRef.resolver === "cluster") return clusterResolverTarget(pipelineRef.params, "pipeline", what);
  if (pipelineRef.resolver) {
    return {
      unresolvable: `${what} uses the "${pipelineRef.resolver}" resolver, ${NOT_FOLLOWED}; ${FALLBACK}`,
    };
  }
  const name = pipelineRef.name;
  if (!name) return { unresolvable: `${what} names neither a Pipeline nor a resolver; ${FALLBACK}` };
  if (usesSubstitution(name))
    return { unresolvable: `${what} name "${name}" uses substitution; ${FALLBACK}` };
  return { ref: { name, namespace: run.metadata.namespace } };
}

/**
 * Where a pipeline task's Task spec is: inline (taskSpec); a Task of the run's namespace (taskRef.name,
 * kind Task or unset), where Tekton looks for it whatever namespace the Pipeline came from; a Task in the
 * namespace a cluster-resolver reference names (kind "task"). Unresolvable: other resolvers, ClusterTasks,
 * custom tasks (apiVersion and kind set: they run no Tekton task pod whose size is known here) and
 * pipelines in pipelines.
 */
export function taskSource(pipelineTask: PipelineTask, runNamespace: string): Source<TaskSpec> {
  const what = `pipeline task "${pipelineTask.name}"`;
  const { taskRef, taskSpec } = pipelineTask;
  if (pipelineTask.pipelineRef !== undefined || pipelineTask.pipelineSpec !== undefined) {
    return { unresolvable: `${what} runs a pipeline in a pipeline, whose tasks are not sized; ${FALLBACK}` };
  }
  if (isObject(taskSpec)) {
    if (taskSpec.apiVersion && taskSpec.kind) {
      return {
        unresolvable: `${what} is a custom task (${taskSpec.apiVersion} ${taskSpec.kind}), whose pods are not sized; ${FALLBACK}`,
      };
    }
    return { inline: taskSpec };
  }
  if (!isObject(taskRef)) return { unresolvable: `${what} has neither taskSpec nor taskRef; ${FALLBACK}` };
  // The resolver first: Tekton's defaulting sets kind "Task" on resolver references too.
  if (taskRef.resolver === "cluster") return clusterResolverTarget(taskRef.params, "task", what);
  if (taskRef.resolver) {
    return { unresolvable: `${what} uses the "${taskRef.resolver}" resolver, ${NOT_FOLLOWED}; ${FALLBACK}` };
  }
  if (taskRef.apiVersion && taskRef.kind) {
    return {
      unresolvable: `${what} is a custom task (${taskRef.apiVersion} ${taskRef.kind}), whose pods are not sized; ${FALLBACK}`,
    };
  }
  if (taskRef.kind === "ClusterTask") {
    return {
      unresolvable: `${what} refers to ClusterTask "${taskRef.name}", which is not read; ${FALLBACK}`,
    };
  }
  if (taskRef.kind && taskRef.kind !== "Task") {
    return { unresolvable: `${what} refers to unknown kind "${taskRef.kind}"; ${FALLBACK}` };
  }
  if (!taskRef.name) return { unresolvable: `${what} names neither a Task nor a resolver; ${FALLBACK}` };
  if (usesSubstitution(taskRef.name)) {
    return { unresolvable: `${what} taskRef name "${taskRef.name}" uses substitution; ${FALLBACK}` };
  }
  return { ref: { name: taskRef.name, namespace: runNamespace } };
}

/** All tasks of a pipeline, `tasks` then `finally`: a finally task's pod needs room on the node as much
 * as any other. */
export function pipelineTasks(spec: PipelineSpec): PipelineTask[] {
  const list = (v: unknown): PipelineTask[] =>
    Array.isArray(v)
      ? v.filter((t): t is PipelineTask => isObject(t) && typeof (t as PipelineTask).name === "string")
      : [];
  return [...list(spec.tasks), ...list(spec.finally)];
}

/** The run's taskRunSpecs entry for a pipeline task (its pipelineTaskName), if any. */
export function taskRunSpecFor(
  run: Pick<PipelineRun, "spec">,
  pipelineTaskName: string,
): TaskRunSpecOverrides | undefined {
  const specs = run.spec.taskRunSpecs;
  if (!Array.isArray(specs)) return undefined;
  const found = specs.find(
    (s) => isObject(s) && (s as { pipelineTaskName?: unknown }).pipelineTaskName === pipelineTaskName,
  );
  return found as TaskRunSpecOverrides | undefined;
}

// ---------------------------------------------------------------------------------------------------------
// LimitRanges

type ResourceValues = { cpu?: Quantity; memory?: Quantity };

/** A namespace's Container-type LimitRange item, the fields that set requests. */
export interface LimitRangeDefaults {
  defaultRequest?: ResourceValues;
  default?: ResourceValues;
  /** The API server defaults `default` to it; Tekton's per-step share is at least `min`. */
  max?: ResourceValues;
  min?: ResourceValues;
}

export interface LimitRangeLike {
  spec?: {
    limits?: {
      type?: string;
      default?: Record<string, Quantity>;
      defaultRequest?: Record<string, Quantity>;
      max?: Record<string, Quantity>;
      min?: Record<string, Quantity>;
    }[];
  };
}

/**
 * The first Container-type item of the namespace's LimitRanges (Pod and PersistentVolumeClaim items set
 * no container requests), or undefined when there is none. With several LimitRanges, Tekton takes the
 * smallest default request and largest min across them, and LimitRanger applies each in turn; the first is
 * an approximation of that.
 */
export function limitRangeDefaults(limitRanges: LimitRangeLike[]): LimitRangeDefaults | undefined {
  for (const lr of limitRanges) {
    for (const item of lr.spec?.limits ?? []) {
      if (item.type !== "Container") continue;
      const pick = (list?: Record<string, Quantity>): ResourceValues | undefined =>
        list && (list.cpu !== undefined || list.memory !== undefined)
          ? {
              ...(list.cpu !== undefined && { cpu: list.cpu }),
              ...(list.memory !== undefined && { memory: list.memory }),
            }
          : undefined;
      const out: LimitRangeDefaults = {};
      for (const field of ["defaultRequest", "default", "max", "min"] as const) {
        const values = pick(item[field]);
        if (values) out[field] = values;
      }
      return out;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// A task pod's request

type ResourceName = "cpu" | "memory";
const RESOURCE_NAMES: readonly ResourceName[] = ["cpu", "memory"];
const FIELD: Record<ResourceName, keyof Resources> = { cpu: "cpuMillis", memory: "memoryBytes" };

function parseResource(name: ResourceName, q: Quantity | undefined, where: string): number {
  try {
    return name === "cpu" ? parseCpuMillis(q) : parseMemoryBytes(q);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}

const isSet = (list: Record<string, Quantity> | undefined, name: string): boolean =>
  list?.[name] !== undefined && list[name] !== null;
/** Go's `list == nil`: the API server drops empty maps (omitempty), so {} reads as none. */
const isEmpty = (list: Record<string, Quantity> | undefined): boolean =>
  !list || Object.keys(list).length === 0;

function requirementsOf(c: ContainerSpec | ContainerOverride | undefined): ResourceRequirements | undefined {
  if (!isObject(c)) return undefined;
  return (
    (isObject(c.computeResources) ? c.computeResources : undefined) ??
    (isObject(c.resources) ? c.resources : undefined)
  );
}

/** Tekton merges with a strategic merge patch: resource lists merge per resource name, `over` winning, and
 * a null value removes the name. */
function mergeRequirements(
  base: ResourceRequirements | undefined,
  over: ResourceRequirements | undefined,
): ResourceRequirements {
  const mergeList = (a?: Record<string, Quantity>, b?: Record<string, Quantity>) => {
    const merged = Object.fromEntries(
      Object.entries({ ...a, ...b }).filter(([, v]) => v !== null && v !== undefined),
    ) as Record<string, Quantity>;
    return Object.keys(merged).length ? merged : undefined;
  };
  return {
    requests: mergeList(base?.requests, over?.requests),
    limits: mergeList(base?.limits, over?.limits),
  };
}

/** Tekton's tasklevel.computeAverageRequests: each value divided by the number of steps, rounded down. */
function average(list: Record<string, Quantity> | undefined, steps: number, where: string) {
  if (isEmpty(list) || steps === 0) return undefined;
  const out: Record<string, Quantity> = { ...list };
  for (const name of RESOURCE_NAMES) {
    if (!isSet(list, name)) continue;
    const share = Math.floor(parseResource(name, list![name], where) / steps);
    out[name] = name === "cpu" ? `${share}m` : share;
  }
  return out;
}

/**
 * The effective request of a task's pod, as the scheduler will see it. Rules, per resource (cpu, memory),
 * in the order Tekton and then Kubernetes apply them:
 *
 * - A step's requirements are the stepTemplate's merged with the step's own, per resource name (Tekton's
 *   MergeStepsWithStepTemplate), then with the taskRunSpec stepSpecs entry of the same name
 *   (MergeStepsWithSpecs). Sidecars take no stepTemplate; sidecarSpecs merge into them likewise.
 * - A task-level computeResources in the taskRunSpec replaces every step's requirements (Tekton's
 *   ApplyTaskLevelComputeResources): each step requests the task-level request divided by the number of
 *   steps (rounded down), so the steps together request the task-level amount (steps run one at a time,
 *   this is how Tekton avoids reserving their sum); its limits become every step's limits. With task-level
 *   limits only, a step that had no requests gets the divided limits; one that had requests is left with
 *   none and Kubernetes then requests the full task-level limit for it (below) - Tekton's behaviour, kept.
 * - With a LimitRange, Tekton gives a step without a request for the resource (or a zero one) the
 *   LimitRange's default request divided by the number of steps, but at least the LimitRange's min
 *   (computeresources transformer): the steps together request about one default request.
 * - Kubernetes defaults a container's missing request to its limit (pod defaulting, before admission).
 * - LimitRanger admission gives a container still without a request the LimitRange's default request,
 *   undivided: this is what sidecars without requests get. The default request is `defaultRequest`, else
 *   `default` (the API server fills defaultRequest from default, default from max, then defaultRequest from
 *   min, so a LimitRange read from the API already has it), else 0.
 * - Tekton always injects the `prepare` init container (and place-scripts, working-dir-initializer when
 *   needed). They set no requests, so they request nothing, or the LimitRange's default request when there
 *   is a LimitRange. That matters: the pod's effective request is max(sum of app containers, largest init
 *   container), so with a LimitRange the pod requests at least the default request.
 * - With Tekton's results sidecar (feature flag results-from: sidecar-logs and a task with results; pass
 *   `resultsSidecar`), one more sidecar without requests.
 * - Native sidecars (restartPolicy Always init containers, Tekton's enable-kubernetes-sidecar) give the
 *   same total: they start after Tekton's init containers, so they count with the app containers.
 *
 * Throws an Error naming the step or sidecar when a cpu or memory quantity does not parse.
 */
export function taskPodRequests(
  taskSpec: TaskSpec,
  opts: {
    limitRange?: LimitRangeDefaults;
    taskRunSpec?: TaskRunSpecOverrides;
    resultsSidecar?: boolean;
  } = {},
): Resources {
  const { limitRange, taskRunSpec } = opts;
  const steps = Array.isArray(taskSpec.steps) ? taskSpec.steps.filter(isObject) : [];
  const sidecars: ContainerSpec[] = Array.isArray(taskSpec.sidecars)
    ? taskSpec.sidecars.filter(isObject)
    : [];
  if (opts.resultsSidecar) sidecars.push({ name: "tekton-log-results" });
  const stepName = (c: ContainerSpec, i: number) => `step "${c.name ?? `#${i + 1}`}"`;
  const sidecarName = (c: ContainerSpec, i: number) => `sidecar "${c.name ?? `#${i + 1}`}"`;

  // Overrides by name; a later entry of the same name wins, as in Tekton's map.
  const overrides = (list: ContainerOverride[] | undefined) =>
    new Map((Array.isArray(list) ? list.filter(isObject) : []).map((o) => [o.name, requirementsOf(o)]));
  const stepSpecs = overrides(taskRunSpec?.stepSpecs);
  const sidecarSpecs = overrides(taskRunSpec?.sidecarSpecs);

  const template = requirementsOf(taskSpec.stepTemplate);
  const stepRequirements = steps.map((s) => {
    const merged = mergeRequirements(template, requirementsOf(s));
    return s.name !== undefined && stepSpecs.has(s.name)
      ? mergeRequirements(merged, stepSpecs.get(s.name))
      : merged;
  });

  const taskLevel = isObject(taskRunSpec?.computeResources) ? taskRunSpec.computeResources : undefined;
  if (taskLevel && (!isEmpty(taskLevel.requests) || !isEmpty(taskLevel.limits))) {
    const where = "taskRunSpec computeResources";
    const averageRequests = average(taskLevel.requests, steps.length, where);
    const averageLimits = average(taskLevel.limits, steps.length, where);
    for (const r of stepRequirements) {
      r.requests = isEmpty(r.requests) && isEmpty(taskLevel.requests) ? averageLimits : averageRequests;
      r.limits = isEmpty(taskLevel.limits) ? undefined : taskLevel.limits;
    }
  }

  const total: Resources = { cpuMillis: 0, memoryBytes: 0 };
  const init: Resources = { cpuMillis: 0, memoryBytes: 0 };
  for (const name of RESOURCE_NAMES) {
    const field = FIELD[name];
    // The API server's LimitRange defaulting, per resource: defaultRequest, else default, else max, else min.
    const limitRangeLists = ["defaultRequest", "default", "max", "min"] as const;
    const given = limitRangeLists.find((list) => limitRange?.[list]?.[name] != null);
    const defaultRequest = given
      ? parseResource(name, limitRange?.[given]?.[name], `LimitRange ${given}`)
      : 0;
    const min = parseResource(name, limitRange?.min?.[name], "LimitRange min");
    const stepShare =
      limitRange && steps.length ? Math.max(Math.floor(defaultRequest / steps.length), min) : 0;

    stepRequirements.forEach((req, i) => {
      const where = stepName(steps[i]!, i);
      let v = isSet(req.requests, name) ? parseResource(name, req.requests![name], where) : undefined;
      if (stepShare > 0 && !v) v = stepShare;
      if (v === undefined && isSet(req.limits, name)) v = parseResource(name, req.limits![name], where);
      total[field] += v ?? defaultRequest;
    });
    sidecars.forEach((s, i) => {
      const where = sidecarName(s, i);
      const req = mergeRequirements(
        requirementsOf(s),
        s.name !== undefined ? sidecarSpecs.get(s.name) : undefined,
      );
      let v = isSet(req.requests, name) ? parseResource(name, req.requests![name], where) : undefined;
      if (v === undefined && isSet(req.limits, name)) v = parseResource(name, req.limits![name], where);
      total[field] += v ?? defaultRequest;
    });
    init[field] = defaultRequest;
  }
  return {
    cpuMillis: Math.max(total.cpuMillis, init.cpuMillis),
    memoryBytes: Math.max(total.memoryBytes, init.memoryBytes),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The largest task
