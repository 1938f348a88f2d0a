import { expect } from "chai";
import { concurrentPeak, heaviestConcurrent, taskPredecessors } from "../../src/placement/task-dag.js";
import { fits, type PipelineSpec, type PipelineTask } from "../../src/placement/task-resources.js";

const GI = 1024 ** 3;
const task = (name: string, extra: Partial<PipelineTask> = {}): PipelineTask => ({
  name,
  taskRef: { name },
  ...extra,
});
const sized = (entries: [string, number, number][]) =>
  entries.map(([name, cpuMillis, gi]) => ({ name, requests: { cpuMillis, memoryBytes: gi * GI } }));

describe("the tasks a pipeline may run at once", () => {
  it("a chain: one task at a time, the largest of each resource", () => {
    const spec: PipelineSpec = {
      tasks: [task("a"), task("b", { runAfter: ["a"] }), task("c", { runAfter: ["b"] })],
    };
    const peak = concurrentPeak(
      sized([
        ["a", 1000, 1],
        ["b", 3000, 1],
        ["c", 500, 4],
      ]),
      spec,
    )!;
    expect(peak.requests).to.deep.equal({ cpuMillis: 3000, memoryBytes: 4 * GI });
    expect(peak.name).to.equal("b (cpu), c (memory)");
  });

  it("a fan-out: the parallel branches add up", () => {
    const spec: PipelineSpec = {
      tasks: [
        task("clone"),
        task("unit", { runAfter: ["clone"] }),
        task("lint", { runAfter: ["clone"] }),
        task("e2e", { runAfter: ["clone"] }),
      ],
    };
    const peak = concurrentPeak(
      sized([
        ["clone", 4000, 1],
        ["unit", 1000, 2],
        ["lint", 500, 1],
        ["e2e", 2000, 4],
      ]),
      spec,
    )!;
    expect(peak.requests).to.deep.equal({ cpuMillis: 4000, memoryBytes: 7 * GI });
    expect(peak.name).to.equal("clone (cpu), unit + lint + e2e (memory)");
  });

  it("a diamond: the two middle tasks together, never with the ends", () => {
    const spec: PipelineSpec = {
      tasks: [
        task("top"),
        task("left", { runAfter: ["top"] }),
        task("right", { runAfter: ["top"] }),
        task("bottom", { runAfter: ["left", "right"] }),
      ],
    };
    const peak = concurrentPeak(
      sized([
        ["top", 1000, 1],
        ["left", 1500, 2],
        ["right", 1500, 3],
        ["bottom", 2500, 4],
      ]),
      spec,
    )!;
    expect(peak.requests).to.deep.equal({ cpuMillis: 3000, memoryBytes: 5 * GI });
    expect(peak.name).to.equal("left + right");
  });

  it("finally tasks run after every task, and together", () => {
    const spec: PipelineSpec = {
      tasks: [task("a"), task("b")],
      finally: [task("notify"), task("cleanup")],
    };
    expect(taskPredecessors(spec).get("notify")).to.deep.equal(new Set(["a", "b"]));
    const peak = concurrentPeak(
      sized([
        ["a", 1000, 1],
        ["b", 1000, 1],
        ["notify", 1500, 1],
        ["cleanup", 1500, 1],
      ]),
      spec,
    )!;
    expect(peak.requests).to.deep.equal({ cpuMillis: 3000, memoryBytes: 2 * GI });
    expect(peak.name).to.equal("notify + cleanup");
  });

  it("a result a task reads orders it after the task that writes it; a shared workspace does not", () => {
    const spec: PipelineSpec = {
      tasks: [
        task("version", { workspaces: [{ name: "src" }] }),
        task("build", {
          params: [{ name: "v", value: "$(tasks.version.results.tag)" }],
          workspaces: [{ name: "src" }],
        }),
        task("scan", { when: [{ input: "$(tasks.build.results.digest)", operator: "notin", values: [""] }] }),
        task("docs", { workspaces: [{ name: "src" }] }),
      ],
    };
    const before = taskPredecessors(spec);
    expect(before.get("build")).to.deep.equal(new Set(["version"]));
    expect(before.get("scan")).to.deep.equal(new Set(["build"]));
    expect(before.get("docs")).to.deep.equal(new Set());
    // version, build and scan are a chain; docs runs beside any of them.
    const peak = concurrentPeak(
      sized([
        ["version", 100, 1],
        ["build", 2000, 1],
        ["scan", 500, 1],
        ["docs", 300, 1],
      ]),
      spec,
    )!;
    expect(peak.requests).to.deep.equal({ cpuMillis: 2300, memoryBytes: 2 * GI });
  });

  it("fits every set of tasks that may run at once when it fits the result, where no one task's request would", () => {
    const spec: PipelineSpec = { tasks: [task("a"), task("b", { runAfter: ["a"] })] };
    const tasks = sized([
      ["a", 3000, 1],
      ["b", 500, 6],
    ]);
    const need = concurrentPeak(tasks, spec)!.requests;
    for (const t of tasks) expect(fits(need, t.requests), t.name).to.equal(true);
    expect(fits(tasks[0]!.requests, tasks[1]!.requests)).to.equal(false);
    expect(fits(tasks[1]!.requests, tasks[0]!.requests)).to.equal(false);
    expect(concurrentPeak([], spec)).to.equal(undefined);
  });

  it("agrees with trying every set of tasks, on random DAGs", () => {
    // A seeded generator, so a failure repeats.
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(random() * 9);
      const names = Array.from({ length: n }, (_, i) => `t${i}`);
      const before = new Map(
        names.map((name, i) => [name, new Set(names.slice(0, i).filter(() => random() < 0.3))]),
      );
      const weights = new Map(names.map((name) => [name, Math.floor(random() * 10)]));
      const got = heaviestConcurrent(names, (x) => weights.get(x)!, before);
      // Brute force: every subset with no two tasks ordered (through any path).
      const reach = (from: string, to: string): boolean =>
        [...before.get(to)!].some((p) => p === from || reach(from, p));
      let best = 0;
      for (let mask = 0; mask < 2 ** n; mask++) {
        const set = names.filter((_, i) => mask & (1 << i));
        if (set.some((a) => set.some((b) => a !== b && reach(a, b)))) continue;
        best = Math.max(
          best,
          set.reduce((s, x) => s + weights.get(x)!, 0),
        );
      }
      expect(got.total, `round ${round}`).to.equal(best);
      expect(
        got.tasks.some((a) => got.tasks.some((b) => a !== b && reach(a, b))),
        `round ${round}: an antichain`,
      ).to.equal(false);
    }
  });
});
