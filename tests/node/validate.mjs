// Validates an OpenAPI document (path or "-" for stdin) with @seriousme/openapi-schema-validator.
// Exit 0 when valid; prints the errors and exits 1 otherwise.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";

const src = process.argv[2] && process.argv[2] !== "-" ? readFileSync(process.argv[2], "utf8") : readFileSync(0, "utf8");
const validator = new Validator();
const res = await validator.validate(JSON.parse(src));
if (!res.valid) {
  console.error(JSON.stringify(res.errors, null, 2));
  process.exit(1);
}
console.log(`valid OpenAPI ${validator.version}`);
