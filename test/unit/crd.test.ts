import { readFile } from "node:fs/promises";
import { expect } from "chai";
import { parse } from "yaml";
import { CRD_PATH } from "../../scripts/generate-types-lib.js";

type Schema = Record<string, unknown>;

async function loadCrd(): Promise<Schema> {
  return parse(await readFile(CRD_PATH, "utf8")) as Schema;
}

function v1alpha1(crd: Schema): Schema {
  const versions = (crd.spec as Schema).versions as Schema[];
  return versions.find((v) => v.name === "v1alpha1")!;
}

/** Every schema node reachable from `schema` with its path, except the root. */
function walk(schema: Schema, path: string, out: [string, Schema][] = []): [string, Schema][] {
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, Schema>)) {
    out.push([`${path}.${name}`, child]);
    walk(child, `${path}.${name}`, out);
  }
  if (schema.items) {
    out.push([`${path}[]`, schema.items as Schema]);
    walk(schema.items as Schema, `${path}[]`, out);
  }
  if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
    out.push([`${path}{}`, schema.additionalProperties as Schema]);
    walk(schema.additionalProperties as Schema, `${path}{}`, out);
  }
  return out;
}

describe("AffinityPolicy CRD", () => {
  it("has a description on every schema property", async () => {
    const schema = (v1alpha1(await loadCrd()).schema as Schema).openAPIV3Schema as Schema;
    const nodes = walk(schema, "");
    expect(nodes.length).to.be.greaterThan(40);
    // The apiserver forbids any key but `type` on the root's metadata, so it alone has no description.
    const missing = nodes.filter(
      ([p, s]) => p !== ".metadata" && (typeof s.description !== "string" || s.description.trim() === ""),
    );
    expect(missing.map(([p]) => p)).to.deep.equal([]);
  });

  it("names, scope, version and subresources are as designed", async () => {
    const crd = await loadCrd();
    const spec = crd.spec as Schema;
    expect((crd.metadata as Schema).name).to.equal("affinitypolicies.affinity.tekton.dev");
    expect(spec.scope).to.equal("Namespaced");
    expect(spec.names).to.deep.include({
      kind: "AffinityPolicy",
      shortNames: ["afp"],
      categories: ["tekton"],
    });
    const v = v1alpha1(crd);
    expect(v).to.include({ served: true, storage: true });
    expect(v.subresources).to.deep.equal({ status: {} });
    const columns = (v.additionalPrinterColumns as Schema[]).map((c) => [c.name, c.jsonPath]);
    expect(columns).to.deep.equal([
      ["Mode", ".spec.mode"],
      ["Strategy", ".spec.strategy"],
      ["Ready", '.status.conditions[?(@.type=="Ready")].status'],
      ["Active", ".status.activeRuns"],
      ["Age", ".metadata.creationTimestamp"],
    ]);
  });

  it("declares enums, defaults, CEL rules and list-map conditions", async () => {
    const root = (v1alpha1(await loadCrd()).schema as Schema).openAPIV3Schema as Schema;
    const spec = (root.properties as Record<string, Schema>).spec!;
    const props = spec.properties as Record<string, Schema>;
    expect(spec.required).to.deep.equal(["mode"]);
    expect(props.mode!.enum).to.deep.equal(["workspaces", "pipelineruns", "isolate-pipelinerun", "disabled"]);
    expect(props.strategy).to.deep.include({ default: "podAffinity", enum: ["podAffinity", "nodePinning"] });
    expect(props.topologyKey!.default).to.equal("kubernetes.io/hostname");
    expect((props.isolation!.properties as Record<string, Schema>).scope).to.deep.include({
      default: "cluster",
      enum: ["cluster", "namespace"],
    });
    const rules = spec["x-kubernetes-validations"] as { rule: string; message: string }[];
    expect(rules.map((r) => r.rule)).to.deep.equal([
      "!has(self.isolation) || self.mode == 'isolate-pipelinerun'",
      "!has(self.reserve) || self.reserve == 'None' || self.mode == 'pipelineruns' || self.mode == 'isolate-pipelinerun'",
      "!has(self.placeholder) || self.mode != 'disabled'",
    ]);
    expect(props.reserve).to.deep.include({ default: "None", enum: ["None", "LargestTask"] });
    for (const r of rules) expect(r.message).to.match(/remove spec\.\w+/);
    const status = (root.properties as Record<string, Schema>).status!;
    const conditions = (status.properties as Record<string, Schema>).conditions!;
    expect(conditions).to.deep.include({
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
    });
  });
});
