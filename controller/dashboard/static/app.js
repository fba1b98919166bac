// fleetvisor dashboard: plain JavaScript, no framework. Every element is built with
// createElement/textContent (never innerHTML with data), under a CSP without inline code.
"use strict";

const S = { me: null, nodes: {}, procs: {}, byNode: {}, fields: [], heartbeats: {}, now: 0, skew: 0, summary: null,
            stale: null, controller: null, status: null, view: null, streams: [],
            stats: { messages: 0, ms: 0, rows: 0, firstView: 0 } };  // status messages applied, the time spent on them

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}

function message(text, error) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = error ? "error" : "";
  m.hidden = !text;
}

async function api(method, body) {
  const headers = { "Content-Type": "application/json" };
  if (S.me && S.me.csrf) headers["X-CSRF-Token"] = S.me.csrf;
  const r = await fetch("/api/rpc/" + method, { method: "POST", headers, body: JSON.stringify(body || {}),
                                                  credentials: "same-origin" });
  const data = await r.json().catch(() => ({ error: r.status + " " + r.statusText }));
  if (!r.ok) throw new Error(data.error || String(r.status));
  return data;
}

function may(verb) { return !!(S.me && S.me.may && S.me.may[verb]); }

function writeButton(label, verb, onclick, attrs, allowed) {
  // the server says what this identity may do (and, for a row, whether here); controls it may
  // not use are not shown at all
  if (!may(verb) || allowed === false) return null;
  return el("button", Object.assign({ type: "button", class: "write", onclick }, attrs || {}), label);
}

function keyedRows(body, items, keyOf, build, attr) {
  // tbody shows items in order; a row whose item is unchanged is kept as it is, so an update
  // touches only the rows that changed
  const old = new Map();
  for (const tr of body.children) if (tr.dataset[attr] !== undefined) old.set(tr.dataset[attr], tr);
  let at = body.firstElementChild;
  for (const item of items) {
    const key = keyOf(item), sig = JSON.stringify(item);
    let tr = old.get(key);
    old.delete(key);
    if (!tr || tr.sig !== sig) {
      const fresh = build(item);
      fresh.sig = sig;
      if (tr) {
        if (at === tr) at = fresh;
        tr.replaceWith(fresh);
      }
      tr = fresh;
    }
    if (tr === at) at = at.nextElementSibling;
    else body.insertBefore(tr, at);
  }
  for (const tr of old.values()) tr.remove();
  for (const tr of [...body.children]) if (tr.dataset[attr] === undefined) tr.remove();
}

function stream(url, handlers) {
  const es = new EventSource(url);
  for (const [name, fn] of Object.entries(handlers)) es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  es.addEventListener("error", (ev) => {
    if (ev.data) { message(JSON.parse(ev.data).error, true); es.close(); }
  });
  S.streams.push(es);
  return es;
}

function closeViewStreams() {
  for (const es of S.streams) es.close();
  S.streams = [];
}

function ago(t) {
  if (!t) return "-";
  const s = Math.max(0, Math.round(Date.now() / 1000 - S.skew - t));
  return s < 120 ? s + "s" : s < 7200 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
}

function uptime(p) {
  if (p.statename !== "RUNNING" || !p.start) return p.description || "";
  const s = Math.max(0, Math.floor(Date.now() / 1000 - S.skew - p.start));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return "pid " + p.pid + ", uptime " + h + ":" + String(m).padStart(2, "0") + ":" + String(sec).padStart(2, "0");
}

function table(heads, body) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { text: h })))), body);
}

function stateSpan(state) { return el("span", { class: "state " + state, text: state }); }

// -- session ---------------------------------------------------------------------------------------

