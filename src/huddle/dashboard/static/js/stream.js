// The live event stream: EventSource on /api/events, resumed by cursor so nothing is missed.
//
// EventSource reconnects on its own and sends Last-Event-ID. If the browser gives up (the server
// answered with an error while restarting) we open a new one ourselves from the last cursor we
// handled, with backoff. Events at or below that cursor are dropped, so a replay never duplicates.

import { eventsUrl } from "./api.js";

const MAX_BACKOFF_MS = 8000;

export class LiveStream {
  constructor({ onEvent, onState, onOpen }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onOpen = onOpen || (() => {});
    this.cursor = 0;
    this.source = null;
    this.backoff = 500;
    this.timer = null;
    this.opens = 0;
  }

  start(since) {
    this.cursor = since;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.onState(this.opens ? "reconnecting" : "connecting");
    const source = new EventSource(eventsUrl(this.cursor));
    this.source = source;
    source.onopen = () => {
      this.backoff = 500;
      this.opens += 1;
      this.onState("live");
      Promise.resolve(this.onOpen(this.opens)).catch((err) => console.warn("after reconnecting", err));
    };
    source.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      if (typeof event.cursor !== "number" || event.cursor <= this.cursor) return;
      this.cursor = event.cursor;
      this.onEvent(event);
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onState("offline");
        this.timer = setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      } else {
        this.onState("reconnecting");
      }
    };
  }
}
