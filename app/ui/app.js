// GuardNest window: a view of what the engine says, in plain words. The engine sends a
// "guardnest://view" event whenever something shown has changed (whoever changed it);
// nothing here runs on a timer. Every time is shown one way (see `when`), and errors are
// worded from their structured fields, never by matching the engine's English.
"use strict";

const tauri = window.__TAURI__;
const invoke = (cmd, args) => tauri.core.invoke(cmd, args);
const $ = (id) => document.getElementById(id);

/** "1 connection", "3 connections". */
function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** "a", "a and b", "a, b and c". */
function andList(items) {
  if (items.length < 2) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

/** The one way a moment is shown (the system's clock, as the tray): "14:05" today, "6 Dec, 14:05" another day; with the
 * seconds only when they matter (`seconds`: the moment is not on a whole minute). */
let clock12h = null;
function when(epochSecs, seconds = false) {
  const d = new Date(epochSecs * 1000);
  // As the tray and the system write it: "15:09", or "3:09 PM" on a 12-hour clock.
  const opts = clock12h === true ? { hour: "numeric", minute: "2-digit", hour12: true }
    : clock12h === false ? { hour: "2-digit", minute: "2-digit", hour12: false } : { hour: "2-digit", minute: "2-digit" };
  if (seconds && epochSecs % 60 !== 0) opts.second = "2-digit";
  const time = d.toLocaleTimeString([], opts);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/** The built-in lists in words (their ids stay in the tooltip and the CLI); the user's own
 *  lists are called by the name they gave. */
const BUILT_IN = {
  "urlhaus-malware": "URLhaus malware sites",
  "blocklistproject-malware": "Block List Project: malware",
  "blocklistproject-phishing": "Block List Project: phishing",
};
function listTitle(name) {
  return BUILT_IN[name] || name;
}

/** What a person typed, quoted, cut to a readable length. */
function quoted(text) {
  const t = String(text || "");
  return `“${t.length > 60 ? `${t.slice(0, 57)}…` : t}”`;
}

/** A backend's name for people. */
function settingsOf(backend) {
  return { gnome: "GNOME", kde: "KDE", windows: "Windows", macos: "macOS" }[backend] || "";
}

/** An error in plain words (the technical line goes under "Details"). */
function plain(e) {
  if (!e || typeof e !== "object") return "Something went wrong.";
  switch (e.kind) {
    case "port_in_use":
      return `Another program is already using port ${e.addr ? e.addr.split(":").pop() : ""}, so GuardNest cannot protect there. Choose another port:`;
    case "system_proxy":
      return "GuardNest could not change this computer's proxy settings, so your apps do not go through it.";
    case "start":
      return "GuardNest could not start protecting.";
    case "stop_timeout":
      return "GuardNest took too long to stop; try again.";
    case "save":
      return "GuardNest could not save your change.";
    case "lists":
      return e.problem ? `GuardNest could not use this list: ${e.problem.summary}.` : "GuardNest could not use this list.";
    case "already_running":
      return "Another GuardNest is already running.";
    case "input":
      switch (e.reason) {
        case "not_a_host": return (e.input || "").length > 253
          ? `${quoted(e.input)} is too long for a site name (at most 253 characters).`
          : `${quoted(e.input)} is not a site name or a web address.`;
        case "pause_range": return "A pause lasts from 1 minute to 24 hours.";
        case "nothing_to_pause": return "Protection is off, so there is nothing to pause. Turn it on first.";
        case "not_a_list_location": return `${quoted(e.input)} is not a web address (https://…) or a file (/home/… or ~/…).`;
        case "not_a_user_list": return "That list is not one you added.";
        case "allowed_by_parent": return `${quoted(e.input)} is allowed because you allowed a name it belongs to: undo that one to block it again.`;
        case "port": return "Choose a port from 1 to 65535.";
        default: return "GuardNest cannot use that.";
      }
    default:
      return "Something went wrong.";
  }
}

/** Fills a "Details" disclosure with the technical line, or hides it. */
function details(el, code, text) {
  code.textContent = text || "";
  el.classList.toggle("hidden", !text);
  el.open = false;
}

function showError(e) {
  $("error-text").textContent = plain(e);
  details($("error-details"), $("error-detail"), e && e.message);
  $("port-offer").classList.toggle("hidden", !e || e.kind !== "port_in_use");
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

/** Shows a confirmation in `el` (next to the control that caused it), in view. */
function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error-text", isError);
  el.classList.toggle("hidden", !text);
  if (text) el.scrollIntoView({ block: "nearest" });
}

let busy = false;
let shownStartError = null;
let dismissedRepair = null;
let lastStatus = null;

function renderStatus(st) {
  lastStatus = st;
  const p = st.protection;
  const missing = (p.missing || []).map((m) => listTitle(m.name));
  const partly = p.state === "protected" && missing.length > 0;
  const look = partly ? "warning" : { protected: "on", unprotected: "warning", paused: "paused", off: "off" }[p.state];
  const hero = document.querySelector(".hero");
  for (const c of ["on", "off", "warning", "paused"]) hero.classList.remove(c);
  hero.classList.add(look);
  // On means blocking, or about to (paused: amber, and clicking it resumes).
  if (!busy) $("toggle").checked = p.state !== "off";
  $("switch").classList.toggle("paused", p.state === "paused");
  $("switch").title = {
    protected: "Protection is on: click to turn it off",
    unprotected: "Protection is on: click to turn it off",
    paused: "Paused: click to resume protection",
    off: "Protection is off: click to turn it on",
  }[p.state];
  $("switch-label").textContent = { protected: "On", unprotected: "On, not blocking", paused: "Paused", off: "Off" }[p.state];
  $("state-title").textContent = partly ? "Partly protected" : {
    protected: "You are protected",
    unprotected: "Not protected yet",
    paused: "Protection is paused",
    off: "Protection is off",
  }[p.state];
  // Only programs that use the system proxy come through GuardNest ("Protected programs").
  const everywhere = st.system_proxy.applied ? " for the programs that use the system proxy" : "";
  let detail;
  switch (p.state) {
    case "protected":
      detail = partly
        ? `Blocking ${plural(p.names, "malicious site", "malicious sites")}${everywhere}, from the lists that loaded.`
        : `Blocking ${plural(p.names, "malicious site", "malicious sites")}${everywhere}.`;
      break;
    case "unprotected": detail = "GuardNest is running, but no block list is loaded, so nothing is blocked."; break;
    case "paused": detail = `Nothing is blocked until ${when(p.until, true)}; then protection comes back by itself.`; break;
    default: detail = "Turn protection on to block malicious sites.";
  }
  $("state-detail").textContent = detail;
  renderWarning(st, p, missing, partly);
  $("pause-line").classList.toggle("hidden", p.state !== "paused");
  // The Pause button keeps its place whether shown or not, so the switch never moves.
  $("pause").textContent = `Pause ${st.pause_minutes} min`;
  $("pause").title = `Stop blocking for ${st.pause_minutes} minutes; it comes back by itself`;
  $("pause").classList.toggle("invisible", p.state !== "protected");
  $("pause").disabled = p.state !== "protected";

  // Why the last start failed (a taken port) is said at once, with the offer of another.
  const se = st.start_error;
  const key = se ? se.kind + se.message : null;
  if (se && key !== shownStartError) showError(se);
  if (!se && shownStartError) $("error").classList.add("hidden");
  shownStartError = key;

  renderRepaired(st.repaired || []);
  $("s-since").textContent = st.uptime_secs == null ? "–" : when(Math.floor(Date.now() / 1000) - st.uptime_secs);
  const sp = st.system_proxy;
  $("s-system").textContent = sp.applied
    ? "go through GuardNest"
    : !st.running ? "use your own proxy settings"
      : sp.last_error ? `do not go through GuardNest: the system proxy could not be set (${sp.last_error})` : "do not go through GuardNest";
  // Issue 26: the user's own proxy stays in use, GuardNest chaining through it.
  const up = st.upstream;
  const upText = up.chained && sp.applied ? `stays in use through GuardNest: ${up.summary}` : up.summary;
  // Off, GuardNest forwards nothing: "Your apps" already says they use their own settings.
  $("s-upstream").textContent = !st.running ? "–"
    : up.unreachable.length ? `${upText}; ${up.unreachable.map((u) => `parent proxy ${u}`).join("; ")}` : upText;
  $("s-names").textContent = (st.names_blocked ?? st.names).toLocaleString();
  $("s-listen").textContent = st.listen || "none (off)";
  $("s-health").textContent = !st.running ? "–" : st.healthy ? "working" : `not answering (${plural(st.health_failures, "failure", "failures")})`;
  renderLists(st.lists, st.allowed || []);
}

/** The line under the headline when something is missing: which lists, why, what to do. */
function renderWarning(st, p, missing, partly) {
  let text = "";
  let action = "";
  let add = false;
  let retryProxy = false;
  if (p.state === "unprotected") {
    const problems = (p.missing || []).filter((m) => m.problem);
    const offline = problems.length > 0 && problems.every((m) => ["offline", "timeout"].includes(m.problem.kind));
    switch (p.reason) {
      case "no_lists": text = "No block list is set up."; add = true; break;
      case "empty": text = "Your block lists hold no names."; add = true; break;
      case "loading": text = `Downloading ${andList(missing)}…`; break;
      case "offline":
        text = `Not downloaded yet: ${andList(missing)}. GuardNest keeps trying; check your internet connection, or add a list file you have.`;
        action = "Try again"; add = true; break;
      default:
        text = `Could not download ${andList(missing)}: ${(problems[0] && problems[0].problem.summary) || "the server refused"}.`;
        action = "Try again"; add = true;
    }
    if (offline && p.reason !== "offline") action = "Try again";
  } else if (partly) {
    const problems = (p.missing || []).filter((m) => m.problem);
    const offline = problems.every((m) => ["offline", "timeout"].includes(m.problem.kind));
    text = problems.length === 0
      ? `Still downloading: ${andList(missing)}.`
      : offline
        ? `Not downloaded yet: ${andList(missing)}, so their sites are not blocked. GuardNest keeps trying; check your internet connection.`
        : `Could not download ${andList(missing)} (${problems[0].problem.summary}), so their sites are not blocked.`;
    action = problems.length ? "Try again" : "";
  } else if (st.running && st.system_proxy.wanted && !st.system_proxy.applied && st.system_proxy.last_error) {
    text = "GuardNest could not change this computer's proxy settings, so your apps do not go through it.";
    action = "Try again";
    retryProxy = true;
  }
  $("warn-line").classList.toggle("hidden", !text);
  $("warn-text").textContent = text;
  $("warn-action").textContent = action;
  $("warn-action").classList.toggle("hidden", !action);
  $("warn-action").onclick = () => (retryProxy ? enable() : updateLists());
  $("warn-add").classList.toggle("hidden", !add);
}

/** What a repair put back before this start, in a sentence per repair. */
function renderRepaired(notes) {
  const key = JSON.stringify(notes);
  if (!notes.length || key === dismissedRepair) {
    $("repaired").classList.add("hidden");
    return;
  }
  const sentences = notes.map((n) => {
    const whose = settingsOf(n.backend) ? `your own ${settingsOf(n.backend)} proxy settings` : "your own proxy settings";
    return n.at_login
      ? `When you logged in (${when(n.at)}), GuardNest was not running, so it put ${whose} back.`
      : `The last time, GuardNest stopped without putting ${whose} back; it put them back when it started (${when(n.at)}).`;
  });
  $("repaired-text").textContent = sentences.join(" ");
  $("repaired-text").dataset.key = key;
  details($("repaired").querySelector("details"), $("repaired-detail"), notes.map((n) => n.message).join("\n"));
  $("repaired").classList.remove("hidden");
}

function renderStats(s) {
  $("c-blocked-today").textContent = s.blocked_today.toLocaleString();
  $("c-active").textContent = s.connections_active.toLocaleString();
  $("c-active-label").textContent = s.connections_active === 1 ? "open connection" : "open connections";
  $("c-total").textContent = s.connections_total.toLocaleString();
  $("c-total-label").textContent = s.connections_total === 1 ? "connection" : "connections";
  $("c-bytes").textContent = fmtBytes(s.bytes_up + s.bytes_down);
  renderRecent(s.recent_names, false, s.blocked_today);
  renderPrograms(s.programs || []);
  drawChart(s.blocked_per_minute);
}

/** Who asked, in a few words: the program's name (its path in the tooltip). */
function askerName(a) {
  if (!a) return "";
  switch (a.kind) {
    case "program": return a.name;
    case "restricted": return a.user ? `a program of ${a.user}` : "a program GuardNest may not look at";
    case "closed": return "a program that closed its connection";
    case "remote": return `the computer at ${a.address}`;
    default: return "an unknown program";
  }
}

/** Rows of "Protected programs" shown. */
const PROGRAMS_SHOWN = 12;
let lastProgramsKey = "";
function renderPrograms(rows) {
  const key = JSON.stringify(rows.map((r) => [r.label, r.connections, r.blocks]));
  if (key === lastProgramsKey) return;
  lastProgramsKey = key;
  const ul = $("programs");
  ul.replaceChildren();
  if (!rows.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "None yet.";
    ul.append(li);
  }
  for (const r of rows.slice(0, PROGRAMS_SHOWN)) {
    const li = document.createElement("li");
    const text = document.createElement("div");
    text.className = "grow";
    const name = document.createElement("div");
    if (r.asker.kind === "closed") li.className = "muted";
    name.className = "host";
    name.textContent = r.asker.kind === "closed" ? "Connections closed before they could be named" : askerName(r.asker);
    name.title = r.label;
    const what = document.createElement("div");
    what.className = "why";
    // A blocked connection is counted as one a moment later (named in a batch): until then
    // the row says only its blocks, never "0 connections".
    what.textContent = [
      r.connections ? plural(r.connections, "connection", "connections") : "",
      r.blocks ? plural(r.blocks, "block", "blocks") : "",
    ].filter(Boolean).join(" · ");
    text.append(name, what);
    li.append(text);
    ul.append(li);
  }
}

/** Rows of "Recently blocked" shown before "Show all". */
const RECENT_SHOWN = 6;
let showAllRecent = false;
let lastRecent = [];
let lastToday = 0;
let lastRecentKey = "";
/** The names blocked since GuardNest started (kept in memory only), newest first. The day's
 *  count survives a restart; the names do not, and the empty list says so. */
function renderRecent(rows, force = false, today = lastToday) {
  const key = JSON.stringify(rows) + showAllRecent + today;
  if (key === lastRecentKey && !force) return;
  lastRecentKey = key;
  lastRecent = rows;
  lastToday = today;
  const ul = $("recent");
  ul.replaceChildren();
  if (!rows.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = today === 1
      ? "Nothing blocked since GuardNest started. The 1 block earlier today is counted, but its name is not kept."
      : today > 1
        ? `Nothing blocked since GuardNest started. The ${today.toLocaleString()} blocks earlier today are counted, but their names are not kept.`
        : "Nothing blocked yet.";
    ul.append(li);
  }
  for (const r of showAllRecent ? rows : rows.slice(0, RECENT_SHOWN)) {
    const li = document.createElement("li");
    li.dataset.host = r.host;
    const text = document.createElement("div");
    text.className = "grow";
    const host = document.createElement("div");
    host.className = "host";
    host.textContent = r.host;
    const why = document.createElement("div");
    why.className = "why";
    const times = r.count === 1 ? "once" : `${r.count.toLocaleString()} times`;
    const asked = askerName(r.asked_by);
    const by = r.allowed_by || r.host;
    why.textContent = r.allowed
      ? (by === r.host ? "allowed by you" : `allowed by you, as part of ${by}`) + ` · was blocked by ${listTitle(r.list)}`
      : `${listTitle(r.list)} · ${times}, last at ${when(r.last)}` + (asked ? ` · asked by ${asked}` : "");
    if (r.asked_by && r.asked_by.kind === "program") why.title = r.asked_by.path || r.asked_by.name;
    text.append(host, why);
    const act = document.createElement("div");
    act.className = "act";
    if (r.allowed) {
      const done = document.createElement("span");
      done.className = "allowed";
      done.textContent = "Allowed";
      const undo = document.createElement("button");
      undo.className = "small undo";
      undo.textContent = "Undo";
      undo.title = by === r.host ? `Block ${r.host} again` : `Block ${by} and its subdomains again`;
      undo.addEventListener("click", () => unallow(by, undo));
      act.append(done, undo);
    } else {
      const allow = document.createElement("button");
      allow.className = "small allow";
      allow.textContent = "Allow";
      allow.title = `Never block ${r.host}`;
      allow.addEventListener("click", async () => {
        allow.disabled = true;
        try {
          await call("allow_domain", { name: r.host });
          allow.textContent = "Allowed";
        } catch (_) {
          allow.disabled = false;
        }
      });
      act.append(allow);
    }
    li.append(text, act);
    ul.append(li);
  }
  const more = rows.length - RECENT_SHOWN;
  $("recent-more").classList.toggle("hidden", more <= 0);
  $("recent-more").textContent = showAllRecent ? "Show fewer" : `Show ${plural(more, "more", "more")}`;
}

async function unallow(name, button) {
  if (button) button.disabled = true;
  try {
    return await call("unallow_domain", { name });
  } catch (_) {
    if (button) button.disabled = false;
    return null;
  }
}

let lastListsKey = "";
function renderLists(lists, allowed) {
  const key = JSON.stringify([lists.map((l) => [l.name, l.role, l.format, l.loaded, l.entries, l.last_success, l.problem, l.removable]), allowed]);
  if (key === lastListsKey) return;
  lastListsKey = key;
  const openAllowlist = $("allowed-names") && $("allowed-names").open;
  const tbody = $("lists");
  tbody.replaceChildren();
  for (const l of lists) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.className = "wrap";
    const title = document.createElement("div");
    title.textContent = listTitle(l.name);
    if (BUILT_IN[l.name]) title.title = `built in: ${l.name}`;
    title.title = l.location;
    name.append(title);
    if (l.problem) {
      const problem = document.createElement("div");
      problem.className = "error-text small-text";
      problem.textContent = l.problem.summary;
      const more = document.createElement("details");
      more.className = "details";
      const summary = document.createElement("summary");
      summary.textContent = "Details";
      const code = document.createElement("code");
      code.textContent = l.problem.detail;
      more.append(summary, code);
      name.append(problem, more);
    }
    if (l.own_allowlist) name.append(allowedNames(allowed, openAllowlist));
    const kind = document.createElement("td");
    kind.textContent = l.role === "allow" ? "allow" : "block";
    const n = document.createElement("td");
    n.className = "num";
    n.textContent = l.loaded ? l.entries.toLocaleString() : "not loaded";
    const updated = document.createElement("td");
    updated.textContent = l.last_success ? when(l.last_success) : "never";
    const act = document.createElement("td");
    if (l.removable) {
      const rm = document.createElement("button");
      rm.className = "small";
      rm.textContent = "Remove";
      rm.title = `Stop using ${l.location}`;
      rm.addEventListener("click", async () => {
        rm.disabled = true;
        try {
          await invoke("remove_list", { location: l.location });
          say($("remove-msg"), `Removed ${listTitle(l.name)}.`);
        } catch (e) {
          rm.disabled = false;
          say($("remove-msg"), plain(e), true);
        }
      });
      act.append(rm);
    }
    tr.append(name, kind, n, updated, act);
    tbody.append(tr);
  }
}

/** The user's own allowlist: every name, each with Remove (the undo of Allow). */
function allowedNames(allowed, open) {
  const box = document.createElement("details");
  box.id = "allowed-names";
  box.className = "details";
  box.open = open;
  const summary = document.createElement("summary");
  summary.textContent = allowed.length ? `Sites you allowed (${allowed.length})` : "Sites you allowed: none yet";
  box.append(summary);
  const ul = document.createElement("ul");
  ul.className = "allowed-list";
  for (const name of allowed) {
    const li = document.createElement("li");
    li.dataset.host = name;
    const span = document.createElement("span");
    span.textContent = name;
    const rm = document.createElement("button");
    rm.className = "small";
    rm.textContent = "Remove";
    rm.title = `Block ${name} again if a list has it`;
    rm.addEventListener("click", () => unallow(name, rm));
    li.append(span, rm);
    ul.append(li);
  }
  box.append(ul);
  return box;
}

let lastChart = [];
let lastChartKey = "";
function drawChart(perMinute, force = false) {
  // Redrawn when a minute's count changed (a block arrived, or the hour moved on), or the
  // chart's size did.
  const canvas = $("chart");
  const w = canvas.clientWidth, h = canvas.clientHeight;
  const key = `${perMinute.join(",")}/${w}x${h}`;
  if (key === lastChartKey && !force) return;
  lastChartKey = key;
  lastChart = perMinute;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(w * dpr));
  canvas.height = Math.max(1, Math.round(h * dpr));
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const max = Math.max(0, ...perMinute);
  ctx.fillStyle = css.getPropertyValue("--line");
  ctx.fillRect(0, h - 1, w, 1);
  ctx.fillStyle = css.getPropertyValue("--muted");
  ctx.font = "12px system-ui, sans-serif";
  if (max === 0) {
    // The per-minute counts start with GuardNest: say since when, if that is under an hour.
    const up = lastStatus && lastStatus.uptime_secs;
    const since = up != null && up < 3600 ? `since ${when(Math.floor(Date.now() / 1000) - up)}` : "in the last hour";
    ctx.textAlign = "center";
    ctx.fillText(`Nothing blocked ${since}`, w / 2, h / 2);
    return;
  }
  const barW = w / perMinute.length;
  ctx.fillText(`most: ${max} in a minute`, 4, 12);
  ctx.textAlign = "right";
  ctx.fillText("now", w - 2, 12);
  ctx.fillStyle = css.getPropertyValue("--danger");
  perMinute.forEach((v, i) => {
    const bh = (v / max) * (h - 18);
    ctx.fillRect(i * barW + 1, h - 1 - bh, Math.max(1, barW - 2), bh);
  });
}
new ResizeObserver(() => drawChart(lastChart)).observe($("chart"));

