"""
The full-screen interface of C{securechat-client}: a window (buffer) per
conversation plus a status window, a status bar, and an input line that
incoming lines never interrupt, as irssi and WeeChat users expect.  It is a
L{securechat.client.view.ChatView} over the same client core as the line
mode (L{securechat.client.terminal}), which stays for pipes and scripts.

Library: urwid (C{urwid >= 2.6}; 5.1 when this was written), run on
Twisted's reactor with C{urwid.TwistedEventLoop(manage_reactor=False)}.
urwid is maintained and widely used, and gives what a chat screen needs
ready-made: an edit widget with cursor movement and wrapping, scrolling
lists, columns that keep wrapped text aligned, a palette with a monochrome
fallback, redrawing on resize, and a display-free rendering API
(C{widget.render(size).text}, C{widget.keypress}) that the tests drive
without a terminal.  C{twisted.conch.insults}/C{recvline} needs no
dependency but gives a line editor and little else: windows, wrapping,
scrolling and colours would all be ours to write and to get right.

Modules: L{windows} (the buffers, no drawing), L{widgets} (urwid),
L{view} (the L{ChatView}), L{commands} (what a typed line does), L{keys}
(history, completion, window keys), L{app} (the urwid main loop).
"""
