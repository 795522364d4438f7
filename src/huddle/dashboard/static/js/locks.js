// Leases: path, mode, holder, fencing token, time left (ticking), the queue, and a release button
// for the overseer (force_release_lock) on leases whose holder is offline or that look stale.

import { call } from "./api.js";
import { actingOverseer } from "./overseer.js";
import { byId, clear, duration, h, toast } from "./dom.js";

const SHOWN = 100;

export class LocksPanel {
  constructor({ agentActivity }) {
    this.box = byId("locks");
    this.agentActivity = agentActivity;
    this.data = null;
  }

  rerender() {
    if (this.data) this.render(this.data);
  }

  async refresh() {
    this.data = await call("list_locks", {});
    this.render(this.data);
  }

  render(data) {
    byId("locks-count").textContent = `${data.count} held · ${data.waiting.length} queued`;
    clear(this.box);
    if (!data.locks.length && !data.waiting.length) {
      this.box.append(h("p", { class: "empty", text: "No leases held." }));
      return;
    }
    const queue = new Map();
    for (const w of data.waiting) {
      if (!queue.has(w.path)) queue.set(w.path, []);
      queue.get(w.path).push(w);
    }
    const rows = data.locks.slice(0, SHOWN).map((lock) => {
      const activity = this.agentActivity(lock.agent_id);
      const stale = activity === "offline" || activity === undefined;
      const waiting = queue.get(lock.path) || [];
      queue.delete(lock.path);
      return h(
        "li",
        { class: `lease${stale ? " stale" : ""}`, dataset: { path: lock.path, holder: lock.agent_id } },
        h(
          "div",
          { class: "line" },
          h("span", { class: "mono path", text: lock.path }),
          h("span", { class: `tag mode-${lock.mode}`, text: lock.mode }),
        ),
        h(
          "div",
          { class: "line small" },
          h("span", { text: lock.agent_id }),
          stale ? h("span", { class: "tag t-timeout", text: "holder offline" }) : null,
          h("span", { class: "muted mono", text: `#${lock.fencing_token}` }),
          h("span", { class: "muted expires", dataset: { expires: lock.expires_at }, text: duration(lock.expires_in_s) }),
          waiting.length ? h("span", { class: "muted", text: `queue: ${waiting.map((w) => `${w.agent_id} (${w.mode})`).join(", ")}` }) : null,
          h("button", { type: "button", class: "small-btn danger", text: "Release", title: "Release this lease as overseer", onclick: () => this.release(lock) }),
        ),
      );
    });
    const list = h("ul", { class: "list leases" }, rows);
    this.box.append(list);
    for (const [path, waiting] of queue) {
      list.append(h("li", { class: "lease queued" }, h("span", { class: "mono path", text: path }), h("span", { class: "small muted", text: ` queued: ${waiting.map((w) => `${w.agent_id} (${w.mode})`).join(", ")}` })));
    }
    if (data.count > SHOWN) this.box.append(h("p", { class: "small muted", text: `+${data.count - SHOWN} more leases` }));
  }

  /** Called every second: time left counts down without refetching. */
  tick(now) {
    for (const el of this.box.querySelectorAll("[data-expires]")) {
      el.textContent = duration((Date.parse(el.dataset.expires) - now) / 1000);
    }
  }

  async release(lock) {
    const overseer = await actingOverseer().catch((err) => toast(err.message));
    if (!overseer) return;
    if (!window.confirm(`Release ${lock.agent_id}'s ${lock.mode} lease on ${lock.path}? The holder is told its lease is gone.`)) return;
    try {
      await call("force_release_lock", { overseer_id: overseer, holder: lock.agent_id, path: lock.path, reason: "released from the dashboard" });
      toast(`Released ${lock.path}`, "ok");
    } catch (err) {
      toast(err.message);
    }
  }
}
