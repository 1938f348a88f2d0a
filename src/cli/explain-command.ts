// `tekton-affinity explain NAMESPACE/NAME`: what the controller did with one PipelineRun and why.
// Reads the run, the policies of its namespace, its placeholders, its TaskRun pods and its events,
// gathers them into plain facts (gatherFacts) and renders them (explainText, pure, unit tested).

import type { CoreV1Event, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import type { Command } from "commander";
import {
  CLEANED_UP_ANNOTATION,
  GATED_ANNOTATION,
  GROUP,
  MANAGED_LABEL,
  MODE_ANNOTATION,
  PENDING_STATUS,
  PLACED_ON_ANNOTATION,
  PLACEHOLDER_LABEL,
  PLACEHOLDER_RUN_UID_LABEL,
  PLURAL,
  POLICY_ANNOTATION,
  RELEASED_UNCOSCHEDULED_ANNOTATION,
  TEKTON_GROUP,
  TEKTON_VERSION,
  VERSION,
  WAITING_ANNOTATION,
  WORKSPACES_ANNOTATION,
} from "../api/constants.js";
import { resolvePolicy } from "../api/resolve.js";
import type { AffinityPolicy, LabelSelector, PipelineRun } from "../api/types.js";
import { isNotFound, type KubeClients, loadKubeConfig, makeClients } from "../kube/clients.js";
import { MAX_WAIT_EXCEEDED_REASON, UNSATISFIABLE_REASON } from "../reconcilers/pipelinerun.js";

// Kept literal here rather than imported from the reconciler, which pulls in the whole controller.
/** The policy name the gate records when the operator's cluster default applied (src/webhooks/gate.ts). */
const CLUSTER_DEFAULT_POLICY = "(cluster-default)";

export type GateState = "gated" | "user-pending" | "released";

export interface PolicySummary {
  name: string;
  mode: string;
  strategy: string;
  selector: string;
  created?: string;
}

export interface PlaceholderFacts {
  name: string;
  pod?: string;
  node?: string;
  phase?: string;
  /** The scheduler's reason when the pod could not be scheduled. */
  unschedulable?: string;
  workspaces?: string;
}

export interface TaskFacts {
  task: string;
  pod: string;
  node?: string;
  phase?: string;
}

export interface EventFacts {
  reason: string;
  type?: string;
  time?: string;
  count?: number;
  message: string;
}

export interface ExplainFacts {
  namespace: string;
  name: string;
  uid?: string;
  /** Succeeded condition: True, False, Unknown, or undefined when Tekton has not looked at it yet. */
  status?: string;
  statusReason?: string;
  recorded: { mode?: string; policy?: string };
  current: {
    policy?: string;
    mode?: string;
    reason: string;
    losers: string[];
    /** The recorded policy is not the one that would win today. */
    differs: boolean;
  };
  policies: PolicySummary[];
  gate: GateState;
  placedOn?: string;
  waitingFor?: string;
  /** Set when the run waited longer than maxWait: what happened then (failed, or released alone). */
  maxWait?: string;
  /** Set when no placement could satisfy the run (a task binding two claims held apart): what happened
   * then (failed, or released alone). */
  unsatisfiable?: string;
  cleanedUp: boolean;
  placeholders: PlaceholderFacts[];
  tasks: TaskFacts[];
  migrations: EventFacts[];
  waiting: EventFacts[];
  placed?: EventFacts;
  cleanup?: EventFacts;
  otherEvents: EventFacts[];
}

/** A user-facing error: printed as "error: <message>" with exit code 1. */
export class ExplainError extends Error {}

export function parseTarget(arg: string): { namespace: string; name: string } {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(arg);
  if (!m) throw new ExplainError(`expected NAMESPACE/NAME, got "${arg}"`);
  return { namespace: m[1]!, name: m[3]! };
}

export function describeSelector(selector: LabelSelector | undefined): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const e of selector?.matchExpressions ?? []) {
    if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator === "In" ? "in" : "notin"} (${(e.values ?? []).join(",")})`);
  }
  return parts.length ? parts.join(", ") : "(every run)";
}

function summarize(p: AffinityPolicy): PolicySummary {
  return {
    name: p.metadata.name,
    mode: p.spec.mode,
    strategy: p.spec.strategy ?? "podAffinity",
    selector: describeSelector(p.spec.pipelineRunSelector),
    created: p.metadata.creationTimestamp,
  };
}

function gateState(run: PipelineRun): GateState {
  if (run.spec.status !== PENDING_STATUS) return "released";
  return run.metadata.annotations?.[GATED_ANNOTATION] === "true" ? "gated" : "user-pending";
}

function eventTime(e: CoreV1Event): string | undefined {
  const t = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata?.creationTimestamp;
  return t ? new Date(t as unknown as string).toISOString() : undefined;
}

function eventFacts(e: CoreV1Event): EventFacts {
  return {
    reason: e.reason ?? "",
    type: e.type,
    time: eventTime(e),
    count: e.count,
    message: e.message ?? "",
  };
}

function unschedulable(pod: V1Pod): string | undefined {
  const c = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  return c ? `${c.reason ?? "Unschedulable"}: ${c.message ?? ""}`.trim() : undefined;
}

/** Everything explain says, from objects already read. Pure, so it can be tested without a cluster. */
export function buildFacts(input: {
  run: PipelineRun;
  policies: AffinityPolicy[];
  sets: V1StatefulSet[];
  placeholderPods: V1Pod[];
  taskPods: V1Pod[];
  events: CoreV1Event[];
}): ExplainFacts {
  const { run, policies } = input;
  const ann = run.metadata.annotations ?? {};
  const recorded = { mode: ann[MODE_ANNOTATION], policy: ann[POLICY_ANNOTATION] };
  const resolved = resolvePolicy(run, policies);
  const currentName = resolved.policy?.metadata.name;
  const differs =
    recorded.policy !== undefined &&
    recorded.policy !== CLUSTER_DEFAULT_POLICY &&
    (recorded.policy !== currentName || (resolved.spec?.mode ?? undefined) !== recorded.mode);

  const podsBySet = new Map<string, V1Pod>();
  for (const p of input.placeholderPods) {
    const set = p.metadata?.labels?.[PLACEHOLDER_LABEL];
    if (set && !p.metadata?.deletionTimestamp) podsBySet.set(set, p);
  }
  const setNames = new Set(input.sets.map((s) => s.metadata?.name ?? ""));
  const placeholders: PlaceholderFacts[] = input.sets.map((s) => {
    const name = s.metadata?.name ?? "";
    const pod = podsBySet.get(name);
    return {
      name,
      pod: pod?.metadata?.name,
      node: pod?.spec?.nodeName,
      phase: pod?.status?.phase,
      unschedulable: pod ? unschedulable(pod) : undefined,
      workspaces: s.metadata?.annotations?.[WORKSPACES_ANNOTATION],
    };
  });
  // Pods whose StatefulSet is already gone (cleanup in progress) still say where the run was held.
  for (const [set, pod] of podsBySet) {
    if (!setNames.has(set))
      placeholders.push({
        name: set,
        pod: pod.metadata?.name,
        node: pod.spec?.nodeName,
        phase: pod.status?.phase,
      });
  }
  placeholders.sort((a, b) => a.name.localeCompare(b.name));

  const tasks: TaskFacts[] = input.taskPods
    .map((p) => ({
      task: p.metadata?.labels?.["tekton.dev/pipelineTask"] ?? p.metadata?.name ?? "",
      pod: p.metadata?.name ?? "",
      node: p.spec?.nodeName,
      phase: p.status?.phase,
      start: p.status?.startTime ? new Date(p.status.startTime).getTime() : Number.POSITIVE_INFINITY,
    }))
    .sort((a, b) => a.start - b.start || a.task.localeCompare(b.task))
    .map(({ start: _start, ...t }) => t);

  const events = input.events
    .filter((e) => !run.metadata.uid || !e.involvedObject?.uid || e.involvedObject.uid === run.metadata.uid)
    .map(eventFacts)
    .sort((a, b) => (a.time ?? "").localeCompare(b.time ?? ""));
  const ours = new Set(["Waiting", "Placed", "Migrating", "Migrated", "CannotMigrate", "CleanedUp"]);
  const succeeded = run.status?.conditions?.find((c) => c.type === "Succeeded");

  return {
    namespace: run.metadata.namespace,
    name: run.metadata.name,
    uid: run.metadata.uid,
    status: succeeded?.status,
    statusReason: succeeded?.reason,
    recorded,
    current: {
      policy: currentName,
      mode: resolved.spec?.mode,
      reason: resolved.reason,
      losers: resolved.losers.map((l) => l.metadata.name),
      differs,
    },
    policies: policies.map(summarize),
    gate: gateState(run),
    placedOn: ann[PLACED_ON_ANNOTATION],
    waitingFor: ann[WAITING_ANNOTATION],
    ...notCoscheduled(succeeded, ann[RELEASED_UNCOSCHEDULED_ANNOTATION]),
    cleanedUp: ann[CLEANED_UP_ANNOTATION] === "true",
    placeholders,
    tasks,
    migrations: events.filter((e) => ["Migrating", "Migrated", "CannotMigrate"].includes(e.reason)),
    waiting: events.filter((e) => e.reason === "Waiting"),
    placed: events.filter((e) => e.reason === "Placed").at(-1),
    cleanup: events.filter((e) => e.reason === "CleanedUp").at(-1),
    otherEvents: events.filter((e) => !ours.has(e.reason)),
  };
}

/** The run was never gated by us: the error explain reports instead of facts. */
export function unmanagedMessage(facts: ExplainFacts): string {
  const lines = [
    `PipelineRun ${facts.namespace}/${facts.name} is not managed by tekton-affinity: no AffinityPolicy managed this run: its namespace has none that selects it`,
  ];
  if (facts.policies.length === 0) lines.push(`  namespace ${facts.namespace} has no AffinityPolicy`);
  else {
    lines.push(`  AffinityPolicies in namespace ${facts.namespace}:`);
    for (const p of facts.policies) lines.push(`    ${p.name}: mode ${p.mode}, selects ${p.selector}`);
  }
  if (facts.current.policy && facts.current.mode === "disabled") {
    lines.push(`  ${facts.current.policy} selects it with mode disabled, which leaves runs alone`);
  } else if (facts.current.policy) {
    lines.push(
      `  ${facts.current.policy} selects it now (mode ${facts.current.mode}), but a policy only applies to runs created after it`,
    );
  }
  return lines.join("\n");
}

function when(e: EventFacts): string {
  const count = e.count && e.count > 1 ? ` (x${e.count})` : "";
  return `${e.time ?? "(no time)"}${count}`;
}

export function explainText(f: ExplainFacts): string {
  const out: string[] = [];
  const line = (s = "") => out.push(s);
  const status = f.status
    ? `${f.status === "True" ? "succeeded" : f.status === "False" ? "failed" : "running"}${f.statusReason ? ` (${f.statusReason})` : ""}`
    : "not started";
  line(`PipelineRun ${f.namespace}/${f.name}${f.uid ? ` (uid ${f.uid})` : ""}: ${status}`);
  line();

  line("Policy");
  if (f.recorded.policy === CLUSTER_DEFAULT_POLICY)
    line(`  applied: the operator's cluster default, mode ${f.recorded.mode ?? "?"}`);
  else line(`  applied: AffinityPolicy ${f.recorded.policy ?? "?"}, mode ${f.recorded.mode ?? "?"}`);
  line(`  why:     ${f.current.reason}`);
  if (f.current.differs) {
    line(
      f.current.policy
        ? `  note:    today AffinityPolicy ${f.current.policy} (mode ${f.current.mode}) would win instead; the run keeps the mode recorded when it was created`
        : "  note:    no current policy selects this run any more; the run keeps the mode recorded when it was created",
    );
  }
  if (f.current.losers.length) line(`  losers:  ${f.current.losers.join(", ")}`);
  line();

  line("Gate");
  if (f.gate === "gated") line("  gated by tekton-affinity: waiting for its placeholder to be scheduled");
  else if (f.gate === "user-pending")
    line(
      "  pending by the user (spec.status: PipelineRunPending set at creation); tekton-affinity never clears it",
    );
  else line("  released");
  if (f.placedOn) line(`  placed on: ${f.placedOn}`);
  if (f.maxWait) line(`  maxWait exceeded, ${f.maxWait}`);
  if (f.unsatisfiable) line(`  cannot be co-scheduled, ${f.unsatisfiable}`);
  if (f.waitingFor) line(`  waiting for: ${f.waitingFor}`);
  const lastWaiting = f.waiting.at(-1);
  if (lastWaiting && f.gate !== "released")
    line(`  last Waiting event, ${when(lastWaiting)}: ${lastWaiting.message}`);
  if (f.placed) line(`  Placed, ${when(f.placed)}: ${f.placed.message}`);
  line();

  line("Placeholders");
  if (f.placeholders.length === 0) line(f.cleanedUp ? "  none (deleted when the run finished)" : "  none");
  for (const p of f.placeholders) {
    const where = p.node ? `on node ${p.node}` : "not scheduled";
    const ws = p.workspaces ? `, workspaces ${p.workspaces}` : "";
    line(`  ${p.name}: ${p.pod ? `pod ${p.pod} ${where}` : "no pod"}${p.phase ? ` (${p.phase})` : ""}${ws}`);
    if (p.unschedulable) line(`    scheduler: ${p.unschedulable}`);
  }
  line();

  line("Tasks");
  if (f.tasks.length === 0) line("  no TaskRun pods yet");
  for (const t of f.tasks)
    line(`  ${t.task}: pod ${t.pod} on node ${t.node ?? "(not scheduled)"} (${t.phase ?? "unknown"})`);
  const nodes = [...new Set(f.tasks.map((t) => t.node).filter(Boolean))];
  if (nodes.length > 1) line(`  note: tasks ran on ${nodes.length} nodes (${nodes.join(", ")})`);
  line();

  line("Migrations");
  if (f.migrations.length === 0) line("  none");
  for (const m of f.migrations) line(`  ${when(m)} ${m.reason}: ${m.message}`);
  line();

  line("Cleanup");
  if (f.cleanup) line(`  ${when(f.cleanup)} CleanedUp: ${f.cleanup.message}`);
  else if (f.cleanedUp) line("  done");
  else
    line(f.status === "True" || f.status === "False" ? "  pending" : "  not yet (the run is not finished)");

  if (f.otherEvents.length) {
    line();
    line("Other events");
    for (const e of f.otherEvents) line(`  ${when(e)} ${e.type ?? ""} ${e.reason}: ${e.message}`);
  }
  return `${out.join("\n")}\n`;
}

