// `npm run generate`: regenerates src/api/generated/affinitypolicy.ts from crds/affinitypolicy.yaml.
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, relative } from "node:path";
import { GENERATED_PATH, generateTypesSource } from "./generate-types-lib.js";

const source = await generateTypesSource();
await mkdir(dirname(GENERATED_PATH), { recursive: true });
await writeFile(GENERATED_PATH, source);
console.log(`wrote ${relative(process.cwd(), GENERATED_PATH)}`);
