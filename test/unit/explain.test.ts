import type { CoreV1Event, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import { expect } from "chai";
import {
  buildFacts,
  describeSelector,
  ExplainError,
  explainText,
  isManaged,
  parseTarget,
  unmanagedMessage,
} from "../../src/cli/explain-command.js";
import { run as baseRun, policy } from "./helpers.js";

const UID = "0000-1111";

function managedRun(annotations: Record<string, string> = {}, status?: string) {
  const r = baseRun({ "affinity.tekton.dev/managed": "true", app: "web" });
  r.metadata.uid = UID;
  r.metadata.annotations = {
    "affinity.tekton.dev/mode": "pipelineruns",
    "affinity.tekton.dev/policy": "default",
    ...annotations,
  };
  if (status) r.spec.status = status;
  return r;
}

function placeholderSet(name: string): V1StatefulSet {
  return { metadata: { name, labels: { "affinity.tekton.dev/pipelinerun-uid": UID } } };
}

function placeholderPod(set: string, node?: string, message?: string): V1Pod {
  return {
    metadata: { name: `${set}-0`, labels: { "affinity.tekton.dev/placeholder": set } },
    spec: { containers: [], nodeName: node },
    status: {
      phase: node ? "Running" : "Pending",
      conditions: message
        ? [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message }]
        : [],
    },
  };
}

function taskPod(task: string, node: string, start: string): V1Pod {
  return {
    metadata: { name: `build-1-${task}-pod`, labels: { "tekton.dev/pipelineTask": task } },
    spec: { containers: [], nodeName: node },
    status: { phase: "Succeeded", startTime: new Date(start) },
  };
}

function event(reason: string, message: string, time: string, uid = UID): CoreV1Event {
  return {
    metadata: { name: `build-1.${reason}` },
    involvedObject: { kind: "PipelineRun", name: "build-1", uid },
    reason,
    message,
    type: "Normal",
    lastTimestamp: new Date(time),
  };
}