let lastRefusedKey = "";
function render(view) {
  clock12h = typeof view.clock_12h === "boolean" ? view.clock_12h : null;
  const main = document.querySelector("main");
  if (view.refused) {
    refused(view.refused);
    main.classList.add("hidden");
  } else {
    $("refused").classList.add("hidden");
    main.classList.remove("hidden");
    lastRefusedKey = "";
    renderStatus(view.status);
    renderStats(view.stats);
  }
  if (document.activeElement !== $("login")) $("login").checked = view.start_at_login;
}

/** The engine did not start: who holds the data directory (and whether they still do), or
 * why; and Retry. */
function refused(r) {
  const key = JSON.stringify(r);
  if (key === lastRefusedKey) return;
  lastRefusedKey = key;
  const e = r.error;
  if (e.kind === "already_running") {
    const h = e.holder;
    const who = !h ? "Another GuardNest"
      : h.frontend === "cli" ? `The guardnest command (process ${h.pid})` : `Another GuardNest app (process ${h.pid})`;
    $("refused-title").textContent = r.holder_gone ? "The other GuardNest has stopped" : "GuardNest is already running";
    $("refused-text").textContent = r.holder_gone
      ? "You can start GuardNest here now."
      : `${who} is already running with GuardNest's settings and lists; only one GuardNest can use them at a time. `
        + (h && h.frontend === "cli"
          ? "Stop it (press Ctrl-C where it runs), or keep using it instead of this window."
          : "Quit it from its tray menu, or use its window instead of this one.");
    $("retry").textContent = r.holder_gone ? "Start GuardNest" : "Retry";
    // Gone: not an error any more, and an earlier "Tried again" no longer holds.
    $("refused").classList.toggle("notice", r.holder_gone);
    if (r.holder_gone) $("refused-tried").classList.add("hidden");
  } else {
    $("refused").classList.remove("notice");
    $("refused-title").textContent = "GuardNest could not start";
    $("refused-text").textContent = e.problem ? `A list could not be read: ${e.problem.summary}.` : plain(e);
    $("retry").textContent = "Retry";
  }
  details($("refused-details"), $("refused-detail"), e.message);
  $("refused").classList.remove("hidden");
}

