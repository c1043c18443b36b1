"""
The browser client: its static files (C{static/}, served by C{--web}) and
the sources of what is bundled into them (C{src/}, built with esbuild).
"""
