// GuardNest window: draws what the engine says. The engine sends a "guardnest://view" event
// only when something shown has changed; nothing here runs on a timer. Times are shown as
// clock times ("since 14:05", "until 14:35"), so nothing needs redrawing every second.
"use strict";

const tauri = window.__TAURI__;
const invoke = (cmd, args) => tauri.core.invoke(cmd, args);
const $ = (id) => document.getElementById(id);

/** "1 connection", "3 connections". */
function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

/** A clock time `secs` from now (negative: ago). */
function clock(secsFromNow) {
  return new Date(Date.now() + secsFromNow * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function fmtAgo(epochSecs) {
  if (!epochSecs) return "never";
  const s = Math.max(0, Math.floor(Date.now() / 1000) - epochSecs);
  if (s < 60) return "just now";
  if (s < 3600) return `${plural(Math.floor(s / 60), "minute", "minutes")} ago`;
  if (s < 86400) return `${plural(Math.floor(s / 3600), "hour", "hours")} ago`;
  return `${plural(Math.floor(s / 86400), "day", "days")} ago`;
}

function showError(e) {
  // A taken port is said plainly (the whole error stays in the tooltip).
  const taken = e.kind === "port_in_use" && /listen on (\S+?):? /.exec(e.message || "");
  $("error-text").textContent = taken
    ? `Another program is already using ${taken[1]}, so GuardNest cannot listen there. Choose another port:`
    : e.message || String(e);
  $("error-text").title = e.message || "";
  // Another program holds the port: offer another one.
  $("port-offer").classList.toggle("hidden", e.kind !== "port_in_use");
  $("error").classList.remove("hidden");
}

async function call(cmd, args) {
  try {
    return await invoke(cmd, args);
  } catch (e) {
    showError(e);
    throw e;
  }
}

let busy = false;
let shownStartError = null;
let dismissedRepair = null;

function renderStatus(st) {
  const p = st.protection;
  const hero = document.querySelector(".hero");
  for (const c of ["on", "off", "warning", "paused"]) hero.classList.remove(c);
  hero.classList.add({ protected: "on", unprotected: "warning", paused: "paused", off: "off" }[p.state]);
  if (!busy) $("toggle").checked = st.running;
  document.querySelector(".switch").classList.toggle("paused", p.state === "paused");
  $("switch-label").textContent = { protected: "On", unprotected: "On", paused: "Paused", off: "Off" }[p.state];
  $("state-title").textContent = {
    protected: "You are protected",
    unprotected: "Not protected yet",
    paused: "Protection is paused",
    off: "Protection is off",
  }[p.state];
  $("state-detail").textContent = p.state === "protected"
    ? `Blocking ${plural(p.names, "malicious name", "malicious names")}${st.system_proxy.applied ? " for this whole computer" : ""}.`
    : {
      unprotected: "GuardNest is running, but no block list is loaded, so nothing is blocked.",
      paused: "Nothing is blocked until the pause ends.",
      off: "Turn protection on to block malicious sites.",
    }[p.state];
  $("warn-line").classList.toggle("hidden", p.state !== "unprotected");
  if (p.state === "unprotected") {
    $("warn-text").textContent = p.message;
    const action = { no_lists: "Add a list", empty: "Add a list", loading: "", offline: "Try again", download_failed: "Try again" }[p.reason];
    $("warn-action").textContent = action;
    $("warn-action").classList.toggle("hidden", !action);
    $("warn-action").onclick = () => (p.reason === "no_lists" || p.reason === "empty" ? $("add-url").focus() : updateLists());
  }
  $("pause-line").classList.toggle("hidden", p.state !== "paused");
  if (p.state === "paused") $("pause-until").textContent = clock(p.secs);
  // Pause only while blocking; Resume is in the paused line.
  $("pause").classList.toggle("hidden", p.state !== "protected");
  // Why the last start failed (a taken port) is said at once, with the offer of another.
  const se = st.start_error;
  const key = se ? se.kind + se.message : null;
  if (se && key !== shownStartError) showError(se);
  if (!se && shownStartError) $("error").classList.add("hidden");
  shownStartError = key;

  // What a repair did while GuardNest was away (a crash, or a login with GuardNest gone).
  if (st.repaired && st.repaired !== dismissedRepair) {
    $("repaired-text").textContent = `Your own proxy settings were put back: ${st.repaired}.`;
    $("repaired-text").dataset.key = st.repaired;
    $("repaired").classList.remove("hidden");
  }
  $("s-listen").textContent = st.listen || "not listening";
  $("s-uptime").textContent = st.uptime_secs == null ? "–" : clock(-st.uptime_secs);
  const sp = st.system_proxy;
  $("s-system").textContent = sp.applied ? `set (${sp.backend})` : sp.last_error ? `not set: ${sp.last_error}` : "not set";
  // Issue 26: the user's own proxy stays in use, GuardNest chaining through it.
  const up = st.upstream;
  const upText = up.chained && sp.applied ? `stays in use through GuardNest: ${up.summary}` : up.summary;
  $("s-upstream").textContent = up.unreachable.length ? `${upText}; ${up.unreachable.map((u) => `parent proxy ${u}`).join("; ")}` : upText;
  $("s-health").textContent = !st.running ? "–" : st.healthy ? "passing" : `failing (${plural(st.health_failures, "failure", "failures")})`;
  $("s-names").textContent = st.names.toLocaleString();
  renderLists(st.lists);
}

function renderStats(s) {
  $("c-blocked-today").textContent = s.blocked_today.toLocaleString();
  $("c-active").textContent = s.connections_active.toLocaleString();
  $("c-active-label").textContent = s.connections_active === 1 ? "open connection" : "open connections";
  $("c-total").textContent = s.connections_total.toLocaleString();
  $("c-total-label").textContent = s.connections_total === 1 ? "connection" : "connections";
  $("c-bytes").textContent = fmtBytes(s.bytes_up + s.bytes_down);
  renderRecent(s.recent_names);
  drawChart(s.blocked_per_minute);
}

let lastRecentKey = "";
function renderRecent(rows) {
  const key = JSON.stringify(rows);
  if (key === lastRecentKey) return;
  lastRecentKey = key;
  const ul = $("recent");
  ul.replaceChildren();
  if (!rows.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "Nothing blocked yet.";
    ul.append(li);
    return;
  }
  for (const r of rows) {
    const li = document.createElement("li");
    const text = document.createElement("div");
    const host = document.createElement("div");
    host.className = "host";
    host.textContent = r.host;
    const why = document.createElement("div");
    why.className = "why";
    const times = r.count === 1 ? "once" : `${r.count.toLocaleString()} times`;
    why.textContent = `${r.list} · ${times}, last at ${new Date(r.last * 1000).toLocaleTimeString()}`;
    text.append(host, why);
    const allow = document.createElement("button");
    allow.className = "small";
    allow.textContent = "Allow";
    allow.title = `Never block ${r.host}`;
    allow.addEventListener("click", async () => {
      const res = await call("allow_domain", { name: r.host });
      allow.textContent = "Allowed";
      allow.disabled = true;
      $("check-result").textContent = res.message;
    });
    li.append(text, allow);
    ul.append(li);
  }
}

let lastListsKey = "";
function renderLists(lists) {
  const key = JSON.stringify(lists.map((l) => [l.name, l.role, l.format, l.loaded, l.entries, l.last_success, l.problem]));
  if (key === lastListsKey) return;
  lastListsKey = key;
  const tbody = $("lists");
  tbody.replaceChildren();
  for (const l of lists) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = l.name;
    name.title = l.location;
    if (l.problem) {
      // One short sentence; the whole error on demand.
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = l.problem.summary;
      const full = document.createElement("div");
      full.textContent = l.problem.detail;
      details.append(summary, full);
      name.append(details);
    }
    const kind = document.createElement("td");
    kind.textContent = l.role === "allow" ? "allow" : l.format || "block";
    const n = document.createElement("td");
    n.className = "num";
    n.textContent = l.loaded ? l.entries.toLocaleString() : "not loaded";
    const when = document.createElement("td");
    when.textContent = fmtAgo(l.last_success);
    const act = document.createElement("td");
    if (!l.builtin && l.name !== "my allowlist" && (/^https?:\/\//.test(l.location) || l.location.startsWith("/"))) {
      const rm = document.createElement("button");
      rm.className = "small";
      rm.textContent = "Remove";
      rm.addEventListener("click", async () => {
        try {
          $("lists-msg").textContent = (await invoke("remove_list", { location: l.location })).message;
        } catch (e) {
          $("lists-msg").textContent = e.message || String(e);
        }
      });
      act.append(rm);
    }
    tr.append(name, kind, n, when, act);
    tbody.append(tr);
  }
}

let lastChartKey = "";
function drawChart(perMinute) {
  // Redrawn only when a minute's count changed: a block arrived, or the hour moved on.
  const key = perMinute.join(",");
  if (key === lastChartKey) return;
  lastChartKey = key;
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const max = Math.max(1, ...perMinute);
  const barW = w / perMinute.length;
  ctx.fillStyle = css.getPropertyValue("--line");
  ctx.fillRect(0, h - 1, w, 1);
  ctx.fillStyle = css.getPropertyValue("--danger");
  perMinute.forEach((v, i) => {
    const bh = (v / max) * (h - 18);
    ctx.fillRect(i * barW + 1, h - 1 - bh, Math.max(1, barW - 2), bh);
  });
  ctx.fillStyle = css.getPropertyValue("--muted");
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(`max ${max}/min`, 4, 12);
  ctx.fillText("now", w - 26, 12);
}

function render(view) {
  renderStatus(view.status);
  renderStats(view.stats);
}

/** The whole view, asked for: at load, and after an action. */
async function refresh() {
  try {
    render(await invoke("get_view"));
  } catch (e) {
    refused(e);
    return;
  }
  invoke("get_start_at_login").then((on) => { $("login").checked = on; }, () => {});
}

/** The engine did not start (another GuardNest holds the data directory): say only that. */
function refused(e) {
  $("refused").textContent = e.kind === "already_running"
    ? `GuardNest is already running: ${e.message.replace(/^another GuardNest uses the data directory [^:]*: /, "")}. Stop it, or use it instead of this window.`
    : `GuardNest could not start: ${e.message}`;
  $("refused").classList.remove("hidden");
  document.querySelector("main").classList.add("hidden");
}

$("toggle").addEventListener("change", async (ev) => {
  busy = true;
  try {
    await call(ev.target.checked ? "enable_system_proxy" : "disable_system_proxy");
  } catch (_) {
    ev.target.checked = !ev.target.checked;
  } finally {
    busy = false;
    refresh();
  }
});

$("pause").addEventListener("click", async () => { await call("pause_protection", { minutes: 15 }); refresh(); });
$("resume").addEventListener("click", async () => { await call("resume_protection"); refresh(); });
$("error-close").addEventListener("click", () => $("error").classList.add("hidden"));
$("repaired-close").addEventListener("click", () => {
  dismissedRepair = $("repaired-text").dataset.key;
  $("repaired").classList.add("hidden");
});
$("login").addEventListener("change", async (ev) => {
  try {
    await call("set_start_at_login", { on: ev.target.checked });
  } catch (_) {
    ev.target.checked = !ev.target.checked;
  }
});
$("use-port").addEventListener("click", async () => {
  await call("use_port", { port: Number($("port").value) });
  $("error").classList.add("hidden");
  refresh();
});

$("check-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("check-name").value.trim();
  if (!name) return;
  try {
    const r = await invoke("check_domain", { name });
    $("check-result").textContent = r.blocked
      ? `${r.name} is blocked by “${r.list}” (rule ${r.rule}).`
      : r.exempt ? `${r.name} is allowed by “${r.list}”.` : `${r.name} is not on any list.`;
  } catch (e) {
    $("check-result").textContent = e.message || String(e);
  }
});

$("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const location = $("add-url").value.trim();
  if (!location) return;
  $("lists-msg").textContent = "Adding…";
  try {
    $("lists-msg").textContent = (await invoke("add_list", { location })).message;
    $("add-url").value = "";
  } catch (e) {
    $("lists-msg").textContent = e.message || String(e);
  }
});

async function updateLists() {
  $("lists-msg").textContent = "Updating…";
  const r = await call("update_lists");
  $("lists-msg").textContent = `${plural(r.updated.length, "list", "lists")} updated, ${r.unchanged.length} unchanged, ${r.failed.length} failed.`;
}
$("update-lists").addEventListener("click", updateLists);

tauri.event.listen("guardnest://view", (ev) => render(ev.payload));
tauri.event.listen("guardnest://error", (ev) => showError(ev.payload));
refresh();
