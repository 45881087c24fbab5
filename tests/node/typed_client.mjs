// Generates a typed client from the served OpenAPI document, as a client's engineers would
// (openapi-typescript for the types, openapi-fetch for the calls), type-checks a small program
// written against it with the TypeScript compiler in strict mode, and runs it against the
// server: one ingest and one report. Prints the program's JSON result.
// Usage: node typed_client.mjs BASE_URL API_KEY
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const [base, key] = process.argv.slice(2);
const doc = await (await fetch(new URL("/openapi.json", base))).json();
// inside tests/node, so that the program finds openapi-fetch in node_modules
const dir = mkdtempSync(join(here, ".typed-client-"));
try {
  // defaultNonNullable off: a field with a default (an order's status) stays optional in a
  // request body, as the document says, instead of required as openapi-typescript 7 assumes
  writeFileSync(join(dir, "schema.d.ts"), astToString(await openapiTS(doc, { defaultNonNullable: false })));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  writeFileSync(join(dir, "client.ts"), `
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

declare const process: { argv: string[] };
const [base, key] = process.argv.slice(2);
const client = createClient<paths>({ baseUrl: base, headers: { Authorization: "Bearer " + key } });

const order = await client.POST("/v1/orders", {
  body: { order_id: "typed-1", customer_id: "typed-c1", placed_at: "2026-01-05T10:00:00Z", total: "49.90" },
});
const summary = await client.GET("/v1/metrics/summary", {
  params: { query: { from: "2026-01-01", to: "2026-02-01" } },
});
const missing = await client.GET("/v1/customers/{id}", { params: { path: { id: "nobody" } } });
console.log(JSON.stringify({
  order_status: order.response.status, order: order.data ?? null,
  summary_status: summary.response.status, summary: summary.data ?? null,
  missing_status: missing.response.status, missing_error: missing.error ?? null,
}));
`);
  const tsc = join(here, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "--strict", "--noUnusedLocals", "--target", "es2022", "--module", "nodenext",
    "--moduleResolution", "nodenext", "--skipLibCheck", "false", "--outDir", dir, join(dir, "client.ts")],
    { stdio: ["ignore", "inherit", "inherit"] });
  execFileSync(process.execPath, [join(dir, "client.js"), base, key], { stdio: ["ignore", "inherit", "inherit"] });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
