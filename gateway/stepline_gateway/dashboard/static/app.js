// Stepline dashboard: a small single-page app over the gateway's REST API (docs/api.md), no build step.
// Views: #/runs (list), #/runs/<id> (detail), #/events, #/events/<id>, #/functions, #/webhooks. Live views
// refresh the first page every few seconds while the tab is visible; nothing is built from HTML strings.
"use strict";

const PAGE_SIZE = 50;
const RUN_STATUSES = ["Queued", "Running", "Completed", "Failed", "Cancelled"];
const ENDED = new Set(["Completed", "Failed", "Cancelled"]);
const RANGES = [
  ["", "Any time"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["custom", "Custom range…"],
];
const RANGE_MS = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };
const OP_LABELS = {
  StepRun: "step",
  StepError: "step",
  StepFailed: "step",
  StepPlanned: "parallel step",
  Sleep: "sleep",
  WaitForEvent: "wait for event",
  InvokeFunction: "invoke",
};

// ---- DOM and formatting helpers ----------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

// What the signed-in token may do (GET /v1/whoami): its role, and the namespaces it sees. NAMESPACE is the
// one chosen in the header's selector ("" : every namespace the token sees).
let ACCESS = { role: "operator", namespace: null, may_change: true, namespaces: [] };
let NAMESPACE = "";

function inNamespace(functionId) {
  if (!NAMESPACE) return true;
  const slash = functionId.indexOf("/");
  return (slash > 0 ? functionId.slice(0, slash) : "default") === NAMESPACE;
}

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") Object.assign(el.style, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Replaces an element's children; arrays are flattened and null, undefined or false left out.
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

// A form control under its label (the label names the control; the control is not inside it).
function field(label, control) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}

const short = (id) => String(id).slice(0, 8);
const pretty = (value) => JSON.stringify(value, null, 2) ?? "null";

function compact(value, max = 90) {
  const text = JSON.stringify(value) ?? "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60e3) return `${(ms / 1000).toFixed(ms < 10e3 ? 2 : 1)} s`;
  if (ms < 3600e3) return `${Math.floor(ms / 60e3)} min ${Math.round((ms % 60e3) / 1000)} s`;
  return `${Math.floor(ms / 3600e3)} h ${Math.round((ms % 3600e3) / 60e3)} min`;
}

function elapsed(start, end) {
  if (!start) return null;
  return (end ? Date.parse(end) : Date.now()) - Date.parse(start);
}

function ago(iso) {
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function timeAgo(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString(), "data-ago": "" }, ago(iso));
}

const FULL_TIME = {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  fractionalSecondDigits: 3,
};

function timeFull(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso }, new Date(iso).toLocaleString(undefined, FULL_TIME));
}

function refreshTimes() {
  for (const el of document.querySelectorAll("time[data-ago]"))
    el.textContent = ago(el.getAttribute("datetime"));
}

function badge(status) {
  return h("span", { class: `badge s-${String(status).toLowerCase()}` }, status);
}

function errorText(error) {
  if (!error) return "";
  return error.name ? `${error.name}: ${error.message ?? ""}` : String(error.message ?? compact(error));
}

// A table with a header row: each column a title, or [title, class].
function dataTable(label, columns, body) {
  const heads = columns.map((column) => {
    const [title, cls] = Array.isArray(column) ? column : [column, null];
    return h("th", { scope: "col", class: cls }, title);
  });
  return h("table", { "aria-label": label }, h("thead", {}, h("tr", {}, heads)), body);
}

// A traceback line of an SDK's own code (Stepline's, or the official SDKs'): folded, as it only says how
// the SDK called the function.
const SDK_FRAME = /[\\/](stepline|inngest)[\\/]|node_modules[\\/]inngest[\\/]/;

// A stack with each run of SDK frames folded into a <details>: Python's "  File ..." frames (each with
// the code line under it) and JavaScript's "    at ..." frames.
function stackView(stack) {
  const lines = String(stack).replace(/\n$/, "").split("\n");
  const parts = [];
  let plain = [];
  let sdk = [];
  const flushPlain = () => {
    if (plain.length) parts.push(plain.join("\n") + "\n");
    plain = [];
  };
  const flushSdk = () => {
    if (!sdk.length) return;
    const frames = sdk.filter((line) => /^\s*(File |at )/.test(line)).length;
    parts.push(
      h(
        "details",
        { class: "sdk-frames" },
        h("summary", {}, `${frames} ${frames === 1 ? "frame" : "frames"} in the SDK`),
        sdk.join("\n") + "\n",
      ),
    );
    sdk = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const frame = /^\s*File "/.test(line) || /^\s+at /.test(line);
    if (frame && SDK_FRAME.test(line)) {
      flushPlain();
      sdk.push(line);
      // A Python frame's code line goes with it.
      const next = lines[i + 1];
      if (/^\s*File "/.test(line) && next !== undefined && /^\s{4,}\S/.test(next) && !/^\s*File "/.test(next))
        sdk.push(lines[++i]);
    } else {
      flushSdk();
      plain.push(line);
    }
  }
  flushSdk();
  flushPlain();
  return h("pre", { class: "stack" }, parts);
}

// ``stacks``: which block shows each stack (the others point to it), so that a stack repeated by the
// failed attempts, the step and the run is shown once.
function errorBlock(error, title, stacks, key) {
  let stack = null;
  if (error.stack) {
    const owner = stacks ? stacks.get(error.stack) : null;
    stack =
      !owner || owner.key === key
        ? stackView(error.stack)
        : h(
            "p",
            { class: "muted small same-stack" },
            "Stack: as in ",
            h("a", { href: `#${owner.anchor}`, onclick: (e) => jumpTo(e, owner.anchor) }, owner.label),
            ".",
          );
  }
  return h(
    "div",
    { class: "error-block", id: key || null },
    h("h3", {}, title),
    h("p", { class: "err" }, errorText(error)),
    stack,
  );
}

// Anchors inside the run view, without touching the hash (it routes).
function jumpTo(e, id) {
  e.preventDefault();
  const target = document.getElementById(id);
  if (!target) return;
  const details = target.closest("details");
  if (details) details.open = true;
  target.scrollIntoView({ block: "center" });
}

