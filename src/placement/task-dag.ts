// What a run's tasks need at once: tasks the pipeline's DAG lets run in parallel share the run's node, so
// its reservation must hold their sum, not the largest of them. Pure.
//
// A task runs after another when Tekton makes it wait for it:
//  - `runAfter`;
//  - a reference to the other's results (`$(tasks.<name>.results.…)`) in its params, `when` expressions or
//    matrix: Tekton orders the task after the one whose results it reads;
//  - every `finally` task runs after every task of `tasks`.
// Sharing a workspace orders nothing: Tekton runs two tasks that bind one workspace in parallel unless
// `runAfter` says otherwise (its docs ask pipeline authors to say so), so they count as concurrent.
//
// The most the tasks need at once, per resource, is a maximum-weight antichain of the DAG's partial order
// (a set of tasks none of which runs after another), found as a minimum cut: by Dilworth's theorem the
// heaviest antichain weighs as much as the lightest cover of the tasks by chains, which is the total
// weight less a maximum flow through the bipartite graph of "u runs before v" pairs.

import { type PipelineSpec, pipelineTasks, type Resources } from "./task-resources.js";

/** `$(tasks.<name>.results.` references: Tekton waits for <name> before it starts the referencing task. */
const RESULT_REFERENCE = /\$\(tasks\.([^.)]+)\.results\./g;

/** For each task of the pipeline (tasks, then finally), the tasks it directly runs after. */
export function taskPredecessors(spec: PipelineSpec): Map<string, Set<string>> {
  // Well-formed tasks only, as the reservation sizes them.
  const tasks = pipelineTasks({ tasks: spec.tasks });
  const finallyTasks = pipelineTasks({ finally: spec.finally });
  const names = new Set([...tasks, ...finallyTasks].map((t) => t.name));
  const out = new Map<string, Set<string>>();
  for (const task of tasks) {
    const before = new Set<string>();
    const runAfter = Array.isArray(task.runAfter) ? task.runAfter : [];
    for (const name of runAfter) if (typeof name === "string") before.add(name);
    const reads = JSON.stringify([task.params, task.when, task.matrix]);
    for (const m of reads.matchAll(RESULT_REFERENCE)) before.add(m[1]!);
    before.delete(task.name);
    out.set(task.name, new Set([...before].filter((n) => names.has(n))));
  }
  for (const task of finallyTasks) out.set(task.name, new Set(tasks.map((t) => t.name)));
  return out;
}

/** Every task each task runs after, directly or not. */
function ancestors(before: ReadonlyMap<string, ReadonlySet<string>>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const visit = (name: string, seen: Set<string>): Set<string> => {
    const known = out.get(name);
    if (known) return known;
    const all = new Set<string>();
    // A cycle (Tekton refuses such a pipeline) stops at the first repeat.
    if (seen.has(name)) return all;
    seen.add(name);
    for (const p of before.get(name) ?? []) {
      all.add(p);
      for (const a of visit(p, seen)) all.add(a);
    }
    seen.delete(name);
    out.set(name, all);
    return all;
  };
  for (const name of before.keys()) visit(name, new Set());
  return out;
}

interface Edge {
  to: number;
  capacity: number;
  /** Index of the reverse edge in `to`'s list. */
  back: number;
}

/** Maximum flow from `source` to `sink` (Edmonds-Karp); the graph's capacities are left as residuals. */
function maxFlow(graph: Edge[][], source: number, sink: number): number {
  let total = 0;
  for (;;) {
    const via: ({ node: number; edge: number } | undefined)[] = graph.map(() => undefined);
    const queue = [source];
    const reached = new Set([source]);
    while (queue.length && !reached.has(sink)) {
      const node = queue.shift()!;
      graph[node]!.forEach((e, i) => {
        if (e.capacity > 0 && !reached.has(e.to)) {
          reached.add(e.to);
          via[e.to] = { node, edge: i };
          queue.push(e.to);
        }
      });
    }
    if (!reached.has(sink)) return total;
    let push = Number.POSITIVE_INFINITY;
    for (let n = sink; n !== source; n = via[n]!.node)
      push = Math.min(push, graph[via[n]!.node]![via[n]!.edge]!.capacity);
    for (let n = sink; n !== source; n = via[n]!.node) {
      const e = graph[via[n]!.node]![via[n]!.edge]!;
      e.capacity -= push;
      graph[e.to]![e.back]!.capacity += push;
    }
    total += push;
  }
}

