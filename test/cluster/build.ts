// Builds the control-plane binaries from their Go modules and caches them outside the repo.
//
// Cache layout: $TEKTON_AFFINITY_CACHE (default ~/.cache/tekton-affinity)/bin/<component>-<version>/<binary>.
// A binary that exists is never rebuilt, so a second run builds nothing.

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { stagingVersion, VERSIONS } from "./versions.js";

const run = promisify(execFile);

export function cacheRoot(): string {
  return process.env.TEKTON_AFFINITY_CACHE ?? join(homedir(), ".cache", "tekton-affinity");
}

export interface Binaries {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  kwok: string;
  tektonController: string;
  /** Directory of the downloaded Tekton module: its config/ holds the CRDs and ConfigMaps we apply. */
  tektonModuleDir: string;
}

type Log = (line: string) => void;

async function go(args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await run("go", args, {
      cwd,
      env: { ...process.env, GOFLAGS: "-mod=mod", GOTOOLCHAIN: "local", ...extraEnv },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === "ENOENT") {
      throw new Error("the Go toolchain (go) is not on PATH: install Go 1.25 or newer, then run again");
    }
    throw new Error(
      `go ${args.join(" ")} failed in ${cwd} (the module did not build):\n${e.stderr ?? e.message}`,
    );
  }
}

/** Builds one binary unless it is cached; prints one progress line with the elapsed time. */
async function ensure(target: string, log: Log, build: (out: string) => Promise<void>): Promise<string> {
  if (existsSync(target)) return target;
  const started = Date.now();
  const partial = `${target}.partial`;
  await mkdir(join(target, ".."), { recursive: true });
  await build(partial);
  await rename(partial, target);
  log(`built ${target.replace(cacheRoot(), "$CACHE")} in ${((Date.now() - started) / 1000).toFixed(0)}s`);
  return target;
}

