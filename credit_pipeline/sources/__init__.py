"""Source adapters behind one small protocol: GitHub (PyGithub) and Discord (discord.py)."""