/** The whole view, asked for: at load, and after an action. */
async function refresh() {
  let view;
  try {
    view = await invoke("get_view");
  } catch (e) {
    showError(e);
    return;
  }
  render(view);
}

async function enable() {
  try { await call("enable_system_proxy"); } catch (_) { /* shown */ }
  refresh();
}

$("toggle").addEventListener("change", async (ev) => {
  // On means blocking: from off, and from a pause (the amber switch resumes). From on: off.
  const state = lastStatus && lastStatus.protection.state;
  const on = state === "off" || state === "paused";
  ev.target.checked = on;
  busy = true;
  try {
    await call(on ? "enable_system_proxy" : "disable_system_proxy");
  } catch (_) {
    ev.target.checked = !on;
  } finally {
    busy = false;
    refresh();
  }
});

$("pause").addEventListener("click", async () => { try { await call("pause_protection", {}); } catch (_) { /* shown */ } refresh(); });
$("resume").addEventListener("click", async () => { try { await call("resume_protection"); } catch (_) { /* shown */ } refresh(); });
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
  try {
    await call("use_port", { port: Number($("port").value) });
    $("error").classList.add("hidden");
  } catch (_) { /* shown */ }
  refresh();
});
// Retry says what it did: "Starting…", then the window either runs or says it tried again.
$("retry").addEventListener("click", async () => {
  const label = $("retry").textContent;
  $("retry").disabled = true;
  $("retry").textContent = "Starting…";
  $("refused-tried").classList.add("hidden");
  try {
    await invoke("retry_start");
  } catch (e) {
    lastRefusedKey = "";
    refused({ error: e, holder_gone: false });
    $("refused-tried").textContent = `Tried again at ${when(Math.floor(Date.now() / 1000), true)}: it did not start.`;
    $("refused-tried").classList.remove("hidden");
  }
  $("retry").disabled = false;
  if ($("retry").textContent === "Starting…") $("retry").textContent = label;
  refresh();
});
$("recent-more").addEventListener("click", () => { showAllRecent = !showAllRecent; renderRecent(lastRecent, true); });
$("warn-add").addEventListener("click", () => { $("add-url").scrollIntoView({ block: "center" }); $("add-url").focus(); });

