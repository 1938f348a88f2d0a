// make release: builds the image (as make image does), and writes release/release.yaml, the one file an
// operator installs, with that image by digest, and release/monitoring.yaml. Prints the image reference.
//
//   make release IMAGE_REPOSITORY=ghcr.io/acme/tekton-affinity TEKTON_NAMESPACE=openshift-pipelines
//
// The image is also written as an OCI archive (path printed); copy it to your registry keeping its
// digest, e.g. `skopeo copy --preserve-digests oci-archive:<archive> docker://<reference>`. A running
// local cluster's real nodes get it loaded, as with make image.

import { execFile } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { version } from "../src/version.js";
import { ensureBinaries } from "../test/cluster/build.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { buildProjectImage, exportOciArchive } from "../test/cluster/project-image.js";
import { loadImages } from "../test/cluster/real-node.js";
import { monitoringManifest } from "./monitoring-lib.js";
import { DEFAULT_TEKTON_NAMESPACE, parseObjects, releaseManifest } from "./release-lib.js";

const REPO = resolve(import.meta.dirname, "..");
const run = promisify(execFile);

const program = new Command("release")
  .option(
    "--repository <name>",
    "image repository",
    process.env.IMAGE_REPOSITORY || "localhost/tekton-affinity",
  )
  .option(
    "--tekton-namespace <ns>",
    "namespace Tekton runs in",
    process.env.TEKTON_NAMESPACE || DEFAULT_TEKTON_NAMESPACE,
  )
  .option("--out <dir>", "where to write release.yaml and monitoring.yaml", join(REPO, "release"))
  .action(async (o: { repository: string; tektonNamespace: string; out: string }) => {
    const log = (line: string) => console.error(`[release] ${line}`);
    const v = version();
    const tagged = `${o.repository}:${v}`;
    const dockerArchive = await buildProjectImage(REPO, tagged, log);
    const { archive, digest } = await exportOciArchive(tagged);
    const image = `${tagged}@${digest}`;
    const { kubectl } = await ensureBinaries(log);
    const { stdout } = await run(kubectl, ["kustomize", join(REPO, "deploy")], { maxBuffer: 64 << 20 });
    mkdirSync(o.out, { recursive: true });
    const manifest = releaseManifest(parseObjects(stdout), {
      version: v,
      image,
      tektonNamespace: o.tektonNamespace,
    });
    writeFileSync(join(o.out, "release.yaml"), manifest);
    writeFileSync(join(o.out, "monitoring.yaml"), monitoringManifest(v));
    log(`wrote ${join(o.out, "release.yaml")} and monitoring.yaml; image archive ${archive}`);
    const clusterDir = resolve(process.env.TEKTON_AFFINITY_CLUSTER_DIR ?? join(REPO, ".cluster"));
    if (existsSync(join(clusterDir, "state.json"))) {
      const cluster = LocalCluster.attach(clusterDir);
      for (const node of cluster.state.realNodes ?? []) {
        await loadImages(node, [{ names: [tagged, image], archive: dockerArchive }]);
        log(`loaded into ${node.name}`);
      }
    }
    console.log(image);
  });

program.parseAsync().catch((err: Error) => {
  console.error(`release: ${err.message}`);
  process.exit(1);
});