// Who shows each stack of a run: a step's final error first, then its failed attempts, then the run's.
function stackOwners(run) {
  const owners = new Map();
  const claim = (stack, key, label) => {
    if (stack && !owners.has(stack)) owners.set(stack, { key, anchor: key, label });
  };
  for (const step of run.steps) {
    if (step.error) claim(step.error.stack, `err-${step.id}`, `the error of step ${step.name}`);
  }
  for (const step of run.steps) {
    for (const a of step.failed_attempts || [])
      claim(a.error?.stack, `err-${step.id}-${a.attempt}`, `attempt ${a.attempt} of step ${step.name}`);
  }
  if (run.error) claim(run.error.stack, "err-run-result", "the run's error");
  return owners;
}

let noticeTimer = 0;
function notice(text) {
  const el = $("#notice");
  el.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (el.textContent = ""), 6000);
}

function problem(err) {
  return h("div", { class: "problem", role: "alert" }, err instanceof Error ? err.message : String(err));
}

// ---- The REST API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", "X-Stepline-Dashboard": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("the gateway cannot be reached: is it running?", 0);
  }
  if (response.status === 401 && document.body.dataset.mode === "token") {
    location.assign("/login");
    throw new ApiError("signed out: sign in again", 401);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    throw new ApiError(
      (payload && payload.error) || `the gateway answered ${response.status}`,
      response.status,
    );
  }
  return payload;
}

// ---- Views: each one owns its timers, stopped when another view replaces it ---------------------------

let current = null;

function newView() {
  if (current) {
    current.closed = true;
    current.timers.forEach(clearInterval);
  }
  current = { closed: false, timers: [] };
  return current;
}

// Calls ``task`` every ``ms`` while the view lives and the tab is visible, never twice at once.
function every(view, ms, task) {
  let busy = false;
  const tick = async () => {
    if (view.closed || busy || document.hidden) return;
    busy = true;
    try {
      await task();
    } catch (err) {
      if (!view.closed) notice(`Live update paused: ${err.message}`);
    } finally {
      busy = false;
    }
  };
  view.timers.push(setInterval(tick, ms));
  return tick;
}

// The opening of the dialog still waiting for its close event, ended by the next opening if that comes first
// (the browser delivers "close" as a task of its own, and may handle a key press before it).
let settleOpenDialog = null;

function confirmAction({ title, body, confirm, keep, danger }) {
  settleOpenDialog?.();
  const dialog = $("#confirm");
  const yes = $("#confirm-yes");
  const no = $("#confirm-no");
  $("#confirm-title").textContent = title;
  $("#confirm-body").textContent = body;
  yes.textContent = confirm;
  yes.className = danger ? "danger" : "primary";
  no.textContent = keep;
  return new Promise((resolve) => {
    const onYes = () => dialog.close("yes");
    const onNo = () => dialog.close("no");
    const settle = () => {
      settleOpenDialog = null;
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("close", onClose);
      resolve(dialog.returnValue === "yes");
    };
    // A close event delivered while the dialog is open again belongs to an earlier opening: not this one.
    const onClose = () => {
      if (!dialog.open) settle();
    };
    settleOpenDialog = settle;
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    dialog.showModal();
    (danger ? no : yes).focus();
  });
}

function pager(state, reload) {
  const newer = h("button", { type: "button", id: "newer", disabled: state.cursors.length === 0 }, "← Newer");
  const older = h("button", { type: "button", id: "older", disabled: !state.next }, "Older →");
  newer.addEventListener("click", () => {
    state.cursors.pop();
    reload(newer);
  });
  older.addEventListener("click", () => {
    state.cursors.push(state.next);
    reload(older);
  });
  const label = state.cursors.length ? `Page ${state.cursors.length + 1}` : "Newest first";
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    newer,
    older,
    h("span", { class: "muted" }, label),
  );
}

function stamp(el, live) {
  el.textContent = live ? `Live · updated ${new Date().toLocaleTimeString()}` : "";
}

// ---- Runs --------------------------------------------------------------------------------------------

function localInput(value) {
  return value ? new Date(value).toISOString() : "";
}

function timeBounds(state) {
  if (state.range === "custom") return [localInput(state.since), localInput(state.until)];
  const span = RANGE_MS[state.range];
  return [span ? new Date(Date.now() - span).toISOString() : "", ""];
}

// Why a run waits on flow control ("concurrency key `acct-7`: 2 of 2 running", "throttled until 12:00:04",
// in local time), or null.
function waitingText(run) {
  const waiting = run.waiting;
  if (!waiting) return null;
  if (waiting.reason === "throttled" && waiting.until)
    return `throttled until ${new Date(waiting.until).toLocaleTimeString()}`;
  return waiting.message;
}

function runResult(run) {
  const waiting = waitingText(run);
  if (waiting) return h("span", { class: "muted waiting" }, waiting);
  if (run.error) {
    const failed = run.status === "Failed";
    const text = failed ? errorText(run.error) : `last error: ${errorText(run.error)}`;
    return h("span", { class: failed ? "err" : "muted", title: errorText(run.error) }, text);
  }
  if (run.status === "Completed") return h("code", { title: compact(run.output, 2000) }, compact(run.output));
  return "";
}

function runRow(run) {
  const link = h("a", { href: `#/runs/${run.id}`, class: "mono", title: run.id }, short(run.id));
  return h(
    "tr",
    {
      class: "clickable",
      "data-run": run.id,
      onclick: (e) => {
        if (!e.target.closest("a")) location.hash = `#/runs/${run.id}`;
      },
    },
    h("td", {}, badge(run.status)),
    h(
      "td",
      {},
      h("span", { title: run.function.id }, run.function.name),
      run.replay_of ? h("span", { class: "tag", title: `replay of ${run.replay_of}` }, " replay") : null,
    ),
    h("td", {}, link),
    h("td", {}, timeAgo(run.created_at)),
    h("td", { class: "num" }, formatDuration(elapsed(run.started_at, run.ended_at))),
    h("td", { class: "result" }, runResult(run)),
  );
}

