// Container images for the real nodes, built here with buildah (daemonless, no registry) and cached as
// docker-archive tarballs that `ctr images import` loads into a node's containerd.
//
// Each image is a few static files on an empty base, named as the project, Kubernetes and Tekton refer to
// it, so nothing is ever pulled: the placeholder's pause, the step images of the seeds' PipelineRuns
// (`alpine`, `busybox`: BusyBox from Debian's busybox-static, a shell and coreutils), and Tekton's
// task-pod tools built from its module at the harness's version.

import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { cacheRoot, type RealNodeBinaries, TEKTON_POD_TOOLS } from "./build.js";
import { VERSIONS } from "./versions.js";

const run = promisify(execFile);

/** The placeholder's default image (src/placement), and containerd's sandbox image on the real nodes. */
export const PAUSE_IMAGE = "registry.k8s.io/pause:3.10";
/** BusyBox under the names step images use. Untagged names (`alpine`) default to imagePullPolicy Always,
 * which would reach for a registry: tests name a tag. */
export const BUSYBOX_NAMES = [
  "docker.io/library/busybox:1.36",
  "docker.io/library/busybox:latest",
  "docker.io/library/alpine:3.20",
  "docker.io/library/alpine:latest",
];
/** The Redis deploy/ runs. Debian's redis-server (the machine's, 7.0) stands in under that name. */
export const REDIS_IMAGE = "docker.io/library/redis:7.4-alpine";

/** Tekton's controller is told these names (tekton.ts). */
export const tektonImage = (tool: string) => `ghcr.io/tektoncd/pipeline/cmd/${tool}:${VERSIONS.tekton}`;
/** Tekton's shell image (it writes step scripts) is a BusyBox that runs as nonroot, as Tekton's release's
 * (Chainguard's) does: with `set-security-context`, Tekton's init containers demand a non-root user. */
export const TEKTON_SHELL_IMAGE = "cgr.dev/chainguard/busybox:1.36";

interface ImageSpec {
  /** The first name is the archive's; the others are tags added on import. */
  names: string[];
  /** Files of the image: absolute path inside the image → file on this machine. */
  files: Record<string, string>;
  /** Symlinks: path inside the image → target. */
  links?: Record<string, string>;
  /** Directories created empty, world-writable with the sticky bit (like /tmp). */
  scratchDirs?: string[];
  entrypoint?: string[];
  user?: string;
}

export interface BuiltImage {
  names: string[];
  archive: string;
}

/** Paths of BusyBox's applets (bin/sh, usr/bin/tee, ...): each becomes a link to the one binary. */
function busyboxApplets(busybox: string): string[] {
  const out = execFileSync(busybox, ["--list-full"], { encoding: "utf8" });
  return out.split("\n").filter((l) => l && l !== "bin/busybox");
}

const BUSYBOX = "/bin/busybox";

/** Every image the real nodes hold. */
export function nodeImages(bin: RealNodeBinaries): ImageSpec[] {
  if (!existsSync(BUSYBOX)) {
    throw new Error(
      `${BUSYBOX} is missing: the step images are BusyBox (Debian: apt-get install busybox-static)`,
    );
  }
  const busybox: Omit<ImageSpec, "names"> = {
    files: { "/bin/busybox": BUSYBOX, "/etc/passwd": "passwd", "/etc/group": "group" },
    links: Object.fromEntries(busyboxApplets(BUSYBOX).map((p) => [`/${p}`, "/bin/busybox"])),
    scratchDirs: ["/tmp"],
    entrypoint: ["/bin/sh"],
  };
  return [
    { names: [PAUSE_IMAGE], files: { "/pause": bin.pause }, entrypoint: ["/pause"], user: "65535:65535" },
    { names: BUSYBOX_NAMES, ...busybox },
    { names: [TEKTON_SHELL_IMAGE], ...busybox, user: "65532:65532" },
    redisImage(busybox),
    ...TEKTON_POD_TOOLS.map((tool) => ({
      names: [tektonImage(tool)],
      files: { [`/ko-app/${tool}`]: bin.tekton[tool] },
      entrypoint: [`/ko-app/${tool}`],
      user: "65532:65532",
    })),
  ];
}

/** Redis as deploy/ runs it: redis-server and redis-cli with the libraries they link, a shell (its
 * readiness probe is `sh -c`), and the official image's entrypoint rule (arguments starting with `-` go
 * to redis-server). */
