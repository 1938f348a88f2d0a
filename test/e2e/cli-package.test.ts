// The CLI installs as an npm package: `npm pack` builds it (prepack), and an install of the tarball
// puts a working `tekton-affinity` on PATH that reports package.json's version.

import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";

const REPO = resolve(import.meta.dirname, "..", "..");
const run = promisify(execFile);

describe("the CLI as an npm package", function () {
  this.timeout(300_000);

  it("`npm pack` and `npm install -g` of the tarball give a tekton-affinity command", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-package-"));
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], {
      cwd: REPO,
      maxBuffer: 64 << 20,
    });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    const files = packed!.files.map((f) => f.path);
    expect(files).to.include("dist/src/cli/main.js").and.include("crds/affinitypolicy.yaml");
    expect(
      files.filter((f) => f.startsWith("test/") || f.startsWith("src/")),
      "sources stay out",
    ).to.deep.equal([]);
    const prefix = join(dir, "global");
    await run(
      "npm",
      [
        "install",
        "-g",
        "--prefix",
        prefix,
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        join(dir, packed!.filename),
      ],
      {
        maxBuffer: 64 << 20,
      },
    );
    const bin = join(prefix, "bin", "tekton-affinity");
    const version = (await run(bin, ["--version"])).stdout.trim();
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string };
    expect(version).to.equal(pkg.version);
    const help = (await run(bin, ["--help"])).stdout;
    for (const command of ["controller", "uninstall", "explain", "migrate", "ensure-redis-password"])
      expect(help, command).to.include(command);
  });
});