async function runsView(view, params) {
  const main = $("#view");
  const state = {
    function: params.get("function") || "",
    status: params.get("status") || "",
    range: params.get("range") || "",
    since: params.get("since") || "",
    until: params.get("until") || "",
    cursors: [],
    next: null,
    shown: "",
    asked: 0,
  };
  const fnSelect = h("select", { id: "filter-function" }, h("option", { value: "" }, "All functions"));
  if (state.function) fnSelect.append(h("option", { value: state.function }, state.function));
  const statusSelect = h(
    "select",
    { id: "filter-status" },
    ["", ...RUN_STATUSES].map((s) => h("option", { value: s }, s || "All statuses")),
  );
  const rangeSelect = h(
    "select",
    { id: "filter-range" },
    RANGES.map(([value, label]) => h("option", { value }, label)),
  );
  const sinceInput = h("input", { type: "datetime-local", id: "filter-since", value: state.since });
  const untilInput = h("input", { type: "datetime-local", id: "filter-until", value: state.until });
  const custom = h(
    "span",
    { class: "custom-range", hidden: state.range !== "custom" },
    field("From", sinceInput),
    field("To", untilInput),
  );
  const live = h("input", { type: "checkbox", id: "filter-live", checked: true });
  fnSelect.value = state.function;
  statusSelect.value = state.status;
  rangeSelect.value = state.range;

  const updated = h("span", { class: "updated muted", "aria-live": "off" });
  const body = h("tbody");
  const table = dataTable(
    "Runs",
    ["Status", "Function", "Run", "Created", ["Duration", "num"], "Result"],
    body,
  );
  const pagerSlot = h("div");
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs", onsubmit: (e) => e.preventDefault() },
    field("Function", fnSelect),
    field("Status", statusSelect),
    field("Time", rangeSelect),
    custom,
    h("div", { class: "field inline" }, live, h("label", { for: "filter-live" }, "Live updates")),
  );
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Runs"), updated), filters, table, pagerSlot);

  async function load(quiet, focus) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state.function) query.set("function", state.function);
    else if (NAMESPACE) query.set("namespace", NAMESPACE);
    if (state.status) query.set("status", state.status);
    const [since, until] = timeBounds(state);
    if (since) query.set("since", since);
    if (until) query.set("until", until);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const asked = ++state.asked;
    const page = await api(`/v1/runs?${query}`);
    // A later ask (new filters, another page) wins over this one if it was sent after it.
    if (view.closed || asked !== state.asked) return;
    stamp(updated, live.checked && !state.cursors.length);
    const shown = JSON.stringify(page);
    if (quiet && shown === state.shown) {
      refreshTimes();
      return;
    }
    state.shown = shown;
    state.next = page.next_cursor;
    fill(
      body,
      ...(page.data.length
        ? page.data.map(runRow)
        : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No runs match these filters yet."))]),
    );
    fill(
      pagerSlot,
      pager(state, (button) => reload(button)),
    );
    if (focus) document.getElementById(focus.id)?.focus();
  }

  const reload = (focus) =>
    load(false, focus).catch((err) => fill(body, h("tr", {}, h("td", { colspan: 6 }, problem(err)))));

  function changed() {
    state.function = fnSelect.value;
    state.status = statusSelect.value;
    state.range = rangeSelect.value;
    state.since = sinceInput.value;
    state.until = untilInput.value;
    state.cursors = [];
    custom.hidden = state.range !== "custom";
    const query = new URLSearchParams();
    for (const key of ["function", "status", "range", "since", "until"])
      if (state[key]) query.set(key, state[key]);
    history.replaceState(null, "", `#/runs${query.size ? `?${query}` : ""}`);
    reload();
  }
  for (const input of [fnSelect, statusSelect, rangeSelect, sinceInput, untilInput])
    input.addEventListener("change", changed);
  live.addEventListener("change", () => stamp(updated, live.checked && !state.cursors.length));

  api("/v1/functions")
    .then(({ data }) => {
      if (view.closed) return;
      for (const fn of data.filter((f) => inNamespace(f.id)).sort((a, b) => a.id.localeCompare(b.id))) {
        if (fn.id !== state.function)
          fnSelect.append(h("option", { value: fn.id }, `${fn.name} (${fn.app_id})`));
        else
          fnSelect.querySelector(`option[value="${CSS.escape(fn.id)}"]`).textContent =
            `${fn.name} (${fn.app_id})`;
      }
    })
    .catch(() => undefined);

  every(view, 2000, async () => {
    if (live.checked && !state.cursors.length) await load(true);
  });
  await reload();
}

// ---- Run detail --------------------------------------------------------------------------------------

function stepKind(step) {
  return OP_LABELS[step.op] || step.op || "step";
}

// The attempts that failed and were tried again, oldest first, each with its error (and its stack, when
// no later block of the run shows the same one).
function failedAttempts(step, stacks) {
  const failed = step.failed_attempts || [];
  if (!failed.length) return null;
  return h(
    "div",
    { class: "attempts" },
    failed.map((a) =>
      errorBlock(
        a.error,
        [`Attempt ${a.attempt} failed · `, timeFull(a.ended_at)],
        stacks,
        `err-${step.id}-${a.attempt}`,
      ),
    ),
  );
}

function stepOutcome(step, stacks) {
  return h("div", {}, failedAttempts(step, stacks), stepResult(step, stacks));
}

function stepResult(step, stacks) {
  if (step.function) return errorBlock(step.error, "The function failed outside its steps", stacks, "err-run");
  if (step.status === "Retrying" && step.error)
    return (step.failed_attempts || []).length
      ? h("p", { class: "muted" }, `Retrying: attempt ${step.attempts + 1} is due`)
      : errorBlock(step.error, `Attempt ${step.attempts} failed; retrying`, stacks, `err-${step.id}`);
  if (step.error && step.status === "Failed") return errorBlock(step.error, "Error", stacks, `err-${step.id}`);
  if (step.status === "Sleeping") return h("p", { class: "muted" }, "Sleeping…");
  if (step.status === "Waiting") return h("p", { class: "muted" }, "Waiting for the event…");
  if (step.status === "Invoking") return h("p", { class: "muted" }, "Waiting for the invoked function…");
  if (step.status === "Planned") return h("p", { class: "muted" }, "Planned: not run yet");
  if (step.op === "Sleep")
    return h("p", {}, `Slept ${formatDuration(elapsed(step.started_at, step.ended_at))}`);
  if (step.op === "WaitForEvent" && step.output === null)
    return h("p", {}, "Timed out: no matching event arrived");
  const title = step.op === "WaitForEvent" ? "Event received" : "Output";
  const earlier = step.attempts - 1;
  return h(
    "div",
    {},
    earlier > 0
      ? h(
          "p",
          { class: "muted" },
          `Succeeded on attempt ${step.attempts}, after ${earlier} failed ${earlier === 1 ? "attempt" : "attempts"}.`,
        )
      : null,
    h("h3", {}, title),
    h("pre", { class: "output" }, pretty(step.output)),
  );
}

