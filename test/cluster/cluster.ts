// A real Kubernetes control plane plus Tekton, KWOK and Redis, run as plain local processes.
//
//   const cluster = await LocalCluster.start({ nodes: 3 });
//   ... cluster.clients, cluster.kubeconfig, cluster.redisUrl ...
//   await cluster.stop();
//
// Every component listens on a free loopback port and keeps its data and log under `dir`.
// The state (pids, ports, logs) is written to `<dir>/state.json`, so another process (the CLI's
// `down`, or a test reusing a cluster started by `npm run cluster -- up`) can attach to it.

import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { Resolver } from "node:dns/promises";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { request as requestHttp } from "node:http";
import { request } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Node } from "@kubernetes/client-node";
import * as k8s from "@kubernetes/client-node";
import { type Binaries, ensureBinaries, ensureRealNodeBinaries } from "./build.js";
import { ensureNodeImages } from "./images.js";
import {
  type Clients,
  clientsFromKubeconfig,
  isNotFound,
  kubectlApply,
  kubectlRun,
  StopWaiting,
  toYaml,
  waitFor,
} from "./kube.js";
import { kwokConfig } from "./kwok-stages.js";
import {
  type ComponentRecord,
  freePort,
  isAlive,
  killAllSync,
  killProcess,
  sleep,
  startProcess,
  stopProcess,
} from "./processes.js";
import {
  CLUSTER_CIDR,
  CLUSTER_DNS,
  cleanUpRealNode,
  ctr,
  enableForwarding,
  hostAddress,
  KUBERNETES_SERVICE_IP,
  loadImages,
  missingHostFeatures,
  otherClustersRealNodes,
  REAL_NODE_LABEL,
  type RealNodeRecord,
  realNodeRecord,
  removeKubeChains,
  SERVICE_CIDR,
  writeNodeFiles,
} from "./real-node.js";
import { LOCAL_PROVISIONER, ZONAL_PROVISIONER } from "./storage/model.js";
import { installTekton, tektonControllerArgs, tektonControllerEnv } from "./tekton.js";

export interface ClusterOptions {
  /** Number of fake KWOK nodes to create. Default 3. */
  nodes?: number;
  /** Number of zones the nodes are spread over (topology.kubernetes.io/zone: zone-a, zone-b, ...).
   * Default 3. */
  zones?: number;
  /** Directory for data, logs, kubeconfig and state. Default: a new temp dir. */
  dir?: string;
  /** Number of real nodes (a kubelet with containerd: real-node.ts) beside the KWOK nodes. Default 0. */
  realNodes?: number;
  /** Stop everything when this process exits (tests: yes; the CLI's `up`: no). Default true. */
  stopOnExit?: boolean;
  log?: (line: string) => void;
}

export interface ClusterState {
  dir: string;
  kubeconfig: string;
  apiserverUrl: string;
  redisPort: number;
  /** The zones nodes are spread over, in order. */
  zones?: string[];
  binaries: Binaries;
  components: ComponentRecord[];
  /** Real nodes started (and not removed); their processes are in `components`. */
  realNodes?: RealNodeRecord[];
}

const ADMIN_TOKEN = "tekton-affinity-harness-admin";
/** zone-a, zone-b, ... (the default cluster's three zones are ZONES). */
export function zoneNames(count: number): string[] {
  if (!Number.isInteger(count) || count < 1 || count > 26)
    throw new Error(`the zone count must be a whole number from 1 to 26, got ${count}`);
  return Array.from({ length: count }, (_, i) => `zone-${String.fromCharCode(97 + i)}`);
}
export const ZONES = zoneNames(3);
export const ZONE_LABEL = "topology.kubernetes.io/zone";
const FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node";
/** Nodes with this annotation keep the status we write instead of KWOK's heartbeat (for NotReady). */
const CUSTOM_STATUS_ANNOTATION = "kwok.x-k8s.io/status";

export class LocalCluster {
  private exitHandler?: () => void;
  private cachedClients?: Clients;

  private constructor(readonly state: ClusterState) {}

  /** Admin clients (created on first use: the kubeconfig exists only once the apiserver started). */
  get clients(): Clients {
    this.cachedClients ??= clientsFromKubeconfig(this.state.kubeconfig);
    return this.cachedClients;
  }

  get kubeconfig(): string {
    return this.state.kubeconfig;
  }
  get redisUrl(): string {
    return `redis://127.0.0.1:${this.state.redisPort}`;
  }
  get kubectl(): string {
    return this.state.binaries.kubectl;
  }
  /** Where this cluster's volumes keep their data (a real node mounts them from here). */
  get volumesDir(): string {
    return join(this.state.dir, "volumes");
  }
  /** The zones this cluster's nodes are spread over. */
  get zones(): string[] {
    return this.state.zones ?? ZONES;
  }
  component(name: string): ComponentRecord {
    const c = this.state.components.find((x) => x.name === name);
    if (!c) throw new Error(`no component named ${name}`);
    return c;
  }