export function isManaged(run: PipelineRun): boolean {
  return (
    run.metadata.labels?.[MANAGED_LABEL] === "true" ||
    run.metadata.annotations?.[MODE_ANNOTATION] !== undefined
  );
}

export async function gatherFacts(clients: KubeClients, namespace: string, name: string) {
  let run: PipelineRun;
  try {
    run = (await clients.custom.getNamespacedCustomObject({
      group: TEKTON_GROUP,
      version: TEKTON_VERSION,
      plural: "pipelineruns",
      namespace,
      name,
    })) as PipelineRun;
  } catch (err) {
    if (isNotFound(err)) throw new ExplainError(`PipelineRun ${namespace}/${name} not found`);
    throw new ExplainError(`cannot read PipelineRun ${namespace}/${name}: ${(err as Error).message}`);
  }
  const uid = run.metadata.uid ?? "";
  const [policies, sets, placeholderPods, taskPods, events] = await Promise.all([
    clients.custom
      .listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace })
      .then((l) => (l as { items: AffinityPolicy[] }).items),
    clients.apps
      .listNamespacedStatefulSet({ namespace, labelSelector: `${PLACEHOLDER_RUN_UID_LABEL}=${uid}` })
      .then((l) => l.items),
    clients.core
      .listNamespacedPod({ namespace, labelSelector: `${PLACEHOLDER_RUN_UID_LABEL}=${uid}` })
      .then((l) => l.items),
    clients.core
      // Not its placeholders: they carry the run's labels too, as Tekton's assistant does.
      .listNamespacedPod({
        namespace,
        labelSelector: `tekton.dev/pipelineRun=${name},!${PLACEHOLDER_RUN_UID_LABEL}`,
      })
      .then((l) => l.items),
    clients.core
      .listNamespacedEvent({
        namespace,
        fieldSelector: `involvedObject.name=${name},involvedObject.kind=PipelineRun`,
      })
      .then((l) => l.items),
  ]);
  return {
    run,
    facts: buildFacts({ run, policies, sets, placeholderPods, taskPods, events }),
  };
}

