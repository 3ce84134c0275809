// txcoord's admin console: a framework-free page over the console's JSON API
// (POST /api/<AdminService method>). The token lives in this closure only:
// never in storage, a cookie or a URL.
"use strict";
(() => {
  let token = null;
  let operator = "";
  let view = "overview";
  const $ = (id) => document.getElementById(id);

  async function call(method, body = {}) {
    const headers = { "Content-Type": "application/json", "Authorization": "Bearer " + token };
    if (operator) headers["X-Txcoord-Operator"] = operator;
    const res = await fetch("/api/" + method, { method: "POST", headers, body: JSON.stringify(body) });
    const data = await res.json().catch(() => ({ code: "UNKNOWN", message: res.statusText }));
    if (!res.ok) throw Object.assign(new Error(data.message || res.statusText), { code: data.code, http: res.status });
    return data;
  }

  function say(text, isError = false) {
    $("message").textContent = text;
    $("message").className = isError ? "error" : "ok";
  }

  // Fills a table's body with rows of cells (strings or nodes).
  function fill(table, rows) {
    const body = $(table).querySelector("tbody");
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
        tr.append(td);
      }
      return tr;
    }));
  }

  const when = (t) => (t ? new Date(t).toLocaleString() : "");
  // A protobuf JSON duration ("12.5s") for people: "850 µs", "12 ms", "3.2 s", "2 h 13 min".
  const dur = (d) => {
    if (!d) return "";
    const s = parseFloat(d);
    if (s < 0.001) return Math.round(s * 1e6) + " µs";
    if (s < 1) return Math.round(s * 1e3) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  };
  const button = (text, onClick) => {
    const b = document.createElement("button");
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  };

  // The live figures: counters sampled at each refresh, rates between samples.
  const samples = [];
  const p99Of = (before, now) => {
    if (!now.commit_buckets.length || now.commit_buckets.length !== before.commit_buckets.length) return null;
    const total = now.commit_buckets.at(-1)[1] - before.commit_buckets.at(-1)[1];
    if (!(total > 0)) return null;
    for (let i = 0; i < now.commit_buckets.length; ++i) {
      const [le, count] = now.commit_buckets[i];
      if (count - before.commit_buckets[i][1] >= 0.99 * total) return le === null ? Infinity : le * 1000;
    }
    return null;
  };
  function chart(id, values) {
    const svg = $(id);
    const max = Math.max(1e-9, ...values.filter((v) => Number.isFinite(v)));
    const points = values.map((v, i) => `${(i * 240) / 59},${58 - (Number.isFinite(v) ? (v / max) * 54 : 0)}`).join(" ");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points);
    svg.replaceChildren(line);
  }
  async function showFigures() {
    const now = Object.assign(await call("Figures"), { at: Date.now() / 1000 });
    if (samples.length && samples.at(-1).commit_buckets.length !== now.commit_buckets.length) samples.length = 0;
    samples.push(now);
    if (samples.length > 61) samples.shift();
    const rows = samples.slice(1).map((s, i) => {
      const b = samples[i];
      const dt = Math.max(s.at - b.at, 1e-3);
      return { commits: (s.committed - b.committed) / dt, aborts: (s.aborted - b.aborted) / dt, p99: p99Of(b, s),
               halted: s.decisions_halted };
    });
    const last = rows.at(-1);
    $("fig-commits").textContent = last ? last.commits.toFixed(1) : "…";
    $("fig-aborts").textContent = last ? last.aborts.toFixed(1) : "…";
    $("fig-p99").textContent = last && last.p99 !== null ? (Number.isFinite(last.p99) ? +last.p99.toPrecision(3) + " ms" : "> last bucket") : "–";
    $("fig-halted").textContent = String(now.decisions_halted);
    for (const [key, id] of [["commits", "chart-commits"], ["aborts", "chart-aborts"], ["p99", "chart-p99"], ["halted", "chart-halted"]]) {
      chart(id, rows.map((r) => r[key] ?? 0));
    }
  }

  async function showOverview() {
    await showFigures();
    const binds = await call("ListBinds");
    fill("binds", binds.binds.map((b) => [b.name, b.driver, b.two_phase ? (b.last_resource ? "2pc, last resource first" : "2pc") : "last-resource",
      `${b.pool_in_use}/${b.pool_size}`, b.latency ? (b.reachable ? "yes" : "NO") : "-", dur(b.latency) || "-", b.last_error]));
    try {
      const nodes = await call("ListNodes");
      fill("nodes", nodes.nodes.map((n) => [n.node_id + (n.self ? " (this node)" : ""),
        n.settled ? "settled" : n.adopted_by ? "being adopted by " + n.adopted_by : n.epoch !== "0" ? "up" : "DOWN",
        n.epoch, n.holder, n.address, n.unfinished_decisions]));
    } catch (e) {
      fill("nodes", [["this node", "up (single node: no cluster)", "", "", "", ""]]);
    }
  }

  async function showTransactions() {
    const req = { page_size: 200 };
    if ($("f-state").value) req.states = [$("f-state").value];
    if ($("f-bind").value) req.bind = $("f-bind").value;
    const age = $("f-age").value.trim();
    if (age) {
      const m = /^(\d+)(s|m|h)$/.exec(age);
      if (!m) throw new Error("older than: a number and s, m or h (e.g. 10m)");
      req.older_than = m[1] * { s: 1, m: 60, h: 3600 }[m[2]] + "s";
    }
    const list = await call("ListTransactions", req);
    fill("txns", list.transactions.map((t) => {
      const a = document.createElement("a");
      a.textContent = t.txn_id;
      a.addEventListener("click", () => showTransaction(t.txn_id).catch(fail));
      return [a, t.state, when(t.started_at), when(t.decided_at), [...new Set(t.branches.map((b) => b.bind))].join(", ")];
    }));
  }

  async function showTransaction(id) {
    const t = await call("GetTransaction", { txn_id: id });
    $("txn-detail").hidden = false;
    $("txn-title").textContent = `${t.txn_id}: ${t.state}` + (t.abort_reason ? ` (${t.abort_reason})` : "");
    const steps = [["started", t.started_at], ["decided", t.decided_at], ["finished", t.finished_at]];
    $("timeline").replaceChildren(...steps.filter(([, at]) => at).map(([what, at]) => {
      const li = document.createElement("li");
      li.textContent = `${what} ${when(at)}`;
      return li;
    }));
    fill("branches", t.branches.map((b) => [b.bind, b.xid, b.state, String(b.attempts), b.last_error]));
  }

  async function resolve(txnId, decision) {
    const verb = decision === "COMMIT" ? "commit" : "roll back";
    if (!confirm(`Really ${verb} ${txnId}? txcoord refuses the opposite of a journaled decision.`)) return;
    const reason = prompt(`Why ${verb} ${txnId}? (journaled with your identity)`);
    if (!reason) return;
    const t = await call("ResolveTransaction", { txn_id: txnId, decision, reason });
    say(`${txnId}: ${t.state}`);
    await showInDoubt();
  }

  async function showInDoubt() {
    const list = await call("ListInDoubt");
    fill("doubts", list.branches.map((b) => {
      const actions = document.createElement("span");
      if (b.txn_id) {
        actions.append(button("Commit", () => resolve(b.txn_id, "COMMIT").catch(fail)), " ",
          button("Roll back", () => resolve(b.txn_id, "ROLLBACK").catch(fail)));
      }
      return [b.bind, b.xid, b.txn_id, b.kind, b.node_id, dur(b.age), actions];
    }));
  }

  const views = { overview: showOverview, transactions: showTransactions, indoubt: showInDoubt, actions: async () => {} };

  function fail(e) {
    if (e.http === 401) signOut(e.message);
    else say(e.message, true);
  }

  async function show(v) {
    view = v;
    for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== v;
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.view === v);
    await views[v]();
  }

  function signOut(why = "") {
    token = null;
    $("app").hidden = true;
    $("login").hidden = false;
    $("signout").hidden = true;
    $("who").textContent = "";
    $("login-error").textContent = why;
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    token = $("token").value;
    operator = $("operator").value.trim();
    $("token").value = "";
    try {
      await call("ListBinds");
    } catch (e) {
      signOut(e.http === 401 || e.http === 403 ? "Refused: " + e.message : e.message);
      return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    $("who").textContent = operator ? "signed in as " + operator : "signed in";
    $("login-error").textContent = "";
    show("overview").catch(fail);
  });
  $("signout").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view).catch(fail));
  $("txn-filter").addEventListener("submit", (ev) => { ev.preventDefault(); showTransactions().catch(fail); });
  $("check-binds").addEventListener("click", async () => {
    try {
      const binds = await call("CheckBinds");
      say(`checked ${binds.binds.length} binds`);
      await showOverview();
    } catch (e) { fail(e); }
  });
  $("recover").addEventListener("click", async () => {
    if (!confirm("Run a recovery pass now?")) return;
    try {
      const r = await call("RecoverNow");
      say(`recovery: ${r.redriven} re-driven, ${r.orphans_rolled_back} orphans rolled back, ${r.still_pending} still pending`);
    } catch (e) { fail(e); }
  });
  $("drain").addEventListener("click", async () => {
    if (!confirm("Drain this node? It stops taking sessions and waits for the transactions in flight.")) return;
    try {
      const r = await call("Drain", { timeout: $("drain-timeout").value });
      say(`drained: ${r.sessions_left} sessions left`);
    } catch (e) { fail(e); }
  });
  // The open view follows the journal: refreshed every 5 s while signed in.
  setInterval(() => { if (token && view !== "actions") views[view]().catch(fail); }, 5000);
})();