async function workDir(name: string): Promise<string> {
  const dir = join(cacheRoot(), "work", name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Returns the local directory of a downloaded Go module (downloading it if needed). */
export async function moduleDir(module: string, version: string): Promise<string> {
  const dir = await workDir("download");
  const out = await go(["mod", "download", "-json", `${module}@${version}`], dir);
  const info = JSON.parse(out) as { Dir?: string; GoMod?: string; Error?: string };
  if (info.Error || !info.Dir) throw new Error(`cannot download ${module}@${version}: ${info.Error}`);
  return info.Dir;
}

async function buildEtcd(out: string): Promise<void> {
  // etcd's root module replaces its sub-modules with local paths, so `go install` refuses it; a two-line
  // wrapper around etcdmain.Main (what etcd's own main.go does) builds the same server from published modules.
  const dir = await workDir(`etcd-${VERSIONS.etcd}`);
  await writeFile(
    join(dir, "go.mod"),
    `module local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 ${VERSIONS.etcd}\n`,
  );
  await writeFile(
    join(dir, "main.go"),
    'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n',
  );
  await go(["build", "-o", out, "."], dir, { CGO_ENABLED: "0" });
}

/** k8s.io/kubernetes replaces its staging modules with ./staging paths; a wrapper module points them at
 * their published versions so the commands build outside the kubernetes repository. */
async function kubernetesWrapper(): Promise<string> {
  const version = VERSIONS.kubernetes;
  const dir = await workDir(`kubernetes-${version}`);
  if (existsSync(join(dir, "go.mod"))) return dir;
  const src = await moduleDir("k8s.io/kubernetes", version);
  const upstream = await readFile(join(src, "go.mod"), "utf8");
  const staged = [...upstream.matchAll(/^\s*(k8s\.io\/[\w.-]+)\s*=>\s*\.\/staging\//gm)].map((m) => m[1]);
  const replaces = staged.map((m) => `\t${m} => ${m} ${stagingVersion(version)}`).join("\n");
  await writeFile(
    join(dir, "go.mod"),
    `module local/kubernetes-build\n\ngo 1.25\n\nrequire k8s.io/kubernetes ${version}\n\nreplace (\n${replaces}\n)\n`,
  );
  return dir;
}

function kubernetesLdflags(): string {
  const v = VERSIONS.kubernetes;
  const [, major, minor] = /^v(\d+)\.(\d+)/.exec(v) ?? [];
  const pkg = "k8s.io/component-base/version";
  return [
    `-X ${pkg}.gitVersion=${v}`,
    `-X ${pkg}.gitMajor=${major}`,
    `-X ${pkg}.gitMinor=${minor}`,
    `-X ${pkg}.gitTreeState=clean`,
    `-X ${pkg}.buildDate=1970-01-01T00:00:00Z`,
    `-X k8s.io/client-go/pkg/version.gitVersion=${v}`,
  ].join(" ");
}

async function buildKubernetes(command: string, out: string): Promise<void> {
  const dir = await kubernetesWrapper();
  await go(["build", "-ldflags", kubernetesLdflags(), "-o", out, `k8s.io/kubernetes/cmd/${command}`], dir, {
    CGO_ENABLED: "0",
  });
}

/** Builds a command from a published module through a one-line wrapper module. (`go install pkg@v` would
 * be simpler, but it also fetches the module's version list, which the proxy refuses for some modules.) */
async function buildFromModule(module: string, version: string, pkg: string, out: string): Promise<void> {
  const dir = await workDir(`${module.replaceAll("/", "_")}-${version}`);
  await writeFile(join(dir, "go.mod"), `module local/wrapper\n\ngo 1.25\n\nrequire ${module} ${version}\n`);
  await go(["build", "-o", out, pkg], dir, { CGO_ENABLED: "0" });
}

/** Ensures every binary exists, building the missing ones one after another (the machine has 2 cores;
 * `go build` already uses both). */
export async function ensureBinaries(log: Log = (l) => console.error(`[build] ${l}`)): Promise<Binaries> {
  const bin = (component: string, version: string, name: string) =>
    join(cacheRoot(), "bin", `${component}-${version}`, name);
  const k = VERSIONS.kubernetes;
  const kube = (cmd: string) => ensure(bin("kubernetes", k, cmd), log, (out) => buildKubernetes(cmd, out));
  return {
    etcd: await ensure(bin("etcd", VERSIONS.etcd, "etcd"), log, buildEtcd),
    kubeApiserver: await kube("kube-apiserver"),
    kubeControllerManager: await kube("kube-controller-manager"),
    kubeScheduler: await kube("kube-scheduler"),
    kubectl: await kube("kubectl"),
    kwok: await ensure(bin("kwok", VERSIONS.kwok, "kwok"), log, (out) =>
      buildFromModule("sigs.k8s.io/kwok", VERSIONS.kwok, "sigs.k8s.io/kwok/cmd/kwok", out),
    ),
    tektonController: await ensure(bin("tekton", VERSIONS.tekton, "controller"), log, (out) =>
      buildFromModule(
        "github.com/tektoncd/pipeline",
        VERSIONS.tekton,
        "github.com/tektoncd/pipeline/cmd/controller",
        out,
      ),
    ),
    tektonModuleDir: await moduleDir("github.com/tektoncd/pipeline", VERSIONS.tekton),
  };
}

/** What a real node runs beside containerd and runc (Debian's): built like the control plane's binaries. */
export interface RealNodeBinaries {
  kubelet: string;
  kubeProxy: string;
  coredns: string;
  /** Static binaries for the images the nodes run (images.ts): Kubernetes' pause, Tekton's task-pod tools. */
  pause: string;
  tekton: Record<TektonPodTool, string>;
}

/** The binaries Tekton puts into every task pod, by their command names (`cmd/<name>`, run as `/ko-app/<name>`). */
export const TEKTON_POD_TOOLS = ["entrypoint", "nop", "workingdirinit", "sidecarlogresults"] as const;
export type TektonPodTool = (typeof TEKTON_POD_TOOLS)[number];

/** Kubernetes' pause is a few lines of C (build/pause/linux/pause.c in its module), linked statically so
 * that its image needs nothing else. */
async function buildPause(out: string): Promise<void> {
  const src = join(await moduleDir("k8s.io/kubernetes", VERSIONS.kubernetes), "build", "pause", "linux");
  try {
    await run("gcc", ["-Os", "-static", `-DVERSION=${VERSIONS.kubernetes}`, "-o", out, join(src, "pause.c")]);
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    throw new Error(
      e.code === "ENOENT"
        ? "gcc is not on PATH: the pause image is compiled from Kubernetes' pause.c (Debian: apt-get install gcc libc6-dev)"
        : `gcc could not build pause.c: ${e.stderr ?? e.message}`,
    );
  }
}

export async function ensureRealNodeBinaries(
  log: Log = (l) => console.error(`[build] ${l}`),
): Promise<RealNodeBinaries> {
  const k = VERSIONS.kubernetes;
  const kube = (cmd: string) =>
    ensure(join(cacheRoot(), "bin", `kubernetes-${k}`, cmd), log, (out) => buildKubernetes(cmd, out));
  const tekton = {} as Record<TektonPodTool, string>;
  for (const tool of TEKTON_POD_TOOLS) {
    tekton[tool] = await ensure(join(cacheRoot(), "bin", `tekton-${VERSIONS.tekton}`, tool), log, (out) =>
      buildFromModule(
        "github.com/tektoncd/pipeline",
        VERSIONS.tekton,
        `github.com/tektoncd/pipeline/cmd/${tool}`,
        out,
      ),
    );
  }
  return {
    kubelet: await kube("kubelet"),
    kubeProxy: await kube("kube-proxy"),
    coredns: await ensure(join(cacheRoot(), "bin", `coredns-${VERSIONS.coredns}`, "coredns"), log, (out) =>
      buildFromModule("github.com/coredns/coredns", VERSIONS.coredns, "github.com/coredns/coredns", out),
    ),
    pause: await ensure(join(cacheRoot(), "bin", `pause-${k}`, "pause"), log, buildPause),
    tekton,
  };
}