function redisImage(busybox: Omit<ImageSpec, "names">): ImageSpec {
  const binaries = ["redis-server", "redis-cli"].map((name) => {
    const path = ["/usr/bin", "/usr/local/bin"].map((d) => join(d, name)).find((p) => existsSync(p));
    if (!path)
      throw new Error(
        `${name} is missing: the Redis image is built from it (Debian: apt-get install redis-server)`,
      );
    return [name, realpathSync(path)] as const;
  });
  const libraries = new Set<string>();
  for (const [, path] of binaries) {
    const out = execFileSync("ldd", [path], { encoding: "utf8" });
    for (const m of out.matchAll(/(\/\S+\.so[.\d]*)/g)) libraries.add(m[1]!);
  }
  return {
    ...busybox,
    names: [REDIS_IMAGE],
    files: {
      ...busybox.files,
      ...Object.fromEntries(binaries.map(([name, path]) => [`/usr/local/bin/${name}`, path])),
      ...Object.fromEntries([...libraries].map((lib) => [lib, realpathSync(lib)])),
      "/usr/local/bin/docker-entrypoint.sh": "redis-entrypoint",
    },
    scratchDirs: ["/tmp", "/data"],
    entrypoint: ["/usr/local/bin/docker-entrypoint.sh"],
    user: "999:999",
  };
}

/** Contents written by the builder itself rather than copied from the host. */
const GENERATED: Record<string, string> = {
  "redis-entrypoint": '#!/bin/sh\ncase "$1" in -*) set -- redis-server "$@" ;; esac\ncd /data\nexec "$@"\n',
  passwd:
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n",
  group: "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
};

/** A key that changes whenever anything that goes into the image does. */
function imageKey(spec: ImageSpec): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ ...spec, files: Object.keys(spec.files).sort() }));
  for (const [inside, source] of Object.entries(spec.files).sort()) {
    hash.update(inside);
    hash.update(GENERATED[source] ?? readFileSync(source));
  }
  return hash.digest("hex").slice(0, 16);
}

async function buildah(args: string[]): Promise<string> {
  try {
    const { stdout } = await run("buildah", args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === "ENOENT") {
      throw new Error(
        "buildah is not on PATH: images are built without a Docker daemon (Debian: apt-get install buildah)",
      );
    }
    throw new Error(`buildah ${args.join(" ")} failed: ${e.stderr ?? e.message}`);
  }
}

/** Lays the image's files out in a directory, then commits that directory as one layer. */
async function buildImage(spec: ImageSpec, archive: string): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "tekton-affinity-image-"));
  try {
    for (const [inside, source] of Object.entries(spec.files)) {
      const target = join(root, inside);
      await mkdir(join(target, ".."), { recursive: true });
      if (GENERATED[source] !== undefined) {
        await writeFile(target, GENERATED[source]!);
        if (GENERATED[source]!.startsWith("#!")) await chmod(target, 0o755);
      } else {
        await copyFile(source, target);
        await chmod(target, 0o755);
      }
    }
    for (const [inside, target] of Object.entries(spec.links ?? {})) {
      await mkdir(join(root, inside, ".."), { recursive: true });
      if (!existsSync(join(root, inside))) await symlink(target, join(root, inside));
    }
    for (const dir of spec.scratchDirs ?? []) {
      await mkdir(join(root, dir), { recursive: true });
      await chmod(join(root, dir), 0o1777);
    }
    const container = await buildah(["from", "scratch"]);
    try {
      await buildah(["copy", container, root, "/"]);
      const config = ["config"];
      if (spec.entrypoint) config.push("--entrypoint", JSON.stringify(spec.entrypoint), "--cmd", "");
      if (spec.user) config.push("--user", spec.user);
      config.push("--env", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", container);
      await buildah(config);
      const partial = `${archive}.partial`;
      await rm(partial, { force: true });
      await buildah(["commit", "--quiet", container, `docker-archive:${partial}:${spec.names[0]}`]);
      await rename(partial, archive);
    } finally {
      await buildah(["rm", container]).catch(() => undefined);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Builds the images that are not cached yet; returns every archive with the names it is loaded under. */
export async function ensureNodeImages(
  bin: RealNodeBinaries,
  log: (line: string) => void = (l) => console.error(`[build] ${l}`),
): Promise<BuiltImage[]> {
  const dir = join(cacheRoot(), "images");
  await mkdir(dir, { recursive: true });
  const built: BuiltImage[] = [];
  for (const spec of nodeImages(bin)) {
    const safe = spec.names[0]!.replace(/[^A-Za-z0-9.-]+/g, "_");
    const archive = join(dir, `${safe}-${imageKey(spec)}.tar`);
    if (!existsSync(archive)) {
      const started = Date.now();
      await buildImage(spec, archive);
      log(`built image ${spec.names[0]} in ${((Date.now() - started) / 1000).toFixed(0)}s`);
    }
    built.push({ names: spec.names, archive });
  }
  return built;
}
