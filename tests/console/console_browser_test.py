"""The admin console in a real headless browser (Debian's chromium, driven
through its DevTools protocol with python3-websocket), against a real
txcoord binary and the local databases of deploy/local/start.sh:

  a client-role token is refused at sign-in; an admin signs in, sees a
  committed transaction with its branches, finds the branches a crash left
  in doubt (the process killed by an injected fault between PREPARE and the
  decision, its restart unable to roll them back: another injected fault),
  commits them after confirming and giving a reason, and sees them gone —
  the databases then hold the transfer and no prepared branch; a recovery
  pass, confirmed, is logged with the operator's name.

usage: console_browser_test.py TXCOORD_BINARY [SCREENSHOT_DIR]
Needs TXC_PG_URI, TXC_MARIADB_ODBC and TXC_MARIADB_PORT; without them it
skips (exit 77), except under CI=true.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

TXCOORD = sys.argv[1]
SHOTS = sys.argv[2] if len(sys.argv) > 2 else None
ENV = {k: os.environ.get(k) for k in ("TXC_PG_URI", "TXC_MARIADB_ODBC", "TXC_MARIADB_PORT")}
if not all(ENV.values()):
    if os.environ.get("CI") == "true":
        sys.exit("console_browser_test: the local databases' environment is missing under CI")
    print("console_browser_test: skipped (no local databases)")
    sys.exit(77)

import psycopg2  # noqa: E402
import pymysql  # noqa: E402
import websocket  # noqa: E402

import txcoord  # noqa: E402

SUFFIX = uuid.uuid4().hex[:8]
ADMIN, CLIENT = "tok-admin-" + SUFFIX, "tok-client-" + SUFFIX
TABLE = "console_" + SUFFIX


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg():
    c = psycopg2.connect(ENV["TXC_PG_URI"])
    c.autocommit = True
    return c


def maria():
    return pymysql.connect(host="127.0.0.1", port=int(ENV["TXC_MARIADB_PORT"]), user="txcoord",
                           password="txcoord_local_pw", database="txcoord", autocommit=True)


def sql(conn, text, *args):
    with conn.cursor() as cur:
        cur.execute(text, args)
        return cur.fetchall() if cur.description else None


class Txcoord:
    """The real binary, restarted with fault points (TXC_FAILPOINTS)."""

    def __init__(self, work):
        self.work = work
        self.console_port = free_port()
        self.config = os.path.join(work, "txcoord.yaml")
        sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
        with open(self.config, "w") as f:
            f.write(f"""node_id: console-{SUFFIX}
listen: 127.0.0.1:0
console_listen: 127.0.0.1:{self.console_port}
plaintext: true
journal: {{dir: {work}/journal}}
timeouts: {{orphan_safety: 1s}}
recovery: {{interval: 200ms}}
binds:
  pg: {{driver: postgres, dsn: "{ENV['TXC_PG_URI']}"}}
  maria: {{driver: odbc, dsn: "{ENV['TXC_MARIADB_ODBC']}"}}
auth:
  tokens: {{{sha(ADMIN)}: ops, {sha(CLIENT)}: orders}}
  policies:
    - {{identity: ops, role: admin}}
    - {{identity: orders, role: client, binds: [pg, maria]}}
