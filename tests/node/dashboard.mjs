// Browser test of the built-in dashboard: opens it in headless Chromium with the key in the
// address's fragment, walks it through a fixed scenario and prints, as one JSON document, what
// every panel showed at each step (the raw values of its data-* attributes and some texts), so
// that the Python test (tests/integration/test_dashboard.py) can hold them to the API's own
// replies for the same period. Saves full-page screenshots at desktop and phone widths.
// Every wait is for a condition, with a generous deadline: no step depends on the machine's speed.
// Usage: node dashboard.mjs BASE_URL KEY ARTIFACTS_DIR
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, key, artifacts] = process.argv.slice(2);
const DEADLINE = 60000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});

// Runs action, then waits until the page has finished a refresh begun by it.
async function settle(page, action) {
  const before = await page.evaluate(() => Number(document.body.dataset.generation));
  await action();
  await page.waitForFunction((g) => Number(document.body.dataset.generation) > g && document.body.dataset.busy === "0",
                             before, { timeout: DEADLINE });
}

function capture(page) {
  return page.evaluate(() => {
    const all = (sel) => [...document.querySelectorAll(sel)];
    const num = (s) => (s === "" || s === undefined ? null : Number(s));
    const out = { from: document.body.dataset.from, to: document.body.dataset.to, unit: document.getElementById("chart").dataset.unit,
                  prev_from: document.getElementById("kpis").dataset.prevFrom, kpi: {}, stages: {} };
    for (const t of all(".tile")) {
      out.kpi[t.dataset.kpi] = { value: num(t.dataset.value), previous: num(t.dataset.previous),
                                 text: t.querySelector(".v").textContent, delta: (t.querySelector("[data-testid^=delta-]") || {}).textContent || null };
    }
    out.points = all("[data-testid=point]").map((c) => ({ series: c.dataset.series, period: c.dataset.period, value: num(c.dataset.value) }));
    out.y_ticks = all("[data-testid=y-tick]").map((t) => t.textContent);
    out.x_ticks = all("[data-testid=x-tick]").map((t) => t.textContent);
    out.cohort_cells = all("[data-testid=cohort-cell]").map((c) => ({ cohort: c.dataset.cohort, period: Number(c.dataset.period),
                                                                       value: num(c.dataset.value), text: c.textContent, future: c.classList.contains("future") }));
    for (const s of all("[data-testid^=stage-]")) out.stages[s.dataset.testid.slice(6)] = num(s.dataset.value);
    out.transitions = all("[data-testid=transition]").map((t) => [t.dataset.from, t.dataset.to, num(t.dataset.value)]);
    out.rfm = all("[data-testid=rfm-cell]").map((a) => [Number(a.dataset.r), Number(a.dataset.f), num(a.dataset.value)]);
    out.bins = all("[data-testid=clv-bin]").map((b) => num(b.dataset.value));
    out.list_query = document.getElementById("list").dataset.query;
    out.list = all("[data-testid=list-row]").map((r) => r.dataset.customer);
    out.breakdown = all("#breakdown-table tr[data-value]").map((r) => [r.dataset.value, num(r.dataset.customers)]);
    const err = document.getElementById("error");
    out.error = err.classList.contains("open") ? { detail: err.querySelector("[data-testid=error-detail]").textContent,
                                                   fields: all("[data-testid=error-field]").map((f) => f.textContent) } : null;
    out.hash = location.hash;
    out.overflow = document.documentElement.scrollWidth > window.innerWidth;
    return out;
  });
}

