"""The job platform: base task, errors, routing, dead letters, health and ops commands.

Nothing here imports `apps/`; the apps build on this package.
"""
