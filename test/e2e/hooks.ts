// Mocha root hooks: stop the shared e2e environment after the last test, pass or fail.
// (Ctrl-C and crashes are covered by the cluster's and the replicas' own exit handlers.)

import { tearDown } from "./env.js";

// SIGTERM's default action skips "exit" handlers, which would leave controller replicas running
// against the next test run's Redis; exiting turns it into an exit those handlers see.
process.once("SIGTERM", () => process.exit(143));

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await tearDown();
  },
};
