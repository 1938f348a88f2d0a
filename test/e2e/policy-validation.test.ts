// Twenty-plus invalid AffinityPolicies against the real apiserver, each rejected with the message that
// says what is wrong (by the schema, a CEL rule, or our validating webhook), and a valid one defaulted
// as documented. Nothing is stored for a rejected policy.

import { expect } from "chai";
import { GROUP, PLURAL, VERSION } from "../../src/api/constants.js";
import type { AffinityPolicy } from "../../src/api/types.js";
import { e2e, waitForGate } from "./env.js";
import { createNamespace } from "./helpers.js";

const INVALID: [string, Record<string, unknown>, RegExp][] = [
  ["no mode", {}, /spec\.mode: Required value/],
  ["unknown mode", { mode: "sometimes" }, /Unsupported value: \\?"sometimes/],
  ["unknown strategy", { mode: "pipelineruns", strategy: "fast" }, /spec\.strategy: Unsupported value/],
  [
    "isolation without isolate mode",
    { mode: "workspaces", isolation: { scope: "cluster" } },
    /spec\.isolation only applies/,
  ],
  [
    "unknown isolation scope",
    { mode: "isolate-pipelinerun", isolation: { scope: "galaxy" } },
    /spec\.isolation\.scope: Unsupported value/,
  ],
  [
    "placeholder with disabled",
    { mode: "disabled", placeholder: { image: "pause" } },
    /spec\.placeholder has no effect/,
  ],
  ["unknown field", { mode: "pipelineruns", colour: "blue" }, /unknown field \\?"spec\.colour/],
  [
    "selector operator",
    { mode: "pipelineruns", pipelineRunSelector: { matchExpressions: [{ key: "a", operator: "Near" }] } },
    /Unsupported value: \\?"Near/,
  ],
  [
    "In without values",
    {
      mode: "pipelineruns",
      pipelineRunSelector: { matchExpressions: [{ key: "team", operator: "In", values: [] }] },
    },
    /operator In needs at least one value/,
  ],
  [
    "Exists with values",
    {
      mode: "pipelineruns",
      pipelineRunSelector: { matchExpressions: [{ key: "team", operator: "Exists", values: ["x"] }] },
    },
    /operator Exists takes no values/,
  ],
  [
    "bad selector key",
    { mode: "pipelineruns", pipelineRunSelector: { matchLabels: { "bad key!": "x" } } },
    /spec\.pipelineRunSelector\.matchLabels/,
  ],
  [
    "bad selector value",
    { mode: "pipelineruns", pipelineRunSelector: { matchLabels: { team: "no spaces allowed" } } },
    /at most 63 characters/,
  ],
  ["bad topologyKey", { mode: "pipelineruns", topologyKey: "not a key" }, /spec\.topologyKey/],
  [
    "bad service account",
    { mode: "pipelineruns", placeholder: { serviceAccountName: "Builder_SA" } },
    /spec\.placeholder\.serviceAccountName/,
  ],
  [
    "bad priority class",
    { mode: "pipelineruns", placeholder: { priorityClassName: "High Priority" } },
    /spec\.placeholder\.priorityClassName/,
  ],
  [
    "bad pull secret",
    { mode: "pipelineruns", placeholder: { imagePullSecrets: [{ name: "My.Secret_" }] } },
    /spec\.placeholder\.imagePullSecrets/,
  ],
  [
    "bad nodeSelector key",
    { mode: "pipelineruns", placeholder: { nodeSelector: { "-leading-dash": "x" } } },
    /spec\.placeholder\.nodeSelector/,
  ],
  [
    "Exists toleration with value",
    { mode: "pipelineruns", placeholder: { tolerations: [{ key: "k", operator: "Exists", value: "v" }] } },
    /operator Exists matches any value/,
  ],
  [
    "unknown taint effect",
    {
      mode: "pipelineruns",
      placeholder: { tolerations: [{ key: "k", operator: "Exists", effect: "Sometimes" }] },
    },
    /(effect \\?"Sometimes\\?" is not a taint effect|Unsupported value: \\?"Sometimes)/,
  ],
  [
    "tolerationSeconds without NoExecute",
    {
      mode: "pipelineruns",
      placeholder: {
        tolerations: [{ key: "k", operator: "Exists", effect: "NoSchedule", tolerationSeconds: 5 }],
      },
    },
    /tolerationSeconds/,
  ],
  [
    "unparsable quantity",
    { mode: "pipelineruns", placeholder: { resources: { requests: { cpu: "12 pizzas" } } } },
    /is not a Kubernetes quantity/,
  ],
  [
    "request above limit",
    {
      mode: "pipelineruns",
      placeholder: { resources: { requests: { memory: "2Gi" }, limits: { memory: "1Gi" } } },
    },
    /is above limit/,
  ],
  [
    "whitespace image",
    { mode: "pipelineruns", placeholder: { image: "pause latest" } },
    /contains whitespace/,
  ],
];

describe("AffinityPolicy validation on the real apiserver", function () {
  this.timeout(120_000);

  for (const [i, [what, spec, expected]] of INVALID.entries()) {
    it(`rejects: ${what}`, async () => {
      const { cluster } = await e2e();
      const ns = await namespace();
      const name = `invalid-${i}`;
      const error = await cluster.clients.custom
        .createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: ns,
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: "AffinityPolicy", metadata: { name }, spec },
          // As kubectl asks: unknown fields are errors, not silently dropped.
          fieldValidation: "Strict",
        })
        .then(
          () => "accepted",
          (err: { body?: string }) => String(err.body ?? err),
        );
      expect(error).to.match(expected);
      await cluster.clients.custom
        .getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: ns,
          name,
        })
        .then(
          () => expect.fail("a rejected policy was stored"),
          (err: { code?: number }) => expect(err.code).to.equal(404),
        );
    });
  }

  it("accepts a valid policy and fills in the documented defaults", async () => {
    const { cluster } = await e2e();
    const ns = await namespace();
    const created = (await cluster.clients.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "AffinityPolicy",
        metadata: { name: "ok" },
        spec: { mode: "isolate-pipelinerun", isolation: {} },
      },
    })) as AffinityPolicy;
    expect(created.spec.strategy).to.equal("podAffinity");
    expect(created.spec.topologyKey).to.equal("kubernetes.io/hostname");
    expect(created.spec.isolation?.scope).to.equal("cluster");
  });

  // A replica that is starting (no webhook configuration patched yet) or every replica down: what needs
  // no other object is still checked, by the CRD's schema and CEL rules, with the same explanations.
  it("refuses invalid placeholders by the schema alone, with no replica up", async () => {
    const env = await e2e();
    const ns = await namespace();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ resources: { requests: { cpu: "lots" } } }, /requests\[cpu\].*lots.*is not a Kubernetes quantity/],
      [
        { resources: { requests: { memory: "-1Gi" } } },
        /-1Gi.* is negative; resource quantities must be zero or more/,
      ],
      [{ resources: { requests: { memory: "2Gi" }, limits: { memory: "1Gi" } } }, /a request is above limit/],
      [{ image: "" }, /image is empty/],
      [{ image: "pause latest" }, /image contains whitespace/],
      [{ serviceAccountName: "Builder_SA" }, /serviceAccountName must be a lowercase DNS subdomain/],
      [{ priorityClassName: "High" }, /priorityClassName must be a lowercase DNS subdomain/],
    ];
    await env.controller.stop();
    try {
      for (const [i, [placeholder, expected]] of cases.entries()) {
        const error = await env.cluster.clients.custom
          .createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            namespace: ns,
            body: {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: "AffinityPolicy",
              metadata: { name: `schema-${i}` },
              spec: { mode: "pipelineruns", placeholder },
            },
          })
          .then(
            () => "accepted",
            (err: { body?: string }) => String(err.body ?? err),
          );
        expect(error, JSON.stringify(placeholder)).to.match(expected);
        // Refused by the schema, not because our webhook could not be called.
        expect(error).to.not.contain("failed calling webhook");
      }
    } finally {
      await env.controller.start();
      await waitForGate(env.cluster);
    }
  });

  let shared: string | undefined;
  async function namespace(): Promise<string> {
    const { cluster } = await e2e();
    shared ??= await createNamespace(cluster, "validation");
    return shared;
  }
});