async function login() {
  const m = location.hash.match(/^#token=([A-Za-z0-9_.-]+)$/);
  if (!m) return;
  history.replaceState(null, "", location.pathname + "#/");  // the token leaves the address bar at once
  const r = await fetch("/api/session", { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify({ token: m[1] }), credentials: "same-origin" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) message("login refused: " + (data.error || r.status), true);
}

async function whoami() {
  const r = await fetch("/api/whoami", { credentials: "same-origin" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { S.me = null; return data.error || "not logged in"; }
  S.me = data;
  S.controller = data.controller;
  const who = document.getElementById("who");
  who.textContent = data.name + " (" + data.role + (data.how === "anonymous" ? ", read only" : "") + ")";
  document.getElementById("logout").hidden = data.how !== "token";
  return null;
}

function banner() {
  const b = document.getElementById("banner");
  const c = S.controller || {};
  let text = "", bad = false;
  if (S.stale || c.etcd_unavailable) {
    text = "This controller cannot reach etcd: what is shown may be stale. " + ((S.stale && S.stale.reason) || c.reason || "");
    bad = true;
  } else if (c.id && !c.is_leader) {
    text = c.leader_id ? "This controller (" + c.id + ") follows; writes are carried out by the leader " + c.leader_id +
      (c.leader_address ? " at " + c.leader_address : "") + ", whose dashboard takes them."
      : "No controller leads right now: writes are refused until one does.";
  }
  b.textContent = text;
  b.className = bad ? "bad" : "";
  b.hidden = !text;
}

// -- the live fleet --------------------------------------------------------------------------------

function procObject(key, row) {
  // a row is a list of S.fields (rows.py PROC_FIELDS); the node is its key's first part
  const p = { node: key.slice(0, key.indexOf(":")) };
  for (let i = 0; i < S.fields.length; i++) p[S.fields[i]] = row[i];
  return p;
}

function onStatus(change) {
  const t0 = performance.now();
  if (change.full) { S.nodes = {}; S.procs = {}; S.byNode = {}; S.fields = change.proc_fields; }
  Object.assign(S.nodes, change.nodes || {});
  for (const n of change.gone_nodes || []) delete S.nodes[n];
  const changed = Object.keys(change.procs || {});
  for (const k of changed) {
    const p = procObject(k, change.procs[k]);
    S.procs[k] = p;
    (S.byNode[p.node] || (S.byNode[p.node] = new Set())).add(k);
  }
  for (const k of change.gone_procs || []) {
    const p = S.procs[k];
    if (p && S.byNode[p.node]) S.byNode[p.node].delete(k);
    delete S.procs[k];
  }
  if (change.heartbeats) S.heartbeats = change.heartbeats;
  if (change.now) S.skew = Date.now() / 1000 - change.now;
  if ("stale" in change) S.stale = change.stale;
  if (change.summary) S.summary = change.summary;
  if (change.controller) S.controller = change.controller;
  banner();
  if (S.view && S.view.update) S.view.update(change, changed);
  S.stats.messages += 1;
  S.stats.ms += performance.now() - t0;
  if (!change.more && !S.stats.rows) {
    S.stats.rows = Object.keys(S.procs).length;  // every row of the first view is in: the benchmark reads this mark
    performance.mark("fleetvisor:all-rows");
  }
}

function statusStream() {
  if (S.status) return;
  S.status = new EventSource("/api/events/status");
  S.status.addEventListener("status", (ev) => onStatus(JSON.parse(ev.data)));
  S.status.addEventListener("error", (ev) => { if (ev.data) message(JSON.parse(ev.data).error, true); });
}

// -- views -----------------------------------------------------------------------------------------

function overview(root) {
  const filters = el("div", { class: "filters" },
    el("label", {}, "node ", el("input", { id: "f-node", placeholder: "web-*" })),
    el("label", {}, "label ", el("input", { id: "f-label", placeholder: "role=web" })),
    el("label", {}, "process ", el("input", { id: "f-name", placeholder: "app" })));
  const summary = el("div", { class: "summary", id: "summary" });
  const problems = el("tbody", { id: "problems" });
  const groups = el("tbody", { id: "groups" });
  const nodes = el("tbody", { id: "nodes" });
  root.append(el("h2", { text: "Fleet" }), summary,
    el("h3", { text: "Problems" }), table(["kind", "node", "subject", "state", "detail"], problems),
    el("h3", { text: "Groups" }), table(["group", "running", "total", "states"], groups),
    el("h3", { text: "Nodes" }), filters,
    table(["node", "labels", "agent", "revision (applied / desired)", "heartbeat", "up", "reachable", "processes"], nodes));

  function glob(pattern, text) {
    if (!pattern) return true;
    const re = new RegExp("^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    return re.test(text);
  }
  function keep(n) {
    const fn = document.getElementById("f-node").value.trim();
    const fl = document.getElementById("f-label").value.trim();
    const fp = document.getElementById("f-name").value.trim();
    if (!glob(fn, n.name)) return false;
    if (fl) {
      const [k, v] = fl.split("=");
      if (!n.labels || n.labels[k] !== v) return false;
    }
    if (fp && ![...(S.byNode[n.name] || [])].some((k) => { const p = S.procs[k]; return glob(fp, p.name) || glob(fp, p.group) || glob(fp, p.namespec); })) return false;
    return true;
  }
  function drawSummary() {
    const s = S.summary;
    if (!s) return;
    const line = ["nodes " + s.nodes_up + "/" + s.nodes + " up", "processes " + s.running + "/" + s.processes + " running",
                  "problems " + s.problems_total];
    if (summary.textContent !== line.join("")) summary.replaceChildren(...line.map((text) => el("span", { text })));
    keyedRows(problems, s.problems, (p) => p.kind + ":" + (p.node || "") + ":" + (p.subject || ""), (p) => el("tr",
      { "data-problem": (p.node || "") + ":" + (p.subject || ""), "data-pkey": p.kind + ":" + (p.node || "") + ":" + (p.subject || "") },
      el("td", { text: p.kind }),
      el("td", {}, p.node ? el("a", { href: "#/node/" + encodeURIComponent(p.node), text: p.node }) : ""),
      el("td", { text: p.subject || "" }), el("td", {}, stateSpan(p.state || "")), el("td", { text: p.detail || "" })), "pkey");
    if (!s.problems.length) problems.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "none" })));
    keyedRows(groups, s.groups, (g) => g.group, (g) => el("tr", { "data-group": g.group },
      el("td", {}, el("a", { href: "#/group/" + encodeURIComponent(g.group), text: g.group })),
      el("td", { text: String(g.running) }), el("td", { text: String(g.total) }),
      // the summary counts what is not plainly RUNNING; the running ones are its `running`
      el("td", {}, g.running ? el("span", {}, stateSpan("RUNNING"), " " + g.running + "  ") : null,
        ...g.states.map((c) => el("span", {}, stateSpan(c.state), " " + c.count + "  ")))), "group");
  }
  function nodeRow(item) {
    const n = item.n;
    return el("tr", { "data-node": n.name },
      el("td", {}, el("a", { href: "#/node/" + encodeURIComponent(n.name), text: n.name })),
      el("td", { text: Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v).join(", ") }),
      el("td", { text: n.agent_version || "" }),
      el("td", { class: n.drift ? "state FATAL" : "", text: (n.applied_revision || "-") + " / " + (n.desired_revision || "-") }),
      el("td", { class: "hb", text: ago(S.heartbeats[n.name]) }),
      el("td", {}, stateSpan(n.up ? "up" : "DOWN")), el("td", {}, stateSpan(n.reachable ? "yes" : "UNREACHABLE")),
      el("td", { text: String(item.count) }));
  }
  function drawNodes() {
    const shown = Object.values(S.nodes).filter(keep).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    keyedRows(nodes, shown.map((n) => ({ n, count: n.processes })), (i) => i.n.name, nodeRow, "node");
  }
  function heartbeats() {
    for (const row of nodes.children) {
      const cell = row.children[4], text = ago(S.heartbeats[row.dataset.node]);
      if (cell && cell.textContent !== text) cell.textContent = text;
    }
  }
  filters.addEventListener("input", drawNodes);
  let drawn = false;
  function draw(change) {
    if (change.summary || change.full) drawSummary();
    if (change.full || change.nodes || change.gone_nodes) drawNodes();
    if (change.heartbeats) heartbeats();
    if (!drawn && S.summary) {
      drawn = true;
      if (!S.stats.firstView) {  // summary, problems, groups and nodes are on the page: the benchmark reads this mark
        S.stats.firstView = performance.now();
        performance.mark("fleetvisor:first-view");
      }
    }
  }
  draw({ full: true });
  return { update: draw };
}

