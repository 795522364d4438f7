// One line per event kind for the timeline: what happened, plus chips for scores, layers, outcomes.

export const GROUPS = [
  ["all", "All", null],
  ["intent", "Intents", "intent.*,impact.*"],
  ["thread", "Threads", "thread.*"],
  ["lock", "Leases", "lock.*"],
  ["task", "Tasks", "task.*,worker.*"],
  ["agent", "Agents", "agent.*"],
  ["file", "Files", "file.*,action.*"],
];

export function groupOf(kind) {
  const head = kind.split(".")[0];
  if (head === "impact") return "intent";
  if (head === "worker") return "task";
  if (head === "action") return "file";
  return head;
}

export function matchesGroup(kind, group) {
  return group === "all" || groupOf(kind) === group;
}

function files(list, max = 2) {
  if (!list || !list.length) return "";
  const shown = list.slice(0, max).join(", ");
  return list.length > max ? `${shown} +${list.length - max}` : shown;
}

/** Layers that fired in a list of impacts: [["0a", 100], …], highest score first, unique. */
export function layersOf(impacts) {
  const seen = new Map();
  for (const impact of impacts || []) {
    for (const evidence of impact.evidence || []) {
      const score = Math.max(seen.get(evidence.layer) || 0, evidence.score || 0);
      seen.set(evidence.layer, score);
    }
  }
  return [...seen.entries()].sort((a, b) => b[1] - a[1]);
}

export const OUTCOME_LABEL = {
  resolved: "resolved",
  timeout: "timed out",
  max_rounds: "max rounds",
  closed: "closed",
  cancelled: "cancelled",
  resolving: "resolving",
  open: "open",
};

/** {text, chips: [{label, tone}]} for one event. */
export function describe(e) {
  const chips = [];
  let text = e.event;
  switch (e.event) {
    case "agent.online":
      text = e.name && e.name !== e.agent_id ? `came online as ${e.name}` : "came online";
      break;
    case "agent.offline":
      text = "went offline";
      break;
    case "agent.deregistered":
      text = "left";
      break;
    case "intent.announced":
      text = `announced “${e.subject}” on ${files(e.target_files)}`;
      chips.push({ label: e.verdict, tone: e.verdict });
      if (e.max_score) chips.push({ label: `score ${e.max_score}`, tone: "score" });
      break;
    case "intent.ended":
      text = `intent ${e.intent_id} ${e.status || e.reason || "ended"}`;
      break;
    case "impact.awareness":
      // One event per group the same evidence concerns: it names its agent, or counts a crowd.
      text = e.other_agent
        ? `“${e.subject}” touches ${e.other_agent}'s work`
        : `“${e.subject}” touches the work of ${e.affected} agents`;
      chips.push({ label: `score ${e.score}`, tone: "score" });
      for (const ev of e.evidence || []) chips.push({ label: `L${ev.layer}`, tone: "layer" });
      break;
    case "thread.opened":
      text = `opened ${e.thread_id} “${e.subject}” with ${(e.expected_respondents || []).join(", ")}`;
      for (const [layer, score] of layersOf(e.impacts)) chips.push({ label: `L${layer} ${score}`, tone: "layer" });
      break;
    case "thread.message":
      text = `${e.type}: ${e.content}`;
      break;
    case "thread.proposal":
      text = `proposed “${e.summary}”`;
      break;
    case "thread.approval":
      text = `approved the proposal in ${e.thread_id}`;
      break;
    case "thread.status":
      text = `${e.thread_id} → ${OUTCOME_LABEL[e.status] || e.status}${e.reason ? ` (${e.reason})` : ""}`;
      chips.push({ label: OUTCOME_LABEL[e.status] || e.status, tone: e.status });
      break;
    case "thread.claimed":
      text = `claimed the work of ${e.thread_id}`;
      break;
    case "thread.completed":
      text = `completed ${e.thread_id}: ${e.resolution || ""}`;
      break;
    case "thread.respondent_left":
      text = `left ${e.thread_id}`;
      break;
    case "action.summary":
      text = e.summary;
      break;
    case "file.edited":
      text = `edited ${e.path}`;
      break;
    case "file.editing":
      text = e.editing === false ? `stopped editing ${e.path}` : `is editing ${e.path}`;
      break;
    case "lock.acquired":
      text = `leased ${e.path} (${e.mode})`;
      chips.push({ label: `token ${e.fencing_token}`, tone: "muted" });
      break;
    case "lock.renewed":
      text = `renewed ${e.path}`;
      break;
    case "lock.released":
      text = e.forced_by ? `${e.forced_by} released ${e.holder}'s lease on ${e.path}` : `released ${e.path}`;
      if (e.forced_by) chips.push({ label: "forced", tone: "warning" });
      break;
    case "lock.expired":
      text = `${e.holder}'s lease on ${e.path} expired`;
      chips.push({ label: "expired", tone: "timeout" });
      break;
    case "lock.queued":
      text = `queued for ${e.path} (${e.mode})`;
      break;
    case "lock.wait_ended":
      text = `stopped waiting for ${e.path}`;
      break;
    case "message.sent":
      text = `→ ${e.to_agent || "everyone"}: ${e.content || ""}`;
      break;
    case "context.shared":
      text = `shared a ${e.type || "note"}: ${e.content || ""}`;
      break;
    case "task.added":
      text = `added task ${e.task_id}`;
      break;
    case "task.available":
      text = `task ${e.task_id} is available`;
      break;
    case "task.claimed":
      text = `claimed task ${e.task_id}`;
      break;
    case "task.updated":
      text = `task ${e.task_id} → ${e.status}`;
      chips.push({ label: e.status, tone: e.status === "failed" ? "timeout" : e.status === "done" ? "resolved" : "muted" });
      break;
    case "task.reset":
      text = `task ${e.task_id} back to pending${e.reason ? ` (${e.reason})` : ""}`;
      break;
    case "worker.claimed":
      text = `took worker slot ${e.slot}`;
      break;
    case "worker.released":
      text = `freed worker slot ${e.slot}`;
      break;
    default:
      break;
  }
  return { text, chips };
}
