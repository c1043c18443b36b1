// The browser client's entry point.  The chat page itself is not built
// yet (issue 18): for now it says so, and that the protocol core loads.
import { PROTOCOL_VERSION } from "./protocol/constants.js";

const status = document.getElementById("status");
if (status !== null) {
  status.textContent =
    `securechat protocol version ${PROTOCOL_VERSION}: the browser client is not finished yet.`;
}
