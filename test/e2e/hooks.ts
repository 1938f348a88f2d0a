// Mocha root hooks:
//  - after each test, the volume invariant (volume-invariants.ts) over what the cluster showed while it
//    ran; a violation is reported at once and fails the run at its end (a failing afterEach would skip
//    every later test);
//  - stop the shared e2e environment after the last test, pass or fail.
// (Ctrl-C and crashes are covered by the cluster's and the replicas' own exit handlers.)

import { e2eIfStarted, tearDown } from "./env.js";

let testStarted = 0;
const violated: string[] = [];
const reported = new Set<string>();

// SIGTERM's default action skips "exit" handlers, which would leave controller replicas running
// against the next test run's Redis; exiting turns it into an exit those handlers see.
process.once("SIGTERM", () => process.exit(143));

export const mochaHooks = {
  beforeEach() {
    testStarted = Date.now();
  },
  async afterEach(this: Mocha.Context) {
    const env = await e2eIfStarted();
    if (!env) return;
    for (const v of env.volumes.violations(testStarted)) {
      if (reported.has(v.id)) continue;
      reported.add(v.id);
      const line = `${this.currentTest?.fullTitle()}: ${v.kind}: ${v.message}`;
      console.error(`  volume invariant violated: ${line}`);
      violated.push(line);
    }
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await tearDown();
    if (violated.length) {
      throw new Error(
        `the volume invariant was violated during ${violated.length} test(s):\n${violated.join("\n")}`,
      );
    }
  },
};
