"""The one inference engine shared by the terminal chat, the API and the web UI."""
