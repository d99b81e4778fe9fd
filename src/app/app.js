// The app's page: presentation only. Every decision (what a file id means, what a download
// or a share does, what an error says) is the app's, over its JSON API; the page draws what
// it is told. Names from the network are only ever set as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let filesRev = -1;
let filterTimer = null;
// Answers to older asks are dropped: they may arrive after a newer one.
let filesAsked = 0;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function size(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "—";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    return { ok: false, error: "the app is not answering (was it stopped?)" };
  }
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) return { ok: false, status: r.status, error: (data && data.error) || ("HTTP " + r.status) };
  return { ok: true, status: r.status, data };
}

function say(id, text, bad) {
  const m = $(id);
  m.textContent = text || "";
  m.className = "msg" + (bad ? " bad" : "");
}

// The file list, as the app filters it.
async function loadFiles() {
  const q = $("filter").value;
  const ask = ++filesAsked;
  const r = await api("GET", "/api/files?q=" + encodeURIComponent(q));
  if (!r.ok || ask !== filesAsked) return;
  const body = $("files");
  body.replaceChildren();
  for (const f of r.data.files) {
    const go = el("button", { class: "primary", "data-file": String(f.id), onclick: () => download(String(f.hash), "files-msg") }, "Download");
    body.append(el("tr", { "data-hash": f.hash },
      el("td", {}, f.id),
      el("td", { class: "name" }, f.name),
      el("td", { class: "num" }, size(f.size)),
      el("td", { class: "num" }, f.chunks),
      el("td", { class: "num", title: "complete + partial" }, f.complete_sources + (f.partial_sources ? " + " + f.partial_sources : "")),
      el("td", {}, go)));
  }
  if (r.data.more) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "and " + r.data.more + " more: type to filter")));
  const empty = $("files-empty");
  empty.hidden = r.data.files.length > 0;
  empty.textContent = q ? "No file matches this filter."
    : r.data.directory.state === "down" ? "No list: the directory is not answering."
    : "The directory lists no file yet.";
}

async function download(file, msg) {
  const mode = $("mode").value;
  const r = await api("POST", "/api/downloads", { file, mode });
  if (r.ok) say(msg, r.status === 201 ? "Download started." : "Download resumed.");
  else say(msg, r.error, true);
  return r.ok;
}

function drawDirectory(d) {
  const c = $("conn");
  c.className = d.state;
  c.textContent = d.state === "connected" ? "connected to the directory " + d.endpoint
    : d.state === "down" ? "directory " + d.endpoint + " is down"
    : "connecting to the directory " + d.endpoint + "…";
  $("me").textContent = "this node: " + d.me;
  $("dl-dir").textContent = "(saved in " + d.dir + ")";
  const b = $("dir-banner");
  b.hidden = !d.error;
  b.textContent = d.error || "";
}

function drawDownloads(list) {
  const box = $("downloads");
  box.replaceChildren();
  $("downloads-empty").hidden = list.length > 0;
  for (const d of list) {
    const pct = d.percent.toFixed(d.percent < 100 ? 1 : 0);
    const bar = el("div", { class: "bar" }, el("div", { style: "width:" + d.percent.toFixed(2) + "%" }));
    const pieces = el("div", { class: "pieces", title: "piece map: each cell is a part of the file, darker when more of it is here" });
    for (const p of d.pieces) pieces.append(el("span", { style: "opacity:" + (0.08 + 0.92 * p / 100).toFixed(2) }));
    const state = d.state === "complete" ? (d.serving ? "complete, sharing it back" : "complete") : d.state;
    const stats = el("div", { class: "stats" },
      el("span", {}, d.held + " / " + d.total + " chunks"),
      el("span", {}, pct + " %"),
      el("span", {}, d.rate === null ? "— /s" : size(d.rate) + "/s"),
      el("span", {}, "ETA " + duration(d.eta)),
      d.via ? el("span", {}, d.via) : null,
      el("span", {}, d.mode === "join" ? "ring member" : "multi-source"),
      d.uploaded_bytes ? el("span", {}, "uploaded " + size(d.uploaded_bytes)) : null);
    const buttons = el("span", {});
    if (d.state === "downloading") buttons.append(el("button", { "data-act": "cancel", onclick: () => api("DELETE", "/api/downloads/" + d.id) }, "Cancel"));
    if (d.state === "cancelled" || d.state === "failed") {
      buttons.append(el("button", { class: "primary", "data-act": "resume", onclick: () => api("POST", "/api/downloads", { file: d.asked, mode: d.mode }) }, "Resume"), " ");
      buttons.append(el("button", { "data-act": "remove", onclick: () => api("DELETE", "/api/downloads/" + d.id) }, "Remove"));
    }
    if (d.state === "complete") buttons.append(el("button", { "data-act": "remove", onclick: () => api("DELETE", "/api/downloads/" + d.id) }, d.serving ? "Stop sharing" : "Remove"));
    box.append(el("div", { class: "dl " + d.state, "data-id": String(d.id), "data-state": d.state, "data-percent": String(d.percent) },
      el("div", { class: "top" }, el("strong", { class: "name" }, d.name || d.asked), el("span", { class: "muted" }, state), buttons),
      bar, pieces, stats,
      d.path ? el("div", { class: "muted path" }, "saved as " + d.path) : null,
      d.error ? el("div", { class: "error" }, d.error) : null));
  }
}

