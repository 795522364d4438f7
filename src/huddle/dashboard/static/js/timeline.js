// The timeline: a bounded window of the event log, newest first.
//
// At most MAX_ROWS rows are in the DOM whatever the event rate. While the newest page is shown,
// live events are prepended and the oldest row drops off; "Load older" pages back through
// list_events and, past the cap, drops the newest rows instead and pauses the live view until the
// person jumps back to it. So 10,000 events cost the page the same as 200.

import { call } from "./api.js";
import { byId, clear, clock, h, isHuman } from "./dom.js";
import { describe, GROUPS, groupOf, matchesGroup } from "./describe.js";

export const MAX_ROWS = 200;
const PAGE = 100;

export class Timeline {
  constructor({ onSelectThread, metrics }) {
    this.list = byId("timeline-list");
    this.older = byId("timeline-older");
    this.resume = byId("timeline-resume");
    this.count = byId("timeline-count");
    this.onSelectThread = onSelectThread;
    this.metrics = metrics;
    this.group = "all";
    this.live = true;
    this.missed = 0;
    this.oldest = null; // cursor of the oldest rendered row
    this.seen = 0;
    this.renderFilters();
    this.older.addEventListener("click", () => this.loadOlder());
    this.resume.addEventListener("click", () => this.reload());
  }

  renderFilters() {
    const box = clear(byId("timeline-filters"));
    for (const [key, label] of GROUPS) {
      box.append(
        h("button", {
          type: "button",
          class: "filter",
          "aria-pressed": String(key === this.group),
          dataset: { group: key },
          text: label,
          onclick: () => {
            this.group = key;
            this.renderFilters();
            this.reload();
          },
        }),
      );
    }
  }

  kinds() {
    const found = GROUPS.find(([key]) => key === this.group);
    return found && found[2] ? found[2] : undefined;
  }

  /** The newest page again (live view). */
  async reload() {
    const page = await call("list_events", { limit: PAGE, kinds: this.kinds() });
    clear(this.list);
    this.live = true;
    this.missed = 0;
    this.resume.hidden = true;
    for (const event of page.events) this.list.append(this.row(event));
    this.oldest = page.events.length ? page.events[page.events.length - 1].cursor : null;
    this.older.hidden = !page.has_more;
    this.updateCount();
    return page.latest_cursor;
  }

  async loadOlder() {
    if (this.oldest === null) return;
    this.older.disabled = true;
    try {
      const page = await call("list_events", { before: this.oldest, limit: PAGE, kinds: this.kinds() });
      for (const event of page.events) this.list.append(this.row(event));
      if (page.events.length) this.oldest = page.events[page.events.length - 1].cursor;
      this.older.hidden = !page.has_more;
      let dropped = 0;
      while (this.list.childElementCount > MAX_ROWS) {
        this.list.firstElementChild.remove();
        dropped += 1;
      }
      if (dropped) this.pause();
    } finally {
      this.older.disabled = false;
      this.updateCount();
    }
  }

  pause() {
    this.live = false;
    this.resume.hidden = false;
    this.resume.textContent = "Showing older events — back to live";
  }

  /** A live event from the stream. */
  add(event) {
    this.seen += 1;
    if (!matchesGroup(event.event, this.group)) return;
    if (!this.live) {
      this.missed += 1;
      this.resume.textContent = `${this.missed} new event${this.missed === 1 ? "" : "s"} — back to live`;
      return;
    }
    this.list.prepend(this.row(event, true));
    if (this.list.childElementCount > MAX_ROWS) {
      this.list.lastElementChild.remove();
      this.oldest = Number(this.list.lastElementChild.dataset.cursor);
      this.older.hidden = false;
    }
    if (this.oldest === null) this.oldest = event.cursor;
    this.metrics.rendered(event.cursor);
    this.updateCount();
  }

  updateCount() {
    this.count.textContent = `${this.list.childElementCount} shown`;
  }

  row(event, fresh = false) {
    const { text, chips } = describe(event);
    const actor = event.agent_id || "huddle";
    const li = h(
      "li",
      {
        class: `event g-${groupOf(event.event)}${fresh ? " fresh" : ""}`,
        dataset: { cursor: event.cursor, kind: event.event, thread: event.thread_id || "" },
      },
      h("time", { datetime: event.ts, title: event.ts, text: clock(event.ts) }),
      h("span", { class: "kind", text: event.event }),
      h(
        "div",
        { class: "what" },
        h("span", { class: `actor${isHuman(actor) ? " human" : ""}`, text: actor }),
        " ",
        h("span", { class: "text", text }),
        chips.length ? h("span", { class: "chips" }, chips.map((c) => h("span", { class: `tag t-${c.tone}`, text: c.label }))) : null,
      ),
    );
    if (event.thread_id) {
      li.classList.add("clickable");
      li.tabIndex = 0;
      li.addEventListener("click", () => this.onSelectThread(event.thread_id));
      li.addEventListener("keydown", (ev) => ev.key === "Enter" && this.onSelectThread(event.thread_id));
    }
    return li;
  }
}
