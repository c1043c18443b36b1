// Numbers of docs/protocol.rst that the whole client shares.
export const PROTOCOL_VERSION = 1;
