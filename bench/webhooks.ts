// bench/webhooks: admission throughput and latency of one replica, for the gate (PipelineRun CREATE)
// and the pods webhook (a managed task pod's CREATE), over TLS. Writes bench/results/webhooks.json and
// prints a table.
//
//   npx tsx bench/webhooks.ts [--seconds 10] [--connections 32] [--rate 1000]
//
// The server is the real express app (createApp) behind the project's own HTTPS server (listen) and
// certificates (a CA and a serving certificate from certificates.ts), answering from in-memory caches
// (bench/fixtures.ts), in a child process: one replica. The load generator, autocannon, runs in this
// process, so generator and server are two processes on this machine's cores. Bodies are
// AdmissionReviews as the apiserver sends them: full Tekton objects with managedFields, userInfo,
// options. Every answer is checked (status 200, allowed, a JSON patch), and a run with any error fails.
//
// For each namespace (typical: 10 policies, 1,000 runs; crowded: 500 policies, 5,000 runs) and each
// webhook it measures:
// - maxRps: --connections kept-alive connections sending as fast as answers come, for --seconds;
// - p99MsAt1000: latency at --rate requests/s. autocannon's rate is a per-connection budget for each
//   second, sent back to back when the second starts, so one instance with N connections would send
//   the whole second's budget as a burst of N concurrent streams. To offer the rate evenly instead,
//   it runs STREAMS single-connection instances, each with rate/STREAMS a second, their seconds
//   started 1/STREAMS s apart: the server sees a short sequential burst every few milliseconds.
// Latencies are the generator's own per-response times (autocannon's histogram keeps whole
// milliseconds); TLS handshakes and connection set-up (the first second at full speed, each stream's
// first second at the fixed rate) are not measured.

import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import type { AddressInfo } from "node:net";
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import autocannon from "autocannon";
import { MANAGED_LABEL } from "../src/api/constants.js";
import { generateCertificateAuthority, generateServingCertificate } from "../src/webhooks/certificates.js";
import { listen, PATHS } from "../src/webhooks/server.js";
import { cachedNamespace, webhookApp } from "./fixtures.js";
import { numberArg } from "./measure.js";

const arg = numberArg;
const SECONDS = arg("seconds", 10);
const CONNECTIONS = arg("connections", 32);
const RATE = arg("rate", 1000);
/** Single-connection generators that share the fixed rate, their seconds staggered. */
const STREAMS = 50;
/** Distinct bodies per webhook; autocannon cycles through them. */
const BODIES = 200;
const WARMUP_SECONDS = 2;
const SERVICE_DNS = "tekton-affinity-webhook.tekton-affinity.svc";
const RESULTS = resolve(import.meta.dirname, "results", "webhooks.json");
const NAMESPACES = [
  { name: "typical", policies: 10, runs: 1000 },
  { name: "crowded", policies: 500, runs: 5000 },
] as const;

// ---------------------------------------------------------------------------------------------------
// The server: one replica, in a child process.

type ToServer = { type: "cpu" };
type FromServer = { type: "ready"; port: number; caPem: string } | { type: "cpu"; micros: number };

