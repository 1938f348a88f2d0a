import { readFile } from "node:fs/promises";
import { expect } from "chai";
import { API_REFERENCE_PATH, generateApiReference } from "../../scripts/generate-api-reference-lib.js";

describe("API reference", () => {
  it("docs/api-reference.md is up to date with crds/affinitypolicy.yaml (run `npm run generate:docs`)", async () => {
    const committed = await readFile(API_REFERENCE_PATH, "utf8");
    const fresh = await generateApiReference();
    expect(
      committed === fresh,
      "docs/api-reference.md is stale: run `npm run generate:docs` and commit the result",
    ).to.equal(true);
  });

  it("has a table per object with defaults, enums and descriptions", async () => {
    const fresh = await generateApiReference();
    for (const table of [
      "spec",
      "spec.pipelineRunSelector",
      "spec.placeholder.tolerations[]",
      "status.conditions[]",
    ])
      expect(fresh).to.contain(`## \`${table}\``);
    expect(fresh).to.match(
      /\| `spec.mode` \(required\) \| string \| {2}\| `workspaces`, `pipelineruns`, `isolate-pipelinerun`, `disabled` \| Co-scheduling mode/,
    );
    expect(fresh).to.match(
      /\| `spec.strategy` \| string \| `"podAffinity"` \| `podAffinity`, `nodePinning` \|/,
    );
    expect(fresh).to.contain("| `spec.placeholder.resources.requests` | map of integer or string |");
    expect(fresh).to.contain("## Validation rules");
  });
});
