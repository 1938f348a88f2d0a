// A real node: containerd (Debian's, with runc) and a kubelet built at the harness's Kubernetes version,
// pods on a CNI bridge, and one kube-proxy for the host. What the host must offer, and why, is in
// docs/local-cluster.md ("Real nodes").
//
// Everything a node makes lives under its own directory (containerd's root and state, the network
// namespaces, the kubelet's root, pod logs, the CNI's address leases) and under its own cgroup root, so
// `cleanUpRealNode` can find and remove all of it: the containers' processes, containerd's shims, every
// mount, the bridge and the iptables chains.

import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, unlinkSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { BuiltImage } from "./images.js";
import { PAUSE_IMAGE } from "./images.js";
import { isAlive, sleep } from "./processes.js";

const run = promisify(execFile);

/** Pod addresses: node i gets 10.244.i.0/24 on its own bridge. */
export const CLUSTER_CIDR = "10.244.0.0/16";
export const SERVICE_CIDR = "10.96.0.0/16";
export const CLUSTER_DNS = "10.96.0.10";
/** The Service kubernetes.default: the first address of SERVICE_CIDR, as the apiserver allocates it. */
export const KUBERNETES_SERVICE_IP = "10.96.0.1";
export const REAL_NODE_LABEL = "harness.tekton-affinity.dev/real-node";

export interface RealNodeRecord {
  name: string;
  index: number;
  dir: string;
  containerdSocket: string;
  bridge: string;
  podCidr: string;
  /** The cgroup (under every controller's root) that holds this node's pods. */
  cgroupRoot: string;
}

export function realNodeRecord(clusterDir: string, index: number): RealNodeRecord {
  const dir = join(clusterDir, `real-node-${index}`);
  return {
    name: `real-node-${index}`,
    index,
    dir,
    containerdSocket: join(dir, "containerd.sock"),
    bridge: `tabr${index}`,
    podCidr: `10.244.${index}.0/24`,
    cgroupRoot: `/${clusterDir.split("/").pop()}-node-${index}`,
  };
}

/** The address pods reach the host on (the apiserver advertises it as `kubernetes.default`'s endpoint). */
export function hostAddress(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    const v4 = addrs?.find((a) => a.family === "IPv4" && !a.internal);
    if (v4) return v4.address;
  }
  return "127.0.0.1";
}

// ---- what the host must offer ----

const DEBIAN_PACKAGES = "containerd runc containernetworking-plugins buildah busybox-static iptables gcc";

/** Every missing host feature, each with how to get it; empty when the host can run a real node. */
export function missingHostFeatures(): string[] {
  const missing: string[] = [];
  const onPath = (bin: string) =>
    (process.env.PATH ?? "").split(":").some((d) => d && existsSync(join(d, bin)));
  for (const bin of ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "buildah", "iptables", "ip"]) {
    if (!onPath(bin) && !existsSync(`/usr/sbin/${bin}`))
      missing.push(`the ${bin} binary (Debian: apt-get install ${DEBIAN_PACKAGES})`);
  }
  for (const plugin of ["bridge", "host-local", "loopback"]) {
    if (!existsSync(join(CNI_BIN_DIR, plugin)))
      missing.push(
        `the CNI plugin ${CNI_BIN_DIR}/${plugin} (Debian: apt-get install containernetworking-plugins)`,
      );
  }
  if (process.getuid?.() !== 0) missing.push("root: a kubelet and containerd must run as root");
  const filesystems = readText("/proc/filesystems");
  if (!/\toverlay$/m.test(filesystems))
    missing.push("the overlay filesystem, containerd's snapshotter (modprobe overlay)");
  const cgroups = readText("/proc/self/mounts");
  for (const controller of ["cpu", "memory", "pids"]) {
    const v1 = new RegExp(`cgroup \\S+ cgroup \\S*\\b${controller}\\b`).test(cgroups);
    const v2 = /cgroup2 \/sys\/fs\/cgroup cgroup2/.test(cgroups);
    if (!v1 && !v2) missing.push(`the ${controller} cgroup controller, mounted under /sys/fs/cgroup`);
  }
  if (!existsSync("/proc/sys/net/bridge/bridge-nf-call-iptables"))
    missing.push("br_netfilter, so kube-proxy's rules see bridged pod traffic (modprobe br_netfilter)");
  return missing;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/**
 * Real nodes of another cluster still running on this host: their bridges, pod addresses and iptables
 * rules would be shared with ours, and our cleanup would take theirs down. One cluster at a time has them.
 */
