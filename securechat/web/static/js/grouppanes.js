// Groups on the page: one pane per group, with its verified members, its
// changes, its messages, an input line, and buttons to add or remove a
// member or leave.  Like the rest of the page it shows everything as text
// (textContent, neutralised), never as HTML, and decides nothing about the
// protocol: it shows the session's group events and passes on what the
// user does.
import { untrusted } from "./client/display.js";

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = untrusted(text);
  return e;
}

function button(text, className, onClick) {
  const b = element("button", className, text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

/** A time for a user (Unix seconds). */
function when(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().slice(11, 16) + " UTC";
}

export class GroupPanes {
  /**
   * @param container  where the panes go
   * @param actions    `{say(id, line), add(id, user), remove(id, user), leave(id), members(id)}`
   * @param log        (text, kind) => a line in the page's log (notices not of one group)
   */
  constructor(container, actions, log) {
    Object.assign(this, { container, actions, log });
    this.panes = new Map(); // group id (hex) -> section
    this.names = new Map(); // group id -> name, as verified
  }

  pane(id) {
    let pane = this.panes.get(id);
    if (pane) return pane;
    pane = element("section", "group-pane");
    pane.dataset.group = id;
    const title = element("h3", "group-title", `Group ${this.names.get(id) ?? id.slice(0, 8)}`);
    const members = element("p", "group-members");
    const log = element("ol", "group-log");
    const form = element("form", "group-say");
    const line = element("input", "entry");
    line.autocomplete = "off";
    line.setAttribute("aria-label", "a line to the group");
    const send = element("button", "send", "Send");
    send.type = "submit";
    form.append(line, send);
    const who = element("input", "member");
    who.autocomplete = "off";
    who.spellcheck = false;
    who.setAttribute("aria-label", "a user name");
    const admin = element("p", "group-admin");
    admin.append(who,
      button("Add", "add", () => this.actions.add(id, who.value.trim())),
      button("Remove", "remove", () => this.actions.remove(id, who.value.trim())),
      button("Leave the group", "leave", () => this.actions.leave(id)));
    pane.append(title, members, log, form, admin);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!line.value) return;
      this.line(id, `me: ${line.value}`, "mine");
      this.actions.say(id, line.value);
      line.value = "";
    });
    this.panes.set(id, pane);
    this.container.append(pane);
    return pane;
  }

  line(id, text, kind = "line") {
    this.pane(id).querySelector(".group-log").append(element("li", kind, text));
  }

  _members(id, members) {
    this.pane(id).querySelector(".group-members").textContent = untrusted(
      `Members (verified): ${members.map(([user, role]) => (role === "member" ? user : `${user} (${role})`)).join(", ")}`);
  }

  /** One group event from the session; false if it is not one. */
  show(e) {
    switch (e.kind) {
      case "groupChange": {
        this.names.set(e.group, e.name);
        this.pane(e.group).querySelector(".group-title").textContent = untrusted(`Group ${e.name}`);
        const what = { create: `created the group '${e.newName}'`, add: `added ${e.target}`,
          remove: `removed ${e.target}`, leave: "left", "set-role": `changed ${e.target}'s role`,
          "transfer-owner": `made ${e.target} the owner`, rename: `renamed the group '${e.newName}'`,
          delete: "deleted the group" }[e.action];
        this.line(e.group, `* ${e.actor} ${what} (epoch ${e.epoch}, verified)`, "notice");
        this._members(e.group, e.members);
        return true;
      }
      case "groupText":
        if (e.text === null) {
          this.line(e.group, `${e.sender} sent content of type ${e.contentType}, which this page cannot show`, "notice");
        } else {
          this.line(e.group, `[${when(e.sentAt)}] ${e.sender}: ${e.text}${e.late ? " (late)" : ""}`);
        }
        return true;
      case "groupHeld":
        this.line(e.group, `a message from ${e.sender} is waiting for ${e.sender}'s key`, "notice");
        return true;
      case "groupGap":
        this.line(e.group, `${e.count} message${e.count === 1 ? "" : "s"} from ${e.sender} did not arrive `
          + "(dropped, or to come late)", "warning");
        return true;
      case "groupRefused":
        this.line(e.group, `a message from ${e.sender} (${when(e.storedAt ?? 0n)}) REFUSED, not shown: `
          + `${e.code}: ${e.detail}`, "warning");
        return true;
      case "keyRefused":
        (e.group ? (t, k) => this.line(e.group, t, k) : this.log)(`a group key from ${e.sender} was `
          + `refused: ${e.code}: ${e.detail}`, "warning");
        return true;
      case "groupNotice":
        if (e.group && this.panes.has(e.group)) this.line(e.group, e.text, e.warning ? "warning" : "notice");
        else this.log(e.text, e.warning ? "warning" : "notice");
        return true;
      case "groupGone":
        if (this.panes.has(e.group)) {
          this.line(e.group, "you are no longer in this group", "notice");
          this.pane(e.group).querySelector(".group-say").hidden = true;
          this.pane(e.group).querySelector(".group-admin").hidden = true;
        }
        return true;
      case "keyArrived":
      case "groupPosted":
        return true;
      default:
        return false;
    }
  }
}
