// make image: builds the project's image from its Dockerfile with buildah (no Docker daemon; local
// stand-ins for base images that cannot be pulled here: test/cluster/project-image.ts), loads it into
// every real node of a running local cluster (`npm run cluster -- up --real-nodes M`), and prints its
// reference as the last line.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { LocalCluster } from "../test/cluster/cluster.js";
import { buildProjectImage, projectImageReference } from "../test/cluster/project-image.js";
import { loadImages } from "../test/cluster/real-node.js";

const REPO = resolve(import.meta.dirname, "..");

async function main(): Promise<void> {
  const log = (line: string) => console.error(`[image] ${line}`);
  const reference = projectImageReference(REPO);
  const archive = await buildProjectImage(REPO, reference, log);
  const clusterDir = resolve(process.env.TEKTON_AFFINITY_CLUSTER_DIR ?? join(REPO, ".cluster"));
  if (existsSync(join(clusterDir, "state.json"))) {
    const cluster = LocalCluster.attach(clusterDir);
    for (const node of cluster.state.realNodes ?? []) {
      await loadImages(node, [{ names: [reference], archive }]);
      log(`loaded into ${node.name}`);
    }
  }
  console.log(reference);
}

main().catch((err: Error) => {
  console.error(`image: ${err.message}`);
  process.exit(1);
});
