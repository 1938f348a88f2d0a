import { expect } from "chai";
import type { PipelineRun } from "../../src/api/types.js";
import { RunChangeFilter, runSignature } from "../../src/controller/run-signature.js";

function run(
  over: Partial<PipelineRun["metadata"]> = {},
  spec: PipelineRun["spec"] = {},
  status?: PipelineRun["status"],
): PipelineRun {
  return {
    metadata: {
      name: "r",
      namespace: "ns",
      uid: "u1",
      labels: { "affinity.tekton.dev/managed": "true", "tekton.dev/pipeline": "p" },
      annotations: { "affinity.tekton.dev/mode": "pipelineruns", "affinity.tekton.dev/gated": "true" },
      ...over,
    },
    spec,
    status,
  };
}

describe("run change filter", () => {
  it("ignores Tekton's status chatter", () => {
    const a = run(
      {},
      {},
      {
        conditions: [
          { type: "Succeeded", status: "Unknown", reason: "Running", message: "Tasks Completed: 0" },
        ],
      },
    );
    const b = run(
      {},
      {},
      {
        conditions: [
          { type: "Succeeded", status: "Unknown", reason: "Running", message: "Tasks Completed: 1" },
        ],
        childReferences: [{}],
      },
    );
    expect(runSignature(a)).to.equal(runSignature(b));
    const other = run({ labels: { "affinity.tekton.dev/managed": "true", "tekton.dev/pipeline": "q" } });
    expect(runSignature(other)).to.equal(runSignature(run()));
  });

  it("sees every field the reconciler decides on", () => {
    const base = runSignature(run({}, { status: "PipelineRunPending" }));
    expect(runSignature(run({}, {}))).not.to.equal(base); // gate cleared
    expect(
      runSignature(
        run(
          { annotations: { "affinity.tekton.dev/mode": "pipelineruns" } },
          { status: "PipelineRunPending" },
        ),
      ),
    ).not.to.equal(base);
    expect(
      runSignature(
        run({}, { status: "PipelineRunPending" }, { conditions: [{ type: "Succeeded", status: "True" }] }),
      ),
    ).not.to.equal(base);
    expect(
      runSignature(run({ deletionTimestamp: "2026-01-01T00:00:00Z" }, { status: "PipelineRunPending" })),
    ).not.to.equal(base);
    expect(runSignature(run({ labels: {} }, { status: "PipelineRunPending" }))).not.to.equal(base);
  });

  it("passes the first sight and each change of a run, and nothing in between", () => {
    const filter = new RunChangeFilter();
    expect(filter.changed(run())).to.equal(true);
    expect(filter.changed(run())).to.equal(false);
    expect(filter.changed(run({}, {}, { conditions: [{ type: "Succeeded", status: "True" }] }))).to.equal(
      true,
    );
    filter.forget(run());
    expect(filter.changed(run({}, {}, { conditions: [{ type: "Succeeded", status: "True" }] }))).to.equal(
      true,
    );
  });
});
