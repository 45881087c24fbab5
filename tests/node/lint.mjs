// Lints an OpenAPI document with Redocly's recommended ruleset (the rules client generators
// need: operationIds, security on every operation, 4xx responses, ...), as `redocly lint`
// does. Usage: node lint.mjs FILE|-  Prints every problem; exits 1 on any error or warning.
import { readFileSync } from "node:fs";
import { createConfig, lintFromString } from "@redocly/openapi-core";

const path = process.argv[2];
const source = readFileSync(path === "-" ? 0 : path, "utf8");
const config = await createConfig({ extends: ["recommended"] });
const problems = await lintFromString({ source, absoluteRef: "/openapi.json", config });
for (const p of problems) {
  const where = p.location.map((l) => l.pointer).join(", ");
  console.log(`${p.severity} ${p.ruleId}: ${p.message} at ${where}`);
}
const errors = problems.filter((p) => p.severity === "error").length;
const warnings = problems.filter((p) => p.severity === "warn").length;
console.log(`${errors} errors, ${warnings} warnings`);
process.exit(errors + warnings > 0 ? 1 : 0);