async function serve(): Promise<void> {
  const ca = await generateCertificateAuthority({ commonName: "tekton-affinity-bench-ca", validityDays: 1 });
  const serving = await generateServingCertificate(ca, {
    dnsNames: [SERVICE_DNS],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  const app = webhookApp(NAMESPACES.map((ns) => cachedNamespace(ns.name, ns.policies, ns.runs)));
  const server = await listen(app, serving, 0, "127.0.0.1");
  const send = (m: FromServer) => process.send!(m);
  process.on("message", (m: ToServer) => {
    if (m.type === "cpu") {
      const u = process.cpuUsage();
      send({ type: "cpu", micros: u.user + u.system });
    }
  });
  process.on("disconnect", () => {
    server.closeAllConnections();
    server.close();
    process.exit(0);
  });
  send({ type: "ready", port: (server.address() as AddressInfo).port, caPem: ca.certPem });
}

// ---------------------------------------------------------------------------------------------------
// AdmissionReviews as the apiserver sends them: mutating admission runs before the object is stored,
// so there is no uid or creationTimestamp yet, but managedFields are filled in.

const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
const sha = (i: number) => (i * 2654435761).toString(16).padStart(8, "0").repeat(5);

function admissionReview(
  namespace: string,
  kind: { group: string; version: string; kind: string; resource: string },
  name: string,
  userInfo: { username: string; groups: string[] },
  object: unknown,
  fieldManager: string,
) {
  const gvk = { group: kind.group, version: kind.version, kind: kind.kind };
  const gvr = { group: kind.group, version: kind.version, resource: kind.resource };
  return {
    kind: "AdmissionReview",
    apiVersion: "admission.k8s.io/v1",
    request: {
      uid: randomUUID(),
      kind: gvk,
      resource: gvr,
      requestKind: gvk,
      requestResource: gvr,
      name,
      namespace,
      operation: "CREATE",
      userInfo: { ...userInfo, uid: randomUUID() },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: "CreateOptions", apiVersion: "meta.k8s.io/v1", fieldManager },
    },
  };
}

/** A PipelineRun a trigger creates: labels that policy p-(i mod policies) selects, no marks of ours. */
function pipelineRunReview(namespace: string, policies: number, i: number) {
  const k = i % policies;
  const labels = {
    team: `t-${k % 7}`,
    app: `app-${k}`,
    "tekton.dev/pipeline": "build-and-test",
    "triggers.tekton.dev/eventlistener": "github",
    "triggers.tekton.dev/trigger": "push",
    "triggers.tekton.dev/triggers-eventid": randomUUID(),
  };
  const keys = (o: object) => Object.fromEntries(Object.keys(o).map((key) => [`f:${key}`, {}]));
  const run = {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: {
      generateName: `build-and-test-app-${k}-`,
      namespace,
      labels,
      annotations: { "tekton.dev/git-revision": sha(i) },
      managedFields: [
        {
          manager: "eventlistenersink",
          operation: "Update",
          apiVersion: "tekton.dev/v1",
          time: now,
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": {
              "f:annotations": { ".": {}, "f:tekton.dev/git-revision": {} },
              "f:generateName": {},
              "f:labels": { ".": {}, ...keys(labels) },
            },
            "f:spec": {
              ".": {},
              "f:params": {},
              "f:pipelineRef": { ".": {}, "f:name": {} },
              "f:taskRunTemplate": { ".": {}, "f:podTemplate": {}, "f:serviceAccountName": {} },
              "f:timeouts": { ".": {}, "f:pipeline": {} },
              "f:workspaces": {},
            },
          },
        },
      ],
    },
    spec: {
      pipelineRef: { name: "build-and-test" },
      params: [
        { name: "git-url", value: `https://git.example.com/team-${k % 7}/app-${k}.git` },
        { name: "git-revision", value: sha(i) },
        { name: "image", value: `registry.example.com/team-${k % 7}/app-${k}:${sha(i).slice(0, 12)}` },
      ],
      workspaces: [
        {
          name: "source",
          volumeClaimTemplate: {
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
          },
        },
        { name: "docker-config", secret: { secretName: "registry-credentials" } },
      ],
      taskRunTemplate: {
        serviceAccountName: "pipeline",
        podTemplate: { securityContext: { fsGroup: 65532 } },
      },
      timeouts: { pipeline: "1h0m0s" },
    },
  };
  return admissionReview(
    namespace,
    { group: "tekton.dev", version: "v1", kind: "PipelineRun", resource: "pipelineruns" },
    "",
    {
      username: "system:serviceaccount:tekton-pipelines:tekton-triggers-sa",
      groups: ["system:serviceaccounts", "system:serviceaccounts:tekton-pipelines", "system:authenticated"],
    },
    run,
    "eventlistenersink",
  );
}

/** The pod of run-i's "build" TaskRun, as Tekton's controller creates it (after the built-in
 * admission plugins added the token volume and default tolerations). */
