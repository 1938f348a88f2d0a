import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { Command } from "commander";
import { parseAllDocuments } from "yaml";
import { featureFlagsFromYaml, registerMigrateCommand, runMigrate } from "../../src/cli/migrate-command.js";

describe("migrate command", () => {
  it("reads the data of a ConfigMap, preferring feature-flags in a multi-document file", () => {
    const yaml = `apiVersion: v1
kind: ConfigMap
metadata: {name: config-defaults}
data: {coschedule: pipelineruns}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: feature-flags, namespace: tekton-pipelines}
data:
  disable-affinity-assistant: "true"
  coschedule: isolate-pipelinerun
`;
    expect(featureFlagsFromYaml(yaml)).to.deep.equal({
      "disable-affinity-assistant": "true",
      coschedule: "isolate-pipelinerun",
    });
  });

  it("reads a plain map and stringifies unquoted booleans", () => {
    expect(featureFlagsFromYaml("disable-affinity-assistant: true\ncoschedule: workspaces\n")).to.deep.equal({
      "disable-affinity-assistant": "true",
      coschedule: "workspaces",
    });
    expect(() => featureFlagsFromYaml("", "empty.yaml")).to.throw(/empty.yaml/);
  });

  it("runs from a file and emits per-namespace policies", async () => {
    const dir = await mkdtemp(join(tmpdir(), "migrate-"));
    const file = join(dir, "flags.yaml");
    await writeFile(file, "coschedule: pipelineruns\n");
    const out = await runMigrate({ file, tektonNamespace: "tekton-pipelines", namespace: ["ci"] });
    const [doc] = parseAllDocuments(out).map((d) => d.toJS());
    expect(doc).to.deep.include({ kind: "AffinityPolicy", spec: { mode: "pipelineruns" } });
    expect(doc.metadata).to.deep.equal({ name: "default", namespace: "ci" });
  });

  it("sets exit code 2 and writes the error to stderr for an invalid combination", async () => {
    const dir = await mkdtemp(join(tmpdir(), "migrate-"));
    const file = join(dir, "flags.yaml");
    await writeFile(file, 'disable-affinity-assistant: "false"\ncoschedule: pipelineruns\n');
    const program = new Command().exitOverride();
    registerMigrateCommand(program);
    const stderr: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    const previousExit = process.exitCode;
    process.stderr.write = ((chunk: string) => {
      stderr.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      await program.parseAsync(["node", "cli", "migrate", "--file", file]);
      expect(process.exitCode).to.equal(2);
    } finally {
      process.stderr.write = original;
      process.exitCode = previousExit;
    }
    expect(stderr.join("")).to.contain("invalid during migration");
  });
});