let checked = "";
async function check() {
  const name = $("check-name").value.trim();
  const out = $("check-result");
  checked = name;
  out.replaceChildren();
  out.classList.remove("error-text");
  if (!name) return;
  try {
    const r = await invoke("check_domain", { name });
    if (checked !== name) return;
    const shown = r.unicode ? `${r.unicode} (${r.name})` : r.name;
    // A name not blocked was checked against the lists that loaded only: say which did not.
    const unloaded = r.blocked || !lastStatus ? [] : lastStatus.lists.filter((l) => l.role === "block" && !l.loaded);
    const sentence = r.blocked
      ? `${shown} is blocked by “${listTitle(r.list)}”.`
      : r.by_you ? (r.rule && r.rule !== r.name ? `${shown} is allowed: you allowed ${r.rule}.` : `${shown} is allowed: you allowed it.`)
        : r.exempt ? `${shown} is allowed by “${listTitle(r.list)}”.`
          : `${shown} is not on any list${unloaded.length ? " that has loaded" : ""}.`;
    out.append(document.createTextNode(sentence));
    if (unloaded.length) {
      const note = document.createElement("div");
      note.className = "muted not-checked";
      note.textContent = `Not checked against ${unloaded.length === 1 ? "a list" : `${unloaded.length} lists`} that ${unloaded.length === 1 ? "has" : "have"} not loaded yet: ${unloaded.map((l) => listTitle(l.name)).join(", ")}.`;
      out.append(note);
    }
    if (r.by_you) {
      const undo = document.createElement("button");
      undo.className = "link";
      undo.textContent = "Undo";
      undo.addEventListener("click", async () => { if (await unallow(r.rule || r.name, undo)) check(); });
      out.append(" ", undo);
    }
  } catch (e) {
    if (checked !== name) return;
    out.textContent = plain(e);
    out.classList.add("error-text");
  }
}
$("check-form").addEventListener("submit", (ev) => { ev.preventDefault(); check(); });
// An emptied box has no answer.
$("check-name").addEventListener("input", () => { if (!$("check-name").value.trim()) check(); });

