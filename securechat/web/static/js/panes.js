// Several chats at once on the page: one pane per peer, each with that
// chat's lines, its own input line and its own buttons.  Like the rest of
// the page it shows everything as text (textContent), never as HTML, and
// decides nothing about the protocol: it passes what the user does to the
// callbacks it was given.
import { untrusted } from "./client/display.js";

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

export class Panes {
  /**
   * @param container  where the panes go
   * @param actions    `{say(peer, line), stop(peer)}`
   */
  constructor(container, actions) {
    this.container = container;
    this.actions = actions;
    this.panes = new Map(); // peer -> section
  }

  has(peer) {
    return this.panes.has(peer);
  }

  /** The pane for `peer` (a user name, checked by the core), made on first use. */
  pane(peer) {
    let pane = this.panes.get(peer);
    if (pane) return pane;
    pane = element("section", "pane");
    pane.dataset.peer = peer;
    const log = element("ol", "pane-log");
    const form = element("form", "say");
    const line = element("input", "entry");
    line.autocomplete = "off";
    line.setAttribute("aria-label", `a line to ${peer}`);
    const send = element("button", "send", "Send");
    send.type = "submit";
    const stop = element("button", "stop", "End chat");
    stop.type = "button";
    const close = element("button", "close", "Close");
    close.type = "button";
    form.append(line, send, stop, close);
    pane.append(element("h3", "", `Chat with ${peer}`), log, form);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!line.value) return;
      this.log(peer, `me: ${line.value}`, "mine");
      this.actions.say(peer, line.value);
      line.value = "";
    });
    stop.addEventListener("click", () => this.actions.stop(peer));
    close.addEventListener("click", () => {
      this.actions.stop(peer);
      pane.remove();
      this.panes.delete(peer);
    });
    this.panes.set(peer, pane);
    this.container.append(pane);
    return pane;
  }

  /** One line in `peer`'s pane, made safe to show. */
  log(peer, text, kind = "line") {
    this.pane(peer).querySelector(".pane-log").append(element("li", kind, untrusted(text)));
  }

  /** A line in `peer`'s pane if it is open (true), else nothing (false). */
  note(peer, text, kind = "notice") {
    if (!this.panes.has(peer)) return false;
    this.log(peer, text, kind);
    return true;
  }

  /** Put the cursor in `peer`'s input line. */
  focus(peer) {
    this.pane(peer).querySelector(".entry").focus();
  }
}
