// What only a real kubelet shows: containers that really start, write to and read from a shared volume,
// print logs, and run under the `restricted` Pod Security Standard; and the seed's cordon walkthrough
// with the placeholder on a real node. The real node (real-node.ts: containerd, runc, a kubelet, the
// images built here) joins the shared e2e cluster for these tests and leaves it after them.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { resolve } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import * as k8s from "@kubernetes/client-node";
import { expect } from "chai";
import type { PipelineRun } from "../../src/api/types.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { BUSYBOX_NAMES, PAUSE_IMAGE, REDIS_IMAGE } from "../cluster/images.js";
import { parseYaml, toYaml, waitFor } from "../cluster/kube.js";
import { sleep } from "../cluster/processes.js";
import { buildProjectImage, projectImageReference } from "../cluster/project-image.js";
import { hostAddress, loadImages, REAL_NODE_LABEL } from "../cluster/real-node.js";
import { TEKTON_NAMESPACE } from "../cluster/tekton.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  pipelineRun,
  placeholderPods,
  RWO_TEMPLATE,
  scriptedRun,
  taskPods,
  uniqueName,
  waitForEvent,
  waitRunSucceeded,
  writeThenReadRun,
} from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..", "..");
const ALPINE = "docker.io/library/alpine:3.20";
const BUSYBOX = BUSYBOX_NAMES[0]!;
const ON_REAL_NODE = { nodeSelector: { [REAL_NODE_LABEL]: "true" } };
/** What a container must declare to be admitted where `restricted` is enforced. */
const RESTRICTED_STEP = {
  runAsNonRoot: true,
  runAsUser: 65532,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/** The run's placeholder pod once its container really runs (a real containerd started it). */
async function runningPlaceholder(
  cluster: LocalCluster,
  namespace: string,
  run: PipelineRun,
): Promise<V1Pod> {
  return waitFor(
    `the placeholder of ${namespace}/${run.metadata.name} to run`,
    async () => {
      const [pod] = await placeholderPods(cluster, namespace, run.metadata.uid!);
      return pod?.status?.containerStatuses?.[0]?.state?.running ? pod : undefined;
    },
    { timeoutMs: 90_000 },
  );
}

async function stepLog(cluster: LocalCluster, namespace: string, pod: V1Pod, step: string): Promise<string> {
  return cluster.kubectlRun("logs", "-n", namespace, pod.metadata!.name!, "-c", `step-${step}`);
}

/** Tekton's `set-security-context` feature flag; its controller reads the ConfigMap through a watch. */
async function setTektonSecurityContext(cluster: LocalCluster, on: boolean): Promise<void> {
  await cluster.clients.core.patchNamespacedConfigMap(
    {
      name: "feature-flags",
      namespace: TEKTON_NAMESPACE,
      body: { data: { "set-security-context": String(on) } },
    },
    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
  );
  await sleep(3000); // the watch delivers it well within this; runs created before would use the old value
}

describe("real node: a kubelet with containerd runs the placeholder and the tasks", function () {
  this.timeout(180_000);
  let cluster: LocalCluster;
  let realNode: string;
  let added = false;

  before(async function () {
    // From cold this builds the kubelet, kube-proxy, Tekton's task-pod tools and the images (minutes).
    this.timeout(15 * 60_000);
    ({ cluster } = await e2e());
    const existing = cluster.state.realNodes?.[0];
    if (existing) realNode = existing.name;
    else {
      realNode = (await cluster.addRealNodes(1))[0]!;
      added = true;
    }
  });

  after(async function () {
    this.timeout(120_000);
    if (added) await cluster.removeRealNode(realNode);
  });

  it("a pod on the real node resolves and reaches kubernetes.default through cluster DNS and kube-proxy", async () => {
    const ns = await createNamespace(cluster, "real-dns");
    const script =
      "nslookup kubernetes.default.svc.cluster.local && nc -w 5 kubernetes.default.svc.cluster.local 443 </dev/null && echo reached";
    await cluster.clients.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: "dns" },
        spec: {
          restartPolicy: "Never",
          nodeSelector: ON_REAL_NODE.nodeSelector,
          containers: [{ name: "probe", image: BUSYBOX, command: ["sh", "-c", script] }],
        },
      },
    });
    const pod = await waitFor(
      "the DNS probe pod to finish",
      async () => {
        const p = await cluster.clients.core.readNamespacedPod({ name: "dns", namespace: ns });
        return ["Succeeded", "Failed"].includes(p.status?.phase ?? "") ? p : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const log = await cluster.kubectlRun("logs", "-n", ns, "dns");
    expect(pod.status?.phase, log).to.equal("Succeeded");
    expect(log).to.include("Address: 10.96.0.1").and.include("reached");
  });

  it("deploy/'s Redis runs from the image it names, as deploy/ configures it (non-root, read-only root)", async () => {
    const ns = await createNamespace(cluster, "real-redis");
    const password = uniqueName("pw");
    const [statefulSet] = parseYaml(
      readFileSync(resolve(REPO, "deploy", "base", "redis.yaml"), "utf8"),
    ).filter((o) => o.kind === "StatefulSet") as k8s.V1StatefulSet[];
    statefulSet!.metadata!.namespace = ns;
    statefulSet!.spec!.template.spec!.nodeSelector = ON_REAL_NODE.nodeSelector;
    await cluster.clients.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "tekton-affinity-redis" }, stringData: { password } },
    });
    await cluster.clients.apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet! });
    // Ready is deploy/'s own probe: `redis-cli ping` with the password answers PONG.
    const pod = await waitFor(
      "deploy/'s Redis to be Ready",
      async () => {
        const [p] = (await cluster.clients.core.listNamespacedPod({ namespace: ns })).items;
        return p?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? p : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(pod.spec?.nodeName).to.equal(realNode);
    expect(pod.status?.containerStatuses?.[0]?.image).to.equal(REDIS_IMAGE);
    // The real node's processes are this machine's: no command line shows the password.
    const commandLines = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" });
    expect(commandLines).to.match(/redis-server/);
    expect(commandLines).to.not.include(password);
    // It took the password from stdin, and the maxmemory.
    const cli = (...args: string[]) =>
      execFileSync("redis-cli", ["-h", pod.status!.podIP!, "--no-auth-warning", ...args], {
        encoding: "utf8",
      }).trim();
    expect(cli("ping")).to.match(/NOAUTH/);
    expect(cli("-a", password, "config", "get", "maxmemory")).to.equal(`maxmemory\n${192 * 1024 * 1024}`);
  });

  it("the harness's StorageClasses give volumes a task on the real node can write", async () => {
    const ns = await createNamespace(cluster, "real-storage");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    // `zonal` makes the same volume as `zonal-wffc`, bound before scheduling in a zone taken in turn,
    // which may not be the real node's: its kind of volume is covered by `zonal-wffc`.
    const classes = ["standard", "local-wffc", "zonal-wffc"];
    const run = scriptedRun(
      ns,
      [
        {
          name: "write",
          steps: [
            {
              name: "write",
              image: BUSYBOX,
              script: classes
                .map((c) => `echo ${c} > $(workspaces.${c}.path)/f && cat $(workspaces.${c}.path)/f`)
                .join("\n"),
            },
          ],
        },
      ],
      { podTemplate: ON_REAL_NODE },
    );
    // One workspace per class, each a claim template of that class, all bound by the one task.
    run.spec.workspaces = classes.map((c) => ({
      name: c,
      volumeClaimTemplate: {
        spec: {
          storageClassName: c,
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: "10Mi" } },
        },
      },
    }));
    const pipeline = run.spec.pipelineSpec as { workspaces: unknown[]; tasks: Record<string, unknown>[] };
    pipeline.workspaces = classes.map((name) => ({ name }));
    pipeline.tasks[0]!.workspaces = classes.map((name) => ({ name, workspace: name }));
    (pipeline.tasks[0]!.taskSpec as { workspaces: unknown[] }).workspaces = classes.map((name) => ({ name }));
    const created = await createRun(cluster, run);
    await waitRunSucceeded(cluster, ns, created.metadata.name, 150_000);
    const pods = await taskPods(cluster, ns, created.metadata.name);
    expect((await stepLog(cluster, ns, pods.get("write")!, "write")).trim().split("\n")).to.deep.equal(
      classes,
    );
  });

  it("a second task reads what the first wrote to a ReadWriteOnce workspace, and prints it", async () => {
    const ns = await createNamespace(cluster, "real-share");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    const token = uniqueName("written-by-the-first-task");
    const run = await createRun(cluster, writeThenReadRun(ns, `echo ${token} > $NOTE`, ON_REAL_NODE));
    const placeholder = await runningPlaceholder(cluster, ns, run);
    expect(placeholder.spec?.nodeName).to.equal(realNode);
    await waitRunSucceeded(cluster, ns, run.metadata.name, 150_000);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    for (const task of ["write", "read"]) expect(pods.get(task)?.spec?.nodeName, task).to.equal(realNode);
    expect(await stepLog(cluster, ns, pods.get("read")!, "read")).to.include(token);
  });

  it("the placeholder runs the real pause image in a namespace that enforces `restricted`", async () => {
    const ns = await createNamespace(cluster, "real-restricted");
    await cluster.clients.core.patchNamespace(
      { name: ns, body: { metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } } } },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(
      cluster,
      scriptedRun(
        ns,
        [
          {
            name: "work",
            steps: [{ name: "work", image: BUSYBOX, script: "id -u", securityContext: RESTRICTED_STEP }],
          },
        ],
        {
          podTemplate: {
            ...ON_REAL_NODE,
            securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
          },
        },
      ),
    );
    const placeholder = await runningPlaceholder(cluster, ns, run);
    expect(placeholder.spec?.nodeName).to.equal(realNode);
    const status = placeholder.status?.containerStatuses?.[0];
    expect(status?.image).to.equal(PAUSE_IMAGE);
    expect(status?.imageID, "containerd reports the image it ran").to.match(/sha256:[0-9a-f]{64}/);
    await waitRunSucceeded(cluster, ns, run.metadata.name, 150_000);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    expect((await stepLog(cluster, ns, pods.get("work")!, "work")).trim()).to.equal("65532");
  });

  it("a run whose pod template asks for root gets a placeholder that starts; its tasks run as root", async () => {
    // Tekton's own init containers demand a non-root user under its `set-security-context` flag, which the
    // harness turns on for the restricted tests; a run that asks for root needs Tekton's default (off).
    await setTektonSecurityContext(cluster, false);
    try {
      const ns = await createNamespace(cluster, "real-root");
      await applyPolicy(cluster, ns, { mode: "pipelineruns" });
      const run = await createRun(
        cluster,
        scriptedRun(
          ns,
          [{ name: "work", steps: [{ name: "work", image: BUSYBOX, script: "id -u; sleep 3" }] }],
          {
            podTemplate: { ...ON_REAL_NODE, securityContext: { runAsUser: 0 } },
          },
        ),
      );
      const placeholder = await runningPlaceholder(cluster, ns, run);
      expect(
        placeholder.spec?.securityContext?.runAsUser,
        "the placeholder keeps the restricted uid",
      ).to.equal(65532);
      await waitRunSucceeded(cluster, ns, run.metadata.name, 150_000);
      const pods = await taskPods(cluster, ns, run.metadata.name);
      expect((await stepLog(cluster, ns, pods.get("work")!, "work")).trim()).to.equal("0");
    } finally {
      await setTektonSecurityContext(cluster, true);
    }
  });

  it("the seed's cordon walkthrough: the real node is cordoned, the placeholder moves, the run succeeds", async () => {
    const kwokNodes = (await cluster.listNodes())
      .map((n) => n.metadata!.name!)
      .filter((n) => n.startsWith("kwok-node-"));
    const ns = await createNamespace(cluster, "real-cordon");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    // Only the real node takes the placeholder at first; the KWOK nodes are where it can move to.
    for (const n of kwokNodes) await cluster.cordon(n);
    try {
      const run = await createRun(
        cluster,
        scriptedRun(
          ns,
          [
            {
              name: "first-task",
              workspace: "source",
              steps: [{ name: "work", image: ALPINE, script: "echo first on $(hostname); sleep 10" }],
            },
            {
              name: "last-task",
              runAfter: ["first-task"],
              workspace: "source",
              steps: [{ name: "work", image: ALPINE, script: "echo last" }],
            },
          ],
          { workspace: RWO_TEMPLATE },
        ),
      );
      const before = await runningPlaceholder(cluster, ns, run);
      expect(before.spec?.nodeName).to.equal(realNode);
      const first = await waitFor(`${run.metadata.name}'s first task to run on ${realNode}`, async () => {
        const pod = (await taskPods(cluster, ns, run.metadata.name)).get("first-task");
        return pod?.status?.phase === "Running" ? pod : undefined;
      });
      expect(first.spec?.nodeName).to.equal(realNode);
      for (const n of kwokNodes) await cluster.uncordon(n);
      await cluster.cordon(realNode);
      await waitForEvent(cluster, ns, run.metadata.name, "Migrated", { timeoutMs: 60_000 });
      const done = await waitRunSucceeded(cluster, ns, run.metadata.name, 150_000);
      expect(done.metadata.name).to.equal(run.metadata.name);
      const pods = await taskPods(cluster, ns, run.metadata.name);
      expect(pods.get("first-task")?.spec?.nodeName, "the running task finished where it was").to.equal(
        realNode,
      );
      expect(kwokNodes, "the last task followed the placeholder").to.include(
        pods.get("last-task")?.spec?.nodeName,
      );
      expect(await stepLog(cluster, ns, pods.get("first-task")!, "work")).to.include(`first on`);
    } finally {
      for (const n of kwokNodes) await cluster.uncordon(n);
      await cluster.uncordon(realNode);
    }
  });

  it("a controller replica runs as a pod from the project's image: kubernetes.default, admissions through its Service, SIGTERM", async function () {
    this.timeout(15 * 60_000); // from cold: a Debian rootfs, Node.js, npm ci inside the build
    const env = await e2e();
    const reference = projectImageReference(REPO);
    const archive = await buildProjectImage(REPO, reference, (l) => console.error(`      [image] ${l}`));
    const node = cluster.state.realNodes!.find((n) => n.name === realNode)!;
    await loadImages(node, [{ names: [reference], archive }]);
    // The harness's Redis listens on loopback; the pod reaches it on the host's address.
    const redis = await forwardToLoopback(cluster.state.redisPort);
    const ns = await createNamespace(cluster, "ta-pod");
    const labels = { app: "tekton-affinity-pod" };
    await env.controller.stop();
    try {
      await cluster.apply(
        toYaml([
          { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "controller", namespace: ns } },
          {
            apiVersion: "rbac.authorization.k8s.io/v1",
            kind: "ClusterRoleBinding",
            metadata: { name: ns },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
            subjects: [{ kind: "ServiceAccount", name: "controller", namespace: ns }],
          },
          {
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: "tekton-affinity-webhook", namespace: ns },
            spec: { selector: labels, ports: [{ port: 443, targetPort: 9443 }] },
          },
          {
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: "replica", namespace: ns, labels },
            spec: {
              serviceAccountName: "controller",
              enableServiceLinks: false, // as deploy/ sets it: a Service link would set TEKTON_AFFINITY_WEBHOOK_PORT
              nodeSelector: ON_REAL_NODE.nodeSelector,
              terminationGracePeriodSeconds: 30,
              securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
              containers: [
                {
                  name: "controller",
                  image: reference,
                  args: [
                    ...TEST_CONTROLLER_ARGS,
                    "--replica-id=pod-replica",
                    "--create-webhook-configurations",
                  ],
                  env: [
                    { name: "TEKTON_AFFINITY_NAMESPACE", value: ns },
                    { name: "TEKTON_AFFINITY_REDIS_URL", value: `redis://${redis.host}:${redis.port}` },
                  ],
                  readinessProbe: {
                    httpGet: { path: "/readyz", port: 9443, scheme: "HTTPS" },
                    periodSeconds: 1,
                  },
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    capabilities: { drop: ["ALL"] },
                    readOnlyRootFilesystem: true,
                  },
                },
              ],
            },
          },
        ] as k8s.KubernetesObject[]),
      );
      // Ready means its caches synced: it reached the apiserver through kubernetes.default (in-cluster config).
      await waitFor(
        "the controller pod to be Ready",
        async () => {
          const pod = await cluster.clients.core.readNamespacedPod({ name: "replica", namespace: ns });
          return pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
        },
        { timeoutMs: 120_000 },
      );
      const gate = await cluster.clients.kc
        .makeApiClient(k8s.AdmissionregistrationV1Api)
        .readMutatingWebhookConfiguration({ name: "tekton-affinity" });
      expect(gate.webhooks?.[0]?.clientConfig.service, "the gate is called through the Service").to.include({
        namespace: ns,
        name: "tekton-affinity-webhook",
      });
      await waitForGate(cluster);
      const runNs = await createNamespace(cluster, "ta-pod-run");
      await applyPolicy(cluster, runNs, { mode: "pipelineruns" });
      const run = await createRun(
        cluster,
        pipelineRun(runNs, { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] }),
      );
      await waitForEvent(cluster, runNs, run.metadata.name, "Placed");
      await waitRunSucceeded(cluster, runNs, run.metadata.name);
      // Prometheus scrapes the pod's plain-HTTP metrics port (9090 by default), not the webhook port.
      const podIp = (await cluster.clients.core.readNamespacedPod({ name: "replica", namespace: ns })).status
        ?.podIP;
      const scraped = await (await fetch(`http://${podIp}:9090/metrics`)).text();
      expect(scraped).to.match(/^tekton_affinity_webhook_duration_seconds_count\{webhook="pipelineruns"/m);
      expect(scraped).to.match(/^tekton_affinity_process_resident_memory_bytes \d+/m);

      // Deleting the pod: the kubelet sends SIGTERM; the replica drains and exits 0 (a signal it ignored
      // would end in the kubelet's SIGKILL after the grace period: 137).
      const exit = await watchTermination(cluster, ns, "replica");
      await cluster.clients.core.deleteNamespacedPod({ name: "replica", namespace: ns });
      expect(await exit.gone, "the replica's exit on the kubelet's SIGTERM").to.include({ exitCode: 0 });
    } finally {
      redis.close();
      await cluster.clients.kc
        .makeApiClient(k8s.RbacAuthorizationV1Api)
        .deleteClusterRoleBinding({ name: ns })
        .catch(() => undefined);
      await cluster.clients.core.deleteNamespace({ name: ns }).catch(() => undefined);
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});

