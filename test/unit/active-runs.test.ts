import { expect } from "chai";
import { MANAGED_LABEL, POLICY_ANNOTATION, RELEASED } from "../../src/api/constants.js";
import type { Condition, PipelineRun } from "../../src/api/types.js";
import { ActiveRunIndex } from "../../src/reconcilers/active-runs.js";

function managedRun(
  name: string,
  policy: string | undefined,
  succeeded?: Condition["status"],
  namespace = "team-a",
): PipelineRun {
  return {
    metadata: { name, namespace, annotations: policy ? { [POLICY_ANNOTATION]: policy } : {} },
    spec: {},
    ...(succeeded ? { status: { conditions: [{ type: "Succeeded", status: succeeded, reason: "x" }] } } : {}),
  };
}

describe("ActiveRunIndex: each policy's unfinished runs, kept from the run watch", () => {
  it("counts the policy's runs that have not finished, per namespace", () => {
    const index = new ActiveRunIndex();
    for (const r of [
      managedRun("running", "default", "Unknown"),
      managedRun("starting", "default"),
      managedRun("succeeded", "default", "True"),
      managedRun("failed", "default", "False"),
      managedRun("someone-elses", "other"),
      managedRun("unmanaged", undefined),
      managedRun("elsewhere", "default", undefined, "team-b"),
    ])
      index.observe(r);
    expect(index.count("team-a", "default")).to.equal(2);
    expect(index.count("team-a", "other")).to.equal(1);
    expect(index.count("team-b", "default")).to.equal(1);
    expect(index.count("team-a", "missing")).to.equal(0);
  });

  it("forgets a run when it finishes, is deleted or loses its policy, and counts each run once", () => {
    const index = new ActiveRunIndex();
    index.observe(managedRun("a", "default"));
    index.observe(managedRun("a", "default", "Unknown")); // Tekton's status writes: still one run
    index.observe(managedRun("b", "default"));
    index.observe(managedRun("c", "default"));
    expect(index.count("team-a", "default")).to.equal(3);
    index.observe(managedRun("a", "default", "True"));
    index.forget(managedRun("b", "default"));
    index.observe(managedRun("c", undefined));
    expect(index.count("team-a", "default")).to.equal(0);
    index.forget(managedRun("a", "default")); // deleting a finished run changes nothing
    expect(index.count("team-a", "default")).to.equal(0);
  });

  it("forgets a run released without co-scheduling: it is no longer the policy's, though still watched", () => {
    const index = new ActiveRunIndex();
    const run = managedRun("a", "default");
    index.observe(run);
    expect(index.count("team-a", "default")).to.equal(1);
    index.observe({ ...run, metadata: { ...run.metadata, labels: { [MANAGED_LABEL]: RELEASED } } });
    expect(index.count("team-a", "default")).to.equal(0);
  });

  it("moves a run whose annotation names another policy", () => {
    const index = new ActiveRunIndex();
    index.observe(managedRun("a", "first"));
    index.observe(managedRun("a", "second"));
    expect([index.count("team-a", "first"), index.count("team-a", "second")]).to.deep.equal([0, 1]);
  });

  it("agrees with counting the runs from scratch after any sequence of events", () => {
    // A seeded walk over adds, status changes, re-annotations and deletes; the reference counts the
    // surviving objects the way the reconcile used to.
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const index = new ActiveRunIndex();
    const objects = new Map<string, PipelineRun>();
    const policies = ["p1", "p2", undefined];
    const states: (Condition["status"] | undefined)[] = [undefined, "Unknown", "True", "False"];
    for (let step = 0; step < 5000; step++) {
      const name = `r${random(40)}`;
      const ns = random(2) ? "team-a" : "team-b";
      const key = `${ns}/${name}`;
      if (random(5) === 0) {
        const gone = objects.get(key);
        if (gone) {
          objects.delete(key);
          index.forget(gone);
        }
        continue;
      }
      const r = managedRun(name, policies[random(3)], states[random(4)], ns);
      objects.set(key, r);
      index.observe(r);
    }
    for (const ns of ["team-a", "team-b"])
      for (const p of ["p1", "p2"]) {
        const expected = [...objects.values()].filter(
          (r) =>
            r.metadata.namespace === ns &&
            r.metadata.annotations?.[POLICY_ANNOTATION] === p &&
            !["True", "False"].includes(r.status?.conditions?.[0]?.status ?? ""),
        ).length;
        expect(index.count(ns, p), `${ns}/${p}`).to.equal(expected);
      }
  });
});