function processRow(p, withNode) {
  const spec = p.node + ":" + p.group + ":" + p.name;
  const act = (action, extra) => async () => {
    try {
      const r = await api("Control", Object.assign({ action, patterns: [spec], wait: true }, extra || {}));
      const bad = (r.nodes || []).filter((n) => !n.ok);
      message(bad.length ? action + " " + spec + ": " + (bad[0].error || (bad[0].results || []).map((x) => x.description).join("; ")) : action + " " + spec + ": done", bad.length > 0);
    } catch (e) { message(action + " " + spec + ": " + e.message, true); }
  };
  const ctl = may("control") && p.control === 1;  // the server's answer for this process (rows.py)
  const signal = el("select", { class: "write signal" + (ctl ? "" : " hidden") },
    ...["HUP", "TERM", "INT", "USR1", "USR2", "KILL"].map((s) => el("option", { value: s, text: s })));
  const health = p.health && p.health !== "HEALTH_UNSPECIFIED" ? p.health.replace("HEALTH_", "") + (p.health_message ? ": " + p.health_message : "") : "";
  return el("tr", { "data-process": spec },
    withNode ? el("td", {}, el("a", { href: "#/node/" + encodeURIComponent(p.node), text: p.node })) : null,
    el("td", { text: p.namespec }), el("td", {}, stateSpan(p.statename)),
    el("td", { class: "pid", text: p.pid ? String(p.pid) : "" }),
    el("td", { class: "desc", text: uptime(p) }), el("td", { text: health }),
    el("td", {}, writeButton("start", "control", act("START"), { "data-action": "start" }, ctl),
      writeButton("stop", "control", act("STOP"), { "data-action": "stop" }, ctl),
      writeButton("restart", "control", act("RESTART"), { "data-action": "restart" }, ctl),
      ctl ? signal : null,
      writeButton("signal", "control", () => act("SIGNAL", { signal: signal.value })(), { "data-action": "signal" }, ctl),
      el("a", { href: "#/tail/" + encodeURIComponent(p.node) + "/" + encodeURIComponent(p.namespec), text: "tail" })));
}