  /** Attaches to a cluster started elsewhere (e.g. by `npm run cluster -- up`). */
  static attach(dir: string): LocalCluster {
    const file = join(dir, "state.json");
    if (!existsSync(file)) throw new Error(`no cluster state in ${file}: run "npm run cluster -- up" first`);
    return new LocalCluster(JSON.parse(readFileSync(file, "utf8")) as ClusterState);
  }

  static async start(options: ClusterOptions = {}): Promise<LocalCluster> {
    const log = options.log ?? ((l: string) => console.error(`[cluster] ${l}`));
    const binaries = await ensureBinaries((l) => log(l));
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "tekton-affinity-cluster-")));
    mkdirSync(join(dir, "logs"), { recursive: true });
    const state: ClusterState = {
      dir,
      kubeconfig: join(dir, "kubeconfig"),
      apiserverUrl: "",
      redisPort: await freePort(),
      zones: zoneNames(options.zones ?? 3),
      binaries,
      components: [],
    };
    const cluster = new LocalCluster(state);
    if (options.stopOnExit ?? true) cluster.stopOnExit();
    try {
      await cluster.boot(log);
      await cluster.addNodes(options.nodes ?? 3);
      if (options.realNodes) await cluster.addRealNodes(options.realNodes, log);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private saveState(): void {
    writeFileSync(join(this.state.dir, "state.json"), JSON.stringify(this.state, null, 2));
  }

  private launch(name: string, command: string[], env: Record<string, string> = {}, port?: number) {
    const record = startProcess(name, command, join(this.state.dir, "logs", `${name}.log`), env, port);
    this.state.components = [...this.state.components.filter((c) => c.name !== name), record];
    this.saveState();
    return record;
  }

  private async boot(log: (l: string) => void): Promise<void> {
    const { dir, binaries: bin } = this.state;
    const started = Date.now();
    const step = (what: string) => log(`${what} (${((Date.now() - started) / 1000).toFixed(1)}s)`);

    await this.startRedis();
    step("redis ready");

    const etcdPort = await freePort();
    const peerPort = await freePort();
    const etcd = this.launch(
      "etcd",
      [
        bin.etcd,
        "--name=local",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=local=http://127.0.0.1:${peerPort}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      {},
      etcdPort,
    );
    await this.waitUp(etcd, () => httpOk(`http://127.0.0.1:${etcdPort}/health`), 30_000);
    step("etcd ready");

    const { saKey, saPub } = this.writeServiceAccountKeys();
    writeFileSync(join(dir, "tokens.csv"), `${ADMIN_TOKEN},admin,admin,system:masters\n`);
    const apiPort = await freePort();
    this.state.apiserverUrl = `https://127.0.0.1:${apiPort}`;
    const apiserver = this.launch(
      "kube-apiserver",
      [
        bin.kubeApiserver,
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        // Pods on real nodes reach it as kubernetes.default: kube-proxy sends that to the advertised address.
        "--bind-address=0.0.0.0",
        `--advertise-address=${hostAddress()}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, "pki")}`,
        `--token-auth-file=${join(dir, "tokens.csv")}`,
        "--authorization-mode=RBAC",
        `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        // A real node's name resolves nowhere: reach its kubelet (logs, exec) by its address.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--allow-privileged=true",
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=2000",
        "--max-mutating-requests-inflight=1000",
      ],
      {},
      apiPort,
    );
    this.writeKubeconfig();
    await this.waitUp(apiserver, () => httpOk(`${this.state.apiserverUrl}/readyz`, ADMIN_TOKEN), 90_000);
    step("kube-apiserver ready");

    await this.startControllerManager();
    await this.startScheduler();
    await this.startKwok();
    await this.startStorageController();
    await installTekton(
      this.clients,
      { kubectl: bin.kubectl, kubeconfig: this.state.kubeconfig },
      bin.tektonModuleDir,
    );
    step("tekton CRDs and config applied");
    await this.startTektonController();
    await this.createStorage();
    await waitFor(
      'the "default" ServiceAccount (created by kube-controller-manager)',
      () => this.clients.core.readNamespacedServiceAccount({ name: "default", namespace: "default" }),
      { timeoutMs: 60_000 },
    );
    step("control plane ready");
  }

  /** Waits for a component's health probe, failing at once (with its log) if the process exits. */
  private async waitUp(
    record: ComponentRecord,
    probe: () => Promise<boolean>,
    timeoutMs = 60_000,
  ): Promise<void> {
    try {
      await waitFor(
        `${record.name} to become healthy`,
        async () => {
          if (!isAlive(record.pid)) {
            throw new StopWaiting(
              `${record.name} exited at start (a port already in use, or a bad flag?); its log: ${record.log}\n${tail(record.log)}`,
            );
          }
          return probe();
        },
        { timeoutMs },
      );
    } catch (err) {
      if (err instanceof StopWaiting) throw err;
      throw new Error(`${(err as Error).message}; its log: ${record.log}`);
    }
  }

  private writeServiceAccountKeys(): { saKey: string; saPub: string } {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const saKey = join(this.state.dir, "sa.key");
    const saPub = join(this.state.dir, "sa.pub");
    writeFileSync(saKey, privateKey.export({ type: "pkcs1", format: "pem" }));
    writeFileSync(saPub, publicKey.export({ type: "spki", format: "pem" }));
    return { saKey, saPub };
  }

  private writeKubeconfig(): void {
    writeFileSync(this.state.kubeconfig, kubeconfigYaml(this.state.apiserverUrl, { token: ADMIN_TOKEN }));
    this.saveState();
  }

  /** A kubeconfig that acts as `user` (e.g. system:serviceaccount:ns:name) through impersonation. */
  writeImpersonatingKubeconfig(path: string, user: string): string {
    writeFileSync(path, kubeconfigYaml(this.state.apiserverUrl, { token: ADMIN_TOKEN, as: user }));
    return path;
  }

  async startControllerManager(): Promise<void> {
    const port = await freePort();
    const record = this.launch(
      "kube-controller-manager",
      [
        this.state.binaries.kubeControllerManager,
        `--kubeconfig=${this.state.kubeconfig}`,
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        `--secure-port=${port}`,
        `--service-account-private-key-file=${join(this.state.dir, "sa.key")}`,
        `--root-ca-file=${join(this.state.dir, "pki", "apiserver.crt")}`,
        "--controllers=*",
        "--concurrent-statefulset-syncs=20",
        "--concurrent-gc-syncs=40",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
      ],
      {},
      port,
    );
    await this.waitUp(record, () => httpOk(`https://127.0.0.1:${port}/healthz`));
  }

  async startScheduler(): Promise<void> {
    const port = await freePort();
    writeFileSync(
      join(this.state.dir, "scheduler.yaml"),
      [
        "apiVersion: kubescheduler.config.k8s.io/v1",
        "kind: KubeSchedulerConfiguration",
        "leaderElection: {leaderElect: false}",
        `clientConnection: {kubeconfig: "${this.state.kubeconfig}", qps: 500, burst: 1000}`,
        "",
      ].join("\n"),
    );
    const record = this.launch(
      "kube-scheduler",
      [
        this.state.binaries.kubeScheduler,
        `--config=${join(this.state.dir, "scheduler.yaml")}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${port}`,
      ],
      {},
      port,
    );
    await this.waitUp(record, () => httpOk(`https://127.0.0.1:${port}/healthz`));
  }

  async startKwok(): Promise<void> {
    const port = await freePort();
    const config = join(this.state.dir, "kwok.yaml");
    writeFileSync(config, await kwokConfig());
    const record = this.launch(
      "kwok",
      [
        this.state.binaries.kwok,
        `--kubeconfig=${this.state.kubeconfig}`,
        `--config=${config}`,
        "--manage-all-nodes=false",
        `--manage-nodes-with-annotation-selector=${FAKE_NODE_ANNOTATION}=fake`,
        `--disregard-status-with-annotation-selector=${CUSTOM_STATUS_ANNOTATION}=custom`,
        `--server-address=127.0.0.1:${port}`,
        "--cidr=10.0.0.1/16",
        "--node-ip=10.0.0.1",
      ],
      {},
      port,
    );
    await this.waitUp(record, () => httpOk(`http://127.0.0.1:${port}/healthz`));
  }

  /** The attach model and the dynamic provisioners (storage/controller.ts), as their own process. */
  async startStorageController(): Promise<void> {
    const port = await freePort();
    const record = this.launch(
      "storage-controller",
      [
        process.execPath,
        "--import",
        "tsx",
        join(import.meta.dirname, "storage", "controller.ts"),
        "--kubeconfig",
        this.state.kubeconfig,
        "--port",
        String(port),
        "--volumes-dir",
        this.volumesDir,
      ],
      {},
      port,
    );
    await this.waitUp(record, () => httpOk(`http://127.0.0.1:${port}/`));
  }

  async startTektonController(): Promise<void> {
    const port = await freePort();
    const record = this.launch(
      "tekton-pipelines-controller",
      [this.state.binaries.tektonController, ...tektonControllerArgs(this.state.kubeconfig)],
      tektonControllerEnv(port),
      port,
    );
    await this.waitUp(record, () => httpOk(`http://127.0.0.1:${port}/readiness`));
  }

  async startRedis(): Promise<void> {
    const port = this.state.redisPort;
    const data = join(this.state.dir, "redis");
    mkdirSync(data, { recursive: true });
    const record = this.launch(
      "redis",
      [
        "redis-server",
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        data,
      ],
      {},
      port,
    );
    await this.waitUp(record, () => redisPing(port), 20_000);
  }

  /**
   * The StorageClasses (docs/local-cluster.md says which to use when):
   *  - `standard` (the default): Immediate binding from a pool of pre-made volumes that any node can
   *    attach, one node at a time (ReadWriteOnce, enforced by the attach model): network block storage
   *    in a one-zone cluster, the case co-scheduling exists for, and one a placeholder can migrate with;
   *  - `local-wffc`: WaitForFirstConsumer; the volume is made on the node of the first pod using it and
   *    can never leave it (local disks);
   *  - `zonal` (Immediate, zones taken in turn, or `parameters.zone`) and `zonal-wffc` (in the first
   *    consumer's zone): volumes any node of one zone can attach (cloud disks).
   */
  private async createStorage(pvCount = 200): Promise<void> {
    const storageClass = (name: string, provisioner: string, mode: string, isDefault = false) =>
      this.clients.objects.create({
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: {
          name,
          ...(isDefault ? { annotations: { "storageclass.kubernetes.io/is-default-class": "true" } } : {}),
        },
        provisioner,
        volumeBindingMode: mode,
        reclaimPolicy: "Delete",
      } as never);
    await storageClass("standard", "kubernetes.io/no-provisioner", "Immediate", true);
    await storageClass("local-wffc", LOCAL_PROVISIONER, "WaitForFirstConsumer");
    await storageClass("zonal", ZONAL_PROVISIONER, "Immediate");
    await storageClass("zonal-wffc", ZONAL_PROVISIONER, "WaitForFirstConsumer");
    for (let i = 0; i < pvCount; i++) await this.createVolume(`pv-${i}`);
  }

  /** A PV from the pool; with `nodeName` a local PV only that node can use; with `claim` pre-bound to it;
   * with `zone` (and no node) a zonal volume that only nodes of that zone can use. */
  async createVolume(
    name: string,
    nodeName?: string,
    claim?: { namespace: string; name: string },
    zone?: string,
  ): Promise<void> {
    // World-writable, as a fresh filesystem is to a pod that runs as any user.
    const path = join(this.volumesDir, name);
    mkdirSync(path, { recursive: true });
    chmodSync(path, 0o777);
    await this.clients.core.createPersistentVolume({
      body: {
        metadata: { name },
        spec: {
          storageClassName: "standard",
          capacity: { storage: "10Gi" },
          accessModes: ["ReadWriteOnce"],
          persistentVolumeReclaimPolicy: "Delete",
          ...(claim ? { claimRef: { namespace: claim.namespace, name: claim.name } } : {}),
          ...(nodeName
            ? {
                local: { path },
                nodeAffinity: {
                  required: {
                    nodeSelectorTerms: [
                      {
                        matchExpressions: [
                          { key: "kubernetes.io/hostname", operator: "In", values: [nodeName] },
                        ],
                      },
                    ],
                  },
                },
              }
            : {
                hostPath: { path, type: "DirectoryOrCreate" },
                ...(zone
                  ? {
                      nodeAffinity: {
                        required: {
                          nodeSelectorTerms: [
                            { matchExpressions: [{ key: ZONE_LABEL, operator: "In", values: [zone] }] },
                          ],
                        },
                      },
                    }
                  : {}),
              }),
        },
      },
    });
  }

  // ---- nodes ----

  async listNodes(): Promise<V1Node[]> {
    return (await this.clients.core.listNode()).items;
  }

  /** Creates `count` fake nodes named kwok-node-<i>; node i is in zone i mod the zone count. `shape` sets
   * their allocatable cpu and memory (default 32 and 256Gi), extra labels and taints. */
  async addNodes(count: number, shape: NodeShape = {}): Promise<string[]> {
    const existing = new Set((await this.listNodes()).map((n) => n.metadata?.name));
    const names: string[] = [];
    for (let i = 0; names.length < count; i++) {
      const name = `kwok-node-${i}`;
      if (!existing.has(name)) names.push(name);
    }
    // A few creates at a time, and one list per poll for readiness: a benchmark adds thousands.
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(20, names.length) }, async () => {
        for (let i = next++; i < names.length; i = next++) {
          const zones = this.zones;
          const index = Number(names[i]!.slice("kwok-node-".length));
          await this.clients.core.createNode({
            body: fakeNode(names[i]!, zones[index % zones.length]!, shape),
          });
        }
      }),
    );
    const wanted = new Set(names);
    await waitFor(
      `${names.length} new node(s) Ready`,
      async () => {
        const ready = (await this.listNodes()).filter(
          (n) =>
            wanted.has(n.metadata?.name ?? "") &&
            n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
        );
        return ready.length === names.length;
      },
      { timeoutMs: 60_000 + names.length * 100 },
    );
    return names;
  }

  // ---- real nodes ----

  /**
   * Starts `count` real nodes named real-node-<i> (containerd, a kubelet, the node images loaded) and,
   * with the first, kube-proxy for the host; resolves once they are Ready. Fails at once, naming every
   * missing host feature, on a host that cannot run them.
   */
  async addRealNodes(
    count: number,
    log: (l: string) => void = (l) => console.error(`[cluster] ${l}`),
  ): Promise<string[]> {
    const missing = missingHostFeatures();
    if (missing.length) {
      throw new Error(`this host cannot run a real node; it lacks:\n  - ${missing.join("\n  - ")}`);
    }
    const others = otherClustersRealNodes(this.state.dir);
    if (others.length) {
      throw new Error(
        `another local cluster's real nodes are running (${others.join(", ")}): one cluster at a time can have real nodes on this host; stop it first ("npm run cluster -- down" from its checkout)`,
      );
    }
    await enableForwarding();
    const binaries = await ensureRealNodeBinaries(log);
    const images = await ensureNodeImages(binaries, log);
    const started = Date.now();
    const taken = new Set((this.state.realNodes ?? []).map((n) => n.index));
    const names: string[] = [];
    for (let index = 0; names.length < count; index++) {
      if (taken.has(index)) continue;
      const node = realNodeRecord(this.state.dir, index);
      this.state.realNodes = [...(this.state.realNodes ?? []), node];
      this.saveState();
      await cleanUpRealNode(node); // what a crashed run with the same name left
      const ports = { kubelet: await freePort(), healthz: await freePort() };
      await writeNodeFiles(node, ports);
      const containerd = this.launch(`containerd-${node.name}`, [
        "containerd",
        `--config=${join(node.dir, "containerd.toml")}`,
      ]);
      await this.waitUp(
        containerd,
        () =>
          ctr(node, ["version"]).then(
            () => true,
            () => false,
          ),
        30_000,
      );
      await loadImages(node, images);
      const zone = this.zones[index % this.zones.length]!;
      const kubelet = this.launch(
        `kubelet-${node.name}`,
        [
          binaries.kubelet,
          `--config=${join(node.dir, "kubelet.yaml")}`,
          `--kubeconfig=${this.state.kubeconfig}`,
          `--hostname-override=${node.name}`,
          `--node-ip=${hostAddress()}`,
          `--root-dir=${join(node.dir, "kubelet")}`,
          `--cert-dir=${join(node.dir, "kubelet", "pki")}`,
          `--node-labels=${ZONE_LABEL}=${zone},${REAL_NODE_LABEL}=true,type=real`,
          "--v=1",
        ],
        {},
        ports.healthz,
      );
      await this.waitUp(kubelet, () => httpOk(`http://127.0.0.1:${ports.healthz}/healthz`), 30_000);
      names.push(node.name);
    }
    if (!this.state.components.some((c) => c.name === "kube-proxy"))
      await this.startKubeProxy(names[0]!, binaries.kubeProxy);
    if (!this.state.components.some((c) => c.name === "coredns"))
      await this.startClusterDns(binaries.coredns);
    for (const name of names) await this.waitNodeReady(name, true, 60_000);
    await this.waitClusterDnsServing();
    log(`${names.length} real node(s) Ready (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    return names;
  }

  private async startKubeProxy(nodeName: string, binary: string): Promise<void> {
    const healthz = await freePort();
    const config = join(this.state.dir, "kube-proxy.yaml");
    writeFileSync(
      config,
      [
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
        "kind: KubeProxyConfiguration",
        `clientConnection: {kubeconfig: "${this.state.kubeconfig}"}`,
        "mode: iptables",
        `clusterCIDR: ${CLUSTER_CIDR}`,
        `hostnameOverride: ${nodeName}`,
        `healthzBindAddress: 127.0.0.1:${healthz}`,
        `metricsBindAddress: 127.0.0.1:${await freePort()}`,
        // Leave the host's conntrack sysctls alone.
        "conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}",
        "",
      ].join("\n"),
    );
    const record = this.launch("kube-proxy", [binary, `--config=${config}`], {}, healthz);
    await this.waitUp(record, () => httpOk(`http://127.0.0.1:${healthz}/healthz`), 30_000);
  }

  /**
   * CoreDNS on the host's address, behind the Service kube-system/kube-dns at CLUSTER_DNS (the address
   * every real kubelet gives its pods): a Service without selector whose EndpointSlice names the host,
   * which kube-proxy then routes to as to any endpoint.
   */
  private async startClusterDns(binary: string): Promise<void> {
    const host = hostAddress();
    const [port, ready] = [await freePort(), await freePort()];
    const corefile = join(this.state.dir, "Corefile");
    writeFileSync(
      corefile,
      [
        `.:${port} {`,
        `  bind ${host}`,
        "  errors",
        `  ready 127.0.0.1:${ready}`,
        "  kubernetes cluster.local in-addr.arpa ip6.arpa {",
        `    kubeconfig ${this.state.kubeconfig} local`,
        "    pods insecure",
        "    fallthrough in-addr.arpa ip6.arpa",
        "  }",
        "  forward . /etc/resolv.conf",
        "  cache 30",
        "}",
        "",
      ].join("\n"),
    );
    const record = this.launch("coredns", [binary, "-conf", corefile], {}, port);
    await this.waitUp(record, () => httpOk(`http://127.0.0.1:${ready}/ready`), 30_000);
    const dnsPorts = [
      { name: "dns", protocol: "UDP" },
      { name: "dns-tcp", protocol: "TCP" },
    ];
    await this.apply(
      toYaml([
        {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "kube-dns", namespace: "kube-system", labels: { "k8s-app": "kube-dns" } },
          spec: { clusterIP: CLUSTER_DNS, ports: dnsPorts.map((p) => ({ ...p, port: 53 })) },
        },
        {
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          metadata: {
            name: "kube-dns-host",
            namespace: "kube-system",
            labels: { "kubernetes.io/service-name": "kube-dns" },
          },
          addressType: "IPv4",
          endpoints: [{ addresses: [host], conditions: { ready: true } }],
          ports: dnsPorts.map((p) => ({ ...p, port })),
        },
      ] as unknown as k8s.KubernetesObject[]),
    );
  }

  /**
   * Waits until kubernetes.default resolves through the kube-dns Service's address, as a pod resolves it.
   * That needs kube-proxy to have programmed both Services with their endpoints: until it has, a query
   * meets its "no endpoints" REJECT rule (ECONNREFUSED), or no rule at all. Asked from the host, whose
   * traffic to a Service address takes the same kube-proxy rules (nat OUTPUT) as a pod's (PREROUTING).
   */
  private async waitClusterDnsServing(): Promise<void> {
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([CLUSTER_DNS]);
    let last = "";
    await waitFor(
      `cluster DNS at ${CLUSTER_DNS} to answer through kube-proxy`,
      () =>
        resolver.resolve4("kubernetes.default.svc.cluster.local").then(
          (addresses) => addresses.includes(KUBERNETES_SERVICE_IP),
          (err: Error) => {
            last = err.message;
            return false;
          },
        ),
      { timeoutMs: 30_000, intervalMs: 500 },
    ).catch((err: Error) => {
      throw new Error(`${err.message} (last answer: ${last}); logs: ${this.state.dir}/logs`);
    });
  }

  /** Stops a real node's kubelet and containerd, removes all it left on the host, and deletes the Node. */
  async removeRealNode(name: string): Promise<void> {
    const node = (this.state.realNodes ?? []).find((n) => n.name === name);
    if (!node) throw new Error(`no real node named ${name}`);
    await this.stopRealNode(node);
    this.state.realNodes = (this.state.realNodes ?? []).filter((n) => n !== node);
    this.state.components = this.state.components.filter(
      (c) => c.name !== `kubelet-${name}` && c.name !== `containerd-${name}`,
    );
    this.saveState();
    await this.clients.core.deleteNode({ name }).catch((e) => {
      if (!isNotFound(e)) throw e;
    });
    // The last one gone, the cluster is as it was before any: no kube-proxy, no cluster DNS.
    if (!this.state.realNodes?.length) {
      for (const component of ["coredns", "kube-proxy"]) {
        const c = this.state.components.find((x) => x.name === component);
        if (c) await stopProcess(c.pid, 3000);
      }
      await this.cleanUpKubeProxy();
      this.state.components = this.state.components.filter(
        (c) => !["coredns", "kube-proxy"].includes(c.name),
      );
      this.saveState();
    }
  }

  private async stopRealNode(node: RealNodeRecord): Promise<void> {
    const stop = async (component: string) => {
      const c = this.state.components.find((x) => x.name === component);
      if (c) await stopProcess(c.pid, 5000);
    };
    await stop(`kubelet-${node.name}`);
    await cleanUpRealNode(node); // the containers and their shims first, so containerd has nothing to wait for
    await stop(`containerd-${node.name}`);
    await cleanUpRealNode(node);
  }

  async removeNode(name: string): Promise<void> {
    await this.clients.core.deleteNode({ name });
    await waitFor(`node ${name} to be gone`, async () =>
      this.clients.core.readNode({ name }).then(
        () => false,
        (e) => isNotFound(e),
      ),
    );
  }

  async waitNodeReady(name: string, ready: boolean, timeoutMs = 60_000): Promise<void> {
    await waitFor(
      `node ${name} Ready=${ready}`,
      async () => {
        const node = await this.clients.core.readNode({ name });
        const cond = node.status?.conditions?.find((c) => c.type === "Ready");
        return (cond?.status === "True") === ready;
      },
      { timeoutMs },
    );
  }

  async cordon(name: string, unschedulable = true): Promise<void> {
    await this.patchNode(name, { spec: { unschedulable } });
  }

  async uncordon(name: string): Promise<void> {
    await this.cordon(name, false);
  }

  async taint(name: string, taint: { key: string; value?: string; effect: string }): Promise<void> {
    const node = await this.clients.core.readNode({ name });
    const taints = (node.spec?.taints ?? []).filter((t) => t.key !== taint.key);
    await this.patchNode(name, { spec: { taints: [...taints, taint] } });
  }

  async untaint(name: string, key: string): Promise<void> {
    const node = await this.clients.core.readNode({ name });
    await this.patchNode(name, { spec: { taints: (node.spec?.taints ?? []).filter((t) => t.key !== key) } });
  }

  /** Marks a node NotReady (as a dead kubelet would look) or Ready again. KWOK stops writing the status
   * of a node carrying the custom-status annotation, so ours sticks. */
  async setNodeReady(name: string, ready: boolean): Promise<void> {
    clearInterval(this.notReadyKeepers.get(name));
    this.notReadyKeepers.delete(name);
    await this.patchNode(name, {
      metadata: { annotations: { [CUSTOM_STATUS_ANNOTATION]: ready ? null : "custom" } },
    });
    const since = new Date();
    await this.writeReady(name, ready, since);
    // KWOK sometimes writes a heartbeat after the annotation, undoing ours: keep ours until undone.
    if (!ready) {
      const keeper = setInterval(
        () => void this.writeReady(name, false, since, true).catch(() => undefined),
        1000,
      );
      keeper.unref();
      this.notReadyKeepers.set(name, keeper);
    }
  }

  private readonly notReadyKeepers = new Map<string, NodeJS.Timeout>();

  /** Writes the node's Ready condition (onlyIfChanged: only when someone else changed it). */
  private async writeReady(name: string, ready: boolean, since: Date, onlyIfChanged = false): Promise<void> {
    const want = ready ? "True" : "Unknown";
    const node = await this.clients.core.readNode({ name });
    const current = node.status?.conditions?.find((c) => c.type === "Ready");
    if (onlyIfChanged && current?.status === want) return;
    const now = new Date();
    const conditions = (node.status?.conditions ?? []).map((c) =>
      c.type === "Ready"
        ? {
            ...c,
            status: want,
            reason: ready ? "KubeletReady" : "NodeStatusUnknown",
            message: ready
              ? "kubelet is posting ready status"
              : "Kubelet stopped posting node status (harness).",
            lastTransitionTime: since,
            lastHeartbeatTime: now,
          }
        : c,
    );
    await this.clients.core.patchNodeStatus({ name, body: { status: { conditions } } }, mergePatch());
  }

  /** Sets a label on a node, or removes it with `null`. */
  async labelNode(name: string, key: string, value: string | null): Promise<void> {
    await this.patchNode(name, { metadata: { labels: { [key]: value } } });
  }

  private async patchNode(name: string, body: object): Promise<void> {
    await this.clients.core.patchNode({ name, body }, mergePatch());
  }

  // ---- redis ----

  async flushRedis(): Promise<void> {
    await redisCommand(this.state.redisPort, "FLUSHALL");
  }

  async restartRedis(downMs = 0): Promise<void> {
    await this.stopComponent("redis");
    if (downMs) await sleep(downMs);
    await this.startRedis();
  }

  // ---- components ----

  async killComponent(name: string): Promise<void> {
    await killProcess(this.component(name).pid);
  }

  async stopComponent(name: string): Promise<void> {
    await stopProcess(this.component(name).pid);
  }

  /** Starts a component again with the exact command, environment and log it had. */
  async restartComponent(name: string): Promise<void> {
    const c = this.component(name);
    if (isAlive(c.pid)) await stopProcess(c.pid);
    if (name === "redis") return this.startRedis();
    this.launch(name, c.command, c.env ?? {}, c.port);
  }

  /** Server-side applies YAML manifests with the built kubectl. */
  async apply(manifests: string): Promise<string> {
    return kubectlApply(this.kubectl, this.kubeconfig, manifests);
  }

  /** Runs the built kubectl against this cluster and returns its stdout. */
  async kubectlRun(...args: string[]): Promise<string> {
    return kubectlRun(this.kubectl, this.kubeconfig, args);
  }

  status(): (ComponentRecord & { alive: boolean })[] {
    return this.state.components.map((c) => ({ ...c, alive: isAlive(c.pid) }));
  }

  private stopOnExit(): void {
    this.exitHandler = () => killAllSync(this.state.components.map((c) => c.pid));
    process.once("exit", this.exitHandler);
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        this.exitHandler?.();
        process.exit(130);
      });
    }
  }

  /** Stops every component, newest first (so clients go before the apiserver and etcd). */
  async stop(): Promise<void> {
    for (const keeper of this.notReadyKeepers.values()) clearInterval(keeper);
    for (const node of this.state.realNodes ?? []) await this.stopRealNode(node);
    for (const c of [...this.state.components].reverse()) await stopProcess(c.pid, 3000);
    if (this.state.realNodes?.length) await this.cleanUpKubeProxy();
    if (this.exitHandler) process.removeListener("exit", this.exitHandler);
  }

  /** kube-proxy's own cleanup of its rules, then whatever chain is left. */
  private async cleanUpKubeProxy(): Promise<void> {
    const proxy = this.state.components.find((c) => c.name === "kube-proxy");
    if (proxy) {
      const binary = proxy.command[0]!;
      await new Promise<void>((resolve) =>
        execFile(binary, ["--cleanup"], { timeout: 30_000 }, () => resolve()),
      );
    }
    removeKubeChains();
  }
}

