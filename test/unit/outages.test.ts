import { expect } from "chai";
import { Outages } from "../../src/queue/outages.js";

describe("Outages", () => {
  it("sums the time of a span spent in outages, an open one lasting until the span's end", () => {
    const o = new Outages();
    o.begin(100);
    o.begin(150); // the same outage, reported by another connection
    o.end(200);
    o.end(250); // already over
    o.begin(400);
    expect(o.down).to.equal(true);
    expect(o.overlapMs(0, 1000)).to.equal(100 + 600);
    expect(o.overlapMs(150, 450)).to.equal(50 + 50);
    expect(o.overlapMs(200, 400)).to.equal(0);
    o.end(500);
    expect(o.down).to.equal(false);
    expect(o.overlapMs(0, 1000)).to.equal(200);
  });
});