$("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const location = $("add-url").value.trim();
  if (!location) return;
  say($("lists-msg"), "Adding…");
  try {
    const r = await invoke("add_list", { location });
    say($("lists-msg"), r.changed ? `Added ${location}: its sites are blocked from now on.` : "That list is already there.");
    $("add-url").value = "";
  } catch (e) {
    say($("lists-msg"), plain(e), true);
  }
});

async function updateLists() {
  say($("update-msg"), "Checking every list…");
  try {
    const r = await call("update_lists");
    const failed = r.failed.map((f) => listTitle(f[0]));
    say($("update-msg"), failed.length
      ? `${andList(failed)} could not be downloaded; see the list below.`
      : r.updated.length ? `Updated ${andList(r.updated.map(listTitle))}.` : "Every list is up to date.", failed.length > 0);
  } catch (_) {
    say($("update-msg"), "");
  }
}
$("update-lists").addEventListener("click", updateLists);

// Closing the window the first time: say that GuardNest stays (the app held the close).
// (Where there is no tray the window stays, minimised: the notice goes first.)
$("closing-ok").addEventListener("click", () => { $("closing").classList.add("hidden"); invoke("close_to_tray"); });
$("closing-quit").addEventListener("click", () => invoke("quit_app"));
// Quit from the window itself: where the desktop shows no tray, the only way out without a
// terminal.
$("quit").addEventListener("click", () => invoke("quit_app"));