describe("explain", () => {
  it("parses NAMESPACE/NAME and rejects anything else", () => {
    expect(parseTarget("team-a/build-1")).to.deep.equal({ namespace: "team-a", name: "build-1" });
    for (const bad of ["build-1", "a/b/c", "/x", "Team/x", ""]) {
      expect(() => parseTarget(bad), bad).to.throw(ExplainError, "expected NAMESPACE/NAME");
    }
  });

  it("describes selectors", () => {
    expect(describeSelector(undefined)).to.equal("(every run)");
    expect(
      describeSelector({
        matchLabels: { app: "web" },
        matchExpressions: [
          { key: "tier", operator: "In", values: ["a", "b"] },
          { key: "x", operator: "Exists" },
          { key: "y", operator: "DoesNotExist" },
        ],
      }),
    ).to.equal("app=web, tier in (a,b), x, !y");
  });

  it("says when a run waited longer than maxWait: failed, or released without co-scheduling", () => {
    const failed = managedRun({}, "PipelineRunPending");
    failed.status = {
      conditions: [
        {
          type: "Succeeded",
          status: "False",
          reason: "AffinityMaxWaitExceeded",
          message:
            "waited longer than maxWait (90s) to be co-scheduled; last reason: 0/3 nodes are available",
        },
      ],
    };
    const input = { policies: [], sets: [], placeholderPods: [], taskPods: [], events: [] };
    const text = explainText(buildFacts({ ...input, run: failed }));
    expect(text).to.contain("failed (AffinityMaxWaitExceeded)");
    expect(text).to.contain("maxWait exceeded, failed: waited longer than maxWait (90s)");
    expect(text).to.contain("0/3 nodes are available");

    const released = managedRun({
      "affinity.tekton.dev/released-without-coscheduling": "waited longer than maxWait (90s)",
    });
    delete released.metadata.labels!["affinity.tekton.dev/managed"];
    expect(isManaged(released)).to.equal(true);
    expect(explainText(buildFacts({ ...input, run: released }))).to.contain(
      "maxWait exceeded, released without co-scheduling: waited longer than maxWait (90s)",
    );
    expect(explainText(buildFacts({ ...input, run: managedRun() }))).to.not.contain("maxWait exceeded");
  });

  it("says when no placement could satisfy a run: failed, or released without co-scheduling", () => {
    const input = { policies: [], sets: [], placeholderPods: [], taskPods: [], events: [] };
    const why =
      'task "both" binds 2 claim-backed workspaces whose volumes attach to one node at a time (src, cache)';
    const failed = managedRun({}, "PipelineRunPending");
    failed.status = {
      conditions: [{ type: "Succeeded", status: "False", reason: "AffinityUnsatisfiable", message: why }],
    };
    const text = explainText(buildFacts({ ...input, run: failed }));
    expect(text).to.contain(`cannot be co-scheduled, failed: ${why}`);
    expect(text).to.not.contain("maxWait exceeded");
    const released = managedRun({ "affinity.tekton.dev/released-without-coscheduling": why });
    const releasedText = explainText(buildFacts({ ...input, run: released }));
    expect(releasedText).to.contain(`cannot be co-scheduled, released without co-scheduling: ${why}`);
    expect(releasedText).to.not.contain("maxWait exceeded");
  });

  it("explains a released, finished run: policy, placeholder node, task nodes, migrations, cleanup", () => {
    const r = managedRun({
      "affinity.tekton.dev/placed-on": "node-2",
      "affinity.tekton.dev/cleaned-up": "true",
    });
    r.status = { conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded" }] };
    const facts = buildFacts({
      run: r,
      policies: [policy("default", { mode: "pipelineruns" })],
      sets: [placeholderSet("affinity-placeholder-abc")],
      placeholderPods: [placeholderPod("affinity-placeholder-abc", "node-2")],
      taskPods: [
        taskPod("second", "node-2", "2024-01-01T00:00:10Z"),
        taskPod("first", "node-2", "2024-01-01T00:00:05Z"),
      ],
      events: [
        event("CleanedUp", "run finished: deleted 1 placeholder(s)", "2024-01-01T00:01:00Z"),
        event("Placed", "placeholder scheduled on node-1; the run may start", "2024-01-01T00:00:01Z"),
        event("Migrating", "node node-1 is cordoned: moving placeholder", "2024-01-01T00:00:20Z"),
        event("Migrated", "placeholder moved from node node-1 to node node-2", "2024-01-01T00:00:22Z"),
        event("Placed", "of another run with the same name", "2024-01-01T00:00:00Z", "other-uid"),
      ],
    });
    expect(facts.gate).to.equal("released");
    expect(facts.current.differs).to.equal(false);
    expect(facts.tasks.map((t) => t.task)).to.deep.equal(["first", "second"]);
    const text = explainText(facts);
    expect(text).to.contain("PipelineRun team-a/build-1 (uid 0000-1111): succeeded");
    expect(text).to.contain("applied: AffinityPolicy default, mode pipelineruns");
    expect(text).to.contain("AffinityPolicy team-a/default selects this PipelineRun");
    expect(text).to.contain("placed on: node-2");
    expect(text).to.contain(
      "affinity-placeholder-abc: pod affinity-placeholder-abc-0 on node node-2 (Running)",
    );
    expect(text).to.contain("first: pod build-1-first-pod on node node-2 (Succeeded)");
    expect(text).to.contain("2024-01-01T00:00:20.000Z Migrating: node node-1 is cordoned");
    expect(text).to.contain(
      "2024-01-01T00:00:22.000Z Migrated: placeholder moved from node node-1 to node node-2",
    );
    expect(text).to.contain("CleanedUp: run finished: deleted 1 placeholder(s)");
    expect(text).not.to.contain("of another run");
    expect(text.indexOf("Migrating")).to.be.lessThan(text.indexOf("Migrated:"));
  });

  it("explains a gated run: waiting-for and the scheduler's message", () => {
    const waiting =
      "placeholder affinity-placeholder-abc cannot be scheduled: Unschedulable: 0/3 nodes are available";
    const facts = buildFacts({
      run: managedRun(
        { "affinity.tekton.dev/gated": "true", "affinity.tekton.dev/waiting-for": waiting },
        "PipelineRunPending",
      ),
      policies: [policy("default", { mode: "pipelineruns" })],
      sets: [placeholderSet("affinity-placeholder-abc")],
      placeholderPods: [placeholderPod("affinity-placeholder-abc", undefined, "0/3 nodes are available")],
      taskPods: [],
      events: [event("Waiting", waiting, "2024-01-01T00:00:02Z")],
    });
    expect(facts.gate).to.equal("gated");
    const text = explainText(facts);
    expect(text).to.contain("gated by tekton-affinity: waiting for its placeholder to be scheduled");
    expect(text).to.contain(`waiting for: ${waiting}`);
    expect(text).to.contain("not scheduled (Pending)");
    expect(text).to.contain("scheduler: Unschedulable: 0/3 nodes are available");
    expect(text).to.contain("no TaskRun pods yet");
    expect(text).to.contain("not yet (the run is not finished)");
  });

  it("tells a user-pended run apart from one we gated", () => {
    const facts = buildFacts({
      run: managedRun({}, "PipelineRunPending"),
      policies: [policy("default", { mode: "pipelineruns" })],
      sets: [],
      placeholderPods: [],
      taskPods: [],
      events: [],
    });
    expect(facts.gate).to.equal("user-pending");
    expect(explainText(facts)).to.contain("pending by the user");
  });

  it("says when today's winner differs from the recorded policy and lists the losers", () => {
    const facts = buildFacts({
      run: managedRun(),
      policies: [
        policy("default", { mode: "pipelineruns" }),
        policy("web", { mode: "isolate-pipelinerun", pipelineRunSelector: { matchLabels: { app: "web" } } }),
      ],
      sets: [],
      placeholderPods: [],
      taskPods: [],
      events: [],
    });
    expect(facts.current.differs).to.equal(true);
    const text = explainText(facts);
    expect(text).to.contain("today AffinityPolicy web (mode isolate-pipelinerun) would win instead");
    expect(text).to.contain("losers:  default");
  });

  it("reports an unmanaged run with the namespace's policies", () => {
    const r = baseRun({ app: "api" });
    expect(isManaged(r)).to.equal(false);
    const facts = buildFacts({
      run: r,
      policies: [
        policy("web", { mode: "pipelineruns", pipelineRunSelector: { matchLabels: { app: "web" } } }),
      ],
      sets: [],
      placeholderPods: [],
      taskPods: [],
      events: [],
    });
    const msg = unmanagedMessage(facts);
    expect(msg).to.contain("no AffinityPolicy managed this run: its namespace has none that selects it");
    expect(msg).to.contain("web: mode pipelineruns, selects app=web");
    const none = unmanagedMessage({ ...facts, policies: [] });
    expect(none).to.contain("namespace team-a has no AffinityPolicy");
  });
});