// When the attempt that ended the step (or runs it now) began: its time leaves out the backoff waits.
function attemptStart(step) {
  return step.attempt_started_at || step.started_at;
}

function stepItem(step, collapsed, stacks) {
  const attempts = step.attempts === 1 ? "1 attempt" : `${step.attempts} attempts`;
  const took = formatDuration(elapsed(attemptStart(step), step.ended_at));
  const time = step.attempts > 1 && took ? `last attempt ${took}` : took;
  const details = h(
    "details",
    {
      open: !collapsed.has(step.id),
      "data-step": step.name,
      ontoggle: (e) => (e.target.open ? collapsed.delete(step.id) : collapsed.add(step.id)),
    },
    h(
      "summary",
      {},
      badge(step.status),
      h("span", { class: "step-name" }, step.name),
      h("span", { class: "tag" }, stepKind(step)),
      h(
        "span",
        { class: "right" },
        time ? `${attempts} · ${time}` : attempts,
      ),
    ),
    h(
      "div",
      { class: "step-body" },
      h(
        "dl",
        { class: "meta small" },
        h("dt", {}, "Started"),
        h("dd", {}, timeFull(step.started_at)),
        h("dt", {}, "Ended"),
        h("dd", {}, timeFull(step.ended_at)),
        h("dt", {}, "Step id"),
        h("dd", { class: "mono" }, step.id),
      ),
      stepOutcome(step, stacks),
    ),
  );
  return h("li", {}, details);
}

// A failed run whose error no step carries (an SDK that reports a step's non-retriable error as the
// function's, as the official Python SDK does, or an error outside any step): listed as an entry of its
// own, so that the failure shows among the steps.
function withFunctionFailure(run) {
  if (run.status !== "Failed" || !run.error) return run.steps;
  if (run.steps.some((s) => s.status === "Failed")) return run.steps;
  const entry = {
    id: "function",
    function: true,
    name: run.function.name,
    op: "function",
    status: "Failed",
    attempts: 1,
    started_at: run.started_at,
    ended_at: run.ended_at,
    error: run.error,
    failed_attempts: [],
  };
  return [...run.steps, entry];
}

function waterfall(run) {
  const start = Date.parse(run.started_at || run.created_at);
  const stepEnds = run.steps.map((s) => (s.ended_at ? Date.parse(s.ended_at) : 0));
  const end = run.ended_at ? Date.parse(run.ended_at) : Math.max(Date.now(), ...stepEnds);
  const total = Math.max(end - start, 1);
  const pct = (ms) => `${Math.min(100, Math.max(0, (ms / total) * 100)).toFixed(2)}%`;
  const bar = (label, kind, status, from, to) =>
    h(
      "div",
      { class: "wf-row", role: "listitem" },
      h("span", { class: "wf-label", title: label }, label, h("small", {}, kind)),
      h(
        "span",
        { class: "wf-track" },
        h("span", {
          class: `wf-bar s-${status.toLowerCase()}`,
          title: `${label}: ${status}, ${formatDuration(to - from)}`,
          "data-bar": "last",
          style: { left: pct(from - start), width: pct(to - from) },
        }),
      ),
      h("span", { class: "wf-dur" }, formatDuration(to - from)),
    );
  const segment = (status, from, to, title) =>
    h("span", {
      class: `wf-bar s-${status.toLowerCase()}`,
      title,
      style: { left: pct(from - start), width: pct(Math.max(to, from) - from) },
    });
  const rows = [bar(run.function.name, "run", run.status, start, end)];
  const steps = [...run.steps].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
  for (const step of steps) {
    const from = Date.parse(attemptStart(step));
    const to = step.ended_at ? Date.parse(step.ended_at) : end;
    const row = bar(step.name, stepKind(step), step.status, from, Math.max(to, from));
    // Each failed attempt is a bar of its own; the backoff waits between them are left empty.
    const track = row.querySelector(".wf-track");
    for (const a of step.failed_attempts || []) {
      const ended = Date.parse(a.ended_at);
      const began = a.started_at ? Date.parse(a.started_at) : ended;
      const title = `${step.name}: attempt ${a.attempt} failed, ${formatDuration(ended - began)}`;
      track.prepend(segment("failed", began, ended, title));
    }
    rows.push(row);
  }
  const axis = h(
    "div",
    { class: "wf-axis", "aria-hidden": "true" },
    h("span"),
    h(
      "span",
      { class: "scale" },
      h("span", {}, "0"),
      h("span", {}, formatDuration(total / 2)),
      h("span", {}, formatDuration(total)),
    ),
    h("span"),
  );
  return h("div", { class: "waterfall", role: "list", "aria-label": "Timeline of the steps" }, rows, axis);
}

function runResultSection(run, stacks) {
  if (run.status === "Completed")
    return [h("h2", {}, "Output"), h("pre", { id: "run-output" }, pretty(run.output))];
  if (run.status === "Failed")
    return [h("h2", {}, "Error"), errorBlock(run.error || {}, "The run failed", stacks, "err-run-result")];
  if (run.status === "Cancelled")
    return [h("h2", {}, "Cancelled"), h("p", {}, `Cancelled ${new Date(run.ended_at).toLocaleString()}.`)];
  return [
    h("h2", {}, "Result"),
    h("p", { class: "muted" }, run.status === "Queued" ? "Queued: not started yet." : "Still running…"),
    run.error ? errorBlock(run.error, "Last attempt's error", stacks, "err-run-result") : null,
  ];
}

