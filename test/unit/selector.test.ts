import { expect } from "chai";
import {
  matchesLabelSelector,
  requirementsSatisfiable,
  selectorSpecificity,
  selectorsOverlap,
} from "../../src/api/selector.js";

describe("matchesLabelSelector", () => {
  const labels = { app: "web", tier: "frontend" };

  it("matches everything with an absent or empty selector", () => {
    expect(matchesLabelSelector(undefined, labels)).to.equal(true);
    expect(matchesLabelSelector({}, labels)).to.equal(true);
    expect(matchesLabelSelector({ matchLabels: {}, matchExpressions: [] }, undefined)).to.equal(true);
  });

  it("requires every matchLabels pair", () => {
    expect(matchesLabelSelector({ matchLabels: { app: "web" } }, labels)).to.equal(true);
    expect(matchesLabelSelector({ matchLabels: { app: "web", tier: "backend" } }, labels)).to.equal(false);
    expect(matchesLabelSelector({ matchLabels: { missing: "x" } }, labels)).to.equal(false);
  });

  it("implements In", () => {
    const sel = { matchExpressions: [{ key: "app", operator: "In" as const, values: ["web", "api"] }] };
    expect(matchesLabelSelector(sel, labels)).to.equal(true);
    expect(matchesLabelSelector(sel, { app: "db" })).to.equal(false);
    expect(matchesLabelSelector(sel, {})).to.equal(false);
  });

  it("implements NotIn, which matches when the label is absent", () => {
    const sel = { matchExpressions: [{ key: "app", operator: "NotIn" as const, values: ["web"] }] };
    expect(matchesLabelSelector(sel, labels)).to.equal(false);
    expect(matchesLabelSelector(sel, { app: "api" })).to.equal(true);
    expect(matchesLabelSelector(sel, {})).to.equal(true);
  });

  it("implements Exists and DoesNotExist, including empty values", () => {
    const exists = { matchExpressions: [{ key: "tier", operator: "Exists" as const }] };
    const absent = { matchExpressions: [{ key: "tier", operator: "DoesNotExist" as const }] };
    expect(matchesLabelSelector(exists, labels)).to.equal(true);
    expect(matchesLabelSelector(exists, { tier: "" })).to.equal(true);
    expect(matchesLabelSelector(exists, { app: "web" })).to.equal(false);
    expect(matchesLabelSelector(absent, labels)).to.equal(false);
    expect(matchesLabelSelector(absent, { app: "web" })).to.equal(true);
  });

  it("ANDs matchLabels and matchExpressions", () => {
    const sel = {
      matchLabels: { app: "web" },
      matchExpressions: [{ key: "tier", operator: "NotIn" as const, values: ["frontend"] }],
    };
    expect(matchesLabelSelector(sel, labels)).to.equal(false);
    expect(matchesLabelSelector(sel, { app: "web", tier: "backend" })).to.equal(true);
  });

  it("never matches with a malformed requirement, as Kubernetes rejects the selector", () => {
    expect(
      matchesLabelSelector({ matchExpressions: [{ key: "app", operator: "In", values: [] }] }, labels),
    ).to.equal(false);
    expect(
      matchesLabelSelector(
        { matchExpressions: [{ key: "app", operator: "Exists", values: ["web"] }] },
        labels,
      ),
    ).to.equal(false);
  });

  it("does not treat inherited object properties as labels", () => {
    const sel = { matchExpressions: [{ key: "toString", operator: "Exists" as const }] };
    expect(matchesLabelSelector(sel, {})).to.equal(false);
  });
});

describe("selectorSpecificity", () => {
  it("counts matchLabels entries and matchExpressions", () => {
    expect(selectorSpecificity(undefined)).to.equal(0);
    expect(selectorSpecificity({})).to.equal(0);
    expect(selectorSpecificity({ matchLabels: { a: "1", b: "2" } })).to.equal(2);
    expect(
      selectorSpecificity({ matchLabels: { a: "1" }, matchExpressions: [{ key: "b", operator: "Exists" }] }),
    ).to.equal(2);
  });
});

describe("selectorsOverlap", () => {
  it("overlaps when a run could satisfy both", () => {
    expect(selectorsOverlap(undefined, { matchLabels: { a: "1" } })).to.equal(true);
    expect(selectorsOverlap({ matchLabels: { a: "1" } }, { matchLabels: { b: "2" } })).to.equal(true);
    expect(
      selectorsOverlap(
        { matchExpressions: [{ key: "a", operator: "In", values: ["1", "2"] }] },
        { matchExpressions: [{ key: "a", operator: "NotIn", values: ["1"] }] },
      ),
    ).to.equal(true);
  });

  it("does not overlap when the selectors provably conflict", () => {
    expect(selectorsOverlap({ matchLabels: { a: "1" } }, { matchLabels: { a: "2" } })).to.equal(false);
    expect(
      selectorsOverlap(
        { matchExpressions: [{ key: "a", operator: "In", values: ["1", "2"] }] },
        { matchExpressions: [{ key: "a", operator: "In", values: ["3"] }] },
      ),
    ).to.equal(false);
    expect(
      selectorsOverlap(
        { matchExpressions: [{ key: "a", operator: "Exists" }] },
        { matchExpressions: [{ key: "a", operator: "DoesNotExist" }] },
      ),
    ).to.equal(false);
    expect(
      selectorsOverlap(
        { matchLabels: { a: "1" } },
        { matchExpressions: [{ key: "a", operator: "NotIn", values: ["1"] }] },
      ),
    ).to.equal(false);
  });

  it("treats a selector contradicting itself as unsatisfiable", () => {
    expect(
      requirementsSatisfiable([
        { key: "a", operator: "In", values: ["1"] },
        { key: "a", operator: "In", values: ["2"] },
      ]),
    ).to.equal(false);
    expect(requirementsSatisfiable([{ key: "a", operator: "NotIn", values: ["1"] }])).to.equal(true);
  });
});