export function otherClustersRealNodes(clusterDir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSafe("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = readText(`/proc/${entry}/cmdline`).split("\0");
    const config = cmdline.find((a) => a.startsWith("--config=") && a.endsWith("/containerd.toml"));
    if (config && !config.startsWith(`--config=${clusterDir}/`))
      found.push(`containerd pid ${entry} (${config.slice(9)})`);
  }
  return found;
}

/** Sysctls a node's networking needs: forwarding between the bridges and bridged traffic through iptables. */
export async function enableForwarding(): Promise<void> {
  for (const [path, value] of [
    ["/proc/sys/net/ipv4/ip_forward", "1"],
    ["/proc/sys/net/bridge/bridge-nf-call-iptables", "1"],
  ] as const) {
    if (readText(path).trim() === value) continue;
    try {
      await writeFile(path, value);
    } catch (err) {
      throw new Error(`cannot set ${path} to ${value} (${(err as Error).message}): a real node needs it`);
    }
  }
}

// ---- configuration files ----

const CNI_BIN_DIR = "/usr/lib/cni";

/**
 * containerd's CRI config. restrict_oom_score_adj: processes here may not lower oom_score_adj below their
 * own, while the kubelet asks -998 for sandboxes; without it every sandbox fails with "can't get final
 * child's PID from pipe". Network namespaces are mounted under the node's state dir, so cleanup finds them.
 */
export function containerdConfig(node: RealNodeRecord): string {
  return `version = 2
root = "${join(node.dir, "containerd", "root")}"
state = "${join(node.dir, "containerd", "state")}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${node.containerdSocket}"

[ttrpc]
  address = "${node.containerdSocket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN_DIR}"
    conf_dir = "${join(node.dir, "cni")}"
`;
}

/** A bridge per node with host-local addresses. No masquerade: pods only talk to the cluster and the host. */
export function cniConfig(node: RealNodeRecord): string {
  const gateway = node.podCidr.replace(/0\/24$/, "1");
  return JSON.stringify(
    {
      cniVersion: "0.4.0",
      name: `tekton-affinity-${node.name}`,
      plugins: [
        {
          type: "bridge",
          bridge: node.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            dataDir: join(node.dir, "cni-ipam"),
            ranges: [[{ subnet: node.podCidr, gateway }]],
            routes: [{ dst: "0.0.0.0/0" }],
          },
        },
        { type: "loopback" },
      ],
    },
    null,
    2,
  );
}

/**
 * failCgroupV1 and cgroupfs: this host's cgroups are v1 and it has no systemd. Anonymous access with
 * AlwaysAllow lets the apiserver (which has no client certificate for kubelets here) serve `kubectl logs`;
 * the port listens on the host only. Image garbage collection is off: the images cannot be pulled again.
 */
export function kubeletConfig(node: RealNodeRecord, ports: { kubelet: number; healthz: number }): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: ${node.cgroupRoot}
containerRuntimeEndpoint: unix://${node.containerdSocket}
podLogsDir: ${join(node.dir, "pod-logs")}
port: ${ports.kubelet}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${ports.healthz}
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDNS: [${CLUSTER_DNS}]
clusterDomain: cluster.local
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 110
nodeStatusReportFrequency: 10s
`;
}

/** The kubelet wants its cgroup root to exist under every controller already. */
async function makeCgroupRoot(node: RealNodeRecord): Promise<void> {
  for (const controller of readdirSafe("/sys/fs/cgroup")) {
    const base = join("/sys/fs/cgroup", controller);
    if (existsSync(join(base, "cgroup.procs"))) await mkdir(join(base, node.cgroupRoot), { recursive: true });
  }
}

export async function writeNodeFiles(
  node: RealNodeRecord,
  ports: { kubelet: number; healthz: number },
): Promise<void> {
  for (const sub of ["cni", "cni-ipam", "pod-logs", "kubelet", "containerd"])
    await mkdir(join(node.dir, sub), { recursive: true });
  await writeFile(join(node.dir, "containerd.toml"), containerdConfig(node));
  await writeFile(join(node.dir, "cni", "10-bridge.conflist"), cniConfig(node));
  await writeFile(join(node.dir, "kubelet.yaml"), kubeletConfig(node, ports));
  await makeCgroupRoot(node);
}

// ---- images ----

export async function ctr(node: RealNodeRecord, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(
      "ctr",
      ["--address", node.containerdSocket, "--namespace", "k8s.io", ...args],
      {
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ctr ${args.join(" ")} failed on ${node.name}: ${e.stderr ?? e.message}`);
  }
}