function taskPodReview(namespace: string, i: number) {
  const runName = `run-${i}`;
  const taskRun = `${runName}-build`;
  const runUid = `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`;
  const taskRunUid = randomUUID();
  const internal = (name: string) => ({ name: `tekton-internal-${name}`, emptyDir: {} });
  const mounts = [
    { name: "tekton-internal-scripts", mountPath: "/tekton/scripts" },
    { name: "tekton-internal-tools", mountPath: "/tekton/bin", readOnly: true },
    { name: "tekton-internal-downward", mountPath: "/tekton/downward", readOnly: true },
    { name: "tekton-internal-workspace", mountPath: "/workspace" },
    { name: "tekton-internal-home", mountPath: "/tekton/home" },
    { name: "tekton-internal-results", mountPath: "/tekton/results" },
    { name: "tekton-internal-steps", mountPath: "/tekton/steps", readOnly: true },
    { name: "ws-source", mountPath: "/workspace/source" },
    {
      name: "kube-api-access-x7k2p",
      mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
      readOnly: true,
    },
  ];
  const step = (n: number, name: string, image: string) => ({
    name: `step-${name}`,
    image,
    command: ["/tekton/bin/entrypoint"],
    args: [
      ...(n > 0 ? ["-wait_file", `/tekton/run/${n - 1}/out`] : ["-wait_file", "/tekton/downward/ready"]),
      ...["-wait_file_content", "-post_file", `/tekton/run/${n}/out`, "-termination_path"],
      ...["/tekton/termination", "-step_metadata_dir", `/tekton/run/${n}/status`, "-entrypoint"],
      ...[`/tekton/scripts/script-${n}-${sha(i).slice(0, 5)}`, "--"],
    ],
    env: [
      { name: "HOME", value: "/tekton/home" },
      { name: "IMAGE", value: `registry.example.com/app:${sha(i).slice(0, 12)}` },
    ],
    resources: {},
    terminationMessagePath: "/tekton/termination",
    terminationMessagePolicy: "File",
    imagePullPolicy: "IfNotPresent",
    volumeMounts: [
      ...mounts,
      { name: `tekton-creds-init-home-${n}`, mountPath: "/tekton/creds" },
      { name: `tekton-internal-run-${n}`, mountPath: `/tekton/run/${n}` },
    ],
  });
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `${taskRun}-pod`,
      namespace,
      labels: {
        "app.kubernetes.io/managed-by": "tekton-pipelines",
        "tekton.dev/memberOf": "tasks",
        "tekton.dev/pipeline": "build-and-test",
        "tekton.dev/pipelineRun": runName,
        "tekton.dev/pipelineRunUID": runUid,
        "tekton.dev/pipelineTask": "build",
        "tekton.dev/task": "buildah",
        "tekton.dev/taskRun": taskRun,
        "tekton.dev/taskRunUID": taskRunUid,
        [MANAGED_LABEL]: "true",
      },
      annotations: {
        "pipeline.tekton.dev/release": "v0.68.0",
        "tekton.dev/ready": "",
        "tekton.dev/categories": "Image Build",
      },
      ownerReferences: [
        {
          apiVersion: "tekton.dev/v1",
          kind: "TaskRun",
          name: taskRun,
          uid: taskRunUid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: [
        {
          manager: "controller",
          operation: "Update",
          apiVersion: "v1",
          time: now,
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": { "f:labels": {}, "f:annotations": {}, "f:ownerReferences": {} },
            "f:spec": {},
          },
        },
      ],
    },
    spec: {
      volumes: [
        internal("workspace"),
        internal("home"),
        internal("results"),
        { name: "tekton-internal-steps", emptyDir: {} },
        internal("scripts"),
        { name: "tekton-internal-tools", emptyDir: {} },
        {
          name: "tekton-internal-downward",
          downwardAPI: {
            items: [{ path: "ready", fieldRef: { fieldPath: "metadata.annotations['tekton.dev/ready']" } }],
            defaultMode: 420,
          },
        },
        { name: "tekton-creds-init-home-0", emptyDir: { medium: "Memory" } },
        { name: "tekton-creds-init-home-1", emptyDir: { medium: "Memory" } },
        internal("run-0"),
        internal("run-1"),
        { name: "ws-source", persistentVolumeClaim: { claimName: `claim-${i}` } },
        {
          name: "kube-api-access-x7k2p",
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
              { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
              {
                downwardAPI: {
                  items: [
                    { path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } },
                  ],
                },
              },
            ],
            defaultMode: 420,
          },
        },
      ],
      initContainers: [
        {
          name: "prepare",
          image: "ghcr.io/tektoncd/pipeline/entrypoint:v0.68.0",
          command: ["/ko-app/entrypoint", "init", "/ko-app/entrypoint", "/tekton/bin/entrypoint"],
          args: ["step-clone", "step-build"],
          workingDir: "/",
          resources: {},
          volumeMounts: [
            { name: "tekton-internal-tools", mountPath: "/tekton/bin" },
            { name: "tekton-internal-steps", mountPath: "/tekton/steps" },
          ],
          terminationMessagePath: "/dev/termination-log",
          terminationMessagePolicy: "File",
          imagePullPolicy: "IfNotPresent",
        },
      ],
      containers: [
        step(0, "clone", "ghcr.io/tektoncd/git-init:v0.68.0"),
        step(1, "build", "quay.io/buildah/stable:v1.37"),
      ],
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 30,
      activeDeadlineSeconds: 5400,
      dnsPolicy: "ClusterFirst",
      serviceAccountName: "pipeline",
      serviceAccount: "pipeline",
      securityContext: { fsGroup: 65532 },
      schedulerName: "default-scheduler",
      tolerations: [
        {
          key: "node.kubernetes.io/not-ready",
          operator: "Exists",
          effect: "NoExecute",
          tolerationSeconds: 300,
        },
        {
          key: "node.kubernetes.io/unreachable",
          operator: "Exists",
          effect: "NoExecute",
          tolerationSeconds: 300,
        },
      ],
      priority: 0,
      enableServiceLinks: false,
      preemptionPolicy: "PreemptLowerPriority",
    },
  };
  return admissionReview(
    namespace,
    { group: "", version: "v1", kind: "Pod", resource: "pods" },
    pod.metadata.name,
    {
      username: "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller",
      groups: ["system:serviceaccounts", "system:serviceaccounts:tekton-pipelines", "system:authenticated"],
    },
    pod,
    "controller",
  );
}

