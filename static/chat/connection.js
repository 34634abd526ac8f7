// The WebSocket to /ws/chat/: reconnects with exponential backoff and jitter, and notices a dead
// connection by its silence (a ping every 15 s is always answered).
const t = (s) => (window.gettext ? window.gettext(s) : s);

// Protocol 2: replies have parts (reasoning, then the answer text), see docs/protocol.md.
export const PROTOCOL = 2;

const CLOSE_BAD_REQUEST = 4400;
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_SESSION_ENDED = 4403;
const PING_EVERY_MS = 15000;
const SILENCE_LIMIT_MS = 40000;
const MAX_DELAY_MS = 15000;

export class Connection {
  /** `onFrame(frame)` gets every frame; `onState(state, detail)`: connecting, online, reconnecting, offline. */
  constructor(path, { onFrame, onState }) {
    const url = new URL(path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("protocol", String(PROTOCOL));
    this.url = url.href;
    this.onFrame = onFrame;
    this.onState = onState;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.lastHeard = Date.now();
    this.stopped = false;
  }

  start() {
    this.open();
    setInterval(() => this.heartbeat(), PING_EVERY_MS);
    window.addEventListener("online", () => this.reconnectNow());
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Sends a frame if the socket is open; false otherwise (the caller re-sends after `hello`). */
  send(frame) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  open() {
    clearTimeout(this.timer);
    this.onState(this.attempt ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      this.lastHeard = Date.now();
      const frame = JSON.parse(event.data);
      if (frame.type === "hello") {
        this.attempt = 0;
        this.onState("online");
      }
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      if (event.code === CLOSE_UNAUTHENTICATED || event.code === CLOSE_SESSION_ENDED) {
        this.stopped = true;
        this.onState("offline", t("Logged out: log in again to continue."));
        return;
      }
      if (event.code === CLOSE_BAD_REQUEST) {
        // The server does not speak our protocol version: dialling again would not help.
        this.stopped = true;
        this.onState("offline", t("This page is out of date: reload it."));
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    const base = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempt);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempt += 1;
    this.onState("reconnecting", delay);
    this.timer = setTimeout(() => this.open(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.isOpen || this.socket?.readyState === WebSocket.CONNECTING) return;
    this.open();
  }

  heartbeat() {
    if (!this.isOpen) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      // Do not wait for a dead socket's closing handshake: drop it and dial again.
      const dead = this.socket;
      this.socket = null;
      dead.close();
      this.scheduleReconnect();
      return;
    }
    this.send({ type: "ping" });
  }
}
