// Who the person at the page is: an overseer agent id `human:<name>`, kept in localStorage and
// registered (register_agent is idempotent) before the first action, so posts and releases are
// signed by a recognisable human rather than borrowed from an agent.

import { call } from "./api.js";
import { byId } from "./dom.js";

const KEY = "huddle.overseer";
let registered = null;

export function overseerName() {
  return localStorage.getItem(KEY) || "";
}

export function overseerId() {
  const name = overseerName();
  return name ? `human:${name}` : null;
}

export function setOverseer(name) {
  localStorage.setItem(KEY, name);
  registered = null;
  document.dispatchEvent(new CustomEvent("overseer-changed"));
}

function askName() {
  const dialog = byId("name-dialog");
  const input = byId("name-input");
  input.value = overseerName();
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.close();
      resolve(value);
    };
    byId("name-cancel").onclick = () => done(null);
    byId("name-form").onsubmit = (ev) => {
      ev.preventDefault();
      if (!input.checkValidity()) return;
      done(input.value.trim());
    };
    dialog.showModal();
    input.focus();
  });
}

export async function chooseName() {
  const name = await askName();
  if (name) setOverseer(name);
  return name;
}

/** The overseer id, registered; asks for a name the first time. Null if the person declines. */
export async function actingOverseer() {
  if (!overseerName() && !(await chooseName())) return null;
  const id = overseerId();
  if (registered !== id) {
    await call("register_agent", { name: overseerName(), agent_id: id, client: "dashboard" });
    registered = id;
  }
  return id;
}