// ---------------------------------------------------------------------------------------------------
// Checking answers.

interface Answer {
  response?: { uid?: string; allowed?: boolean; patchType?: string; patch?: string; warnings?: string[] };
}

/** What a correct answer to a body of this webhook contains. The pods webhook must add the affinity;
 * the gate must hold the run (spec.status Pending) and mark it managed. */
function correct(webhook: Webhook, answer: Answer): string | undefined {
  const r = answer.response;
  if (!r?.allowed) return "not allowed";
  if (r.warnings?.length) return `warnings: ${r.warnings.join("; ")}`;
  if (r.patchType !== "JSONPatch" || !r.patch) return "no JSON patch";
  const ops = JSON.parse(Buffer.from(r.patch, "base64").toString()) as { path: string; value?: unknown }[];
  const want =
    webhook === "pods"
      ? ["/spec/affinity"]
      : ["/spec/status", "/metadata/labels/affinity.tekton.dev~1managed"];
  const missing = want.filter((p) => !ops.some((op) => op.path === p));
  return missing.length ? `patch lacks ${missing.join(", ")}: ${JSON.stringify(ops)}` : undefined;
}

/** The check every answer gets during the load, cheap enough for the generator; `correct` runs on
 * samples first. */
const looksCorrect = (body: string | Buffer | undefined) => {
  const text = String(body ?? "");
  return text.includes('"allowed":true,"patchType":"JSONPatch"') && !text.includes('"warnings"');
};

// ---------------------------------------------------------------------------------------------------
// The generator.

type Webhook = "pipelineruns" | "pods";
const PATH: Record<Webhook, string> = { pipelineruns: PATHS.pipelineRuns, pods: PATHS.pods };

interface Target {
  port: number;
  caPem: string;
  cpu: () => Promise<number>;
}

/** Busy CPU time of the whole machine so far, in seconds (Linux /proc/stat). */
function machineBusySeconds(): number | undefined {
  try {
    const [, ...fields] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
    const n = fields.map(Number);
    const idle = (n[3] ?? 0) + (n[4] ?? 0);
    const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - idle) / 100; // USER_HZ
  } catch {
    return undefined;
  }
}

interface Window {
  wallSeconds: number;
  serverCores: number;
  generatorCores: number;
  otherCores?: number;
}

