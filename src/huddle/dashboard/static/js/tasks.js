// The task board: a column per status, dependencies on each card (✓ when done), filters by text,
// claimer and "hide done", an add form, and reset on failed or abandoned tasks. Each column shows
// at most COLUMN_CAP cards (the counts stay exact), so a board of thousands stays light.

import { call } from "./api.js";
import { actingOverseer } from "./overseer.js";
import { byId, clear, h, toast } from "./dom.js";

const COLUMNS = [
  ["pending", "Pending"],
  ["claimed", "Claimed"],
  ["in_progress", "In progress"],
  ["done", "Done"],
  ["failed", "Failed"],
];
const COLUMN_CAP = 50;
const FETCH_LIMIT = 2000;

export class TaskBoard {
  constructor({ agentActivity }) {
    this.agentActivity = agentActivity;
    this.tasks = [];
    this.counts = {};
    this.board = byId("tasks-board");
    for (const id of ["tasks-search", "tasks-claimer", "tasks-hide-done"]) byId(id).addEventListener("input", () => this.render());
    byId("task-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.add();
    });
  }

  async refresh() {
    const data = await call("list_tasks", { limit: FETCH_LIMIT });
    this.tasks = data.tasks;
    this.counts = data.counts;
    this.total = data.total;
    this.render();
  }

  render() {
    const needle = byId("tasks-search").value.trim().toLowerCase();
    const claimer = byId("tasks-claimer").value;
    const hideDone = byId("tasks-hide-done").checked;
    this.renderClaimers(claimer);
    byId("tasks-count").textContent = `${this.total ?? 0} tasks`;
    const status = new Map(this.tasks.map((t) => [t.task_id, t.status]));
    clear(this.board);
    for (const [key, label] of COLUMNS) {
      if (hideDone && key === "done") continue;
      const cards = this.tasks
        .filter((t) => t.status === key)
        .filter((t) => !claimer || t.claimed_by === claimer)
        .filter((t) => !needle || `${t.task_id} ${t.description} ${t.claimed_by || ""}`.toLowerCase().includes(needle));
      const column = h(
        "section",
        { class: `column c-${key}`, dataset: { status: key } },
        h("header", {}, h("span", { text: label }), h("span", { class: "n", text: this.counts[key] ?? cards.length })),
      );
      const list = h("ul", {});
      for (const task of cards.slice(0, COLUMN_CAP)) list.append(this.card(task, status));
      if (!cards.length) list.append(h("li", { class: "empty small", text: "—" }));
      if (cards.length > COLUMN_CAP) list.append(h("li", { class: "small muted", text: `+${cards.length - COLUMN_CAP} more (filter to narrow)` }));
      column.append(list);
      this.board.append(column);
    }
  }

  renderClaimers(current) {
    const select = byId("tasks-claimer");
    const claimers = [...new Set(this.tasks.map((t) => t.claimed_by).filter(Boolean))].sort();
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join() === claimers.join()) return;
    select.replaceChildren(h("option", { value: "", text: "anyone" }), ...claimers.map((c) => h("option", { value: c, selected: c === current, text: c })));
  }

  card(task, status) {
    const deps = (task.depends_on || []).map((d) => h("span", { class: `dep${status.get(d) === "done" ? " done" : ""}`, title: `depends on ${d} (${status.get(d) || "unknown"})`, text: `${status.get(d) === "done" ? "✓" : "↳"} ${d}` }));
    const abandoned = task.claimed_by && ["claimed", "in_progress"].includes(task.status) && this.agentActivity(task.claimed_by) === "offline";
    const resettable = task.status === "failed" || abandoned;
    return h(
      "li",
      { class: `card${task.available ? " available" : ""}${task.waiting_on_dependencies ? " blocked" : ""}`, dataset: { task: task.task_id, status: task.status } },
      h("div", { class: "line" }, h("strong", { class: "mono", text: task.task_id }), task.priority ? h("span", { class: "tag t-muted", text: `p${task.priority}` }) : null, task.available ? h("span", { class: "tag t-resolved", text: "available" }) : null, task.waiting_on_dependencies ? h("span", { class: "tag t-muted", text: "blocked" }) : null),
      h("p", { class: "small", text: task.description }),
      deps.length ? h("div", { class: "deps" }, deps) : null,
      task.claimed_by ? h("div", { class: "small muted claimer", text: `by ${task.claimed_by}${abandoned ? " (offline)" : ""}` }) : null,
      task.error ? h("div", { class: "small error", text: task.error }) : null,
      resettable ? h("button", { type: "button", class: "small-btn", text: "Reset", onclick: () => this.reset(task) }) : null,
    );
  }

  async add() {
    const id = byId("task-id").value.trim();
    const description = byId("task-desc").value.trim();
    const deps = byId("task-deps").value.split(",").map((s) => s.trim()).filter(Boolean);
    const priority = Number(byId("task-priority").value || 0);
    try {
      const overseer = await actingOverseer();
      if (!overseer) return;
      await call("add_task", { task_id: id, description, depends_on: deps, priority, agent_id: overseer });
      byId("task-form").reset();
      toast(`Added ${id}`, "ok");
    } catch (err) {
      toast(err.message);
    }
  }

  async reset(task) {
    try {
      const overseer = await actingOverseer();
      if (!overseer) return;
      const result = await call("reset_task", { task_id: task.task_id, agent_id: overseer });
      toast(result.reset ? `${task.task_id} is pending again` : result.reason, result.reset ? "ok" : "error");
    } catch (err) {
      toast(err.message);
    }
  }
}
