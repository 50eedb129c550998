#!/usr/bin/env python3
"""The dashboard in a real browser (Debian's chromium + chromedriver, Selenium).

Starts plasm nodes the way the README does (`plasm start`, API on a free
loopback port), then checks, in headless chromium:
  * the page loads and shows the node (and renders without JavaScript too);
  * a job submitted through the API appears and reaches its final state live,
    without a reload, through a non-final state first;
  * the stored receipt verifies, a tampered one shows as invalid;
  * capacity can be set from the page;
  * a running job can be cancelled from the page;
  * nothing is requested from anywhere but the node, and the browser logs no
    error (a CSP violation would be one);
  * on a node with a token file, the token is asked once and kept for the tab;
  * another origin cannot submit (Origin policy), nor a rebinding Host.
Writes a screenshot when PLASM_SCREENSHOT names a file.

Usage: dashboard_test.py PLASM_BIN REPO_DIR
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

PLASM, REPO = sys.argv[1], sys.argv[2]
MODULES = os.path.join(REPO, "examples", "build")
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def start_node(extra=()):
    data = tempfile.mkdtemp(prefix="plasm-browser-")
    proc = subprocess.Popen(
        [PLASM, "start", "--data-dir", data, "--api", "127.0.0.1:0",
         "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 30
    api = listen = None
    while time.time() < deadline and (api is None or listen is None):
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("api "):
            api = line.split()[1].strip()
        elif line.startswith("listening "):
            listen = line.split()[1].strip()
    if api is None or listen is None:
        proc.kill()
        sys.exit("the node did not print its API and listen addresses")
    return proc, api, listen


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def wait_for(what, fn, timeout=30.0, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    check(False, what + " (timed out)")
    return None


def browser():
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1100", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-component-update",
              "--disable-default-apps", "--disable-sync", "--metrics-recording-only",
              "--no-default-browser-check", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def row_state(d, job):
    # One script call: rows are replaced as events arrive, so no element is held.
    return d.execute_script(
        "const r = document.querySelector(`tr[data-job='${arguments[0]}']`);"
        "return r ? r.dataset.state : null;", job)


def submit(api, *args):
    return subprocess.run([PLASM, "job", "submit", "--api", api, *args],
                          capture_output=True, text=True, timeout=120)


def main():
    # B executes and is the entry point; A, whose dashboard is tested, starts the
    # default way and finds B through the DHT.
    executor, b_api, b_listen = start_node(["--public"])
    node, api, _ = start_node(["--bootstrap", b_listen])
    procs = [executor, node]
    d = None
    try:
        b_peer = json.loads(http("GET", b_api + "/v1/node")[2])["peer_id"]
        hello = os.path.join(REPO, "examples", "wat", "hello.wat")
        remote = wait_for("a remote job on B", lambda: submit(
            api, "--placement", "remote", "--wait", hello).returncode == 0, timeout=60, every=0.3)
        check(remote is not None, "A runs a job on B (found through the DHT)")
        # Without JavaScript: the server-rendered page is a readable status page.
        status, headers, body = http("GET", api + "/")
        html = body.decode()
        node_info = json.loads(http("GET", api + "/v1/node")[2])
        peer = node_info["peer_id"]
        check(status == 200 and peer in html and 'id="jobs-body"' in html,
              "GET / renders the node's status into the page")
        csp = headers.get("content-security-policy", "")
        check("default-src 'none'" in csp and "connect-src 'self'" in csp, "the page sends a strict CSP")
        check("http://" not in html and "https://" not in html, "the page names no other origin")

        # The origin policy: another site's page, or a rebinding Host, cannot submit.
        s, _, b = http("POST", api + "/v1/jobs", b"{}", {"Origin": "http://evil.example",
                                                        "Content-Type": "text/plain"})
        check(s == 403 and b"forbidden_origin" in b, "a cross-origin POST is refused (403 forbidden_origin)")
        s, _, _ = http("GET", api + "/v1/node", None, {"Host": "evil.example:4611"})
        check(s == 403, "a non-loopback Host is refused on a loopback API")

        d = browser()
        d.get(api + "/")
        d.execute_script("window.__plasmMarker = 1")
        check(wait_for("the event stream connects",
                       lambda: d.find_element(By.ID, "live").text == "live") is not None,
              "the page follows the node's event stream")
        check(d.find_element(By.ID, "node-peer").text == peer, "the page shows the node's peer id")
        check("wasmtime" in d.find_element(By.ID, "node-runtimes").text, "the page lists the runtimes")

        # A job submitted through the API appears and reaches its final state live.
        sub = submit(api, "--placement", "local", "--fuel", "9000000000", "--arg", "60000000",
                     os.path.join(MODULES, "sieve.wasm"))
        job = sub.stdout.strip()
        check(sub.returncode == 0 and len(job) == 64, f"plasm job submit gave a job id ({sub.stderr.strip()})")
        seen = []

        def final():
            st = row_state(d, job)
            if st and (not seen or seen[-1] != st):
                seen.append(st)
            return st in ("succeeded", "failed")

        wait_for("the job reaches a final state on the page", final, timeout=60, every=0.02)
        check(seen and seen[-1] == "succeeded", f"the job's row ends succeeded (states seen: {seen})")
        check(len(seen) >= 2 and seen[0] in ("queued", "running"),
              f"the row showed the job in flight before it ended: {seen}")
        check(d.execute_script("return window.__plasmMarker") == 1, "no reload: the row changed live")
        where = d.find_element(By.CSS_SELECTOR, f'tr[data-job="{job}"] td.where').text
        check(where == "here (local pool)", f"the row says where the job ran: {where!r}")
        remote_rows = d.execute_script(
            "return [...document.querySelectorAll('#jobs-body td.where.remote')].map(e => e.textContent)")
        short_b = b_peer[:8] + "…" + b_peer[-6:]
        check(any(r.startswith(f"peer {short_b} (") for r in remote_rows),
              f"the remote job's row names the peer and the path: {remote_rows}")
        peers = d.execute_script("return document.getElementById('peers-body').textContent")
        check(short_b in peers, f"B is in the peers table: {peers!r}")

        # Its receipt verifies; a tampered one is invalid.
        d.find_element(By.CSS_SELECTOR, f'tr[data-job="{job}"] button.verify').click()
        verdict = wait_for("a verdict on the stored receipt", lambda: d.find_element(
            By.CSS_SELECTOR, f'tr[data-job="{job}"] .verdict').get_attribute("data-valid"))
        check(verdict == "true", "the stored receipt verifies on the page")
        receipt = json.loads(http("GET", f"{api}/v1/receipts/{job}")[2])
        receipt["fuel_used"] = receipt["fuel_used"] - 1
        box = d.find_element(By.ID, "verify-input")
        box.clear()
        d.execute_script("arguments[0].value = arguments[1]", box, json.dumps(receipt))
        d.find_element(By.ID, "verify-button").click()
        out = d.find_element(By.ID, "verify-result")
        valid = wait_for("a verdict on the tampered receipt", lambda: out.get_attribute("data-valid"))
        check(valid == "false" and "invalid" in out.text, f"a tampered receipt shows as invalid: {out.text!r}")

        # A running job is cancelled from the page: it ends failed, without a receipt.
        spin = os.path.join(tempfile.mkdtemp(prefix="plasm-spin-"), "spin.wat")
        with open(spin, "w") as f:
            f.write('(module (func (export "_start") (loop (br 0))))')
        sub = submit(api, "--placement", "local", "--fuel", "9000000000", spin)
        spinning = sub.stdout.strip()
        wait_for("the spinning job runs", lambda: row_state(d, spinning) == "running", timeout=30)
        d.find_element(By.CSS_SELECTOR, f'tr[data-job="{spinning}"] button.cancel').click()
        wait_for("the cancelled job ends", lambda: row_state(d, spinning) == "failed", timeout=30)
        gone = json.loads(http("GET", f"{api}/v1/jobs/{spinning}")[2])
        check(gone["state"] == "failed" and gone["receipt"] is None
              and str(gone["error"]).startswith("cancelled"),
              f"a job cancelled from the page ends failed, no receipt ({gone['error']!r})")

        # Capacity from the page.
        w = d.find_element(By.ID, "set-workers")
        w.clear()
        w.send_keys("3")
        d.find_element(By.CSS_SELECTOR, "#capacity-form button").click()
        res = wait_for("the capacity answer", lambda: d.find_element(By.ID, "capacity-result").text)
        cap = json.loads(http("GET", api + "/v1/node")[2])["capacity"]["workers"]
        check(res is not None and res.startswith("now 3 workers") and cap == 3,
              f"capacity set from the page ({res!r}, node says {cap})")

        # Only this node was asked for anything, and the browser saw no error.
        urls = d.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".concat([location.href])")
        check(all(u.startswith(api) for u in urls), f"every request went to the node ({len(urls)} URLs)")
        errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        check(not errors, f"no browser errors: {errors[:3]}")

        shot = os.environ.get("PLASM_SCREENSHOT")
        if shot:
            d.execute_script("window.scrollTo(0, 0)")
            d.save_screenshot(shot)
            print("screenshot:", shot)

        # A node with a token file: the page asks once, the tab keeps the token.
        token = "browser-test-token-0123456789"
        tdir = tempfile.mkdtemp(prefix="plasm-tok-")
        tfile = os.path.join(tdir, "tokens")
        with open(tfile, "w") as f:
            f.write(f"{token} read,submit,admin\n")
        os.chmod(tfile, 0o600)
        locked, lapi, _ = start_node(["--api-token-file", tfile])
        procs.append(locked)
        html = http("GET", lapi + "/")[2].decode()
        lpeer = json.loads(http("GET", lapi + "/v1/node", None,
                                {"Authorization": "Bearer " + token})[2])["peer_id"]
        check(lpeer not in html and 'id="locked"' in html, "a locked node's page holds no status")
        d.get(lapi + "/")
        check(wait_for("the token prompt", lambda: d.find_element(By.ID, "auth").is_displayed())
              is not None, "the page asks for a token")
        d.find_element(By.ID, "token").send_keys(token)
        d.find_element(By.CSS_SELECTOR, "#token-form button").click()
        check(wait_for("the locked node's status", lambda: d.find_element(By.ID, "node-peer").text == lpeer)
              is not None, "with the token the page shows the node")
        d.refresh()
        check(wait_for("status after a reload", lambda: d.find_element(By.ID, "node-peer").text == lpeer)
              is not None and not d.find_element(By.ID, "auth").is_displayed(),
              "the token is kept for the tab (sessionStorage): no prompt after a reload")
        check(d.execute_script("return sessionStorage.getItem('plasm-token')") == token
              and d.execute_script("return localStorage.length") == 0,
              "the token is in sessionStorage, not localStorage")
    finally:
        if d is not None:
            d.quit()
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", flush=True)
        sys.exit(1)
    print("dashboard: all checks passed")


main()