/** CPU used by server, generator and everything else on the machine while `fn` runs, in cores. */
async function measured<T>(target: Target, fn: () => Promise<T>): Promise<[T, Window]> {
  const wall0 = process.hrtime.bigint();
  const server0 = await target.cpu();
  const gen0 = process.cpuUsage();
  const machine0 = machineBusySeconds();
  const value = await fn();
  const machine1 = machineBusySeconds();
  const gen = process.cpuUsage(gen0);
  const server1 = await target.cpu();
  const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
  const serverCores = (server1 - server0) / 1e6 / wall;
  const generatorCores = (gen.user + gen.system) / 1e6 / wall;
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return [
    value,
    {
      wallSeconds: r2(wall),
      serverCores: r2(serverCores),
      generatorCores: r2(generatorCores),
      ...(machine0 !== undefined && machine1 !== undefined
        ? { otherCores: r2(Math.max(0, (machine1 - machine0) / wall - serverCores - generatorCores)) }
        : {}),
    },
  ];
}

interface Load {
  /** Latencies in ms of the responses measured (those after the skipped start). */
  latencies: number[];
  /** How long the measured responses took to come, in seconds. */
  seconds: number;
  /** Every response, skipped ones too: what the server's CPU time was spent on. */
  responses: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  mismatches: number;
}

/** One autocannon instance. Its first `skipSeconds`, or first `skipResponses` responses, are left out
 * of the latencies: they include the TLS handshake and connection set-up. */
function cannon(
  target: Target,
  webhook: Webhook,
  bodies: string[],
  opts: { connections: number; seconds: number; rate?: number; skipSeconds?: number; skipResponses?: number },
): Promise<Load> {
  return new Promise((resolvePromise, reject) => {
    const latencies: number[] = [];
    let responses = 0;
    const start = process.hrtime.bigint();
    const skipNs = BigInt(Math.round((opts.skipSeconds ?? 0) * 1e9));
    const instance = autocannon(
      {
        url: `https://127.0.0.1:${target.port}`,
        servername: SERVICE_DNS,
        connections: opts.connections,
        duration: opts.seconds,
        ...(opts.rate ? { overallRate: opts.rate } : {}),
        requests: bodies.map((body) => ({
          method: "POST" as const,
          // The apiserver appends the webhook's timeout to the URL.
          path: `${PATH[webhook]}?timeout=10s`,
          headers: { "content-type": "application/json", accept: "application/json, */*" },
          body,
        })),
        verifyBody: looksCorrect,
        timeout: 10,
      },
      (err, result) => {
        if (err) return reject(err);
        resolvePromise({
          latencies,
          seconds: opts.seconds - (opts.skipSeconds ?? 0),
          responses,
          errors: result.errors,
          timeouts: result.timeouts,
          non2xx: result.non2xx,
          mismatches: result.mismatches,
        });
      },
    );
    instance.on("response", (_client, _status, _bytes, ms) => {
      if (++responses > (opts.skipResponses ?? 0) && process.hrtime.bigint() - start >= skipNs)
        latencies.push(ms);
    });
  });
}

function merge(loads: Load[], seconds: number): Load {
  const sum = (k: "errors" | "timeouts" | "non2xx" | "mismatches") => loads.reduce((a, l) => a + l[k], 0);
  return {
    latencies: loads.flatMap((l) => l.latencies),
    seconds,
    responses: loads.reduce((a, l) => a + l.responses, 0),
    errors: sum("errors"),
    timeouts: sum("timeouts"),
    non2xx: sum("non2xx"),
    mismatches: sum("mismatches"),
  };
}

