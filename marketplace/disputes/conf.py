"""Dispute limits. The dispute window is the frame's settlement rule: `jobs.conf.dispute_window()`."""

REASON_MIN_CHARS = 10
REASON_MAX_CHARS = 2000
NOTE_MAX_CHARS = 2000
