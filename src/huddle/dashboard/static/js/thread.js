// Thread view: one consultation with its members, proposal, approvals and messages, and a form to
// post to it as the human overseer (post_to_thread, so the agents get it through get_updates).

import { call } from "./api.js";
import { actingOverseer, overseerId } from "./overseer.js";
import { ago, byId, clear, clock, fill, h, isHuman, toast } from "./dom.js";
import { layersOf, OUTCOME_LABEL } from "./describe.js";

const ACTIVE = new Set(["open", "resolving"]);

export class ThreadPanel {
  constructor() {
    this.view = byId("thread-view");
    this.picker = byId("thread-picker");
    this.form = byId("thread-form");
    this.selected = null;
    this.threads = [];
    this.impacts = new Map(); // thread id → impacts seen on its thread.opened event
    this.picker.addEventListener("change", () => this.select(this.picker.value || null));
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.post();
    });
    document.addEventListener("overseer-changed", () => this.renderSigner());
    this.renderSigner();
  }

  renderSigner() {
    const id = overseerId();
    byId("thread-as").textContent = id ? `as ${id}` : "you will be asked for your name";
  }

  rememberImpacts(event) {
    if (event.event === "thread.opened" && event.impacts) this.impacts.set(event.thread_id, event.impacts);
  }

  async refreshList() {
    this.threads = (await call("list_threads", { limit: 50 })).threads;
    const active = this.threads.filter((t) => ACTIVE.has(t.status));
    if (!this.selected && this.threads.length) this.selected = (active[0] || this.threads[0]).thread_id;
    clear(this.picker);
    this.picker.append(h("option", { value: "", text: this.threads.length ? `${active.length} active · ${this.threads.length} recent` : "no threads yet" }));
    for (const t of this.threads) {
      this.picker.append(
        h("option", { value: t.thread_id, selected: t.thread_id === this.selected, text: `${t.thread_id} · ${OUTCOME_LABEL[t.status] || t.status} · ${t.subject}` }),
      );
    }
    return this.selected;
  }

  async select(threadId) {
    this.selected = threadId;
    this.picker.value = threadId || "";
    await this.refresh();
  }

  async refresh() {
    if (!this.selected) {
      this.form.hidden = true;
      return;
    }
    let thread;
    try {
      thread = await call("get_thread", { thread_id: this.selected });
    } catch (err) {
      clear(this.view).append(h("p", { class: "empty", text: err.message }));
      return;
    }
    if (!this.impacts.has(thread.thread_id)) {
      // Scores and layers live on the event that opened the thread.
      const opened = await call("list_events", { thread_id: thread.thread_id, kinds: "thread.opened", limit: 1 });
      this.impacts.set(thread.thread_id, opened.events.length ? opened.events[0].impacts || [] : []);
    }
    this.render(thread);
  }

  render(t) {
    const members = [t.initiator, ...t.expected_respondents];
    const approved = new Set(t.approvals);
    const layers = layersOf(this.impacts.get(t.thread_id));
    const head = h(
      "div",
      { class: "thread-head" },
      h("div", { class: "line" }, h("span", { class: "mono muted", text: t.thread_id }), h("span", { class: `pill s-${t.status}`, dataset: { testid: "thread-status" }, text: OUTCOME_LABEL[t.status] || t.status }), h("span", { class: "muted small", text: `round ${t.round}` })),
      h("h3", { text: t.subject }),
      h(
        "div",
        { class: "line small" },
        members.map((m) => h("span", { class: `member${m === t.initiator ? " initiator" : ""}${approved.has(m) ? " approved" : ""}`, title: m === t.initiator ? "initiator" : "respondent", text: m })),
      ),
      t.target_files.length ? h("div", { class: "line small mono files" }, t.target_files.join("  ")) : null,
      layers.length ? h("div", { class: "chips" }, layers.map(([layer, score]) => h("span", { class: "tag t-layer", text: `L${layer} ${score}` }))) : null,
      t.deadline ? h("div", { class: "small muted", text: `decides by ${clock(t.deadline)}` }) : null,
    );
    const proposal = t.proposal
      ? h(
          "div",
          { class: "proposal" },
          h("div", { class: "small muted", text: `proposal by ${t.proposal.by}` }),
          h("p", { text: t.proposal.summary }),
          t.proposal.plan ? h("p", { class: "small", text: t.proposal.plan }) : null,
          h(
            "div",
            { class: "line small" },
            t.approvals.map((a) => h("span", { class: "tag t-resolved", text: `✓ ${a}` })),
            t.waiting_for.map((a) => h("span", { class: "tag t-muted", text: `… ${a}` })),
          ),
        )
      : null;
    const resolution = t.resolution ? h("div", { class: "resolution" }, h("strong", { text: "Resolution: " }), t.resolution) : null;
    const messages = h(
      "ol",
      { class: "messages", dataset: { testid: "thread-messages" } },
      t.messages.map((m) =>
        h(
          "li",
          { class: `msg m-${m.type}${isHuman(m.agent_id) ? " human" : ""}` },
          h("div", { class: "line small" }, h("strong", { text: m.agent_id }), h("span", { class: `tag t-${m.type}`, text: m.type }), h("time", { class: "muted", datetime: m.ts, title: m.ts, text: ago(m.ts) })),
          h("p", { text: m.content }),
        ),
      ),
    );
    if (!t.messages.length) messages.append(h("li", { class: "empty", text: "No messages yet." }));
    fill(this.view, head, proposal, resolution, messages);
    this.form.hidden = !ACTIVE.has(t.status);
  }

  async post() {
    const text = byId("thread-text");
    const content = text.value.trim();
    if (!content || !this.selected) return;
    const button = byId("thread-send");
    button.disabled = true;
    try {
      const overseer = await actingOverseer();
      if (!overseer) return;
      await call("post_to_thread", { thread_id: this.selected, agent_id: overseer, type: byId("thread-type").value, content });
      text.value = "";
      toast("Posted to the thread", "ok");
    } catch (err) {
      toast(err.message);
    } finally {
      button.disabled = false;
    }
  }
}
