// The web console (aegis-console --web) in a real headless Chromium, driven by
// tests/e2e/test_web_console.py. Settings come in the environment:
//   OPERATOR_URL     a console served with the admin token and a login secret
//   OPERATOR_SECRET  that secret (typed into the login form)
//   REFUSED_URL      a console served with a token the router refuses
//   READER_URL       a console served with a read-only token
//   SCREENSHOT       where to write a PNG of the operator's page
// Each check prints one line "ok <what>"; at "wait <what>" the script reads one
// line from stdin before going on (the test changes the registry meanwhile).
// The screenshot is taken last, with the filter cleared and events in the pane.
// Any failure prints the screen as text and exits 1.
// With HOLD set (bench/web_console.py), it only opens OPERATOR_URL (no login),
// says "ok page open" once the services show, and keeps the page open until
// stdin gives a line.
//
// textual-serve draws with xterm.js into a canvas, so the page's DOM holds no
// screen text. The page's own xterm Terminal is caught as textual.js creates
// it (its constructor assigns `this.terminal = new Terminal(...)`), and its
// buffer (xterm's public API) gives each cell's text and colour: what is on screen.
"use strict";

const chromium = require("@sparticuz/chromium").default ?? require("@sparticuz/chromium");
const puppeteer = require("puppeteer-core");
const readline = require("node:readline");

// A screen text waited for; long, since under a loaded CI each console textual-serve
// spawns is a Python start of several seconds (15 s failed once, two CI runs at once).
const WAIT_MS = 40000;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function waitForTest(what) {
  console.log(`wait ${what}`);
  const { done } = await lines.next();
  if (done) throw new Error(`stdin closed at ${what}`);
}

function catchTerminal() {
  // Runs in the page before its scripts.
  Object.defineProperty(Object.prototype, "terminal", {
    configurable: true,
    set(value) {
      Object.defineProperty(this, "terminal", { value, writable: true, configurable: true, enumerable: true });
      if (value && typeof value.loadAddon === "function") window.aegisTerminal = value;
    },
  });
  // The screen as lines of text; cell(text) finds text and returns its first cell's colours.
  window.aegisScreen = () => {
    const term = window.aegisTerminal;
    if (!term) return [];
    const buffer = term.buffer.active;
    const rows = [];
    for (let y = 0; y < term.rows; y++) rows.push(buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "");
    return rows;
  };
  window.aegisCell = (text, rowWith) => {
    const term = window.aegisTerminal;
    const rows = window.aegisScreen();
    for (let y = 0; y < rows.length; y++) {
      if (!rows[y].includes(rowWith)) continue;
      const x = rows[y].indexOf(text);
      if (x < 0) continue;
      const cell = term.buffer.active.getLine(term.buffer.active.viewportY + y).getCell(x);
      const rgb = (value) => ({ r: (value >> 16) & 255, g: (value >> 8) & 255, b: value & 255 });
      return {
        x, y,
        line: rows[y],
        fgRGB: cell.isFgRGB() ? rgb(cell.getFgColor()) : null,
        fgPalette: cell.isFgPalette() ? cell.getFgColor() : null,
        bold: cell.isBold() !== 0,
      };
    }
    return null;
  };
}

async function screenHas(page, texts, what) {
  try {
    await page.waitForFunction(
      (wanted) => { const screen = window.aegisScreen().join("\n"); return wanted.every((t) => screen.includes(t)); },
      { timeout: WAIT_MS, polling: 100 },
      texts,
    );
  } catch (error) {
    throw new Error(`${what}: ${JSON.stringify(texts)} not on screen within ${WAIT_MS} ms`);
  }
  console.log(`ok ${what}`);
}

async function screenLacks(page, text, what) {
  try {
    await page.waitForFunction((t) => !window.aegisScreen().join("\n").includes(t), { timeout: WAIT_MS, polling: 100 }, text);
  } catch (error) {
    throw new Error(`${what}: ${JSON.stringify(text)} still on screen after ${WAIT_MS} ms`);
  }
  console.log(`ok ${what}`);
}

async function openConsole(browser, url) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.evaluateOnNewDocument(catchTerminal);
  // The console needs nothing from another host; anything asked of one is a bug here.
  await page.setRequestInterception(true);
  const origin = new URL(url).origin;
  page.on("request", (request) => {
    if (request.url().startsWith(origin) || request.url().startsWith("data:")) request.continue();
    else { console.log(`blocked ${request.url()}`); request.abort(); }
  });
  await page.goto(url, { waitUntil: "load" });
  return page;
}

