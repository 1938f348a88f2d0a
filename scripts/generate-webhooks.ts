// npm run generate: writes deploy/base/webhooks.yaml (see generate-webhooks-lib.ts).

import { writeFileSync } from "node:fs";
import { WEBHOOKS_PATH, webhooksManifest } from "./generate-webhooks-lib.js";

writeFileSync(WEBHOOKS_PATH, webhooksManifest());
console.log(`wrote ${WEBHOOKS_PATH}`);
