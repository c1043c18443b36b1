// Groups (docs/protocol.rst 15, 16) as far as the page goes today: it does
// not replay or verify a group's log, nor open group messages, so it only
// says which groups the relay reports us in and points to securechat-client.
// It never acknowledges a group message (GROUP_ACK): the relay keeps every
// message until each member acknowledged it (15.3), so the terminal client
// still receives them at its next login.
import { RemoteProtocolError } from "../protocol/errors.js";
import { toHex } from "../protocol/bytes.js";
import { Action, encode, parseChange } from "../protocol/groups.js";
import { reasonText } from "../protocol/relay.js";

const ROLE = { 1: "a member", 2: "an admin", 3: "the owner" };
const ADVICE = "groups are not available in the browser yet — use securechat-client";

/** The page's group notices: one line per group, one more if it has messages. */
export class GroupNotices {
  constructor({ me, out, view }) {
    Object.assign(this, { me, out, view });
    this.named = new Map(); // group id (hex) -> name, as the relay's GROUP_LIST says
    this.unread = new Set(); // groups whose messages we said we cannot read
    this.listing = false; // a LIST_GROUPS is on its way
  }

  notice(text) {
    this.view({ kind: "notice", text });
  }

  /** One parsed group message from the relay (groups.js `parse`). */
  message(m) {
    switch (m.message) {
      case "groupList":
        return this._list(m.groups);
      case "groupChanged":
        return this._changed(m.change);
      case "groupMessage": {
        const id = toHex(m.group_id);
        if (this.unread.has(id)) return;
        this.unread.add(id);
        this.notice(`${m.sender} wrote in ${this._name(id)}; this page cannot read group messages, `
          + "they are kept for securechat-client");
        return;
      }
      case "groupRefused":
        this.notice(`the relay refused a group command (0x${m.command.toString(16)}): `
          + reasonText(m.reason));
        return;
      default: // groupPosted, groupLogPage: answers to commands the page never sends
    }
  }

  _name(id) {
    const name = this.named.get(id);
    return name === undefined ? `a group (${id.slice(0, 8)})` : `group '${name}'`;
  }

  _list(groups) {
    this.listing = false;
    const now = new Set();
    for (const g of groups) {
      const id = toHex(g.group_id);
      now.add(id);
      if (this.named.get(id) === g.name) continue;
      this.named.set(id, g.name);
      this.notice(`the relay says you are ${ROLE[g.role]} of group '${g.name}'; ${ADVICE}`);
    }
    for (const [id, name] of this.named) {
      if (!now.has(id)) {
        this.named.delete(id);
        this.notice(`the relay says you are no longer in group '${name}'`);
      }
    }
  }

  _changed(data) {
    let change;
    try {
      change = parseChange(data);
    } catch (e) {
      if (!(e instanceof RemoteProtocolError)) throw e;
      this.notice(`the relay sent a group change that does not parse (${e.detail})`);
      return;
    }
    const id = toHex(change.group_id);
    const action = Action[change.action];
    const out = action === "delete" || (action === "leave" && change.actor === this.me)
      || (action === "remove" && change.target === this.me);
    if (out) {
      if (this.named.has(id)) {
        this.notice(`${change.actor} ${action === "delete" ? "deleted" : action === "leave"
          ? "left" : "removed you from"} ${this._name(id)} (not verified here)`);
        this.named.delete(id);
      }
      return;
    }
    // An add (or a change we have not seen the group of): a change carries
    // the group's name only at its creation or a rename, so ask the list.
    if (!this.named.has(id) || action === "rename") this.list();
  }

  /** Ask the relay which groups we are in (LIST_GROUPS), unless already asked. */
  list() {
    if (this.listing) return;
    this.listing = true;
    this.out([encode("listGroups")]);
  }
}