/** `rate` requests/s offered evenly: STREAMS one-connection instances, their seconds staggered. */
async function atRate(target: Target, webhook: Webhook, bodies: string[], rate: number, seconds: number) {
  const streams = Math.min(STREAMS, rate);
  const runs: Promise<Load>[] = [];
  for (let s = 0; s < streams; s++) {
    const share = Math.floor(rate / streams) + (s < rate % streams ? 1 : 0);
    // Each stream cycles through its own slice of the bodies. Its first second's burst is not measured:
    // it includes the TLS handshake.
    const mine = bodies.filter((_, i) => i % streams === s);
    runs.push(
      cannon(target, webhook, mine, {
        connections: 1,
        seconds: seconds + 1,
        rate: share,
        skipResponses: share,
      }),
    );
    await sleep(1000 / streams);
  }
  return merge(await Promise.all(runs), seconds);
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function summary(load: Load, cpu: Window) {
  const s = Float64Array.from(load.latencies).sort();
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    requests: s.length,
    rps: Math.round(s.length / load.seconds),
    p50Ms: r3(percentile(s, 50)),
    p99Ms: r3(percentile(s, 99)),
    maxMs: r3(s.at(-1) ?? 0),
    errors: load.errors + load.timeouts + load.non2xx + load.mismatches,
    /** The server's CPU time per answer: one core answers at most 1000 / this many a second. */
    serverCpuMsPerRequest: r3((cpu.serverCores * cpu.wallSeconds * 1000) / Math.max(1, load.responses)),
    cpuCores: cpu,
  };
}

/** What limited a saturated phase, from the CPU each side used. */
function boundBy(w: Window): string {
  const other = w.otherCores ?? 0;
  const total = w.serverCores + w.generatorCores + other;
  if (w.serverCores >= 0.9) return `server: its event loop used ${w.serverCores} of 1 core`;
  if (w.generatorCores >= 0.9) return `generator: autocannon used ${w.generatorCores} of 1 core`;
  if (total >= 1.8)
    return `machine: ${total.toFixed(2)} of ${cpus().length} cores busy (server ${w.serverCores}, generator ${w.generatorCores}, other processes ${other})`;
  return `no core saturated (server ${w.serverCores}, generator ${w.generatorCores}, other ${other})`;
}