const result = { steps: {} };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US", acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/#key=${key}`);
  // the start: the shop's zone, then the reports and the at-risk list
  await page.waitForFunction(() => document.querySelectorAll(".tile").length > 0 && document.querySelector("[data-testid=list-row], #list .empty")
                             && document.body.dataset.busy === "0", null, { timeout: DEADLINE });
  result.steps.start = await capture(page);
  result.session_key = await page.evaluate(() => sessionStorage.getItem("retentiond.key"));

  // hover a chart point: the tooltip says its values
  const hit = page.locator("#chart rect.hit").nth(3);
  await hit.hover();
  await page.waitForFunction(() => document.getElementById("tooltip").style.display === "block", null, { timeout: DEADLINE });
  result.tooltip = await page.evaluate(() => ({ text: document.getElementById("tooltip").textContent, period: document.getElementById("tooltip").dataset.period }));

  // the chart by week, then the whole history by quarter
  await settle(page, () => page.click("#unit button[data-v=week]"));
  result.steps.week = await capture(page);
  await settle(page, () => page.selectOption("#preset", "all"));
  await settle(page, () => page.click("#unit button[data-v=quarter]"));
  result.steps.all_quarter = await capture(page);
  for (const mode of ["count", "revenue", "cumulative", "share"]) {
    await settle(page, () => page.click(`#cohort-mode button[data-v=${mode}]`));
    result.steps["cohorts_" + mode] = (await capture(page)).cohort_cells;
  }
  await settle(page, () => page.click("#unit button[data-v=month]"));
  result.steps.all_month = await capture(page);

  // a breakdown by channel, then one channel as a filter of every report
  await settle(page, () => page.selectOption("#breakdown", "channel"));
  result.steps.breakdown = await capture(page);
  await settle(page, () => page.click("#breakdown-table tr[data-value=search]"));
  result.steps.filtered = await capture(page);
  await settle(page, () => page.click("[data-testid=filter] button"));
  await settle(page, () => page.selectOption("#breakdown", ""));

  await page.screenshot({ path: join(artifacts, "dashboard-desktop.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => ["chart", "histogram"].every((id) => {
    const svg = document.getElementById(id);
    return Number(svg.dataset.width) === Math.max(300, svg.clientWidth);
  }), null, { timeout: DEADLINE });
  result.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  await page.screenshot({ path: join(artifacts, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.waitForFunction(() => Number(document.getElementById("chart").dataset.width) === document.getElementById("chart").clientWidth,
                             null, { timeout: DEADLINE });

  // an RFM cell opens its list; its next page; the CSV of the list
  await settle(page, () => page.click("[data-testid=rfm-cell][data-r='5'][data-f='5']"));
  result.steps.rfm_list = await capture(page);
  await settle(page, () => page.click("#next"));
  result.steps.rfm_list_page2 = await capture(page);
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: DEADLINE }), page.click("#csv")]);
  result.csv = { name: download.suggestedFilename(), body: readFileSync(await download.path(), "utf8") };

  // a customer's page
  const first = result.steps.rfm_list_page2.list[0];
  await settle(page, () => page.click(`[data-testid=list-row][data-customer='${first}']`));
  result.customer = await page.evaluate(() => {
    const p = {};
    for (const d of document.querySelectorAll("[data-testid^=profile-]")) p[d.dataset.testid.slice(8)] = d.textContent;
    return { id: document.getElementById("profile").dataset.customer, profile: p,
             history: [...document.querySelectorAll("[data-testid=history-row]")].map((r) => [...r.cells].map((c) => c.textContent)),
             orders: [...document.querySelectorAll("[data-testid=order-row]")].map((r) => r.dataset.order) };
  });
  if (await page.isVisible("#more-orders")) {
    await settle(page, () => page.click("#more-orders"));
    result.customer.orders_more = await page.evaluate(() => [...document.querySelectorAll("[data-testid=order-row]")].map((r) => r.dataset.order));
  }

  // a period the API refuses: its problem detail and field errors are shown
  await page.fill("#from", "2026-06-01");
  await page.fill("#to", "2026-01-01");
  await settle(page, () => page.click("#apply"));
  result.steps.bad_period = await capture(page);
  result.page_errors = errors;

  // a key the API does not know
  const other = await context.newPage();
  await other.goto(`${base}/#key=rk_0000000000000000_notakey`);
  await other.waitForFunction(() => document.getElementById("error").classList.contains("open") && document.body.dataset.busy === "0",
                              null, { timeout: DEADLINE });
  result.bad_key = await capture(other);
  result.bad_key.key_form = await other.isVisible("#keyform");
} finally {
  await browser.close();
  console.log(JSON.stringify(result)); // what it got so far, also when a step failed
}