tauri.event.listen("guardnest://view", (ev) => render(ev.payload));
tauri.event.listen("guardnest://error", (ev) => showError(ev.payload));
// The payload says whether this desktop shows tray icons: where it does not (GNOME without
// its AppIndicator extension), GuardNest stays as a minimised window instead.
tauri.event.listen("guardnest://closing", (ev) => {
  const tray = !ev.payload || ev.payload.tray !== false;
  // What it goes on doing, as the headline says it (paused or off, it is not protecting).
  const p = lastStatus ? lastStatus.protection : { state: "protected" };
  const partly = p.state === "protected" && (p.missing || []).length > 0;
  const doing = partly ? "protecting this computer in part (a list is missing): your apps keep going through it." : {
    paused: `paused until ${when(p.until, true)}, then protecting again by itself: your apps keep going through it.`,
    off: "with protection off: your apps use your own proxy settings until you switch it on.",
    unprotected: "not blocking anything yet (see why in this window): your apps keep going through it.",
  }[p.state] || "still protecting this computer: your apps keep going through it.";
  $("closing-where").textContent = tray
    ? `Closing this window leaves GuardNest in the tray (the shield icon near the clock), ${doing}`
    : `This desktop shows no tray icons, so GuardNest cannot hide in the tray: closing this window minimises it instead (find it in the taskbar or the Activities overview). It keeps running, ${doing}`;
  $("closing-stop").innerHTML = tray
    ? "To stop it, choose <b>Quit</b> in the tray menu, or here."
    : "To stop it, choose <b>Quit GuardNest</b> here.";
  $("closing-ok").textContent = tray ? "Keep running in the tray" : "Keep running, minimised";
  $("closing").classList.remove("hidden");
  $("closing-ok").focus();
});
refresh();