function processTable(root, filter, withNode) {
  const body = el("tbody", {});
  const heads = [...(withNode ? ["node"] : []), "process", "state", "pid", "description", "health", "actions"];
  root.append(table(heads, body));
  const rows = {};
  function put(key) {
    const p = S.procs[key];
    const old = rows[key];
    if (!p || !filter(p)) { if (old) { old.remove(); delete rows[key]; } return; }
    const row = processRow(p, withNode);
    if (old) old.replaceWith(row);
    else {
      const next = Object.keys(rows).filter((k) => k > key).sort()[0];
      body.insertBefore(row, next ? rows[next] : null);
    }
    rows[key] = row;
  }
  function all() { for (const k of Object.keys(rows)) { rows[k].remove(); delete rows[k]; } for (const k of Object.keys(S.procs).sort()) put(k); }
  all();
  const tick = setInterval(() => {
    for (const [k, row] of Object.entries(rows)) if (S.procs[k]) row.querySelector(".desc").textContent = uptime(S.procs[k]);
  }, 1000);
  return {
    update(change, changed) {
      if (change.full) return all();
      for (const k of changed) put(k);  // only the rows that changed are redrawn
      for (const k of change.gone_procs || []) put(k);
    },
    close() { clearInterval(tick); },
  };
}

function nodeView(root, name) {
  root.append(el("h2", { text: "Node " + name }), el("p", { id: "node-facts", class: "muted" }));
  const facts = () => {
    const n = S.nodes[name];
    document.getElementById("node-facts").textContent = n ? "agent " + (n.agent_version || "?") + ", revision " + (n.applied_revision || "-") +
      " (desired " + (n.desired_revision || "-") + "), " + (n.up ? "up" : "DOWN") + (n.reachable ? "" : ", unreachable") + (n.error ? ": " + n.error : "") : "unknown node";
  };
  facts();
  const procs = processTable(root, (p) => p.node === name, false);
  return { update(change, changed) { facts(); procs.update(change, changed); }, close: procs.close };
}