""")
        self.proc = None

    def start(self, failpoints=""):
        self.stop()
        address = os.path.join(self.work, "address")
        if os.path.exists(address):
            os.remove(address)
        env = dict(os.environ, TXC_FAILPOINTS=failpoints)
        self.log = open(os.path.join(self.work, "txcoord.log"), "a")
        self.proc = subprocess.Popen([TXCOORD, "--config", self.config, "--address-file", address], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if os.path.exists(address):
                self.address = open(address).read().strip()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        sys.exit("console_browser_test: txcoord did not start; see " + self.log.name)

    def wait_exit(self, seconds=20):
        self.proc.wait(seconds)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None


class Browser:
    """Headless chromium on a profile of its own, one page, driven over CDP."""

    def __init__(self, work):
        profile = os.path.join(work, "profile")
        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().count("\n") >= 1:
                break
            time.sleep(0.1)
        port = open(port_file).read().split("\n")[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = [p for p in pages if p["type"] == "page"][0]["webSocketDebuggerUrl"]
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.ids = 0
        self.dialogs = []  # answers for the next dialogs: (accept, prompt text)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method, **params):
        self.ids += 1
        mine = self.ids
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Page.javascriptDialogOpening":
                accept, text = self.dialogs.pop(0) if self.dialogs else (False, "")
                self.ids += 1
                self.ws.send(json.dumps({"id": self.ids, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": accept, "promptText": text}}))
            elif msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def eval(self, expression):
        r = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, what, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.eval(expression):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the page shows: "
                             + str(self.eval("document.body.innerText"))[:2000])

    def text(self, element_id):
        return self.eval(f"document.getElementById({json.dumps(element_id)}).innerText")

    def screenshot(self, name):
        if SHOTS:
            os.makedirs(SHOTS, exist_ok=True)
            data = self.send("Page.captureScreenshot", format="png")["data"]
            with open(os.path.join(SHOTS, name), "wb") as f:
                f.write(base64.b64decode(data))

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        self.proc.kill()
        self.proc.wait(10)


def sign_in(b, token, name=""):
    b.eval(f"""document.getElementById('token').value = {json.dumps(token)};
               document.getElementById('operator').value = {json.dumps(name)};
               document.getElementById('login-form').requestSubmit(); true""")


def main():
    work = tempfile.mkdtemp(prefix="txcoord-console-")
    p, m = pg(), maria()
    for conn in (p, m):
        sql(conn, f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, balance INT NOT NULL)")
        sql(conn, f"INSERT INTO {TABLE} VALUES (1, 100)")
    t = Txcoord(work)
    browser = None
    try:
        t.start()
        client = txcoord.Client(t.address, token=CLIENT, retries=0)
        debit, credit = f"UPDATE {TABLE} SET balance = balance - 5 WHERE id = 1", \
                        f"UPDATE {TABLE} SET balance = balance + 5 WHERE id = 1"
        committed = client.run_transaction({"pg": [debit], "maria": [credit]}).txn_id
        # A crash between PREPARE and the decision; the restart cannot roll
        # the orphans back (injected), so they stay in doubt.
        t.start("commit.before_decision_logged=crash")
        client = txcoord.Client(t.address, token=CLIENT, retries=0)
        s = client.session()
        s.execute("pg", debit)
        s.execute("maria", credit)
        orphan = s.txn_id
        try:
            s.commit()
            raise AssertionError("the commit survived its crash")
        except txcoord.TxcoordError:
            pass
        t.wait_exit()
        t.start("recovery.before_orphan_rollback=error")

        browser = Browser(work)
        browser.send("Page.navigate", url=f"http://127.0.0.1:{t.console_port}/")
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('login-form')", "the page")
        # A token without the admin role is refused.
        sign_in(browser, CLIENT)
        browser.wait_for("document.getElementById('login-error').innerText.includes('Refused')", "the refusal")
        assert browser.eval("document.getElementById('app').hidden"), "the console opened for a client token"
        browser.screenshot("refused.png")
        # The admin.
        sign_in(browser, ADMIN, "alice")
        browser.wait_for("!document.getElementById('app').hidden && "
                         "document.querySelectorAll('#binds tbody tr').length === 2", "the binds")
        # The live figures: a rate once a second sample is in (every 5 s).
        browser.wait_for("/^\\d/.test(document.getElementById('fig-commits').innerText) && "
                         "!!document.querySelector('#chart-commits polyline')", "the live figures", seconds=30)
        assert browser.text("fig-halted") == "0", browser.text("fig-halted")
        browser.screenshot("overview.png")
        # The committed transaction and its branches.
        browser.eval("document.querySelector('nav button[data-view=transactions]').click(); true")
        browser.eval("document.getElementById('f-state').value = 'COMMITTED';"
                     "document.getElementById('txn-filter').requestSubmit(); true")
        link = f"[...document.querySelectorAll('#txns a')].find(a => a.innerText === {json.dumps(committed)})"
        browser.wait_for(f"!!{link}", "the committed transaction")
        browser.eval(f"{link}.click(); true")
        browser.wait_for("document.getElementById('txn-title').innerText.includes('COMMITTED') && "
                         "document.querySelectorAll('#branches tbody tr').length === 2", "its branches")
        assert "BRANCH_COMMITTED" in browser.text("branches"), browser.text("branches")
        browser.screenshot("transaction.png")
        # The branches the crash left in doubt: committed by the operator.
        browser.eval("document.querySelector('nav button[data-view=indoubt]').click(); true")
        row = f"[...document.querySelectorAll('#doubts tbody tr')].filter(r => r.innerText.includes({json.dumps(orphan)}))"
        browser.wait_for(f"{row}.length === 2 && {row}[0].innerText.includes('ORPHANED')", "the in-doubt branches")
        browser.screenshot("in-doubt.png")
        browser.dialogs = [(True, ""), (True, "customer confirmed the order")]
        browser.eval(f"[...{row}[0].querySelectorAll('button')].find(b => b.innerText === 'Commit').click(); true")
        browser.wait_for("document.getElementById('message').innerText.includes('COMMITTED')", "the resolution")
        browser.wait_for(f"{row}.length === 0", "the branches gone")
        browser.screenshot("resolved.png")
        assert not browser.dialogs, "a confirmation was not asked for"
        # A recovery pass, confirmed; logged with the operator's name.
        browser.eval("document.querySelector('nav button[data-view=actions]').click(); true")
        browser.dialogs = [(True, "")]
        browser.eval("document.getElementById('recover').click(); true")
        browser.wait_for("document.getElementById('message').innerText.startsWith('recovery:')", "the recovery pass")
        assert not browser.dialogs, "the recovery pass was not confirmed"
        t.log.flush()
        with open(t.log.name) as f:
            assert "recovery pass asked for by alice (identity ops)" in f.read(), "the recovery pass was not logged"

        # The databases: both transfers, nothing prepared.
        assert sql(p, f"SELECT balance FROM {TABLE}")[0][0] == 90
        assert sql(m, f"SELECT balance FROM {TABLE}")[0][0] == 110
        assert sql(p, "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE %s", f"%{orphan}%")[0][0] == 0
        print(f"console_browser_test: OK (refused a client token, showed {committed}, resolved {orphan})")
    finally:
        if browser is not None:
            browser.close()
        t.stop()
        # A failed run may leave this test's branches prepared: roll them
        # back, or dropping the tables would wait for their locks.
        mine = f"console-{SUFFIX}"
        for (gid,) in sql(p, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s", f"%{mine}%"):
            sql(p, f"ROLLBACK PREPARED '{gid}'")
        for row in sql(m, "XA RECOVER FORMAT='SQL'") or []:
            if mine.encode().hex() in row[3].lower():
                sql(m, f"XA ROLLBACK {row[3]}")
        sql(p, "SET lock_timeout = '10s'")
        sql(m, "SET SESSION lock_wait_timeout = 10")
        for conn in (p, m):
            sql(conn, f"DROP TABLE IF EXISTS {TABLE}")
        shutil.rmtree(work, ignore_errors=True)


main()