async function runView(view, runId) {
  const main = $("#view");
  const collapsed = new Set();
  let shown = "";
  let run = null;

  async function act(kind) {
    const replay = kind === "replay";
    const yes = await confirmAction(
      replay
        ? {
            title: "Replay this run?",
            body: `A new run of ${run.function.name} starts with the same event; this run stays as it is.`,
            confirm: "Replay",
            keep: "Don't replay",
          }
        : {
            title: "Cancel this run?",
            body: "Its pending steps will not run. A step already running finishes, but its result is dropped.",
            confirm: "Cancel run",
            keep: "Keep running",
            danger: true,
          },
    );
    if (!yes) return;
    try {
      const answer = await api(`/v1/runs/${run.id}/${kind}`, { method: "POST" });
      if (replay) {
        notice(`Replay started: run ${short(answer.id)}.`);
        location.hash = `#/runs/${answer.id}`;
      } else {
        notice("Run cancelled.");
        await load();
      }
    } catch (err) {
      notice(`Could not ${kind}: ${err.message}`);
    }
  }

  function draw() {
    const ended = ENDED.has(run.status);
    const focused = document.activeElement?.id;
    const listed = withFunctionFailure(run);
    const stacks = stackOwners({ ...run, steps: listed.filter((s) => !s.function) });
    fill(
      main,
      h(
        "nav",
        { class: "crumbs", "aria-label": "Breadcrumb" },
        h("a", { href: "#/runs" }, "Runs"),
        " / ",
        h("span", { class: "mono" }, run.id),
      ),
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, run.function.name),
        badge(run.status),
        waitingText(run) ? h("span", { id: "run-waiting", class: "tag waiting" }, waitingText(run)) : null,
        h(
          "div",
          { class: "actions", hidden: !ACCESS.may_change },
          h(
            "button",
            {
              type: "button",
              id: "replay",
              class: "primary",
              disabled: !ended,
              title: ended ? "Start a new run with the same event" : "Wait for the run to end, or cancel it",
              onclick: () => act("replay"),
            },
            "Replay",
          ),
          h(
            "button",
            { type: "button", id: "cancel", class: "danger", disabled: ended, onclick: () => act("cancel") },
            "Cancel",
          ),
        ),
      ),
      h(
        "div",
        { class: "cards" },
        h(
          "div",
          { class: "card" },
          h(
            "dl",
            { class: "meta" },
            h("dt", {}, "Run"),
            h("dd", { class: "mono" }, run.id),
            h("dt", {}, "Function"),
            h("dd", { class: "mono" }, run.function.id),
            h("dt", {}, "Created"),
            h("dd", {}, timeFull(run.created_at)),
            h("dt", {}, "Started"),
            h("dd", {}, timeFull(run.started_at)),
            h("dt", {}, "Ended"),
            h("dd", {}, timeFull(run.ended_at)),
            h("dt", {}, "Duration"),
            h("dd", {}, formatDuration(elapsed(run.started_at, run.ended_at)) || "—"),
            run.replay_of
              ? [
                  h("dt", {}, "Replay of"),
                  h("dd", {}, h("a", { href: `#/runs/${run.replay_of}`, class: "mono" }, run.replay_of)),
                ]
              : null,
          ),
        ),
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Event"),
          run.event
            ? [
                h(
                  "p",
                  {},
                  h(
                    "a",
                    { href: `#/events/${encodeURIComponent(run.event.id)}`, class: "event-name" },
                    run.event.name,
                  ),
                  " ",
                  h("span", { class: "muted mono" }, run.event.id),
                ),
                h("pre", { id: "event-payload", class: "payload" }, pretty(run.event.data)),
              ]
            : h("p", { class: "muted" }, "The event is no longer stored."),
        ),
      ),
      h("section", { "aria-label": "Result" }, runResultSection(run, stacks)),
      h("h2", {}, "Timeline"),
      waterfall(run),
      h("h2", {}, `Steps (${listed.length})`),
      listed.length
        ? h(
            "ol",
            { class: "steps" },
            listed.map((s) => stepItem(s, collapsed, stacks)),
          )
        : h("p", { class: "muted" }, "No steps recorded yet."),
    );
    document.title = `${run.function.name} · ${run.status} · Stepline`;
    if (focused) document.getElementById(focused)?.focus();
  }

  async function load() {
    const fresh = await api(`/v1/runs/${encodeURIComponent(runId)}`);
    if (view.closed) return;
    run = fresh;
    const key = JSON.stringify(run);
    if (key !== shown || !ENDED.has(run.status)) {
      shown = key;
      draw();
    }
  }

  await load();
  every(view, 1000, async () => {
    if (!ENDED.has(run.status)) await load();
  });
}

// ---- Events ------------------------------------------------------------------------------------------

function runChips(runs) {
  if (!runs.length) return h("span", { class: "muted" }, "Started no runs.");
  return [
    h("span", { class: "muted" }, runs.length === 1 ? "1 run:" : `${runs.length} runs:`),
    runs.map((r) =>
      h("a", { href: `#/runs/${r.id}`, class: "run-chip", title: r.id }, badge(r.status), r.function_id),
    ),
  ];
}

// Functions an event matched but started no run of (rate limit, idempotency, singleton), with the reason.
function skippedList(skipped) {
  if (!skipped?.length) return null;
  return h(
    "ul",
    { class: "skipped" },
    skipped.map((s) =>
      h("li", { "data-reason": s.reason }, h("span", { class: "mono" }, s.function_id), " skipped: ", s.message),
    ),
  );
}

function eventCard(event) {
  return h(
    "li",
    { class: "card", "data-event": event.id },
    h(
      "div",
      { class: "event-head" },
      h("a", { href: `#/events/${encodeURIComponent(event.id)}`, class: "event-name" }, event.name),
      timeAgo(event.received_at),
      h("span", { class: "muted mono small", title: event.id }, event.id),
    ),
    h("pre", { class: "payload" }, pretty(event.data)),
    h("div", { class: "event-runs" }, runChips(event.runs)),
    skippedList(event.skipped),
  );
}

function sendForm(onSent) {
  const name = h("input", {
    id: "send-name",
    name: "name",
    required: true,
    placeholder: "order/created",
    autocomplete: "off",
  });
  const data = h(
    "textarea",
    { id: "send-data", name: "data", spellcheck: "false" },
    '{\n  "order_id": "o-1"\n}',
  );
  const message = h("p", { class: "form-message", role: "status" });
  const form = h(
    "form",
    {
      class: "send-form",
      "aria-label": "Send an event",
      onsubmit: async (e) => {
        e.preventDefault();
        let payload;
        try {
          payload = data.value.trim() ? JSON.parse(data.value) : {};
        } catch (err) {
          fill(message, h("span", { class: "err" }, `The data is not valid JSON: ${err.message}`));
          data.focus();
          return;
        }
        if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
          fill(message, h("span", { class: "err" }, 'The data must be a JSON object, like {"id": 1}.'));
          data.focus();
          return;
        }
        try {
          const { ids } = await api("/v1/events", {
            method: "POST",
            body: { name: name.value.trim(), data: payload },
          });
          fill(
            message,
            "Sent event ",
            h("a", { href: `#/events/${encodeURIComponent(ids[0])}`, class: "mono" }, ids[0]),
            ".",
          );
          await onSent();
        } catch (err) {
          fill(message, h("span", { class: "err" }, err.message));
        }
      },
    },
    field("Event name", name),
    field("Data (a JSON object)", data),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary", id: "send" }, "Send event"),
      message,
    ),
  );
  return h(
    "section",
    { class: "card", "aria-labelledby": "send-title" },
    h("h2", { id: "send-title" }, "Send a test event"),
    form,
  );
}