export interface ExplainOptions {
  kubeconfig?: string;
  output: string;
}

/** Runs the command; returns what to print or throws an ExplainError for the user. */
export async function runExplain(target: string, opts: ExplainOptions): Promise<string> {
  const { namespace, name } = parseTarget(target);
  if (opts.output !== "text" && opts.output !== "json")
    throw new ExplainError(`-o must be text or json, got "${opts.output}"`);
  let clients: KubeClients;
  try {
    clients = makeClients(loadKubeConfig(opts.kubeconfig));
  } catch (err) {
    throw new ExplainError(
      `cannot load kubeconfig ${opts.kubeconfig ?? "(default)"}: ${(err as Error).message}`,
    );
  }
  const { run, facts } = await gatherFacts(clients, namespace, name);
  if (!isManaged(run)) throw new ExplainError(unmanagedMessage(facts));
  return opts.output === "json" ? `${JSON.stringify(facts, null, 2)}\n` : explainText(facts);
}

export function registerExplainCommand(program: Command): Command {
  return program
    .command("explain")
    .description(
      "Explain what tekton-affinity did with a PipelineRun: its policy, gate, placeholders, task nodes, migrations and cleanup",
    )
    .argument("<namespace/name>", "the PipelineRun, as NAMESPACE/NAME")
    .option("--kubeconfig <path>", "kubeconfig to use (default: $KUBECONFIG, ~/.kube/config or in-cluster)")
    .option("-o, --output <format>", "text or json", "text")
    .action(async (target: string, opts: ExplainOptions) => {
      try {
        process.stdout.write(await runExplain(target, opts));
      } catch (err) {
        process.stderr.write(`error: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}

/** Why the run was failed or started without co-scheduling: it waited past maxWait, or no placement could
 * satisfy it. A release records only its message, which says which (waiting.ts, conflictMessage). */
function notCoscheduled(
  succeeded: { reason?: string; message?: string } | undefined,
  released: string | undefined,
): Pick<ExplainFacts, "maxWait" | "unsatisfiable"> {
  if (succeeded?.reason === MAX_WAIT_EXCEEDED_REASON)
    return { maxWait: `failed: ${succeeded.message ?? ""}` };
  if (succeeded?.reason === UNSATISFIABLE_REASON)
    return { unsatisfiable: `failed: ${succeeded.message ?? ""}` };
  if (!released) return {};
  const what = `released without co-scheduling: ${released}`;
  return released.startsWith("waited longer than maxWait") ? { maxWait: what } : { unsatisfiable: what };
}