function groupView(root, group) {
  root.append(el("h2", { text: "Group " + group }));
  const all = (action) => async () => {
    if (!confirm(action + " group " + group + " on every node?")) return;
    try {
      const r = await api("Control", { action, patterns: ["*:" + group + ":*"], wait: true });
      message(action + " " + group + ": " + (r.nodes || []).length + " node(s) answered", false);
    } catch (e) { message(e.message, true); }
  };
  // everywhere: only when the server said every process of the group it shows may be controlled
  const everywhere = el("p", { id: "group-actions" });
  let every = null;
  function drawEverywhere() {
    const mine = Object.values(S.procs).filter((p) => p.group === group);
    const now = mine.length > 0 && mine.every((p) => p.control === 1);
    if (now === every) return;
    every = now;
    everywhere.replaceChildren(...[writeButton("start everywhere", "control", all("START"), {}, every),
      writeButton("stop everywhere", "control", all("STOP"), {}, every),
      writeButton("restart everywhere", "control", all("RESTART"), {}, every)].filter(Boolean));
  }
  drawEverywhere();
  root.append(everywhere);
  if (may("deploy")) {
    const f = (id, label, value, type) => el("label", {}, label + " ", el("input", { id, value, type: type || "text", size: 8 }));
    const form = el("div", { class: "form", id: "rr-form" }, el("h3", { text: "Rolling restart" }),
      f("rr-batch", "batch", "1", "number"), f("rr-maxun", "max unavailable", ""), f("rr-healthy", "healthy for (s)", "5", "number"),
      f("rr-timeout", "batch timeout (s)", "120", "number"), f("rr-nodes", "nodes", ""), f("rr-labels", "labels k=v,...", ""),
      el("label", {}, "on failure ", el("select", { id: "rr-onfail" }, ...["PAUSE", "ABORT", "CONTINUE"].map((v) => el("option", { value: v, text: v.toLowerCase() })))),
      f("rr-message", "message", ""),
      el("button", { type: "button", id: "rr-plan", onclick: () => rolling(true) }, "Show plan"),
      el("div", { id: "rr-plan-view" }));
    root.append(form);
  }
  function spec() {
    const v = (id) => document.getElementById(id).value.trim();
    const labels = {};
    for (const kv of v("rr-labels").split(",").filter(Boolean)) { const [k, x] = kv.split("="); labels[k.trim()] = (x || "").trim(); }
    return { spec: { kind: "ROLLING_RESTART", group, batch: parseInt(v("rr-batch") || "0", 10), max_unavailable: v("rr-maxun"),
      healthy_for_seconds: parseFloat(v("rr-healthy") || "0"), timeout_seconds: parseFloat(v("rr-timeout") || "0"),
      on_failure: v("rr-onfail"), selector: { nodes: v("rr-nodes").split(",").map((s) => s.trim()).filter(Boolean), labels } },
      message: v("rr-message") };
  }
  async function rolling(dry) {
    const view = document.getElementById("rr-plan-view");
    try {
      const req = spec();
      req.dry_run = dry;
      const op = await api("StartOperation", req);
      if (!dry) { location.hash = "#/op/" + op.id; return; }
      view.replaceChildren(el("p", { text: "Plan: " + op.batches.length + " batch(es)" }),
        ...op.batches.map((b, i) => el("div", { class: "batch plan-batch", text: "batch " + (i + 1) + ": " + b.nodes.map((s) => s.node).join(", ") })),
        ...Object.entries(op.gates || {}).map(([k, g]) => el("p", { class: "muted", text: k + ": " + g })),
        el("button", { type: "button", id: "rr-confirm", onclick: () => rolling(false) }, "Start rolling restart"));
    } catch (e) { view.replaceChildren(el("p", { class: "state FATAL", text: e.message })); }
  }
  const procs = processTable(root, (p) => p.group === group, true);
  return { update(change, changed) { procs.update(change, changed); if (change.full || changed.length || change.gone_procs) drawEverywhere(); },
           close: procs.close };
}

async function listPage(root, title, heads, method, request, rows) {
  // a page that is one table of one read's answer
  root.append(el("h2", { text: title }));
  const body = el("tbody", {});
  root.append(table(heads, body));
  try { body.replaceChildren(...rows(await api(method, request))); } catch (e) { message(e.message, true); }
  return body;
}

