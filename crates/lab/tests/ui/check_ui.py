#!/usr/bin/python3
"""Drives the calico-node web view in headless Chromium and checks what a user would see.

Usage: ``check_ui.py URL SCREENSHOT_PATH``

Needs Debian's python3-selenium (4.8), chromium and chromium-driver (/usr/bin/chromedriver);
run it with Debian's /usr/bin/python3 (where python3-selenium is installed).

Checks, in order (each prints ``ok: ...``):
  - the page loads, titled "calico-rs network view";
  - within 20 s the flows table has a denied flow fruitstore-frontend -> bookstore-server and
    an allowed flow bookstore-frontend -> bookstore-server (matched on the rows' data-source,
    data-destination and data-action); the denied one's "decided by" cell names
    allow-bookstore-cliient-to-server and rule 1, the allowed one's rule 0;
  - "denied only" hides the allowed flow and keeps the denied one; unticked, both are back;
  - clicking the denied row opens #why: #why-decided names allow-bookstore-cliient-to-server
    and rule 1, and #why-trace is neither empty nor "loading…";
  - the policies table lists allow-bookstore-cliient-to-server; the endpoints table has at
    least 2 rows;
  - no markup from the API became elements (no img/script/iframe/svg/object in the tables or
    the hosts list), no alert/confirm/prompt was called, no JavaScript error was logged.
Then it saves a screenshot (the detail panel open) to SCREENSHOT_PATH and exits 0.

On the first failed check it prints ``FAIL: <expected, found>`` and an excerpt of the page's
visible text, saves a screenshot anyway, and exits 1. Exit 2 on a usage error.
"""

import re
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException, StaleElementReferenceException,
                                        WebDriverException)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

POLICY = "allow-bookstore-cliient-to-server"
WAIT = 20.0

# Installed before any page script runs: records dialogs instead of showing them.
HOOK = """
window.__dialogs = [];
for (const n of ["alert", "confirm", "prompt"]) {
  window[n] = function (m) { window.__dialogs.push(n + "(" + String(m) + ")"); return null; };
}
"""

# The flow rows as a user sees them: attributes plus the text under the "decided by" header.
ROWS_JS = """
const heads = Array.from(document.querySelectorAll('#flows thead th'))
  .map(th => th.textContent.trim().toLowerCase());
const col = heads.indexOf('decided by');
return Array.from(document.querySelectorAll('#flows tbody tr.flow')).map(r => ({
  id: r.getAttribute('data-id'),
  action: r.getAttribute('data-action'),
  source: r.getAttribute('data-source'),
  destination: r.getAttribute('data-destination'),
  decided: col >= 0 && r.cells[col] ? r.cells[col].textContent.trim() : null,
  shown: r.getClientRects().length > 0,
}));
"""