/** Loads image archives into the node's containerd, under every name each is known by. */
export async function loadImages(node: RealNodeRecord, images: BuiltImage[]): Promise<void> {
  for (const image of images) {
    await ctr(node, ["images", "import", "--no-unpack", image.archive]);
    for (const alias of image.names.slice(1)) {
      await ctr(node, ["images", "tag", "--force", image.names[0]!, alias]);
    }
  }
}

// ---- cleanup ----

/** Pids of processes in the node's cgroup root: its pods' containers. */
function podProcesses(node: RealNodeRecord): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    if (readText(`/proc/${entry}/cgroup`).includes(`:${node.cgroupRoot}/`)) pids.push(Number(entry));
  }
  return pids;
}

/** containerd's shims for this node: they outlive containerd by design. */
function shimProcesses(node: RealNodeRecord): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = readText(`/proc/${entry}/cmdline`).split("\0");
    if (cmdline[0]?.includes("containerd-shim") && cmdline.includes(node.containerdSocket))
      pids.push(Number(entry));
  }
  return pids;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
}

/** Mount points under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return readText("/proc/self/mountinfo")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Removes what a real node left on the host once its kubelet and containerd are stopped (they may have
 * been killed, or never started): containers, shims, mounts, the bridge, kubelet's log links.
 */
export async function cleanUpRealNode(node: RealNodeRecord): Promise<void> {
  killAll(podProcesses(node));
  killAll(shimProcesses(node));
  for (let i = 0; i < 50 && [...podProcesses(node), ...shimProcesses(node)].some(isAlive); i++)
    await sleep(100);
  for (let pass = 0; pass < 3; pass++) {
    for (const point of mountsUnder(node.dir)) {
      try {
        execFileSync("umount", ["--lazy", point], { stdio: "ignore" });
      } catch {
        // unmounted with its parent already
      }
    }
    if (mountsUnder(node.dir).length === 0) break;
  }
  removeCgroups(node);
  try {
    execFileSync("ip", ["link", "delete", node.bridge], { stdio: "ignore" });
  } catch {
    // never made, or gone
  }
  removeContainerLogLinks(node);
}

/** The kubelet's per-pod cgroups, under every v1 controller and the unified hierarchy. */
function removeCgroups(node: RealNodeRecord): void {
  for (const controller of readdirSafe("/sys/fs/cgroup")) {
    const top = join("/sys/fs/cgroup", controller, node.cgroupRoot);
    if (existsSync(top)) removeCgroupTree(top);
  }
}

/** A cgroup goes with rmdir once it has no children and no processes. */
function removeCgroupTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name));
  }
  try {
    rmdirSync(dir);
  } catch {
    // still busy, or gone
  }
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The kubelet links /var/log/containers/*.log to its pod logs whatever podLogsDir says. */
function removeContainerLogLinks(node: RealNodeRecord): void {
  for (const entry of readdirSafe("/var/log/containers")) {
    const link = join("/var/log/containers", entry);
    try {
      if (readlinkSync(link).startsWith(node.dir)) unlinkSync(link);
    } catch {
      // not a link, or gone
    }
  }
}

const BUILTIN_CHAINS: Record<string, string[]> = {
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
};

/** Drops every KUBE-* chain (kube-proxy's and the kubelet's) and the jumps into them: on this host only
 * the harness's real nodes make them. */
export function removeKubeChains(): void {
  const iptables = (args: string[]) => execFileSync("iptables", ["-w", ...args], { encoding: "utf8" });
  for (const [table, builtins] of Object.entries(BUILTIN_CHAINS)) {
    for (const chain of builtins) {
      let listing: string;
      try {
        listing = iptables(["-t", table, "-L", chain, "-n", "--line-numbers"]);
      } catch {
        continue;
      }
      const jumps = listing
        .split("\n")
        .map((l) => l.split(/\s+/))
        .filter((cols) => /^\d+$/.test(cols[0] ?? "") && cols[1]?.startsWith("KUBE-"))
        .map((cols) => Number(cols[0]))
        .sort((a, b) => b - a);
      for (const n of jumps) iptables(["-t", table, "-D", chain, String(n)]);
    }
    let rules = "";
    try {
      rules = execFileSync("iptables-save", ["-t", table], { encoding: "utf8" });
    } catch {
      continue;
    }
    const chains = [...rules.matchAll(/^:(KUBE-[A-Za-z0-9-]+)/gm)].map((m) => m[1]!);
    for (const chain of chains) iptables(["-t", table, "-F", chain]);
    for (const chain of chains) {
      try {
        iptables(["-t", table, "-X", chain]);
      } catch {
        // referenced from a chain that is not ours
      }
    }
  }
}
