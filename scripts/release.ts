// make release: builds the image (as make image does) and writes release/release.yaml, the one file an
// operator installs, naming that image by digest, plus release/monitoring.yaml. Prints the image.
//
//   make release IMAGE_REPOSITORY=ghcr.io/acme/tekton-affinity TEKTON_NAMESPACE=openshift-pipelines
//
// The image is also written as an OCI archive (its path is logged); copy it to your registry keeping its
// digest: `skopeo copy --preserve-digests oci-archive:<archive> docker://<repository>:<version>`. A
// running local cluster's real nodes get it loaded, so release.yaml installs there as is.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { ensureBinaries } from "../test/cluster/build.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { buildRelease, loadReleaseImage } from "./release-build.js";
import { DEFAULT_TEKTON_NAMESPACE } from "./release-lib.js";

const REPO = resolve(import.meta.dirname, "..");

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
    const { kubectl } = await ensureBinaries(log);
    const built = await buildRelease({ ...o, kubectl, log });
    const clusterDir = resolve(process.env.TEKTON_AFFINITY_CLUSTER_DIR ?? join(REPO, ".cluster"));
    if (existsSync(join(clusterDir, "state.json"))) {
      for (const node of LocalCluster.attach(clusterDir).state.realNodes ?? []) {
        await loadReleaseImage(node, built);
        log(`loaded into ${node.name}`);
      }
    }
    console.log(built.image);
  });

program.parseAsync().catch((err: Error) => {
  console.error(`release: ${err.message}`);
  process.exit(1);
});
