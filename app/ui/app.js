// GuardNest window: renders what the engine sends once a second ("guardnest://tick") and
// calls its commands. No framework, no build step.
"use strict";

const tauri = window.__TAURI__;
const invoke = (cmd, args) => tauri.core.invoke(cmd, args);
const $ = (id) => document.getElementById(id);

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtDuration(secs) {
  if (secs == null) return "–";
  const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function fmtAgo(epochSecs) {
  if (!epochSecs) return "never";
  return `${fmtDuration(Math.max(0, Math.floor(Date.now() / 1000) - epochSecs))} ago`;
}

function showError(err) {
  const e = typeof err === "string" ? { kind: "error", message: err } : err;
  $("error-text").textContent = e.message || String(err);
  // Another program on the port: offer another one.
  const portTaken = e.kind === "start" && /in use|address already/i.test(e.message || "");
  $("port-offer").classList.toggle("hidden", !portTaken);
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

function renderStatus(st) {
  const on = st.running;
  const paused = st.paused_secs != null;
  const hero = document.querySelector(".hero");
  hero.classList.toggle("on", on && !paused);
  hero.classList.toggle("off", !on);
  if (!busy) $("toggle").checked = on;
  $("state-title").textContent = !on ? "Protection is off" : paused ? "Protection is paused" : "You are protected";
  $("state-detail").textContent = on
    ? `Blocking ${st.names.toLocaleString()} malicious names${st.system_proxy.applied ? " for this whole computer" : ""}.`
    : "Turn protection on to block malicious sites.";
  $("pause-line").classList.toggle("hidden", !paused);
  if (paused) $("pause-left").textContent = fmtDuration(st.paused_secs);
  $("s-listen").textContent = st.listen || "not listening";
  $("s-uptime").textContent = fmtDuration(st.uptime_secs);
  const sp = st.system_proxy;
  $("s-system").textContent = sp.applied ? `set (${sp.backend})` : sp.last_error ? `not set: ${sp.last_error}` : "not set";
  $("s-health").textContent = !on ? "–" : st.healthy ? "passing" : `failing (${st.health_failures} failures)`;
  $("s-names").textContent = st.names.toLocaleString();
  renderLists(st.lists);
}

function renderStats(s) {
  $("c-blocked-today").textContent = s.blocked_today.toLocaleString();
  $("c-active").textContent = s.connections_active.toLocaleString();
  $("c-total").textContent = s.connections_total.toLocaleString();
  $("c-bytes").textContent = fmtBytes(s.bytes_up + s.bytes_down);
  renderRecent(s.recent_blocked);
  drawChart(s.blocked_per_minute);
}

let lastRecentKey = "";
function renderRecent(events) {
  const key = events.map((e) => `${e.at}${e.host}`).join("|");
  if (key === lastRecentKey) return;
  lastRecentKey = key;
  const ul = $("recent");
  ul.replaceChildren();
  if (!events.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "Nothing blocked yet.";
    ul.append(li);
    return;
  }
  for (const e of events.slice().reverse().slice(0, 30)) {
    const li = document.createElement("li");
    const text = document.createElement("div");
    const host = document.createElement("div");
    host.className = "host";
    host.textContent = e.host;
    const why = document.createElement("div");
    why.className = "why";
    why.textContent = `${e.list} · ${new Date(e.at * 1000).toLocaleTimeString()}`;
    text.append(host, why);
    const allow = document.createElement("button");
    allow.className = "small";
    allow.textContent = "Allow";
    allow.title = `Never block ${e.host}`;
    allow.addEventListener("click", async () => {
      const r = await call("allow_domain", { name: e.host });
      allow.textContent = "Allowed";
      allow.disabled = true;
      $("check-result").textContent = r.message;
    });
    li.append(text, allow);
    ul.append(li);
  }
}

let lastListsKey = "";
function renderLists(lists) {
  const key = JSON.stringify(lists);
  if (key === lastListsKey) return;
  lastListsKey = key;
  const tbody = $("lists");
  tbody.replaceChildren();
  for (const l of lists) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = l.name;
    name.title = l.location;
    if (l.last_error) {
      const err = document.createElement("div");
      err.className = "err";
      err.textContent = l.last_error;
      name.append(err);
    }
    const kind = document.createElement("td");
    kind.textContent = l.role === "allow" ? "allow" : l.format || "block";
    const n = document.createElement("td");
    n.className = "num";
    n.textContent = l.loaded ? l.entries.toLocaleString() : "not loaded";
    const when = document.createElement("td");
    when.textContent = fmtAgo(l.last_success);
    const act = document.createElement("td");
    if (/^https?:\/\//.test(l.location) || l.location.startsWith("/")) {
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

function drawChart(perMinute) {
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

async function refresh() {
  renderStatus(await invoke("get_proxy_status"));
  renderStats(await invoke("get_stats"));
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

$("update-lists").addEventListener("click", async () => {
  $("lists-msg").textContent = "Updating…";
  const r = await call("update_lists");
  $("lists-msg").textContent = `${r.updated.length} updated, ${r.unchanged.length} unchanged, ${r.failed.length} failed.`;
});

tauri.event.listen("guardnest://tick", (ev) => { renderStatus(ev.payload.status); renderStats(ev.payload.stats); });
tauri.event.listen("guardnest://error", (ev) => showError(ev.payload));
refresh();
