// Agents: activity (working / waiting / idle / offline), current file, the threads each waits on.
// Paginated (25 per page, 8 on a phone) with activity filters and a search box, so 100 agents stay light.

import { call } from "./api.js";
import { ago, byId, clear, h, isHuman } from "./dom.js";

// Fewer rows per page on a phone, so the panels below stay within reach.
const narrow = window.matchMedia("(max-width: 720px)");
const pageSize = () => (narrow.matches ? 8 : 25);
const ACTIVITIES = ["all", "working", "waiting", "idle", "offline"];

export class AgentsPanel {
  constructor({ onSelectThread }) {
    this.onSelectThread = onSelectThread;
    this.agents = [];
    this.filter = "all";
    this.page = 0;
    this.list = byId("agents-list");
    this.search = byId("agents-search");
    this.search.addEventListener("input", () => {
      this.page = 0;
      this.render();
    });
    narrow.addEventListener("change", () => this.render());
  }

  async refresh() {
    this.agents = (await call("list_agents", {})).agents;
    this.render();
    return this.agents;
  }

  byId(agentId) {
    return this.agents.find((a) => a.agent_id === agentId);
  }

  render() {
    const counts = Object.fromEntries(ACTIVITIES.map((a) => [a, 0]));
    for (const agent of this.agents) {
      counts.all += 1;
      counts[agent.activity] = (counts[agent.activity] || 0) + 1;
    }
    const filters = clear(byId("agents-filters"));
    for (const activity of ACTIVITIES) {
      filters.append(
        h(
          "button",
          {
            type: "button",
            class: `filter a-${activity}`,
            "aria-pressed": String(activity === this.filter),
            onclick: () => {
              this.filter = activity;
              this.page = 0;
              this.render();
            },
          },
          activity,
          h("span", { class: "n", text: counts[activity] || 0 }),
        ),
      );
    }
    byId("agents-count").textContent = `${counts.all - counts.offline} online`;
    const needle = this.search.value.trim().toLowerCase();
    const order = { working: 0, waiting: 1, idle: 2, offline: 3 };
    const shown = this.agents
      .filter((a) => this.filter === "all" || a.activity === this.filter)
      .filter((a) => !needle || `${a.agent_id} ${a.name} ${a.current_file || ""}`.toLowerCase().includes(needle))
      .sort((a, b) => order[a.activity] - order[b.activity] || a.agent_id.localeCompare(b.agent_id));
    const size = pageSize();
    const pages = Math.max(1, Math.ceil(shown.length / size));
    this.page = Math.min(this.page, pages - 1);
    const slice = shown.slice(this.page * size, (this.page + 1) * size);
    clear(this.list);
    if (!slice.length) this.list.append(h("li", { class: "empty", text: this.agents.length ? "No agent matches." : "No agents yet. They appear when they register." }));
    for (const agent of slice) this.list.append(this.row(agent));
    this.renderPager(pages);
  }

  row(agent) {
    const waiting = (agent.waiting_on || []).map((t) =>
      h("button", { type: "button", class: "link", text: t, onclick: () => this.onSelectThread(t) }),
    );
    return h(
      "li",
      { class: `agent a-${agent.activity}`, dataset: { agent: agent.agent_id, activity: agent.activity } },
      h("span", { class: "status-dot", title: agent.activity }),
      h(
        "div",
        { class: "who" },
        h(
          "div",
          { class: "line" },
          h("strong", { text: agent.name }),
          agent.name !== agent.agent_id ? h("span", { class: "muted mono small", text: agent.agent_id }) : null,
          isHuman(agent.agent_id) ? h("span", { class: "tag t-human", text: "human" }) : null,
        ),
        h(
          "div",
          { class: "line small" },
          h("span", { class: `activity a-${agent.activity}`, text: agent.activity }),
          agent.current_file ? h("span", { class: "mono file", text: agent.current_file }) : null,
          waiting.length ? h("span", { class: "waits" }, "waits on ", waiting) : null,
        ),
      ),
      h("span", { class: "muted small seen", dataset: { ago: agent.last_seen || "" }, text: ago(agent.last_seen) }),
    );
  }

  renderPager(pages) {
    const pager = clear(byId("agents-pager"));
    if (pages <= 1) return;
    pager.append(
      h("button", { type: "button", disabled: this.page === 0, text: "‹", "aria-label": "Previous page", onclick: () => { this.page -= 1; this.render(); } }),
      h("span", { class: "small muted", text: `${this.page + 1} / ${pages}` }),
      h("button", { type: "button", disabled: this.page >= pages - 1, text: "›", "aria-label": "Next page", onclick: () => { this.page += 1; this.render(); } }),
    );
  }
}
