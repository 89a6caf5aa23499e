// The ccactors dashboard: reads the operator routes under /v1/dashboard/ and shows them.
//
// No build step, no dependency. Every value from the server reaches the page through
// textContent (never innerHTML). The operator key lives in sessionStorage and travels
// only as the x-api-key header, never in a URL. Server-sent events are read with fetch
// and a stream reader (EventSource cannot send headers). Views, by URL fragment:
// #/ (overview and sessions table) and #/sessions/<owner>/<id> (one session).
"use strict";

const KEY_STORAGE = "ccactors.operatorKey";
const PAGE_SIZE = 50;
const RETRY_MS = 2000;

const $ = (id) => document.getElementById(id);
const table = { filter: "", after: null, earlier: [], lastId: null };
let current = null; // the session shown: {owner, id}
let viewAbort = null;

class AuthError extends Error {}
class NotFoundError extends Error {}

// -- Requests -------------------------------------------------------------------------

function operatorKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// fetch with the operator key (if one was entered: a server without keys needs none);
// 401/403 raise AuthError, 404 NotFoundError, any other failure Error.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = operatorKey();
  if (key) headers["x-api-key"] = key;
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(await errorMessage(response));
  }
  if (response.status === 404) throw new NotFoundError(await errorMessage(response));
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

// Server-sent events of a fetch response, as {event, data} (WHATWG HTML "Server-sent
// events": field lines, a blank line ends an event, ":" starts a comment; LF or CRLF).
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield { event, data: data.join("\n") };
          event = "message";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// -- DOM helpers ----------------------------------------------------------------------

// An element with a class and text (textContent: data is never parsed as HTML).
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function showOnly(id) {
  for (const section of ["login", "overview-view", "session-view"]) {
    $(section).hidden = section !== id;
  }
}

function setStatus(text, live = false) {
  $("status").textContent = text;
  $("status").classList.toggle("connected", live);
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toDateString() === new Date().toDateString()
    ? date.toLocaleTimeString()
    : date.toLocaleString();
}

function seconds(value) {
  if (value === null || value === undefined) return "\u2014";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

// A fork's parent, as the management API gives it: {id, turn} (same owner), or null.
function parentText(parent) {
  if (parent === null || parent === undefined) return "";
  if (typeof parent !== "object") return String(parent);
  return parent.turn === undefined ? String(parent.id) : `${parent.id} @ turn ${parent.turn}`;
}

// A cell or fact showing the parent, linked to its page (it has the same owner).
function parentNode(tag, className, session) {
  const node = el(tag, className);
  const parent = session.parent;
  if (parent && typeof parent === "object" && parent.id) {
    const link = el("a", "", parentText(parent));
    link.href = sessionHref({ owner: session.owner, id: parent.id });
    node.append(link);
  } else {
    node.textContent = parentText(parent);
  }
  return node;
}

function sessionHref(session) {
  const owner = encodeURIComponent(session.owner);
  return `#/sessions/${owner}/${encodeURIComponent(session.id)}`;
}

function sessionPath(owner, id) {
  return `/v1/dashboard/sessions/${encodeURIComponent(owner)}/${encodeURIComponent(id)}`;
}

function clearData() {
  $("cards").replaceChildren();
  $("sessions").tBodies[0].replaceChildren();
  $("session-facts").replaceChildren();
  $("conversation").replaceChildren();
  $("live").replaceChildren();
  $("session-title").textContent = "";
  $("action-result").textContent = "";
  $("node").hidden = true;
}

// -- Login ----------------------------------------------------------------------------

function showLogin(message) {
  if (viewAbort) viewAbort.abort();
  clearData();
  if (operatorKey()) {
    sessionStorage.removeItem(KEY_STORAGE);
    $("login-error").textContent = `That key was refused: ${message}`;
  } else {
    $("login-error").textContent = "";
  }
  setStatus("");
  $("logout").hidden = true;
  showOnly("login");
  $("key").focus();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  route();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  showLogin("");
});

// -- Overview and sessions table ------------------------------------------------------

