// Mocha root hooks: stop the shared e2e environment after the last test, pass or fail.
// (Ctrl-C and crashes are covered by the cluster's own exit handlers.)

import { tearDown } from "./env.js";

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await tearDown();
  },
};
