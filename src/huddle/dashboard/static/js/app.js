// The dashboard: boots from the REST API, then stays live on the SSE stream. Each event is added to
// the timeline at once and marks the panels it concerns stale; a panel refetches at most once per
// its throttle interval however many events arrive, so a burst of 1,000 events costs a few reads.

import { call, health } from "./api.js";
import { AgentsPanel } from "./agents.js";
import { ago, byId, toast } from "./dom.js";
import { LocksPanel } from "./locks.js";
import { chooseName, overseerId } from "./overseer.js";
import { HotFiles, SignalsPanel } from "./signals.js";
import { LiveStream } from "./stream.js";
import { TaskBoard } from "./tasks.js";
import { ThreadPanel } from "./thread.js";
import { Timeline } from "./timeline.js";

/** Runs `fn` when asked, at most once per `gapMs`, never two at once; asks during a run queue one more. */
class Refresher {
  constructor(name, fn, gapMs) {
    this.name = name;
    this.fn = fn;
    this.gapMs = gapMs;
    this.running = false;
    this.again = false;
    this.timer = null;
    this.last = 0;
  }

  request() {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    const wait = Math.max(0, this.last + this.gapMs - Date.now());
    this.timer = setTimeout(() => this.run(), wait);
  }

  async run() {
    this.timer = null;
    this.running = true;
    this.last = Date.now();
    try {
      await this.fn();
    } catch (err) {
      console.warn(`refreshing ${this.name} failed`, err);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.request();
      }
    }
  }
}

// What the benchmark and the browser tests read: when each event reached the page.
const metrics = {
  renderedAt: new Map(),
  events: 0,
  rendered(cursor) {
    this.renderedAt.set(cursor, Date.now());
    if (this.renderedAt.size > 2000) this.renderedAt.delete(this.renderedAt.keys().next().value);
  },
};
window.__huddle = metrics;

const thread = new ThreadPanel();
const selectThread = (id) => {
  thread.select(id).catch((err) => toast(err.message));
  byId("thread-h").scrollIntoView({ behavior: "smooth", block: "nearest" });
};
const agents = new AgentsPanel({ onSelectThread: selectThread });
const activity = (id) => agents.byId(id)?.activity;
const timeline = new Timeline({ onSelectThread: selectThread, metrics });
const locks = new LocksPanel({ agentActivity: activity });
const tasks = new TaskBoard({ agentActivity: activity });
const signals = new SignalsPanel();
const hot = new HotFiles();

const refresh = {
  agents: new Refresher("agents", async () => {
    await agents.refresh();
    // Who is offline decides which leases look stale and which tasks look abandoned.
    locks.rerender();
    tasks.render();
  }, 400),
  locks: new Refresher("locks", () => locks.refresh(), 300),
  tasks: new Refresher("tasks", () => tasks.refresh(), 300),
  hot: new Refresher("hot files", () => hot.refresh(), 1000),
  signals: new Refresher("signals", () => signals.refresh(), 1000),
  threads: new Refresher("threads", () => thread.refreshList(), 300),
  thread: new Refresher("thread", () => thread.refresh(), 150),
};

function onEvent(event) {
  metrics.events += 1;
  thread.rememberImpacts(event);
  timeline.add(event);
  byId("cursor").textContent = `#${event.cursor}`;
  const group = event.event.split(".")[0];
  refresh.agents.request();
  if (group === "lock") refresh.locks.request();
  if (group === "task" || group === "worker") refresh.tasks.request();
  if (group === "file") refresh.hot.request();
  if (event.event === "intent.announced" || event.event === "thread.status") refresh.signals.request();
  if (group === "thread") {
    refresh.threads.request();
    if (event.event === "thread.opened" && !isActive(thread.selected)) {
      thread.selected = event.thread_id;
      refresh.thread.request();
    } else if (event.thread_id && event.thread_id === thread.selected) {
      refresh.thread.request();
    }
  }
}

function isActive(threadId) {
  const found = thread.threads.find((t) => t.thread_id === threadId);
  return Boolean(found && (found.status === "open" || found.status === "resolving"));
}

function setConnection(state) {
  const el = byId("conn");
  el.dataset.state = state;
  el.querySelector(".conn-label").textContent = state;
}

function refreshAll() {
  for (const r of Object.values(refresh)) r.request();
}

function renderOverseer() {
  const id = overseerId();
  const button = byId("overseer");
  button.textContent = id || "set your name";
  button.title = id ? `You act as ${id}; click to change` : "Set the name your actions are signed with";
}

/**
 * A server whose log ends before our cursor has a new database (its data dir was reset): the
 * stream restarted at its present, so take its cursors from there and show its timeline afresh.
 */
async function checkLogContinuity(stream) {
  const { latest_cursor: latest } = await call("list_events", { limit: 1 });
  if (latest < stream.cursor) {
    stream.cursor = latest;
    await timeline.reload();
    await thread.refreshList();
  }
}

async function boot() {
  renderOverseer();
  byId("overseer").addEventListener("click", () => chooseName());
  document.addEventListener("overseer-changed", renderOverseer);
  try {
    const [info, status] = await Promise.all([health(), call("coordinator_status")]);
    byId("version").textContent = `v${info.version}`;
    byId("project").textContent = info.project;
    byId("repo").textContent = status.repo;
    byId("repo").title = `Repository: ${status.repo}`;
    document.title = `Huddle · ${info.project}`;
  } catch (err) {
    toast(err.message);
  }
  const latest = await timeline.reload();
  byId("cursor").textContent = `#${latest}`;
  await thread.refreshList();
  const stream = new LiveStream({
    onEvent,
    onState: setConnection,
    // On every (re)connection the derived panels are read afresh: time passed while we were away.
    onOpen: async (opens) => {
      refreshAll();
      if (opens > 1) await checkLogContinuity(stream);
    },
  });
  stream.start(latest);
  window.__huddleStream = stream;
  setInterval(() => {
    const now = Date.now();
    locks.tick(now);
    for (const el of document.querySelectorAll("[data-ago]")) el.textContent = ago(el.dataset.ago, now);
  }, 1000);
}

boot().catch((err) => {
  setConnection("offline");
  toast(`The dashboard could not start: ${err.message}`);
});