function drawShares(s) {
  const box = $("shares");
  box.replaceChildren();
  $("shares-empty").hidden = s.list.length > 0;
  const b = $("shares-banner");
  b.hidden = !s.error;
  b.textContent = s.error || "";
  for (const share of s.list) {
    const rows = el("tbody", {});
    for (const f of share.files) {
      const copy = el("button", { onclick: (ev) => copyTicket(f.ticket, ev.target) }, "Copy ticket");
      rows.append(el("tr", { "data-hash": f.hash },
        el("td", { class: "name" }, f.name, el("div", { class: "ticket" }, f.ticket)),
        el("td", { class: "num" }, size(f.size)),
        el("td", { class: "num", title: "chunks uploaded to others" }, "↑ " + f.uploaded_chunks + " chunks"),
        el("td", {}, copy)));
    }
    box.append(el("div", { class: "share", "data-id": String(share.id), "data-state": share.state },
      el("div", { class: "top row" },
        el("strong", { class: "name", style: "flex:1" }, share.path),
        el("span", { class: "muted" }, share.state === "publishing" ? "hashing and publishing…" : share.files.length + " file(s) shared"),
        el("button", { "data-act": "unshare", onclick: () => unshare(share.id) }, "Unshare")),
      share.files.length ? el("table", {}, rows) : null));
  }
}

async function copyTicket(ticket, button) {
  try {
    await navigator.clipboard.writeText(ticket);
    button.textContent = "Copied";
  } catch (e) {
    button.textContent = "Select it above";
  }
  setTimeout(() => { button.textContent = "Copy ticket"; }, 1500);
}

async function unshare(id) {
  const r = await api("DELETE", "/api/shares/" + id);
  say("share-msg", r.ok ? "Unshared: its files left the directory." : r.error, !r.ok);
}

function draw(state) {
  drawDirectory(state.directory);
  drawDownloads(state.downloads);
  drawShares(state.shares);
  if (state.files_rev !== filesRev) {
    filesRev = state.files_rev;
    loadFiles();
  }
}

function listen() {
  const feed = new EventSource("/api/events");
  feed.addEventListener("state", (ev) => draw(JSON.parse(ev.data)));
  feed.onerror = () => {
    const c = $("conn");
    c.className = "down";
    c.textContent = "the app is not answering (stopped?); trying again…";
  };
}

$("filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(loadFiles, 120);
});
$("ticket-go").addEventListener("click", async () => {
  if (await download($("ticket").value, "files-msg")) $("ticket").value = "";
});
$("ticket").addEventListener("keydown", (ev) => { if (ev.key === "Enter") $("ticket-go").click(); });
$("share-go").addEventListener("click", async () => {
  const path = $("share-path").value.trim();
  const r = await api("POST", "/api/shares", { path });
  if (r.ok) { say("share-msg", "Sharing " + path + "…"); $("share-path").value = ""; }
  else say("share-msg", r.error, true);
});
$("share-path").addEventListener("keydown", (ev) => { if (ev.key === "Enter") $("share-go").click(); });
listen();
