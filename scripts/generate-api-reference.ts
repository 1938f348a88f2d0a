// `npm run generate:docs`: regenerates docs/api-reference.md from crds/affinitypolicy.yaml.
import { writeFile } from "node:fs/promises";
import { relative } from "node:path";
import { API_REFERENCE_PATH, generateApiReference } from "./generate-api-reference-lib.js";

await writeFile(API_REFERENCE_PATH, await generateApiReference());
console.log(`wrote ${relative(process.cwd(), API_REFERENCE_PATH)}`);