function card(label, value, detail, meter) {
  const node = el("div", "card");
  node.append(el("div", "label", label), el("div", "value", value));
  if (meter) {
    const bar = document.createElement("meter");
    bar.min = 0;
    bar.max = Math.max(meter.max, 1);
    bar.value = meter.value;
    bar.high = bar.max * 0.85;
    node.append(bar);
  }
  if (detail) node.append(el("div", "detail", detail));
  return node;
}

function renderOverview(o) {
  const latency = o.first_token_latency_s;
  const timeouts = Object.entries(o.timeouts || {}).map(([kind, n]) => `${kind} ${n}`);
  const cards = [
    card("Live CLIs", `${o.live_processes} / ${o.max_live_sessions}`, "running of the limit",
      { value: o.live_processes, max: o.max_live_sessions }),
    card("Warm pool", `${o.warm_pool_size} / ${o.warm_pool_target}`, "connected, unassigned"),
    card("Busy sessions", o.busy_sessions, `${o.waiting_turns} turns waiting`),
    card("Sessions", o.sessions, `${o.live_sessions} live, ${o.hibernated_sessions} hibernated`),
    card("Turns / minute", o.turns_per_minute, "ended in the last 60 s"),
    card("First token p50 / p95", `${seconds(latency.p50)} / ${seconds(latency.p95)}`,
      `${latency.observations} turns since start`),
    card("Restarts", o.restarts, `${o.dead_letters} dead letters`),
    card("Timeouts", timeouts.reduce((sum, t) => sum + Number(t.split(" ")[1]), 0),
      timeouts.join(", ")),
  ];
  if (o.forks !== null && o.forks !== undefined) cards.push(card("Forks", o.forks, ""));
  for (const peer of o.nodes || []) {
    const stale = peer.last_seen_s > 30 ? ", not seen lately" : "";
    cards.push(card(`Node ${peer.node}${peer.this ? " (this one)" : ""}`, peer.sessions,
      `sessions held; seen ${peer.last_seen_s} s ago${stale}`));
  }
  $("cards").replaceChildren(...cards);
  $("node").hidden = o.node === null || o.node === undefined;
  $("node").textContent = $("node").hidden ? "" : `node ${o.node}`;
}

function sessionRow(s) {
  const row = document.createElement("tr");
  row.dataset.address = s.address;
  row.dataset.state = s.state;
  const idCell = el("td", "mono");
  const link = el("a", "", s.id);
  link.href = sessionHref(s);
  idCell.append(link);
  const stateCell = el("td", "state-cell");
  stateCell.append(el("span", `state state-${s.state}`, s.state));
  row.append(
    idCell,
    el("td", "mono", s.owner),
    stateCell,
    el("td", "", s.live ? "live" : "hibernated"),
    el("td", "", s.model || ""),
    el("td", "", s.turns),
    el("td", "mono", s.cli_pid || ""),
    parentNode("td", "mono", s),
    el("td", "mono", s.node || ""),
    el("td", "", when(s.last_active_at)),
    el("td", "error-cell", s.last_error || ""),
  );
  return row;
}

function renderSessions(page) {
  $("sessions").tBodies[0].replaceChildren(...page.data.map(sessionRow));
  $("no-sessions").hidden = page.data.length > 0;
  table.lastId = page.last_id;
  $("next").disabled = !page.has_more;
  $("prev").disabled = table.earlier.length === 0;
  const number = table.earlier.length + 1;
  $("page-info").textContent = `page ${number}${table.filter ? ` (${table.filter})` : ""}`;
}