/** Forwards connections on the host's address to a loopback port (the harness's Redis). */
async function forwardToLoopback(port: number): Promise<{ host: string; port: number; close: () => void }> {
  const host = hostAddress();
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const address = server.address() as { port: number };
  return {
    host,
    port: address.port,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** Watches a pod (resolving once the watch is open); `gone` resolves with the container's last terminated
 * state the kubelet reported before the pod went. */
async function watchTermination(
  cluster: LocalCluster,
  namespace: string,
  name: string,
): Promise<{ gone: Promise<k8s.V1ContainerStateTerminated | undefined> }> {
  let last: k8s.V1ContainerStateTerminated | undefined;
  let done: (value: k8s.V1ContainerStateTerminated | undefined) => void = () => undefined;
  const gone = new Promise<k8s.V1ContainerStateTerminated | undefined>((resolve) => {
    done = resolve;
  });
  const watch = await new k8s.Watch(cluster.clients.kc).watch(
    `/api/v1/namespaces/${namespace}/pods`,
    { fieldSelector: `metadata.name=${name}` },
    (type, pod: V1Pod) => {
      last = pod.status?.containerStatuses?.[0]?.state?.terminated ?? last;
      if (type === "DELETED") done(last);
    },
    () => undefined,
  );
  return { gone: gone.finally(() => watch.abort()) };
}
