"""The simplane agent: runs the tasks the server assigns to this machine (see main.run_agent)."""
