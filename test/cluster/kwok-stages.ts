// KWOK stages for the fake nodes and pods, derived at run time from the stages KWOK itself ships
// (read from the downloaded KWOK module, never copied here) with three changes:
//  - no random jitter, so runs are reproducible;
//  - pods start within ~100 ms instead of 1-6 s;
//  - pods owned by a TaskRun complete (exit code 0) like Job pods do, after
//    `pod-complete.stage.kwok.x-k8s.io/delay` (an annotation Tekton copies from the task's
//    `taskSpec.metadata.annotations`), so a "sleep 60" step is modelled as `delay: "60s"`;
//  - a pod that mounts a PersistentVolumeClaim is created (gets its IP, then runs) only once the
//    harness's attach model marked its volumes attached (storage/model.ts): until then it stays
//    Pending, as a pod waiting on a Multi-Attach does. pod-create is split in two stages for that.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { moduleDir } from "./build.js";
import { ATTACHED_ANNOTATION } from "./storage/model.js";
import { VERSIONS } from "./versions.js";

/** Annotation that sets how long a fake pod runs before it succeeds. */
export const POD_DURATION_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay";
export const DEFAULT_POD_DURATION_MS = 1000;
const STARTUP_MS = 100;

interface Requirement {
  key: string;
  operator: string;
  values?: string[];
}

interface Stage {
  metadata: { name: string };
  spec: {
    selector?: { matchExpressions?: Requirement[] };
    delay?: {
      durationMilliseconds?: number;
      jitterDurationMilliseconds?: number;
      jitterDurationFrom?: unknown;
    };
  };
}

const STAGE_FILES = [
  "node/fast/node-initialize.yaml",
  "node/heartbeat/node-heartbeat.yaml",
  "pod/general/pod-create.yaml",
  "pod/general/pod-init-container-running.yaml",
  "pod/general/pod-init-container-completed.yaml",
  "pod/general/pod-ready.yaml",
  "pod/general/pod-complete.yaml",
  "pod/general/pod-delete.yaml",
];

/** Heartbeats well inside kube-controller-manager's node-monitor grace period: KWOK's own 20 s + up to
 * 25 s jitter can exceed it, and the node then flaps NotReady under a running test. */
const HEARTBEAT_MS = 10_000;

function adjust(stage: Stage): Stage {
  const delay = stage.spec.delay;
  if (delay && stage.metadata.name === "node-heartbeat") {
    delete delay.jitterDurationMilliseconds;
    delay.durationMilliseconds = HEARTBEAT_MS;
  }
  if (delay && stage.metadata.name.startsWith("pod-")) {
    delete delay.jitterDurationMilliseconds;
    delete delay.jitterDurationFrom;
    delay.durationMilliseconds =
      stage.metadata.name === "pod-complete" ? DEFAULT_POD_DURATION_MS : STARTUP_MS;
  }
  if (stage.metadata.name === "pod-complete") {
    const owner = stage.spec.selector?.matchExpressions?.find((e) => e.key.includes("ownerReferences"));
    if (!owner?.values)
      throw new Error("KWOK's pod-complete stage changed shape: no ownerReferences selector");
    owner.values = [...new Set([...owner.values, "TaskRun"])];
  }
  return stage;
}

/** Any claim the pod mounts (a jq query KWOK evaluates: no output means none). */
const MOUNTS_A_CLAIM = ".spec.volumes[]?.persistentVolumeClaim.claimName";

/** pod-create as two stages: for pods without claims as before; for pods with claims, once attached. */
function splitForAttach(stage: Stage): Stage[] {
  if (stage.metadata.name !== "pod-create") return [stage];
  const withSelector = (name: string, extra: Requirement[]): Stage => {
    const copy = structuredClone(stage);
    copy.metadata.name = name;
    copy.spec.selector = { matchExpressions: [...(stage.spec.selector?.matchExpressions ?? []), ...extra] };
    return copy;
  };
  return [
    withSelector("pod-create", [{ key: MOUNTS_A_CLAIM, operator: "DoesNotExist" }]),
    withSelector("pod-create-volumes-attached", [
      { key: MOUNTS_A_CLAIM, operator: "Exists" },
      { key: `.metadata.annotations["${ATTACHED_ANNOTATION}"]`, operator: "Exists" },
    ]),
  ];
}

/** The KwokConfiguration file content: options plus every stage. */
export async function kwokConfig(): Promise<string> {
  const dir = join(await moduleDir("sigs.k8s.io/kwok", VERSIONS.kwok), "kustomize", "stage");
  const docs: unknown[] = [
    { apiVersion: "config.kwok.x-k8s.io/v1alpha1", kind: "KwokConfiguration", options: {} },
  ];
  for (const file of STAGE_FILES) {
    for (const doc of parseAllDocuments(await readFile(join(dir, file), "utf8"))) {
      const stage = doc.toJS() as Stage | null;
      if (stage) docs.push(...splitForAttach(adjust(stage)));
    }
  }
  return docs.map((d) => stringify(d)).join("---\n");
}