async function press(page, ...keys) {
  for (const key of keys) await page.keyboard.press(key);
}

async function main() {
  const env = process.env;
  const browser = await puppeteer.launch({
    executablePath: await chromium.executablePath(),
    args: chromium.args,
    headless: true,
  });
  let page;
  try {
    if (env.HOLD) {
      page = await openConsole(browser, env.OPERATOR_URL);
      await screenHas(page, ["Services", "ONLINE"], "page open");
      await waitForTest("close");
      return;
    }
    // Operator: the page asks for the secret first.
    page = await openConsole(browser, env.OPERATOR_URL);
    if (!page.url().endsWith("/login")) throw new Error(`no login page: at ${page.url()}`);
    console.log("ok login asked");
    await page.type("#secret", env.OPERATOR_SECRET);
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button[type=submit]")]);
    await screenHas(page, ["Services", "checkout", "payments", "payments-1", "ONLINE"], "services and statuses");

    const online = await page.evaluate(() => window.aegisCell("ONLINE", "payments-1"));
    console.log(`colour ONLINE ${JSON.stringify(online)}`);
    const green = online && online.fgRGB && online.fgRGB.g > 120 && online.fgRGB.g > online.fgRGB.r + 40 && online.fgRGB.g > online.fgRGB.b + 40;
    const paletteGreen = online && (online.fgPalette === 2 || online.fgPalette === 10);
    if (!green && !paletteGreen) throw new Error(`ONLINE is not drawn green: ${JSON.stringify(online)}`);
    console.log("ok ONLINE in green");
    await screenHas(page, ["live from"], "events followed");

    // Keys: / filters the instances, enter keeps the filter, enter on a row opens its detail.
    await page.focus(".xterm-helper-textarea");
    await press(page, "/");
    await page.keyboard.type("payments-1");
    await press(page, "Enter");
    await screenHas(page, ["filter: 'payments-1'", "1 of 3 instances"], "filter");
    await screenLacks(page, "checkout-2", "filter hides the rest");
    await press(page, "Enter");
    await screenHas(page, ["payments / payments-1", "escape: close", "2.4.0"], "detail panel");
    await press(page, "Escape");
    await screenLacks(page, "escape: close", "detail closed");

    // A change made by a service shows up: the count first, then the instance itself.
    await waitForTest("change");
    await screenHas(page, ["1 of 4 instances"], "a new instance counted");
    await press(page, "/", "Escape", "/");
    await page.keyboard.type("payments-9");
    await press(page, "Enter");
    await screenHas(page, ["filter: 'payments-9'", "1 of 4 instances"], "the new instance shown");

    // An operator action with the admin token: maintenance with a reason.
    await press(page, "m");
    await screenHas(page, ["enter: apply · escape: cancel"], "maintenance asks why");
    await page.keyboard.type("web drill");
    await press(page, "Enter");
    await screenLacks(page, "enter: apply · escape: cancel", "maintenance asked");
    await screenHas(page, ["in maintenance: web drill"], "maintenance in the events pane");
    const mark = await page.evaluate(() => window.aegisCell("maint", "payments-9"));
    if (!mark) throw new Error("no maint mark on the payments-9 row");
    console.log("ok maintenance shown");
    await waitForTest("maintenance");
    await press(page, "/", "Escape");
    await screenHas(page, ["4 instances", "checkout-1", "maint", "maintenance"], "the whole registry again");
    await screenHas(page, ["d Deregister"], "the instances table focused");
    await page.screenshot({ path: env.SCREENSHOT });
    console.log("ok screenshot");

    // A console whose token the router refuses shows the refusal.
    const refused = await openConsole(browser, env.REFUSED_URL);
    await screenHas(refused, ["HTTP 401", "AEGIS_ADMIN_TOKEN"], "refusal shown");
    await refused.close();

    // A read-only token: the console says its role, and refuses an action itself.
    const reader = await openConsole(browser, env.READER_URL);
    page = reader; // what a failure shows
    await screenHas(reader, ["as web-reader (read)", "checkout-1"], "read role shown");
    await reader.focus(".xterm-helper-textarea");
    await press(reader, "m");
    await screenHas(reader, ["Not allowed", "has role read"], "action refused to a read token");
    await reader.close();
  } catch (error) {
    console.log(`FAILED ${error.message}`);
    if (page) {
      const screen = await page.evaluate(() => window.aegisScreen()).catch(() => []);
      console.log(screen.join("\n"));
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
    process.stdin.destroy();
  }
}

main().catch((error) => { console.log(`FAILED ${error.stack}`); process.exit(1); });