/** client-node 1.x picks a patch's content type from a request option. */
const mergePatch = () => k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);

export interface NodeShape {
  cpu?: string;
  memory?: string;
  labels?: Record<string, string>;
  taints?: { key: string; value?: string; effect: string }[];
}

function fakeNode(name: string, zone: string, shape: NodeShape = {}): V1Node {
  const room = { cpu: shape.cpu ?? "32", memory: shape.memory ?? "256Gi", pods: "250" };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      annotations: { [FAKE_NODE_ANNOTATION]: "fake", "node.alpha.kubernetes.io/ttl": "0" },
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        [ZONE_LABEL]: zone,
        type: "kwok",
        ...shape.labels,
      },
    },
    ...(shape.taints ? { spec: { taints: shape.taints } } : {}),
    status: { allocatable: room, capacity: room },
  };
}

function kubeconfigYaml(server: string, user: { token: string; as?: string }): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: local",
    "  cluster:",
    `    server: ${server}`,
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: admin",
    "  user:",
    `    token: ${user.token}`,
    ...(user.as ? [`    as: ${user.as}`] : []),
    "contexts:",
    "- name: local",
    "  context: {cluster: local, user: admin}",
    "current-context: local",
    "",
  ].join("\n");
}

/** The last lines of a log file, for error messages. */
function tail(path: string, lines = 5): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** GET that resolves true on a 200, ignoring TLS verification (the local apiserver self-signs). */
function httpOk(url: string, token?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const get = url.startsWith("https:") ? request : (requestHttp as typeof request);
    const req = get(
      url,
      {
        method: "GET",
        rejectUnauthorized: false,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.setTimeout(2000, () => req.destroy());
    req.end();
  });
}

/** Sends one inline command to Redis and resolves with the first reply line. */
function redisCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.setTimeout(2000, () => socket.destroy(new Error("redis timeout")));
    socket.once("error", reject);
    socket.once("data", (data) => {
      socket.end();
      resolve(data.toString().trim());
    });
    socket.write(`${command}\r\n`);
  });
}

async function redisPing(port: number): Promise<boolean> {
  return redisCommand(port, "PING").then(
    (r) => r === "+PONG",
    () => false,
  );
}
