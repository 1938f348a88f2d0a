// The version, kept in one place: package.json. The CLI's --version, the image's label and the release
// manifests all read it from there (the image carries package.json next to dist/).

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** package.json's version, found by walking up from this file (src/ under tsx, dist/src/ compiled). */
export function version(from = import.meta.dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "tekton-affinity" && pkg.version) return pkg.version;
    }
    if (dirname(dir) === dir) throw new Error(`no package.json of tekton-affinity above ${from}`);
  }
}