async function eventsView(view, params) {
  const main = $("#view");
  const state = {
    name: params.get("name") || "",
    internal: params.get("internal") === "true",
    cursors: [],
    next: null,
    shown: "",
    asked: 0,
  };
  const list = h("ol", { class: "events", "aria-label": "Events" });
  const pagerSlot = h("div");
  const updated = h("span", { class: "updated muted" });
  const nameInput = h("input", {
    id: "filter-name",
    value: state.name,
    placeholder: "any name",
    autocomplete: "off",
  });
  // The events Stepline emits itself (inngest/function.failed, .finished, .cancelled...) are hidden unless
  // asked for: they would crowd out the application's own.
  const internalInput = h("input", { type: "checkbox", id: "filter-internal", checked: state.internal });
  const remember = () => {
    const query = new URLSearchParams();
    if (state.name) query.set("name", state.name);
    if (state.internal) query.set("internal", "true");
    history.replaceState(null, "", `#/events${query.size ? `?${query}` : ""}`);
  };
  internalInput.addEventListener("change", () => {
    state.internal = internalInput.checked;
    state.cursors = [];
    remember();
    reload();
  });
  const filters = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter events",
      onsubmit: (e) => {
        e.preventDefault();
        state.name = nameInput.value.trim();
        state.cursors = [];
        remember();
        reload();
      },
    },
    field("Event name", nameInput),
    h("button", { type: "submit" }, "Filter"),
    h(
      "div",
      { class: "field inline" },
      internalInput,
      h("label", { for: "filter-internal" }, "Show Stepline's own events (inngest/*)"),
    ),
  );

  async function load(quiet, focus) {
    const query = new URLSearchParams({ limit: "20" });
    if (state.name) query.set("name", state.name);
    if (!state.internal && !state.name) query.set("internal", "false");
    // A namespace chosen: the events sent into it (those sent to every namespace show through its runs).
    if (NAMESPACE) query.set("namespace", NAMESPACE);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const asked = ++state.asked;
    const page = await api(`/v1/events?${query}`);
    if (view.closed || asked !== state.asked) return;
    stamp(updated, !state.cursors.length);
    const shown = JSON.stringify(page);
    if (quiet && shown === state.shown) {
      refreshTimes();
      return;
    }
    state.shown = shown;
    state.next = page.next_cursor;
    fill(
      list,
      ...(page.data.length ? page.data.map(eventCard) : [h("li", { class: "empty" }, "No events yet.")]),
    );
    fill(
      pagerSlot,
      pager(state, (button) => reload(button)),
    );
    if (focus) document.getElementById(focus.id)?.focus();
  }
  const reload = (focus) => load(false, focus).catch((err) => fill(list, h("li", {}, problem(err))));

  fill(
    main,
    h("div", { class: "page-head" }, h("h1", {}, "Events"), updated),
    ACCESS.may_change
      ? sendForm(async () => {
          state.cursors = [];
          await reload();
        })
      : null,
    h("h2", {}, "Received"),
    NAMESPACE
      ? h(
          "p",
          { class: "muted", "data-scope": NAMESPACE },
          `The events sent into namespace ${NAMESPACE}; those sent to every namespace show in their runs.`,
        )
      : null,
    filters,
    list,
    pagerSlot,
  );
  every(view, 3000, async () => {
    if (!state.cursors.length) await load(true);
  });
  await reload();
}

async function eventView(view, eventId) {
  const main = $("#view");
  let shown = "";
  async function load() {
    const event = await api(`/v1/events/${encodeURIComponent(eventId)}`);
    if (view.closed) return;
    const key = JSON.stringify(event);
    if (key === shown) return;
    shown = key;
    fill(
      main,
      h(
        "nav",
        { class: "crumbs", "aria-label": "Breadcrumb" },
        h("a", { href: "#/events" }, "Events"),
        " / ",
        h("span", { class: "mono" }, event.id),
      ),
      h("div", { class: "page-head" }, h("h1", { class: "event-name" }, event.name)),
      h(
        "dl",
        { class: "meta" },
        h("dt", {}, "Event id"),
        h("dd", { class: "mono" }, event.id),
        h("dt", {}, "Received"),
        h("dd", {}, timeFull(event.received_at)),
        h("dt", {}, "Timestamp"),
        h("dd", {}, timeFull(new Date(event.ts).toISOString())),
      ),
      h("h2", {}, "Payload"),
      h("pre", { id: "event-payload" }, pretty(event.data)),
      event.user ? [h("h2", {}, "User"), h("pre", {}, pretty(event.user))] : null,
      h("h2", {}, "Runs it started"),
      h("div", { class: "event-runs" }, runChips(event.runs)),
      event.skipped?.length ? [h("h2", {}, "Skipped by flow control"), skippedList(event.skipped)] : null,
    );
    document.title = `${event.name} · Stepline`;
  }
  await load();
  every(view, 2000, load);
}

// ---- Functions ---------------------------------------------------------------------------------------

function trigger(t) {
  if (t.cron)
    return h(
      "li",
      {},
      h("span", { class: "tag" }, "cron"),
      h("code", {}, t.cron),
      t.timezone ? ` (${t.timezone})` : null,
    );
  return h(
    "li",
    {},
    h("span", { class: "tag" }, "event"),
    h("code", {}, t.event),
    t.if ? [" if ", h("code", {}, t.if)] : null,
  );
}

