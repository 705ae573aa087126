"""Alerts: tell a person when a new kind of failure appears or a threshold is crossed.

A new failure fingerprint (workers/dead_letters/fingerprints.py), or a threshold crossed
(a queue's oldest message, the outbox's oldest row, beat silent, a pool with no live
worker), opens a repeat window of ALERTS_REPEAT_MINUTES and sends one alert; what
happens again inside the window is only counted, and sent as one digest when the window
ends (a storm of 10,000 identical failures is two messages). Each alert is a row
(`Alert`), delivered to a Slack-compatible webhook and/or by email, retried with backoff
until it goes through; sending never runs inside, blocks or fails a task.
"""