class Failed(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def wait_for(expected, probe, timeout=WAIT):
    """Polls probe() -> (done, found) until done; on timeout fails with expected and found."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, found = probe()
        except StaleElementReferenceException:
            done, found = False, "(the page re-rendered while being read)"
        if done:
            return found
        if time.monotonic() > deadline:
            raise Failed(f"expected {expected} within {timeout:.0f} s; found {found}")
        time.sleep(0.2)


def has_rule(text, n):
    return text is not None and re.search(rf"\brule {n}\b", text) is not None


def find_row(rows, source, destination, action):
    for r in rows:
        if (source in (r["source"] or "") and destination in (r["destination"] or "")
                and r["action"] == action):
            return r
    return None


def describe(rows):
    if not rows:
        return "no flow rows"
    return "rows " + "; ".join(
        f"{r['source']} -> {r['destination']} {r['action']} [{r['decided']}]" for r in rows)


def start_browser():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_window_size(1400, 1000)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK})
    return driver


def text_of(driver, css):
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def check(driver, url):
    driver.get(url)
    title = driver.title
    if title != "calico-rs network view":
        raise Failed(f"expected the title 'calico-rs network view'; found {title!r}")
    ok(f"page loaded from {url}")

    def both_flows():
        rows = driver.execute_script(ROWS_JS)
        deny = find_row(rows, "fruitstore-frontend", "bookstore-server", "deny")
        allow = find_row(rows, "bookstore-frontend", "bookstore-server", "allow")
        return (deny is not None and allow is not None), (deny, allow, rows)

    deny, allow, rows = wait_for(
        "a denied flow fruitstore-frontend -> bookstore-server and an allowed flow "
        "bookstore-frontend -> bookstore-server in #flows", lambda: (
            lambda r: (r[0], r[1] if r[0] else describe(r[1][2])))(both_flows()))
    ok(f"flow rows: {deny['source']} -> {deny['destination']} deny, "
       f"{allow['source']} -> {allow['destination']} allow ({len(rows)} rows)")

    if deny["decided"] is None or POLICY not in deny["decided"] or not has_rule(deny["decided"], 1):
        raise Failed(f"expected the denied flow's 'decided by' cell to name {POLICY} and rule 1; "
                     f"found {deny['decided']!r}")
    ok(f"denied flow decided by: {deny['decided']}")
    if allow["decided"] is None or not has_rule(allow["decided"], 0):
        raise Failed(f"expected the allowed flow's 'decided by' cell to name rule 0; "
                     f"found {allow['decided']!r}")
    ok(f"allowed flow decided by: {allow['decided']}")

    # The "denied only" filter.
    driver.find_element(By.ID, "denied-only").click()

    def filtered():
        rows = [r for r in driver.execute_script(ROWS_JS) if r["shown"]]
        good = (bool(rows) and all(r["action"] == "deny" for r in rows)
                and any(r["id"] == deny["id"] for r in rows))
        return good, describe(rows)
    wait_for("only denied flows (the fruitstore one among them) with #denied-only ticked",
             filtered, 5)
    ok("#denied-only shows only denied flows")
    driver.find_element(By.ID, "denied-only").click()
    wait_for("the allowed flow back with #denied-only unticked", lambda: (
        lambda rows: (any(r["id"] == allow["id"] and r["shown"] for r in rows), describe(rows)))(
            driver.execute_script(ROWS_JS)), 5)
    ok("#denied-only unticked shows the allowed flow again")

    # Click the denied row and read the explanation.
    for attempt in range(5):
        row = driver.execute_script(
            "return Array.from(document.querySelectorAll('#flows tbody tr.flow'))"
            ".find(r => r.getAttribute('data-id') === arguments[0]) || null;", deny["id"])
        if row is None:
            raise Failed(f"expected the denied row (data-id {deny['id']!r}) still in #flows; "
                         f"found {describe(driver.execute_script(ROWS_JS))}")
        try:
            row.click()
            break
        except StaleElementReferenceException:
            time.sleep(0.2)
    else:
        raise Failed("expected to click the denied row; it was re-rendered under every click")

    def why():
        panel = driver.find_elements(By.ID, "why")
        shown = bool(panel) and panel[0].is_displayed()
        decided = text_of(driver, "#why-decided")
        trace = text_of(driver, "#why-trace")
        error = text_of(driver, "#why-error")
        done = (shown and decided is not None and POLICY in decided and has_rule(decided, 1)
                and trace is not None and trace.strip() not in ("", "loading…"))
        return done, (f"#why {'shown' if shown else 'not shown'}, #why-decided {decided!r}, "
                      f"#why-trace {(trace or '')[:200]!r}, #why-error {error!r}")
    wait_for(f"#why shown, #why-decided naming {POLICY} and rule 1, #why-trace filled", why, 10)
    ok(f"#why-decided: {text_of(driver, '#why-decided').strip()}")
    trace = text_of(driver, "#why-trace").strip()
    ok(f"#why-trace: {len(trace.splitlines())} lines, first {trace.splitlines()[0]!r}")

    policies = text_of(driver, "#policies tbody") or ""
    if POLICY not in policies:
        raise Failed(f"expected #policies to list {POLICY}; found {policies[:300]!r}")
    ok(f"#policies lists {POLICY}")
    endpoint_rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#endpoints tbody tr'))"
        ".filter(r => r.cells.length >= 6).map(r => r.cells[1].textContent);")
    if len(endpoint_rows) < 2:
        raise Failed(f"expected at least 2 rows in #endpoints; found {endpoint_rows!r}")
    ok(f"#endpoints has {len(endpoint_rows)} rows")

    injected = driver.execute_script(
        "return Array.from(document.querySelectorAll("
        "'#endpoints :is(img,script,iframe,svg,object,embed), #policies :is(img,script,iframe,svg,object,embed), "
        "#flows :is(img,script,iframe,svg,object,embed), #hosts :is(img,script,iframe,svg,object,embed), "
        "#why :is(img,script,iframe,svg,object,embed)')).map(e => e.outerHTML);")
    if injected:
        raise Failed(f"expected no elements made from API text; found {injected!r}")
    ok("no img/script/iframe/svg/object elements in the tables, hosts or #why")
    if "onerror=" in (text_of(driver, "#endpoints") or ""):
        ok("a label holding markup is shown as text in #endpoints")
    else:
        print("note: no label holding markup in #endpoints (nothing to show as text)", flush=True)
    dialogs = driver.execute_script("return window.__dialogs || [];")
    try:
        driver.switch_to.alert
        dialogs = dialogs + ["(an alert is open)"]
    except NoAlertPresentException:
        pass
    if dialogs:
        raise Failed(f"expected no alert/confirm/prompt; found {dialogs!r}")
    ok("no alert, confirm or prompt was called")

    errors = [e["message"] for e in driver.get_log("browser")
              if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]
    if errors:
        raise Failed(f"expected no JavaScript errors in the console; found {errors!r}")
    ok("no JavaScript errors in the console")


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    url, screenshot = sys.argv[1], sys.argv[2]
    try:
        driver = start_browser()
    except WebDriverException as e:
        print(f"FAIL: expected chromium and chromedriver to start; found {e.msg or e}")
        return 1
    try:
        check(driver, url)
        if not driver.save_screenshot(screenshot):
            raise Failed(f"expected to save a screenshot to {screenshot}; it was not written")
        ok(f"screenshot saved to {screenshot}")
        return 0
    except (Failed, WebDriverException) as e:
        print(f"FAIL: {e}")
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
            print("--- page text (first 2000 characters) ---")
            print(body[:2000])
            print("---")
            if driver.save_screenshot(screenshot):
                print(f"(screenshot of the failure saved to {screenshot})")
        except WebDriverException as e2:
            print(f"(could not read the page: {e2.msg or e2})")
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