async function showOverview(signal) {
  showOnly("overview-view");
  $("state-filter").value = table.filter;
  while (!signal.aborted) {
    try {
      const query = new URLSearchParams({ limit: PAGE_SIZE });
      if (table.filter) query.set("state", table.filter);
      if (table.after) query.set("after_id", table.after);
      const response = await api(`/v1/dashboard/stream?${query}`, { signal });
      $("logout").hidden = !operatorKey();
      setStatus("live", true);
      for await (const { event, data } of serverSentEvents(response)) {
        if (event === "snapshot") {
          const snapshot = JSON.parse(data);
          renderOverview(snapshot.overview);
          renderSessions(snapshot.sessions);
        } else if (event === "error") {
          table.after = null; // the page's first session went away: back to the start
          table.earlier = [];
        }
      }
      setStatus("reconnecting");
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof AuthError) return showLogin(error.message);
      if (error instanceof Error && /after_id/.test(error.message)) {
        table.after = null;
        table.earlier = [];
      }
      setStatus(`disconnected (${error.message}); retrying`);
    }
    await sleep(RETRY_MS, signal);
  }
}

$("state-filter").addEventListener("change", () => {
  table.filter = $("state-filter").value;
  table.after = null;
  table.earlier = [];
  route();
});

$("next").addEventListener("click", () => {
  if (!table.lastId) return;
  table.earlier.push(table.after);
  table.after = table.lastId;
  route();
});

$("prev").addEventListener("click", () => {
  if (!table.earlier.length) return;
  table.after = table.earlier.pop();
  route();
});

// -- One session ----------------------------------------------------------------------

function fact(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", "", name), el("dd", "", value));
}

function renderFacts(s) {
  const list = $("session-facts");
  list.replaceChildren();
  fact(list, "state", s.state);
  fact(list, "CLI", s.live ? `live (pid ${s.cli_pid ?? "?"})` : "hibernated");
  fact(list, "model", s.model);
  fact(list, "turns", s.turns);
  if (s.parent) list.append(el("dt", "", "forked from"), parentNode("dd", "", s));
  fact(list, "Claude session", s.claude_session_id);
  fact(list, "restarts", s.restarts);
  fact(list, "waiting turns", s.mailbox_depth);
  fact(list, "listeners", s.listeners);
  fact(list, "created", when(s.created_at));
  fact(list, "last activity", when(s.last_active_at));
  fact(list, "last error", s.last_error);
}

function toolResultText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((b) => (b && b.type === "text" ? b.text : JSON.stringify(b))).join("\n");
  }
  return JSON.stringify(content);
}

function blockNode(block) {
  switch (block.type) {
    case "text":
      return el("div", "text", block.text);
    case "thinking":
      return el("div", "thinking", block.thinking);
    case "tool_use":
      return el("div", "tool", `\u2192 ${block.name} ${JSON.stringify(block.input)}`);
    case "tool_result":
      return el("div", `tool${block.is_error ? " is-error" : ""}`,
        `\u2190 ${toolResultText(block.content)}`);
    default:
      return el("div", "tool", JSON.stringify(block));
  }
}

function renderConversation(messages) {
  const nodes = messages.map((message) => {
    const node = el("div", `message ${message.role === "user" ? "user" : "assistant"}`);
    node.append(el("div", "role", message.role), ...message.content.map(blockNode));
    return node;
  });
  if (!nodes.length) nodes.push(el("p", "muted", "No conversation yet."));
  $("conversation").replaceChildren(...nodes);
}

async function loadSession(owner, id, signal) {
  const response = await api(sessionPath(owner, id), { signal });
  const body = await response.json();
  renderFacts(body.session);
  renderConversation(body.messages);
  return body.session;
}

// One turn's live view: text deltas appended as they arrive, tool events as lines.
class LiveTurn {
  constructor(label) {
    this.node = el("div", "turn");
    this.node.append(el("div", "role", label));
    this.block = null;
    this.kind = null;
    $("live").replaceChildren(this.node);
  }

  append(kind, text) {
    if (this.kind !== kind || !this.block) {
      this.block = el("div", kind === "text" ? "text live-text" : "thinking");
      this.kind = kind;
      this.node.append(this.block);
    }
    this.block.textContent += text;
  }

  line(className, text) {
    this.node.append(el("div", className, text));
    this.block = null;
  }

  end(className, text) {
    this.node.classList.add(className);
    this.node.append(el("div", `outcome ${className}`, text));
  }
}