// A function's flow-control settings, one line each, as GET /v1/functions gives them (CRD spelling).
function flowSettings(flow) {
  if (!flow) return h("span", { class: "muted" }, "none");
  const per = (key) => (key ? [" per ", h("code", {}, key)] : null);
  const item = (name, ...rest) => h("li", {}, h("span", { class: "tag" }, name), ...rest);
  const items = [];
  for (const c of flow.concurrency || [])
    items.push(
      item("concurrency", `${c.limit}`, per(c.key), c.scope && c.scope !== "fn" ? ` (${c.scope})` : null),
    );
  const t = flow.throttle;
  if (t) {
    const burst = t.burst > 1 ? `, burst ${t.burst}` : null;
    items.push(item("throttle", `${t.limit} per ${t.period}`, burst, per(t.key)));
  }
  const r = flow.rateLimit;
  if (r) items.push(item("rate limit", `${r.limit} per ${r.period}`, per(r.key)));
  const d = flow.debounce;
  if (d) items.push(item("debounce", d.period, d.timeout ? `, at most ${d.timeout}` : null, per(d.key)));
  const b = flow.batchEvents;
  if (b)
    items.push(
      item(
        "batch",
        `${b.maxSize} events, ${b.timeout}`,
        per(b.key),
        b.if ? [" if ", h("code", {}, b.if)] : null,
      ),
    );
  if (flow.priority) items.push(item("priority", h("code", {}, flow.priority.run)));
  if (flow.idempotency) items.push(item("idempotency", h("code", {}, flow.idempotency)));
  const o = flow.singleton;
  if (o) items.push(item("singleton", o.mode, per(o.key)));
  const to = flow.timeouts;
  if (to) {
    const limits = [to.start ? `start ${to.start}` : null, to.finish ? `finish ${to.finish}` : null];
    items.push(item("timeouts", limits.filter(Boolean).join(", ")));
  }
  return h("ul", { class: "triggers flow" }, items);
}

function retryPolicyText(policy) {
  if (!policy) return null;
  const timeout = policy.timeout ? `, calls cut off at ${policy.timeout}` : "";
  return h(
    "div",
    { class: "muted small retry-policy" },
    `${policy.backoff} from ${policy.initialDelay} to ${policy.maxDelay}, ` +
      `jitter ${policy.jitterPercent}%${timeout}`,
  );
}

function countBadges(fnId, recent, atMost) {
  const counts = recent ? recent.counts : {};
  const entries = RUN_STATUSES.filter((s) => counts[s]);
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h(
    "div",
    { class: "counts" },
    recent.capped ? h("span", { class: "muted small" }, `newest ${atMost.toLocaleString()}:`) : null,
    entries.map((s) =>
      h(
        "a",
        {
          class: `badge s-${s.toLowerCase()}`,
          href: `#/runs?function=${encodeURIComponent(fnId)}&status=${s}&range=24h`,
        },
        `${counts[s]} ${s}`,
      ),
    ),
  );
}

async function functionsView(view) {
  const main = $("#view");
  const body = h("tbody");
  let shown = "";
  fill(
    main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Functions"),
      h("span", { class: "muted" }, "Run counts cover the last 24 hours."),
    ),
    dataTable(
      "Functions",
      ["Function", "Triggers", "Flow control", "Endpoint", ["Retries", "num"], "Recent runs"],
      body,
    ),
  );
  async function load() {
    const since = new Date(Date.now() - RANGE_MS["24h"]).toISOString();
    const [functions, counts] = await Promise.all([
      api("/v1/functions"),
      api(`/v1/functions/run-counts?since=${encodeURIComponent(since)}`),
    ]);
    if (view.closed) return;
    const key = JSON.stringify([functions, counts]);
    if (key === shown) return;
    shown = key;
    const byFunction = Object.fromEntries(counts.data.map((c) => [c.function_id, c]));
    const rows = functions.data
      .filter((f) => inNamespace(f.id))
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((fn) =>
        h(
          "tr",
          { "data-function": fn.id },
          h(
            "td",
            {},
            h(
              "div",
              {},
              h("a", { href: `#/runs?function=${encodeURIComponent(fn.id)}` }, fn.name),
              fn.paused ? [" ", badge("Paused")] : null,
            ),
            h("div", { class: "muted mono small" }, fn.id),
            h("div", { class: "muted small" }, `app ${fn.app_id} · from ${fn.source}`),
          ),
          h("td", {}, h("ul", { class: "triggers" }, fn.triggers.map(trigger))),
          h("td", { class: "flow-control" }, flowSettings(fn.flow)),
          h("td", {}, h("code", { class: "url" }, fn.url)),
          h("td", { class: "num" }, String(fn.retries), retryPolicyText(fn.retry_policy)),
          h("td", {}, countBadges(fn.id, byFunction[fn.id], counts.at_most)),
        ),
      );
    fill(
      body,
      ...(rows.length
        ? rows
        : [
            h(
              "tr",
              {},
              h(
                "td",
                { colspan: 6, class: "empty" },
                "No functions routed: sync an app or apply a Function.",
              ),
            ),
          ]),
    );
  }
  await load();
  every(view, 10000, load);
}

// ---- Webhooks ----------------------------------------------------------------------------------------

function verifyText(webhook) {
  const o = webhook.options || {};
  if (webhook.verify === "hmac") return `HMAC-${o.algorithm.toUpperCase()} (${o.encoding}) in ${o.header}`;
  if (webhook.verify === "token") return `token in ${o.header}`;
  if (o.tolerance_s) return `${webhook.verify}, timestamps within ${o.tolerance_s} s`;
  return webhook.verify === "none" ? "none: requests are not checked" : webhook.verify;
}

function webhookRow(webhook) {
  const key = `${webhook.namespace}/${webhook.name}`;
  const secrets =
    webhook.secrets > 1 ? "current + previous (rotating)" : webhook.secrets === 1 ? "1 secret" : "none";
  return h(
    "tr",
    { "data-webhook": key },
    h(
      "td",
      {},
      h("a", { href: `#/webhooks?webhook=${encodeURIComponent(key)}` }, key),
      h("div", { class: "muted small" }, `from ${webhook.source}`),
    ),
    h("td", {}, h("code", { class: "url" }, webhook.url)),
    h("td", {}, verifyText(webhook), h("div", { class: "muted small" }, secrets)),
    h(
      "td",
      {},
      webhook.transform
        ? h("code", { class: "transform" }, webhook.transform)
        : h("span", { class: "muted" }, `default: webhook/${webhook.namespace}.${webhook.name}`),
    ),
    h(
      "td",
      {},
      webhook.ready
        ? badge("Ready")
        : [badge("Unavailable"), h("div", { class: "err small" }, webhook.problem)],
    ),
  );
}

