"""
The local IRC gateway: any IRC client (irssi, WeeChat...) as a securechat
client.  It runs on the user's own machine beside the IRC client, speaks
IRC to it and securechat to the relay, and does all the end-to-end
cryptography locally with the same client core as the terminal interface
(L{securechat.client.core.ChatClient}, L{securechat.client.letters}); the
relay never speaks IRC and never sees plaintext.

  - L{securechat.client.irc.text}: peer text made safe for an IRC stream,
    long lines split, user names as nicks and back;
  - L{securechat.client.irc.connection}: the IRC side
    (L{twisted.words.protocols.irc.IRC}): PASS, CAP, registration, one
    core call per IRC command;
  - L{securechat.client.irc.gateway}: the L{securechat.client.view.ChatView}
    that turns what the core reports into IRC lines, and IRC messages into
    core calls; L{securechat.client.irc.mail}: its letter events;
  - L{securechat.client.irc.channels}: the user's groups as channels
    (JOIN, PART, NAMES, TOPIC, PRIVMSG to the channel, membership changes);
  - L{securechat.client.irc.service}: the C{securechat} service nick's
    commands (C{/msg securechat help});
  - L{securechat.client.irc.listen}: C{securechat-client --irc}: the
    listener, its password, the loopback rule.
"""