async function followEvents(owner, id, signal, joinedBusy) {
  let turn = joinedBusy ? new LiveTurn("running turn (joined while it streams)") : null;
  while (!signal.aborted) {
    try {
      const response = await api(`${sessionPath(owner, id)}/events`, { signal });
      setStatus("live", true);
      for await (const { event, data } of serverSentEvents(response)) {
        const e = JSON.parse(data);
        if (event === "turn_started") turn = new LiveTurn(`turn ${e.turn_id}`);
        if (!turn && event !== "lagged") turn = new LiveTurn("running turn");
        if (event === "text_delta") turn.append("text", e.text);
        else if (event === "thinking_delta") turn.append("thinking", e.thinking);
        else if (event === "tool_use") turn.line("tool", `\u2192 ${e.name} ${JSON.stringify(e.input)}`);
        else if (event === "tool_result") {
          turn.line(`tool${e.is_error ? " is-error" : ""}`, `\u2190 ${toolResultText(e.content)}`);
        } else if (event === "turn_completed") {
          turn.end("ended", `completed (${e.stop_reason}), ${e.duration_ms} ms`);
          turn = null;
          await loadSession(owner, id, signal);
        } else if (event === "turn_failed") {
          turn.end("failed", `failed: ${e.reason}: ${e.message}`);
          turn = null;
          await loadSession(owner, id, signal);
        } else if (event === "lagged") {
          $("live").append(el("p", "muted", `${e.dropped} events missed (too slow)`));
        }
      }
      setStatus("reconnecting");
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof AuthError) return showLogin(error.message);
      if (error instanceof NotFoundError) {
        setStatus("session not running: no live events");
      } else {
        setStatus(`disconnected (${error.message}); retrying`);
      }
    }
    await sleep(RETRY_MS, signal);
  }
}

async function showSession(owner, id, signal) {
  showOnly("session-view");
  current = { owner, id };
  $("session-title").textContent = owner === "-" ? id : `${id} (owner ${owner})`;
  $("action-result").textContent = "";
  $("live").replaceChildren(el("p", "muted", "Waiting for the session's next turn."));
  $("conversation").replaceChildren();
  $("session-facts").replaceChildren();
  try {
    const session = await loadSession(owner, id, signal);
    $("logout").hidden = !operatorKey();
    await followEvents(owner, id, signal, session.state === "busy");
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof AuthError) return showLogin(error.message);
    $("session-facts").replaceChildren();
    $("live").replaceChildren();
    $("conversation").replaceChildren(el("p", "error", error.message));
  }
}

$("interrupt").addEventListener("click", async () => {
  if (!current) return;
  const { owner, id } = current;
  if (!confirm(`Interrupt the running turn of session ${id}?`)) return;
  try {
    const response = await api(`${sessionPath(owner, id)}/interrupt`, { method: "POST" });
    const body = await response.json();
    $("action-result").textContent = body.interrupted ? "interrupted" : "no turn was running";
  } catch (error) {
    if (error instanceof AuthError) return showLogin(error.message);
    $("action-result").textContent = `interrupt failed: ${error.message}`;
  }
});

$("delete").addEventListener("click", async () => {
  if (!current) return;
  const { owner, id } = current;
  if (!confirm(`Delete session ${id}? Its CLI, workspace and transcript go too.`)) return;
  try {
    await api(sessionPath(owner, id), { method: "DELETE" });
    location.hash = "#/";
  } catch (error) {
    if (error instanceof AuthError) return showLogin(error.message);
    $("action-result").textContent = `delete failed: ${error.message}`;
  }
});

// -- Routing --------------------------------------------------------------------------

function route() {
  if (viewAbort) viewAbort.abort();
  viewAbort = new AbortController();
  const signal = viewAbort.signal;
  current = null;
  const match = location.hash.match(/^#\/sessions\/([^/]+)\/([^/]+)$/);
  if (match) {
    showSession(decodeURIComponent(match[1]), decodeURIComponent(match[2]), signal);
  } else {
    showOverview(signal);
  }
}

window.addEventListener("hashchange", route);
route();