function deliveryRow(delivery) {
  const key = `${delivery.namespace}/${delivery.name}`;
  const events = delivery.event_ids.length
    ? h(
        "ul",
        { class: "event-ids" },
        delivery.event_ids.map((id) =>
          h("li", {}, h("a", { href: `#/events/${encodeURIComponent(id)}`, class: "mono small" }, id)),
        ),
      )
    : h("span", { class: "muted" }, "none");
  return h(
    "tr",
    { "data-delivery": String(delivery.id), "data-accepted": String(delivery.accepted) },
    h("td", {}, timeAgo(delivery.received_at)),
    h("td", {}, h("a", { href: `#/webhooks?webhook=${encodeURIComponent(key)}` }, key)),
    h(
      "td",
      {},
      badge(delivery.accepted ? "Accepted" : "Refused"),
      h("span", { class: "muted small status" }, ` ${delivery.status}`),
    ),
    h("td", { class: delivery.accepted ? "reason" : "reason err" }, delivery.reason),
    h("td", {}, events),
  );
}

async function webhooksView(view, params) {
  const main = $("#view");
  const state = { webhook: params.get("webhook") || "", shown: "" };
  const endpoints = h("tbody");
  const log = h("tbody");
  const updated = h("span", { class: "updated muted" });
  const select = h("select", { id: "filter-webhook" }, h("option", { value: "" }, "All webhooks"));
  select.addEventListener("change", () => {
    state.webhook = select.value;
    history.replaceState(
      null,
      "",
      state.webhook ? `#/webhooks?webhook=${encodeURIComponent(state.webhook)}` : "#/webhooks",
    );
    load().catch((err) => fill(log, h("tr", {}, h("td", { colspan: 5 }, problem(err)))));
  });
  fill(
    main,
    h("div", { class: "page-head" }, h("h1", {}, "Webhooks"), updated),
    h(
      "p",
      { class: "muted" },
      "Providers post to the URL of each webhook; a request is checked, turned into events and stored, or " +
        "refused. Secrets are never shown.",
    ),
    dataTable("Webhooks", ["Webhook", "URL", "Verify", "Transform", "Status"], endpoints),
    h("h2", {}, "Recent deliveries"),
    h("div", { class: "filters" }, field("Webhook", select)),
    dataTable("Deliveries", ["Received", "Webhook", "Outcome", "Reason", "Events"], log),
  );
  async function load() {
    const query = new URLSearchParams({ limit: "50" });
    if (state.webhook) query.set("webhook", state.webhook);
    const [webhooks, deliveries] = await Promise.all([
      api("/v1/webhooks"),
      api(`/v1/webhooks/deliveries?${query}`),
    ]);
    if (view.closed) return;
    stamp(updated, true);
    const key = JSON.stringify([webhooks, deliveries, state.webhook]);
    if (key === state.shown) {
      refreshTimes();
      return;
    }
    state.shown = key;
    const names = webhooks.data.map((w) => `${w.namespace}/${w.name}`);
    if (state.webhook && !names.includes(state.webhook)) names.push(state.webhook);
    fill(
      select,
      h("option", { value: "" }, "All webhooks"),
      names.map((name) => h("option", { value: name, selected: name === state.webhook }, name)),
    );
    fill(
      endpoints,
      ...(webhooks.data.length
        ? webhooks.data.map(webhookRow)
        : [
            h(
              "tr",
              {},
              h(
                "td",
                { colspan: 5, class: "empty" },
                "No webhooks: apply a Webhook resource, or give one to stepline dev -f.",
              ),
            ),
          ]),
    );
    fill(
      log,
      ...(deliveries.data.length
        ? deliveries.data.map(deliveryRow)
        : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No deliveries yet."))]),
    );
  }
  every(view, 3000, load);
  await load();
}

// ---- Router ------------------------------------------------------------------------------------------

function route(moveFocus) {
  const raw = location.hash.replace(/^#/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  const section = ["runs", "events", "functions", "webhooks"].includes(parts[0]) ? parts[0] : "runs";
  for (const link of document.querySelectorAll(".top nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const titles = { runs: "Runs", events: "Events", functions: "Functions", webhooks: "Webhooks" };
  document.title = `${titles[section]} · Stepline`;
  const view = newView();
  let shown;
  if (section === "runs" && parts[1]) shown = runView(view, parts[1]);
  else if (section === "events" && parts[1]) shown = eventView(view, parts[1]);
  else if (section === "events") shown = eventsView(view, params);
  else if (section === "functions") shown = functionsView(view);
  else if (section === "webhooks") shown = webhooksView(view, params);
  else shown = runsView(view, params);
  shown.catch((err) => {
    if (!view.closed) fill($("#view"), problem(err));
  });
  if (moveFocus) $("#view").focus();
}

function namespaceSelector() {
  const select = h(
    "select",
    { id: "namespace", "aria-label": "Namespace" },
    ACCESS.namespace === null ? h("option", { value: "" }, "All namespaces") : null,
    ...ACCESS.namespaces.map((name) => h("option", { value: name }, name)),
  );
  if (ACCESS.namespace !== null) NAMESPACE = ACCESS.namespace;
  select.value = NAMESPACE;
  select.addEventListener("change", () => {
    NAMESPACE = select.value;
    route(false);
  });
  return select;
}

async function start() {
  const mode = document.body.dataset.mode;
  try {
    ACCESS = await api("/v1/whoami");
  } catch {
    // An older gateway, or one that cannot answer now: the dashboard as before, the API still decides.
  }
  $("#mode").before(namespaceSelector());
  if (!ACCESS.may_change) $("#mode").append(h("span", { class: "badge", title: "this token may read only" }, "viewer"));
  const modeEl = $("#mode");
  if (mode === "dev") modeEl.append(badge("dev mode"));
  if (mode === "open")
    modeEl.append(
      h("span", { class: "badge s-retrying", title: "STEPLINE_NO_API_TOKEN is set" }, "no API token"),
    );
  if (mode === "token") $(".signout").hidden = false;
  $("#skip").addEventListener("click", (e) => {
    e.preventDefault();
    $("#view").focus();
  });
  window.addEventListener("hashchange", () => route(true));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshTimes();
  });
  if (!location.hash) history.replaceState(null, "", "#/runs");
  route(false);
}

start();