/**
 * The heaviest set of tasks that may run at once under `before`, by `weight`: its tasks, in input order,
 * and their total weight.
 */
export function heaviestConcurrent(
  names: readonly string[],
  weight: (name: string) => number,
  before: ReadonlyMap<string, ReadonlySet<string>>,
): { tasks: string[]; total: number } {
  const n = names.length;
  // Nodes: 0 source, 1 sink, 2+i task i as a predecessor ("left"), 2+n+i task i as a successor ("right").
  const graph: Edge[][] = Array.from({ length: 2 * n + 2 }, () => []);
  const link = (from: number, to: number, capacity: number) => {
    graph[from]!.push({ to, capacity, back: graph[to]!.length });
    graph[to]!.push({ to: from, capacity: 0, back: graph[from]!.length - 1 });
  };
  const index = new Map(names.map((name, i) => [name, i]));
  const runsAfter = ancestors(before);
  names.forEach((name, i) => {
    link(0, 2 + i, weight(name));
    link(2 + n + i, 1, weight(name));
    for (const a of runsAfter.get(name) ?? []) {
      const j = index.get(a);
      if (j !== undefined && j !== i) link(2 + j, 2 + n + i, Number.POSITIVE_INFINITY);
    }
  });
  maxFlow(graph, 0, 1);
  // The source side of a minimum cut: what the residual graph still reaches from the source. A task on
  // it as a predecessor but not as a successor is in the heaviest antichain.
  const reached = new Set([0]);
  const queue = [0];
  while (queue.length) {
    const node = queue.shift()!;
    for (const e of graph[node]!)
      if (e.capacity > 0 && !reached.has(e.to)) {
        reached.add(e.to);
        queue.push(e.to);
      }
  }
  const tasks = names.filter((_, i) => reached.has(2 + i) && !reached.has(2 + n + i));
  return { tasks, total: tasks.reduce((sum, name) => sum + weight(name), 0) };
}

/**
 * What to reserve for a run: per resource, the most its tasks can request at once (the heaviest set of
 * tasks that may run in parallel), cpu and memory each. A node with that much free has room for any set
 * of task pods the pipeline may run together. `name` says which tasks set the figures: "a + b", or
 * "a + b (cpu), c (memory)" when the two maxima come from different sets. Undefined for no tasks.
 */
export function concurrentPeak(
  tasks: readonly { name: string; requests: Resources }[],
  spec: PipelineSpec,
): { name: string; requests: Resources } | undefined {
  if (tasks.length === 0) return undefined;
  const byName = new Map(tasks.map((t) => [t.name, t.requests]));
  const names = tasks.map((t) => t.name);
  const before = taskPredecessors(spec);
  const cpu = heaviestConcurrent(names, (n) => byName.get(n)!.cpuMillis, before);
  const memory = heaviestConcurrent(names, (n) => byName.get(n)!.memoryBytes, before);
  const requests = { cpuMillis: cpu.total, memoryBytes: memory.total };
  // An empty set: nothing requests that resource; the first task stands for it.
  const sum = (set: string[]) => (set.length ? set.join(" + ") : names[0]!);
  // One set may reach both maxima: say so once.
  for (const set of [cpu.tasks, memory.tasks]) {
    const total = set.reduce(
      (r, n) => ({
        cpuMillis: r.cpuMillis + byName.get(n)!.cpuMillis,
        memoryBytes: r.memoryBytes + byName.get(n)!.memoryBytes,
      }),
      { cpuMillis: 0, memoryBytes: 0 },
    );
    if (set.length && total.cpuMillis === requests.cpuMillis && total.memoryBytes === requests.memoryBytes)
      return { name: sum(set), requests };
  }
  return { name: `${sum(cpu.tasks)} (cpu), ${sum(memory.tasks)} (memory)`, requests };
}