async function opsView(root) {
  await listPage(root, "Operations", ["id", "kind", "what", "state", "batch", "author", "created"], "ListOperations", { all: true },
    (r) => (r.operations || []).map((op) => el("tr", { "data-op": op.id },
      el("td", {}, el("a", { href: "#/op/" + op.id, text: op.id })), el("td", { text: op.spec.kind }),
      el("td", { text: op.spec.group || op.spec.config_name || (op.spec.expect_version ? "agent " + op.spec.expect_version : "agent") }),
      el("td", {}, stateSpan(op.state)),
      el("td", { text: op.current_batch + 1 + "/" + op.batches.length }), el("td", { text: op.author }),
      el("td", { text: new Date(op.created_at * 1000).toLocaleString() }))));
  return null;
}

function opView(root, id) {
  root.append(el("h2", { text: "Operation " + id }), el("p", {}, "state ", el("span", { id: "op-state", class: "state" })),
    el("p", { id: "op-reason", class: "muted" }),
    el("p", {}, writeButton("pause", "deploy", () => opAct("PauseOperation"), { id: "op-pause" }),
      writeButton("resume", "deploy", () => opAct("ResumeOperation"), { id: "op-resume" }),
      writeButton("abort", "deploy", () => { if (confirm("abort operation " + id + "?")) opAct("AbortOperation"); }, { id: "op-abort" })),
    el("div", { id: "op-batches" }));
  async function opAct(method) {
    try { await api(method, { id }); } catch (e) { message(e.message, true); }
  }
  stream("/api/events/operation/" + encodeURIComponent(id), {
    operation(op) {
      const s = document.getElementById("op-state");
      s.textContent = op.state; s.className = "state " + op.state.replace("OP_", "");
      const what = op.spec.group ? "rolling restart of " + op.spec.group
        : op.spec.kind === "AGENT_UPGRADE" ? "rolling agent upgrade" : "rollout of " + op.spec.config_name;
      document.getElementById("op-reason").textContent = what + (op.reason ? ": " + op.reason : "");
      document.getElementById("op-batches").replaceChildren(...op.batches.map((b, i) => el("div", { class: "batch", "data-batch": String(i) },
        (i === op.current_batch ? "▶ " : "") + "batch " + (i + 1) + ": ",
        ...b.nodes.map((st) => el("span", { class: "step", "data-node": st.node }, st.node + " ", stateSpan(st.state.replace("STEP_", "")), st.error ? " (" + st.error + ")" : "", "  ")))));
    },
  });
  return null;
}

async function configsView(root) {
  await listPage(root, "Config revisions", ["config", "current", "nodes", "updated"], "ListConfigs", {},
    (r) => (r.configs || []).map((c) => el("tr", {},
      el("td", {}, el("a", { href: "#/config/" + encodeURIComponent(c.name), text: c.name })), el("td", { text: String(c.current_revision) }),
      el("td", { text: (c.target_nodes || []).join(", ") }), el("td", { text: new Date(c.updated_at * 1000).toLocaleString() }))));
  return null;
}

function lineDiff(a, b) {
  // a longest-common-subsequence diff of lines: small configs, so O(n*m) is fine
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length, L = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const left = [], right = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { left.push([x[i++], ""]); right.push([y[j++], ""]); }
    else if (j < m && (i >= n || L[i][j + 1] >= L[i + 1][j])) { left.push(["", ""]); right.push([y[j++], "add"]); }
    else { left.push([x[i++], "del"]); right.push(["", ""]); }
  }
  const pre = (lines) => el("pre", {}, ...lines.map(([t, c]) => el("span", { class: c || "", text: t + "\n" })));
  return el("div", { class: "diff" }, pre(left), pre(right));
}

