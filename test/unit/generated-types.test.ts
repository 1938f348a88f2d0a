import { readFile } from "node:fs/promises";
import { expect } from "chai";
import { GENERATED_PATH, generateTypesSource } from "../../scripts/generate-types-lib.js";

describe("generated types", () => {
  it("src/api/generated/affinitypolicy.ts is up to date with crds/affinitypolicy.yaml (run `npm run generate`)", async () => {
    const committed = await readFile(GENERATED_PATH, "utf8");
    const fresh = await generateTypesSource();
    expect(fresh).to.contain("export interface AffinityPolicySpec");
    expect(fresh).to.contain("export interface AffinityPolicyStatus");
    expect(
      committed === fresh,
      "generated file is stale: run `npm run generate` and commit the result",
    ).to.equal(true);
  });

  it("maps int-or-string to number | string and drops x-kubernetes keys", async () => {
    const fresh = await generateTypesSource();
    expect(fresh).to.contain("(number | string) | undefined");
    expect(fresh).not.to.contain("x-kubernetes");
  });
});
