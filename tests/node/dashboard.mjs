// Browser test of the built-in dashboard: opens it in headless Chromium, enters the API key,
// waits for the data, and prints what the page shows as JSON (KPI tiles, ladder counts) so the
// Python test can compare them with the API's own answers. Saves a screenshot.
// Usage: node dashboard.mjs URL KEY SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [url, key, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.fill("#key", key);
  await page.click("#load");
  await page.waitForSelector("body[data-loaded=true]", { timeout: 20000 });
  const shown = await page.evaluate(() => {
    const out = { kpi: {}, stages: {}, cohort_rows: document.querySelectorAll("#cohorts tr").length - 1,
                  chart_points: document.querySelectorAll("#chart polyline").length };
    for (const el of document.querySelectorAll("[data-testid^=kpi-]")) out.kpi[el.dataset.testid.slice(4)] = el.textContent;
    for (const el of document.querySelectorAll("[data-testid^=stage-]")) out.stages[el.dataset.testid.slice(6)] = Number(el.textContent);
    out.error = document.getElementById("error").textContent;
    return out;
  });
  shown.page_errors = errors;
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify(shown));
} finally {
  await browser.close();
}
