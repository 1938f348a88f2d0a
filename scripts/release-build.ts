// Builds a release: the image (from the Dockerfile, as make image does), its OCI archive and digest, and
// release.yaml + monitoring.yaml from deploy/ naming the image by that digest. Used by `make release`
// and by the as-shipped e2e test, which installs what this writes.

import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { version } from "../src/version.js";
import { buildProjectImage, exportOciArchive } from "../test/cluster/project-image.js";
import { ctr, type RealNodeRecord } from "../test/cluster/real-node.js";
import { monitoringManifest } from "./monitoring-lib.js";
import { parseObjects, releaseManifest } from "./release-lib.js";

const REPO = resolve(import.meta.dirname, "..");
const run = promisify(execFile);

export interface BuildReleaseOptions {
  /** Image repository, e.g. ghcr.io/acme/tekton-affinity. */
  repository: string;
  tektonNamespace?: string;
  /** Directory for release.yaml and monitoring.yaml. */
  out: string;
  /** kubectl, for `kubectl kustomize deploy/`. */
  kubectl: string;
  /** Extra image labels: a second build of the same source with another label gets another digest. */
  labels?: Record<string, string>;
  log: (line: string) => void;
}

export interface BuiltRelease {
  /** repository:version: the name the image was built under. */
  tagged: string;
  /** repository:version@sha256:...: what release.yaml names. */
  image: string;
  digest: string;
  /** OCI archive of the image, digest preserved. */
  archive: string;
  manifest: string;
}

export async function buildRelease(o: BuildReleaseOptions): Promise<BuiltRelease> {
  const v = version();
  const tagged = `${o.repository}:${v}`;
  await buildProjectImage(REPO, tagged, o.log, o.labels);
  const { archive, digest } = await exportOciArchive(tagged);
  const image = `${tagged}@${digest}`;
  const { stdout } = await run(o.kubectl, ["kustomize", join(REPO, "deploy")], { maxBuffer: 64 << 20 });
  mkdirSync(o.out, { recursive: true });
  const manifest = join(o.out, "release.yaml");
  writeFileSync(
    manifest,
    releaseManifest(parseObjects(stdout), { version: v, image, tektonNamespace: o.tektonNamespace }),
  );
  writeFileSync(join(o.out, "monitoring.yaml"), monitoringManifest(v));
  o.log(`wrote ${manifest} and monitoring.yaml naming ${image}; image archive ${archive}`);
  return { tagged, image, digest, archive, manifest };
}

/**
 * Loads a release's image into a real node's containerd as a registry would serve it: the OCI archive
 * keeps the manifest, so containerd's digest is the release's (checked), and the image is also named
 * repository@digest, the name the kubelet looks up for a digest reference.
 */
export async function loadReleaseImage(node: RealNodeRecord, built: BuiltRelease): Promise<void> {
  await ctr(node, ["images", "import", "--no-unpack", built.archive]);
  const listed = await ctr(node, ["images", "ls", `name==${built.tagged}`]);
  if (!listed.includes(built.digest))
    throw new Error(
      `containerd on ${node.name} holds ${built.tagged} under another digest than ${built.digest}:\n${listed}`,
    );
  const repository = built.tagged.slice(0, built.tagged.lastIndexOf(":"));
  await ctr(node, ["images", "tag", "--force", built.tagged, `${repository}@${built.digest}`]);
}