async function configView(root, name) {
  root.append(el("h2", { text: "Config " + name }));
  const body = el("tbody", {});
  const pick = el("div", { class: "form" });
  const out = el("div", { id: "diff" });
  root.append(table(["revision", "author", "message", "created", ""], body), pick, out);
  try {
    const h = await api("ConfigHistory", { name });
    const revs = (h.revisions || []).slice().sort((a, b) => b.revision - a.revision);
    body.replaceChildren(...revs.map((r) => el("tr", { "data-revision": String(r.revision) },
      el("td", { text: r.revision + (String(r.revision) === String(h.current_revision) ? " (current)" : "") + (r.withdrawn ? " withdrawn" : "") }),
      el("td", { text: r.author }), el("td", { text: r.message }), el("td", { text: new Date(r.created_at * 1000).toLocaleString() }),
      el("td", {}, String(r.revision) === String(h.current_revision) ? null : writeButton("roll back to this", "deploy", async () => {
        if (!confirm("Roll " + name + " back to revision " + r.revision + "?")) return;
        try { const p = await api("RollbackConfig", { name, to_revision: r.revision, message: "rollback from the dashboard" }); message("rolled back: revision " + p.revision.revision, false); route(); } catch (e) { message(e.message, true); }
      })))));
    const sel = (id) => el("select", { id }, ...revs.map((r) => el("option", { value: String(r.revision), text: String(r.revision) })));
    const a = sel("diff-a"), b = sel("diff-b");
    if (revs.length > 1) a.value = String(revs[1].revision);
    pick.append(el("label", {}, "compare ", a), el("label", {}, " with ", b), el("button", { type: "button", onclick: async () => {
      try {
        const [ra, rb] = await Promise.all([api("GetConfigRevision", { name, revision: a.value }), api("GetConfigRevision", { name, revision: b.value })]);
        out.replaceChildren(lineDiff(ra.config_text || "", rb.config_text || ""));
      } catch (e) { message(e.message, true); }
    } }, "diff"));
  } catch (e) { message(e.message, true); }
  return null;
}

function tailView(root, node, name) {
  const which = el("select", { id: "tail-stream" }, el("option", { value: "stdout", text: "stdout" }), el("option", { value: "stderr", text: "stderr" }));
  const pre = el("pre", { class: "log", id: "tail" });
  const note = el("p", { class: "muted", id: "tail-note" });
  let es = null;
  const MAX = 200000;  // characters kept on the page
  function follow() {
    if (es) es.close();
    pre.textContent = ""; note.textContent = "";
    es = stream("/api/events/tail?node=" + encodeURIComponent(node) + "&name=" + encodeURIComponent(name) + "&stream=" + which.value, {
      log(d) { pre.textContent = (pre.textContent + d.text).slice(-MAX); pre.scrollTop = pre.scrollHeight; },
      end(d) { note.textContent = d.reason || "ended"; es.close(); },
    });
  }
  which.addEventListener("change", follow);
  root.append(el("h2", { text: "Log of " + node + ":" + name }), el("p", {}, which, " ", el("button", { type: "button", onclick: follow }, "follow again")), pre, note);
  follow();
  return null;
}

async function auditView(root) {
  await listPage(root, "Audit log", ["time", "who", "action", "detail", "ok", "result", "controller"], "ListAudit", { limit: 200 },
    (r) => (r.entries || []).reverse().map((e) => el("tr", {},
      el("td", { text: new Date(e.time * 1000).toLocaleString() }), el("td", { text: e.who }), el("td", { text: e.action }),
      el("td", { text: e.detail }), el("td", {}, stateSpan(e.ok ? "RUNNING" : "FATAL")), el("td", { text: e.result }), el("td", { text: e.controller_id }))));
  return null;
}

async function route() {
  closeViewStreams();
  if (S.view && S.view.close) S.view.close();
  S.view = null;
  const root = document.getElementById("view");
  root.replaceChildren();
  const parts = location.hash.replace(/^#\/?/, "").split("?")[0].split("/").map(decodeURIComponent);
  const [page, a, b] = parts;
  if (!page) S.view = overview(root);
  else if (page === "node") S.view = nodeView(root, a);
  else if (page === "group") S.view = groupView(root, a);
  else if (page === "ops") await opsView(root);
  else if (page === "op") opView(root, a);
  else if (page === "configs") await configsView(root);
  else if (page === "config") await configView(root, a);
  else if (page === "tail") tailView(root, a, b);
  else if (page === "audit") await auditView(root);
  else root.append(el("p", { text: "no such page" }));
}

async function start() {
  await login();
  const asked = whoami();
  statusStream();  // opened while whoami is asked: the first view's data is on its way meanwhile
  const problem = await asked;
  if (problem) {
    S.status.close();
    S.status = null;
    document.getElementById("view").replaceChildren(el("h2", { text: "Not logged in" }), el("p", { text: problem }),
      el("p", { text: "Run `fleetctl dashboard-login` and open the link it prints." }));
    return;
  }
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
    location.reload();
  });
  banner();
  window.addEventListener("hashchange", () => { message("", false); route(); });
  route();
}

document.addEventListener("DOMContentLoaded", start);