async function post(
  target: Target,
  webhook: Webhook,
  body: string,
): Promise<{ status: number; answer: Answer }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: target.port,
        servername: SERVICE_DNS,
        ca: target.caPem, // verified against the project's CA, unlike autocannon's connections
        method: "POST",
        path: PATH[webhook],
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          text += c;
        });
        res.on("end", () =>
          resolvePromise({ status: res.statusCode ?? 0, answer: JSON.parse(text) as Answer }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function bench(target: Target, ns: (typeof NAMESPACES)[number], webhook: Webhook) {
  const bodies = Array.from({ length: BODIES }, (_, i) =>
    JSON.stringify(
      webhook === "pods" ? taskPodReview(ns.name, i % ns.runs) : pipelineRunReview(ns.name, ns.policies, i),
    ),
  );
  // Before measuring: the answers must be right, over a verified TLS connection.
  for (const [i, body] of bodies.slice(0, 20).entries()) {
    const { status, answer } = await post(target, webhook, body);
    const uid = (JSON.parse(body) as { request: { uid: string } }).request.uid;
    const wrong =
      status !== 200
        ? `status ${status}`
        : answer.response?.uid !== uid
          ? "wrong uid"
          : correct(webhook, answer);
    if (wrong)
      throw new Error(
        `${ns.name} ${webhook}: body ${i} answered wrongly (${wrong}): ${JSON.stringify(answer)}`,
      );
  }
  await cannon(target, webhook, bodies, { connections: CONNECTIONS, seconds: WARMUP_SECONDS });
  const [max, maxCpu] = await measured(target, () =>
    cannon(target, webhook, bodies, { connections: CONNECTIONS, seconds: SECONDS + 1, skipSeconds: 1 }),
  );
  const [fixed, fixedCpu] = await measured(target, () => atRate(target, webhook, bodies, RATE, SECONDS));
  const atMax = { connections: CONNECTIONS, ...summary(max, maxCpu), boundBy: boundBy(maxCpu) };
  const fixedSummary = summary(fixed, fixedCpu);
  const atFixed = {
    offeredRps: RATE,
    streams: Math.min(STREAMS, RATE),
    // autocannon drops what a stream could not send within its second rather than queue it, so an
    // overloaded server shows here as a lower rate, not only as latency.
    sustained: fixedSummary.rps >= 0.98 * RATE,
    ...fixedSummary,
  };
  const errors = atMax.errors + atFixed.errors;
  if (errors > 0)
    throw new Error(
      `${ns.name} ${webhook}: ${errors} failed requests: ${JSON.stringify({ atMax, atFixed })}`,
    );
  return {
    maxRps: atMax.rps,
    p99MsAt1000: RATE === 1000 ? atFixed.p99Ms : null,
    p50MsAt1000: RATE === 1000 ? atFixed.p50Ms : null,
    bodyBytes: Math.round(bodies.reduce((a, b) => a + b.length, 0) / bodies.length),
    atMax,
    atFixedRate: atFixed,
  };
}

async function main(): Promise<void> {
  const child = fork(import.meta.filename, ["--serve"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const pending: ((m: FromServer) => void)[] = [];
  const ready = new Promise<{ port: number; caPem: string }>((resolvePromise, reject) => {
    child.once("exit", (code) => reject(new Error(`server exited (${code})`)));
    child.on("message", (m: FromServer) => {
      if (m.type === "ready") resolvePromise(m);
      else pending.shift()?.(m);
    });
  });
  try {
    const { port, caPem } = await ready;
    const target: Target = {
      port,
      caPem,
      cpu: () =>
        new Promise((r) => {
          pending.push((m) => r(m.type === "cpu" ? m.micros : 0));
          child.send({ type: "cpu" } satisfies ToServer);
        }),
    };
    const load0 = loadavg();
    const results: Record<string, Record<Webhook, Awaited<ReturnType<typeof bench>>>> = {};
    for (const ns of NAMESPACES) {
      results[ns.name] = {
        pipelineruns: await bench(target, ns, "pipelineruns"),
        pods: await bench(target, ns, "pods"),
      };
    }
    const typical = results.typical!;
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      cores: cpus().length,
      loadAverage1mAtStart: Math.round(load0[0]! * 100) / 100,
      seconds: SECONDS,
      note:
        `One replica (one Node process) serving HTTPS with the project's certificates (ECDSA P-256), driven by autocannon in a second process on the same ${cpus().length}-core machine, so generator and server share its cores with each other and with anything else running; cpuCores says what each used. ` +
        `maxRps: ${CONNECTIONS} kept-alive connections as fast as answers come. p99MsAt1000: ${RATE} req/s offered by ${Math.min(STREAMS, RATE)} staggered one-connection autocannon streams. ` +
        "Latencies are the generator's per-response times in ms, including its own event-loop delays; the first second at full speed, and each stream's first second at the fixed rate, are not measured (TLS handshakes). " +
        "pipelineruns and pods are measured in the typical namespace; crowded repeats them with 500 policies and 5,000 runs.",
      goals: { p99MsAt1000: 2, maxRps: 5000 },
      namespace: NAMESPACES[0],
      pipelineruns: typical.pipelineruns,
      pods: typical.pods,
      crowded: { namespace: NAMESPACES[1], ...results.crowded! },
    };
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);

    const header = [
      "namespace",
      "webhook",
      "max req/s",
      "p99 ms",
      `req/s @${RATE}`,
      `p50 ms @${RATE}`,
      `p99 ms @${RATE}`,
      "server CPU ms/req",
      "bound at max",
    ];
    const rows = NAMESPACES.flatMap((ns) =>
      (["pipelineruns", "pods"] as const).map((webhook) => {
        const r = results[ns.name]![webhook];
        return [
          ns.name,
          webhook,
          r.maxRps,
          r.atMax.p99Ms,
          `${r.atFixedRate.rps}${r.atFixedRate.sustained ? "" : " (!)"}`,
          r.atFixedRate.p50Ms,
          r.atFixedRate.p99Ms,
          r.atMax.serverCpuMsPerRequest,
          r.atMax.boundBy,
        ].map(String);
      }),
    );
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) =>
      cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
    console.log(
      `One replica over TLS; autocannon in another process on the same ${cpus().length} cores (load average ${result.loadAverage1mAtStart} at start)`,
    );
    console.log(line(header));
    for (const row of rows) console.log(line(row));
    if (rows.some((r) => r[4]!.endsWith("(!)")))
      console.log(`(!) the offered ${RATE} req/s was not sustained`);
    console.log(`goals: p99 <= 2 ms at 1,000 req/s, >= 5,000 req/s`);
    console.log(`wrote ${RESULTS}`);
  } finally {
    child.disconnect();
  }
}

if (process.argv.includes("--serve")) await serve();
else await main();
